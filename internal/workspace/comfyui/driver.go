// Package comfyui drives a ComfyUI server as a Gooni GPU workspace (driver
// "comfyui", CONTRACT section 14): it submits API-format workflows filled
// from a task, follows them over ComfyUI's /ws socket (falling back to
// /queue and /history), and fetches media through /view. It also holds the
// shipped workflows and `gooni comfy-sim`, a fake of the ComfyUI API subset
// the driver uses.
//
// The shapes follow ComfyUI's server.py, execution.py and main.py as read at
// upstream commit 3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce (2026-01-07, through
// the fork pollockjj/ComfyUI at 618b803d314a525faca8f8163d85eaa9ebc1d774).
package comfyui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gooni/internal/workspace"
)

const (
	// Bounds on what ComfyUI can make the driver read and hold.
	maxPromptAnswer  = 1 << 20   // POST /prompt, /upload/image answers
	maxHistoryAnswer = 4 << 20   // one /history/{id} entry (graph, messages, outputs)
	maxQueueAnswer   = 256 << 20 // /queue lists every queued graph; it is streamed, not held (queuescan.go)
	maxObjectInfo    = 8 << 20   // one /object_info/{class} answer
	mediaTimeout     = 5 * time.Minute
)

// clientIDPattern keeps the client_id to one safe query value.
var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// Config configures a Driver.
type Config struct {
	// BaseURL is the ComfyUI server: https://host[:port], or http:// to a
	// loopback host only; no path, query or user info (workspace.CheckBaseURL).
	BaseURL string
	// BearerToken, when set, is sent as "Authorization: Bearer ..." (for a
	// reverse proxy in front of ComfyUI, which has no authentication).
	BearerToken string
	// ProxyKey and ProxySecret, when set, are sent as Modal-Key / Modal-Secret.
	ProxyKey, ProxySecret string
	// ClientID is ComfyUI's client_id for this account: one fixed value per
	// account (for example "gooni-account-7"), [A-Za-z0-9._-]{1,128}.
	ClientID string
	// HTTP is the client for every call; nil = sane timeouts. Redirects are
	// never followed either way (workspace.ErrRedirect).
	HTTP *http.Client
	// Workflows is the set to submit; nil = the embedded set.
	Workflows *Workflows
	// Logger receives socket connects and drops; nil = discard.
	Logger *slog.Logger
	// Now is the clock; nil = time.Now.
	Now func() time.Time
}

// Driver is one ComfyUI server as a workspace.Driver. Create it with New and
// release it with Close. Safe for concurrent use.
type Driver struct {
	base     string
	clientID string
	bearer   string
	key      string
	secret   string
	hc       *http.Client
	wfs      *Workflows
	log      *slog.Logger
	now      func() time.Time
	red      *redactor
	tr       *tracker

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	hooks  hooks
}

// hooks let tests see the socket frames and state changes (set before the socket starts).
type hooks struct {
	frame   func(binary bool, data []byte)
	observe func(promptID string, st workspace.TaskState)
}

var _ workspace.Driver = (*Driver)(nil)

// New checks cfg (errors wrap workspace.ErrTargetInvalid for a bad BaseURL)
// and starts the driver's one background socket to /ws?clientId=....
func New(cfg Config) (*Driver, error) { return newDriver(cfg, hooks{}) }

func newDriver(cfg Config, h hooks) (*Driver, error) {
	base, err := workspace.CheckBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if !clientIDPattern.MatchString(cfg.ClientID) {
		return nil, fmt.Errorf("comfyui: client id must match %s", clientIDPattern)
	}
	for _, v := range []string{cfg.BearerToken, cfg.ProxyKey, cfg.ProxySecret} {
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, errors.New("comfyui: a credential holds a control character")
		}
	}
	wfs := cfg.Workflows
	if wfs == nil {
		wfs, err = LoadWorkflows(EmbeddedWorkflows(), "")
		if err != nil {
			return nil, err
		}
	}
	d := &Driver{
		base: base, clientID: cfg.ClientID,
		bearer: cfg.BearerToken, key: cfg.ProxyKey, secret: cfg.ProxySecret,
		wfs: wfs, log: cfg.Logger, now: cfg.Now,
		red:  newRedactor(cfg.BearerToken, cfg.ProxyKey, cfg.ProxySecret),
		done: make(chan struct{}), hooks: h,
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.hc = noRedirects(cfg.HTTP)
	d.tr = newTracker(d.now, d.red)
	d.tr.observe = h.observe
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go d.runSocket(ctx)
	return d, nil
}

// Close stops the socket and waits for its goroutine.
func (d *Driver) Close() error {
	d.once.Do(func() {
		d.cancel()
		<-d.done
	})
	return nil
}

var defaultTransport = &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   10 * time.Second,
	ResponseHeaderTimeout: workspace.CallTimeout,
	IdleConnTimeout:       90 * time.Second,
	MaxIdleConnsPerHost:   8,
	ForceAttemptHTTP2:     true,
}

func refuseRedirect(*http.Request, []*http.Request) error { return workspace.ErrRedirect }

func noRedirects(c *http.Client) *http.Client {
	var hc http.Client
	if c != nil {
		hc = *c
	} else {
		hc.Transport = defaultTransport
	}
	hc.CheckRedirect = refuseRedirect
	return &hc
}

func (d *Driver) authHeaders(h http.Header) {
	if d.bearer != "" {
		h.Set("Authorization", "Bearer "+d.bearer)
	}
	if d.key != "" {
		h.Set("Modal-Key", d.key)
	}
	if d.secret != "" {
		h.Set("Modal-Secret", d.secret)
	}
}

// do sends one request; the response body is the caller's to close.
func (d *Driver) do(ctx context.Context, method, pathQuery string, body []byte, ctype string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+pathQuery, rd)
	if err != nil {
		return nil, fmt.Errorf("comfyui: build request: %w", workspace.ErrTargetInvalid)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	d.authHeaders(req.Header)
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, d.cleanErr(method, pathQuery, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		resp.Body.Close()
		return nil, fmt.Errorf("comfyui: %s %s: %w (status %d)", method, routeOf(pathQuery), workspace.ErrRedirect, resp.StatusCode)
	}
	return resp, nil
}

// routeOf drops the query from a path for messages.
func routeOf(pathQuery string) string {
	if i := strings.IndexByte(pathQuery, '?'); i >= 0 {
		return pathQuery[:i]
	}
	return pathQuery
}

// cleanErr drops the *url.Error wrapper (it repeats the URL) but keeps the
// cause chain, so timeouts stay recognisable; a credential a lower layer
// echoed is redacted.
func (d *Driver) cleanErr(method, pathQuery string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, workspace.ErrRedirect) {
		return fmt.Errorf("comfyui: %s %s: %w", method, routeOf(pathQuery), workspace.ErrRedirect)
	}
	if msg := err.Error(); d.red.redact(msg) != msg {
		err = errors.New(d.red.clean(msg, maxErrorText))
	}
	return fmt.Errorf("comfyui: %s %s: %w", method, routeOf(pathQuery), err)
}

// statusErr turns a non-2xx answer into *workspace.StatusError (or, when
// busyOK, a 429/503 into *workspace.BusyError) and closes the body.
func (d *Driver) statusErr(resp *http.Response, busyOK bool) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorText))
	if busyOK && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		return &workspace.BusyError{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), d.now())}
	}
	return &workspace.StatusError{Code: resp.StatusCode, Body: d.red.clean(string(b), maxErrorText)}
}

// retryAfter reads Retry-After as seconds or an HTTP date (RFC 9110 10.2.3),
// capped at one hour; absent or unreadable = workspace.DefaultRetryAfter.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return workspace.DefaultRetryAfter
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return workspace.DefaultRetryAfter
		}
		d = time.Duration(min(n, 3600)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(0, t.Sub(now))
	} else {
		return workspace.DefaultRetryAfter
	}
	return min(d, time.Hour)
}

// withCallTimeout applies a per-call limit unless the caller's deadline is sooner.
func withCallTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// callJSON does one round trip and returns the bounded body of a 2xx answer.
func (d *Driver) callJSON(ctx context.Context, method, pathQuery string, body []byte, limit int64, busyOK bool) ([]byte, error) {
	ctx, cancel := withCallTimeout(ctx, workspace.CallTimeout)
	defer cancel()
	ctype := ""
	if body != nil {
		ctype = "application/json"
	}
	resp, err := d.do(ctx, method, pathQuery, body, ctype)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, d.statusErr(resp, busyOK)
	}
	defer resp.Body.Close()
	return d.readBounded(resp.Body, method, pathQuery, limit)
}

func (d *Driver) readBounded(r io.Reader, method, pathQuery string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, d.cleanErr(method, pathQuery, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s %s: answer over %d bytes", workspace.ErrBadResponse, method, routeOf(pathQuery), limit)
	}
	return b, nil
}

// gooniExtra is what the driver puts in extra_data, so that /queue and
// /history say which workflow a prompt came from after a Gooni restart.
type gooniExtra struct {
	TaskID string `json:"task_id"`
	Model  string `json:"model"`
	Mode   string `json:"mode"`
}

// remoteState is where ComfyUI says a prompt stands.
type remoteState struct {
	status string
	errMsg string
	extra  gooniExtra
	entry  *historyEntry // set when found in history
}

// queueInfo is what the driver reads from GET /queue.
type queueInfo struct {
	running, pending int
	found            string // workspace.StatusProcessing or StatusPending when the prompt was seen
	extra            gooniExtra
}

// getQueue reads GET /queue item by item (each item holds a whole graph, and
// a busy ComfyUI may list many), noting whether want is running or pending.
func (d *Driver) getQueue(ctx context.Context, want string, busyOK bool) (*queueInfo, error) {
	ctx, cancel := withCallTimeout(ctx, workspace.CallTimeout)
	defer cancel()
	resp, err := d.do(ctx, http.MethodGet, "/queue", nil, "")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, d.statusErr(resp, busyOK)
	}
	defer resp.Body.Close()
	q, err := parseQueue(io.LimitReader(resp.Body, maxQueueAnswer), want)
	if err != nil {
		return nil, fmt.Errorf("%w: GET /queue: %v", workspace.ErrBadResponse, err)
	}
	return q, nil
}

// historyEntry is one /history/{prompt_id} value (execution.py PromptQueue.task_done).
type historyEntry struct {
	Prompt  []json.RawMessage                     `json:"prompt"`
	Outputs map[string]map[string]json.RawMessage `json:"outputs"`
	Status  *struct {
		StatusStr string              `json:"status_str"`
		Completed bool                `json:"completed"`
		Messages  [][]json.RawMessage `json:"messages"`
	} `json:"status"`
}

func (h *historyEntry) extra() gooniExtra {
	var extra struct {
		Gooni gooniExtra `json:"gooni"`
	}
	if len(h.Prompt) > 3 {
		_ = json.Unmarshal(h.Prompt[3], &extra)
	}
	return extra.Gooni
}

// getHistory reads GET /history/{prompt_id}; nil when ComfyUI does not have it.
func (d *Driver) getHistory(ctx context.Context, pid string, busyOK bool) (*historyEntry, error) {
	b, err := d.callJSON(ctx, http.MethodGet, "/history/"+url.PathEscape(pid), nil, maxHistoryAnswer, busyOK)
	if err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, fmt.Errorf("%w: GET /history: %s", workspace.ErrBadResponse, shortJSONErr(err))
	}
	raw, ok := all[pid]
	if !ok {
		if len(all) > 0 {
			return nil, fmt.Errorf("%w: GET /history: the answer names another prompt", workspace.ErrBadResponse)
		}
		return nil, nil
	}
	var h historyEntry
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("%w: GET /history: %s", workspace.ErrBadResponse, shortJSONErr(err))
	}
	return &h, nil
}

// historyState maps a history entry to a task state.
func (d *Driver) historyState(h *historyEntry) (string, string) {
	if h.Status == nil {
		// ComfyUI before status was recorded: an entry means it ran.
		return workspace.StatusDone, ""
	}
	if h.Status.StatusStr == "success" && h.Status.Completed {
		return workspace.StatusDone, ""
	}
	for _, m := range h.Status.Messages {
		if len(m) != 2 {
			continue
		}
		var kind string
		_ = json.Unmarshal(m[0], &kind)
		var data messageData
		_ = json.Unmarshal(m[1], &data)
		switch kind {
		case "execution_error":
			return workspace.StatusFailed, taskErrorText(d.red, data.NodeType, data.ExceptionType, data.ExceptionMessage)
		case "execution_interrupted":
			return workspace.StatusFailed, interruptedText(d.red, data.NodeType)
		}
	}
	return workspace.StatusFailed, d.red.clean("ComfyUI reported status "+strconv.Quote(h.Status.StatusStr)+" without an error message", maxTaskError)
}

// lookup asks /queue, then /history: in that order a prompt moving from the
// queue to the history between the two calls is still found (ComfyUI moves
// it under one lock), so ErrNotFound really means ComfyUI does not have it.
func (d *Driver) lookup(ctx context.Context, pid string, busyOK bool) (*remoteState, error) {
	q, err := d.getQueue(ctx, pid, busyOK)
	if err != nil {
		return nil, err
	}
	if q.found != "" {
		return &remoteState{status: q.found, extra: q.extra}, nil
	}
	h, err := d.getHistory(ctx, pid, busyOK)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, workspace.ErrNotFound
	}
	st, msg := d.historyState(h)
	return &remoteState{status: st, errMsg: msg, extra: h.extra(), entry: h}, nil
}

// manifestFor finds the workflow a prompt was made from.
func (d *Driver) manifestFor(pid string, extra gooniExtra) *Workflow {
	if extra.Model != "" {
		if wf, ok := d.wfs.Get(extra.Model, extra.Mode); ok {
			return wf
		}
	}
	if model, mode, ok := d.tr.known(pid); ok {
		if wf, ok := d.wfs.Get(model, mode); ok {
			return wf
		}
	}
	return nil
}

func (d *Driver) mergeRemote(pid string, r *remoteState) workspace.TaskState {
	var m *Manifest
	if wf := d.manifestFor(pid, r.extra); wf != nil {
		m = &wf.Manifest
	}
	return d.tr.merge(pid, r, m)
}

// Health answers ok when ComfyUI answers GET /queue and each loader's GET
// /object_info/{class}. Models are the workflow models whose every model
// file is in its loader's choice list (all modes of a model must be
// servable). Capacity is 1 (ComfyUI runs one prompt at a time); Running is
// what /queue lists, running and pending, from every client.
func (d *Driver) Health(ctx context.Context) (*workspace.Health, error) {
	q, err := d.getQueue(ctx, "", false)
	if err != nil {
		return nil, err
	}
	type need struct{ class, input string }
	present := map[need]map[string]bool{}
	byClass := map[string]bool{}
	for _, wf := range d.wfs.All() {
		for _, f := range wf.ModelFiles {
			byClass[f.ClassType] = true
			present[need{f.ClassType, f.Input}] = nil
		}
	}
	for _, class := range sortedKeys(byClass) {
		b, err := d.callJSON(ctx, http.MethodGet, "/object_info/"+url.PathEscape(class), nil, maxObjectInfo, false)
		if err != nil {
			return nil, err
		}
		defs, err := ParseNodeDefs(b)
		if err != nil {
			return nil, fmt.Errorf("%w: GET /object_info/%s: %v", workspace.ErrBadResponse, class, err)
		}
		def, ok := defs[class]
		if !ok {
			continue // a ComfyUI without this node class serves no workflow that needs it
		}
		for n := range present {
			if n.class != class {
				continue
			}
			opts, _ := def.Options(n.input)
			set := make(map[string]bool, len(opts))
			for _, o := range opts {
				set[o] = true
			}
			present[n] = set
		}
	}
	servable := map[string]bool{}
	for _, wf := range d.wfs.All() {
		ok := true
		for _, f := range wf.ModelFiles {
			if !present[need{f.ClassType, f.Input}][f.File] {
				ok = false
			}
		}
		m := wf.Manifest.Model
		if prev, seen := servable[m]; seen {
			servable[m] = prev && ok
		} else {
			servable[m] = ok
		}
	}
	models := []string{}
	for _, m := range sortedKeys(servable) {
		if servable[m] {
			models = append(models, m)
		}
	}
	sort.Strings(models)
	return &workspace.Health{Status: "ok", Models: models, Capacity: 1, Running: q.running + q.pending}, nil
}

// Submit hands a task to ComfyUI as prompt_id PromptID(req.TaskID). It first
// looks the id up in /queue and /history, so a re-send after a crash answers
// the task's state and creates no twin; it uploads an i2v image as
// <task id>.<ext>, fills the model's workflow and posts it. A 400 with
// node_errors is a *workspace.RefusedError naming node, input and problem;
// 429/503 is a *workspace.BusyError; a ComfyUI that answers with another
// prompt_id is too old to honour a client's id and is refused
// (workspace.ErrBadResponse), its stray prompt deleted.
func (d *Driver) Submit(ctx context.Context, req *workspace.TaskRequest) (*workspace.TaskState, error) {
	if req == nil {
		return nil, errors.New("comfyui: nil task request")
	}
	pid, err := PromptID(req.TaskID)
	if err != nil {
		return nil, err
	}
	wf, ok := d.wfs.Get(req.Model, req.Mode)
	if !ok {
		return nil, &workspace.RefusedError{Message: d.red.clean(fmt.Sprintf("no ComfyUI workflow for model %q mode %q", req.Model, req.Mode), maxTaskError)}
	}
	if r, err := d.lookup(ctx, pid, true); err == nil {
		st := d.mergeRemote(pid, r)
		st.TaskID = req.TaskID
		return &st, nil
	} else if !errors.Is(err, workspace.ErrNotFound) {
		return nil, err
	}
	image := ""
	if len(wf.Manifest.Params["image"]) > 0 {
		if image, err = d.upload(ctx, req); err != nil {
			return nil, err
		}
	}
	graph, err := wf.Fill(req, image)
	if err != nil {
		return nil, &workspace.RefusedError{Message: d.red.clean(err.Error(), maxTaskError)}
	}
	body, err := json.Marshal(map[string]any{
		"prompt":     graph,
		"client_id":  d.clientID,
		"prompt_id":  pid,
		"extra_data": map[string]any{"gooni": gooniExtra{TaskID: req.TaskID, Model: req.Model, Mode: req.Mode}},
	})
	if err != nil {
		return nil, fmt.Errorf("comfyui: encode prompt: %w", err)
	}
	d.tr.begin(pid, &wf.Manifest)
	st, err := d.postPrompt(ctx, pid, body)
	if err != nil {
		d.tr.drop(pid)
		return nil, err
	}
	st.TaskID = req.TaskID
	return st, nil
}

// promptAnswer is the body of a POST /prompt answer, 200 or 400.
type promptAnswer struct {
	PromptID   *string                    `json:"prompt_id"`
	Error      json.RawMessage            `json:"error"`
	NodeErrors map[string]json.RawMessage `json:"node_errors"`
}

func (d *Driver) postPrompt(ctx context.Context, pid string, body []byte) (*workspace.TaskState, error) {
	cctx, cancel := withCallTimeout(ctx, workspace.CallTimeout)
	defer cancel()
	resp, err := d.do(cctx, http.MethodPost, "/prompt", body, "application/json")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusBadRequest {
		b, _ := d.readBounded(resp.Body, http.MethodPost, "/prompt", maxPromptAnswer)
		resp.Body.Close()
		var ans promptAnswer
		if json.Unmarshal(b, &ans) != nil || (len(ans.Error) == 0 && ans.NodeErrors == nil) {
			return nil, &workspace.StatusError{Code: resp.StatusCode, Body: d.red.clean(string(b), maxErrorText)}
		}
		return nil, &workspace.RefusedError{Message: d.refusal(ans)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, d.statusErr(resp, true)
	}
	b, err := d.readBounded(resp.Body, http.MethodPost, "/prompt", maxPromptAnswer)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var ans promptAnswer
	if err := json.Unmarshal(b, &ans); err != nil || ans.PromptID == nil {
		return nil, fmt.Errorf("%w: POST /prompt: the answer has no prompt_id", workspace.ErrBadResponse)
	}
	if *ans.PromptID != pid {
		// An older ComfyUI ignored our prompt_id: a re-send could not be
		// recognised, so twins would follow. Take its prompt back.
		other := *ans.PromptID
		if len(other) <= 128 {
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), workspace.CallTimeout)
			d.takeBack(dctx, other)
			dcancel()
		}
		return nil, fmt.Errorf("%w: POST /prompt: ComfyUI answered with another prompt_id; it is too old to honour a client's prompt_id (update ComfyUI)", workspace.ErrBadResponse)
	}
	if len(ans.NodeErrors) > 0 {
		// ComfyUI queued the outputs that validated and dropped the others:
		// the task would miss its result or poster. Take it back out.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), workspace.CallTimeout)
		d.takeBack(dctx, pid)
		dcancel()
		return nil, &workspace.RefusedError{Message: d.refusal(ans)}
	}
	if st, ok := d.tr.fresh(pid); ok {
		return &st, nil // the socket may already have seen it start
	}
	return &workspace.TaskState{Status: workspace.StatusPending}, nil
}

// takeBack removes a prompt the driver will not follow: out of the queue
// when it waits, interrupted when it already runs.
func (d *Driver) takeBack(ctx context.Context, pid string) {
	q, err := d.getQueue(ctx, pid, false)
	if err == nil {
		switch q.found {
		case workspace.StatusPending:
			body, _ := json.Marshal(map[string][]string{"delete": {pid}})
			_, err = d.callJSON(ctx, http.MethodPost, "/queue", body, maxPromptAnswer, false)
		case workspace.StatusProcessing:
			body, _ := json.Marshal(map[string]string{"prompt_id": pid})
			_, err = d.callJSON(ctx, http.MethodPost, "/interrupt", body, maxPromptAnswer, false)
		}
	}
	if err != nil {
		d.log.Warn("comfyui: could not take back a refused prompt", "err", err)
	}
}

// refusal words a ComfyUI validation failure: node (class type and id),
// input and problem, for each node error; else the error's own message.
func (d *Driver) refusal(ans promptAnswer) string {
	type problem struct {
		Type      string `json:"type"`
		Message   string `json:"message"`
		Details   string `json:"details"`
		ExtraInfo struct {
			InputName string `json:"input_name"`
		} `json:"extra_info"`
	}
	var parts []string
	for _, id := range sortedKeys(ans.NodeErrors) {
		var ne struct {
			ClassType string    `json:"class_type"`
			Errors    []problem `json:"errors"`
		}
		if json.Unmarshal(ans.NodeErrors[id], &ne) != nil {
			continue
		}
		for _, e := range ne.Errors {
			where := fmt.Sprintf("%s #%s", ne.ClassType, id)
			if e.ExtraInfo.InputName != "" {
				where += ", input " + e.ExtraInfo.InputName
			}
			what := e.Message
			if e.Details != "" && e.Details != e.ExtraInfo.InputName {
				what += ": " + e.Details
			}
			parts = append(parts, where+": "+what)
		}
	}
	if len(parts) == 0 {
		var e problem
		var s string
		switch {
		case json.Unmarshal(ans.Error, &e) == nil && e.Message != "":
			what := e.Message
			if e.Details != "" {
				what += ": " + e.Details
			}
			parts = append(parts, what)
		case json.Unmarshal(ans.Error, &s) == nil && s != "":
			parts = append(parts, s)
		default:
			parts = append(parts, "the prompt is invalid")
		}
	}
	return d.red.clean("ComfyUI refused the workflow: "+strings.Join(parts, "; "), maxTaskError)
}

var imageExt = map[string]string{"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}

// upload sends the i2v image as <task id>.<ext> through POST /upload/image
// (overwrite=true: a re-send writes the same name) and returns the name the
// LoadImage node must use.
func (d *Driver) upload(ctx context.Context, req *workspace.TaskRequest) (string, error) {
	if len(req.Image) == 0 {
		return "", &workspace.RefusedError{Message: "an i2v task needs an input image"}
	}
	ctype := req.ImageType
	if ctype == "" {
		ctype = http.DetectContentType(req.Image)
	}
	ext, ok := imageExt[ctype]
	if !ok {
		return "", &workspace.RefusedError{Message: d.red.clean(fmt.Sprintf("the input image type %q is not PNG, JPEG or WebP", ctype), maxTaskError)}
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := make(textproto.MIMEHeader)
	name := req.TaskID + ext
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="image"; filename="%s"`, name))
	h.Set("Content-Type", ctype)
	part, err := mw.CreatePart(h)
	if err == nil {
		_, err = part.Write(req.Image)
	}
	for _, kv := range [][2]string{{"overwrite", "true"}, {"type", "input"}} {
		if err == nil {
			err = mw.WriteField(kv[0], kv[1])
		}
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return "", fmt.Errorf("comfyui: build upload: %w", err)
	}
	cctx, cancel := withCallTimeout(ctx, mediaTimeout)
	defer cancel()
	resp, err := d.do(cctx, http.MethodPost, "/upload/image", buf.Bytes(), mw.FormDataContentType())
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", d.statusErr(resp, true)
	}
	b, err := d.readBounded(resp.Body, http.MethodPost, "/upload/image", maxPromptAnswer)
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	var ans struct {
		Name      string `json:"name"`
		Subfolder string `json:"subfolder"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || ans.Name == "" || !safeFileName(ans.Name) || !safeSubfolder(ans.Subfolder) {
		return "", fmt.Errorf("%w: POST /upload/image: the answer names no usable file", workspace.ErrBadResponse)
	}
	if ans.Subfolder != "" {
		return ans.Subfolder + "/" + ans.Name, nil
	}
	return ans.Name, nil
}

func safeFileName(s string) bool {
	return s != "" && len(s) <= 255 && !strings.ContainsAny(s, "/\\\x00") && s != "." && s != ".."
}

func safeSubfolder(s string) bool {
	if s == "" {
		return true
	}
	if len(s) > 255 || strings.ContainsAny(s, "\\\x00") || strings.HasPrefix(s, "/") {
		return false
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return false
		}
	}
	return true
}

// Status reports a task: from the socket when its state was confirmed during
// the current socket session (or is final), else from /queue and /history.
// ErrNotFound when ComfyUI has neither (it restarted): the dispatcher then
// sends the task again.
func (d *Driver) Status(ctx context.Context, id string) (*workspace.TaskState, error) {
	pid, err := PromptID(id)
	if err != nil {
		return nil, err
	}
	if st, ok := d.tr.fresh(pid); ok {
		st.TaskID = id
		return &st, nil
	}
	r, err := d.lookup(ctx, pid, false)
	if errors.Is(err, workspace.ErrNotFound) {
		d.tr.drop(pid)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	st := d.mergeRemote(pid, r)
	st.TaskID = id
	return &st, nil
}

// Result opens the file the workflow's result node saved, through /view.
func (d *Driver) Result(ctx context.Context, id string) (*workspace.Media, error) {
	return d.media(ctx, id, false)
}

// Preview opens the still the workflow's poster node saved; ErrNotFound when
// the workflow has no poster node (image workflows).
func (d *Driver) Preview(ctx context.Context, id string) (*workspace.Media, error) {
	return d.media(ctx, id, true)
}

// outputFile is one file an output node saved (nodes.py SaveImage results).
type outputFile struct {
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
}

var extTypes = map[string]string{
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
	".gif": "image/gif", ".mp4": "video/mp4", ".webm": "video/webm",
}

func (d *Driver) media(ctx context.Context, id string, poster bool) (*workspace.Media, error) {
	pid, err := PromptID(id)
	if err != nil {
		return nil, err
	}
	h, err := d.getHistory(ctx, pid, false)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, workspace.ErrNotFound
	}
	if st, _ := d.historyState(h); st != workspace.StatusDone {
		return nil, fmt.Errorf("comfyui: task %s has no media: ComfyUI did not finish it", id)
	}
	node := ""
	if wf := d.manifestFor(pid, h.extra()); wf != nil {
		node = wf.Manifest.Result
		if poster {
			node = wf.Manifest.Poster
		}
	} else {
		node = guessOutput(h, poster)
	}
	if node == "" {
		return nil, workspace.ErrNotFound
	}
	f, ok := firstFile(h.Outputs[node])
	if !ok {
		if poster {
			return nil, workspace.ErrNotFound
		}
		return nil, fmt.Errorf("%w: ComfyUI's history has no file from the result node %s", workspace.ErrBadResponse, node)
	}
	if f.Type == "" {
		f.Type = "output"
	}
	if !safeFileName(f.Filename) || !safeSubfolder(f.Subfolder) || (f.Type != "output" && f.Type != "temp") {
		return nil, fmt.Errorf("%w: ComfyUI's history names an unusable file", workspace.ErrBadResponse)
	}
	q := url.Values{"filename": {f.Filename}, "subfolder": {f.Subfolder}, "type": {f.Type}}
	cctx, cancel := withCallTimeout(ctx, mediaTimeout)
	resp, err := d.do(cctx, http.MethodGet, "/view?"+q.Encode(), nil, "")
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		cancel()
		return nil, workspace.ErrNotFound
	}
	if resp.StatusCode != http.StatusOK {
		err := d.statusErr(resp, false)
		cancel()
		return nil, err
	}
	ctype := resp.Header.Get("Content-Type")
	if base, _, _ := strings.Cut(ctype, ";"); ctype == "" || strings.EqualFold(strings.TrimSpace(base), "application/octet-stream") {
		ctype = extTypes[strings.ToLower(path.Ext(f.Filename))]
	}
	return &workspace.Media{Body: &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}, ContentType: ctype, Length: resp.ContentLength}, nil
}

// firstFile reads the first file of an output node (SaveImage and SaveVideo
// use "images"; some custom nodes use "videos" or "gifs").
func firstFile(out map[string]json.RawMessage) (outputFile, bool) {
	for _, key := range []string{"images", "videos", "gifs"} {
		var files []outputFile
		if json.Unmarshal(out[key], &files) == nil && len(files) > 0 && files[0].Filename != "" {
			return files[0], true
		}
	}
	return outputFile{}, false
}

// guessOutput picks a node when the prompt's workflow is unknown: the result
// is the first node that saved a video, else the first that saved anything;
// the poster is the first other node that saved an image.
func guessOutput(h *historyEntry, poster bool) string {
	ids := sortedKeys(h.Outputs)
	result := ""
	for _, id := range ids {
		if f, ok := firstFile(h.Outputs[id]); ok && strings.HasPrefix(extTypes[strings.ToLower(path.Ext(f.Filename))], "video/") {
			result = id
			break
		}
	}
	if result == "" {
		for _, id := range ids {
			if _, ok := firstFile(h.Outputs[id]); ok {
				return map[bool]string{false: id, true: ""}[poster]
			}
		}
		return ""
	}
	if !poster {
		return result
	}
	for _, id := range ids {
		if f, ok := firstFile(h.Outputs[id]); ok && id != result && strings.HasPrefix(extTypes[strings.ToLower(path.Ext(f.Filename))], "image/") {
			return id
		}
	}
	return ""
}

// cancelOnClose ties a download's timeout context to the body's lifetime.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// Cancel takes a queued prompt out of ComfyUI's queue (POST /queue
// {"delete":[id]}), interrupts it when it is the running one (POST
// /interrupt {"prompt_id": id}; a ComfyUI too old for the id interrupts
// whatever runs, which is then this prompt), or forgets a finished one
// (POST /history {"delete":[id]}). ErrNotFound when ComfyUI has no such prompt.
func (d *Driver) Cancel(ctx context.Context, id string) error {
	pid, err := PromptID(id)
	if err != nil {
		return err
	}
	for attempt := 0; attempt < 3; attempt++ {
		q, err := d.getQueue(ctx, pid, false)
		if err != nil {
			return err
		}
		switch q.found {
		case workspace.StatusPending:
			body, _ := json.Marshal(map[string][]string{"delete": {pid}})
			if _, err := d.callJSON(ctx, http.MethodPost, "/queue", body, maxPromptAnswer, false); err != nil {
				return err
			}
			// It may have started between the two calls: look again.
			continue
		case workspace.StatusProcessing:
			body, _ := json.Marshal(map[string]string{"prompt_id": pid})
			if _, err := d.callJSON(ctx, http.MethodPost, "/interrupt", body, maxPromptAnswer, false); err != nil {
				return err
			}
			d.tr.drop(pid)
			return nil
		}
		h, err := d.getHistory(ctx, pid, false)
		if err != nil {
			return err
		}
		if h == nil {
			if attempt > 0 {
				d.tr.drop(pid)
				return nil // it was queued and the delete took it out
			}
			return workspace.ErrNotFound
		}
		body, _ := json.Marshal(map[string][]string{"delete": {pid}})
		if _, err := d.callJSON(ctx, http.MethodPost, "/history", body, maxPromptAnswer, false); err != nil {
			return err
		}
		d.tr.drop(pid)
		return nil
	}
	return fmt.Errorf("comfyui: cancel %s: the prompt kept moving in ComfyUI's queue", id)
}
