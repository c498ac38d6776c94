// Package workspace speaks Workspace API v1 (CONTRACT section 8): the client
// the dispatcher uses to reach GPU workspaces, and the simulator behind
// `gooni workspace-sim` that serves the same API with synthetic media.
package workspace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"gooni/internal/taskid"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// WorkspaceName is the only shape of workspace name that may become part of
// a host name: the contract's ^[a-z0-9-]{3,64}$ without a leading '-', which
// no DNS label may have (RFC 1123 section 2.1).
var WorkspaceName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{2,63}$`)

var (
	// ErrTargetInvalid means a base URL could carry credentials somewhere unsafe.
	ErrTargetInvalid = errors.New("workspace: target invalid")
	// ErrNotFound is a 404 from the workspace: it does not know the task.
	ErrNotFound = errors.New("workspace: not found")
	// ErrTaskIDInvalid refuses a task id that is not one plain path segment.
	ErrTaskIDInvalid = errors.New("workspace: task id invalid")
	// ErrRedirect is returned instead of following a redirect, so credentials never leave for another host.
	ErrRedirect = errors.New("workspace: redirect refused")
	// ErrBadResponse means the workspace answered 2xx with a body we cannot trust.
	ErrBadResponse = errors.New("workspace: bad response")
)

const (
	// CallTimeout bounds every JSON call when the caller's context has no earlier deadline.
	CallTimeout = 15 * time.Second
	// mediaTimeout bounds a result/preview download, which may be a large video.
	mediaTimeout = 5 * time.Minute
	// maxJSONBody bounds any JSON body the client parses.
	maxJSONBody = 1 << 20
	// maxErrorBody is how much of an unexpected answer is kept for the error message.
	maxErrorBody = 512
)

// IncompatibleError means the workspace's software cannot serve Gooni as it
// is, for example a ComfyUI too old to honour a client's prompt_id. Reason is
// a fixed sentence naming the fix, with nothing the workspace sent: safe to
// show to an admin and in a task's error.
type IncompatibleError struct {
	Reason string
}

func (e *IncompatibleError) Error() string { return "workspace: incompatible: " + e.Reason }

// StatusError is an unexpected HTTP status; Body is a short, redacted excerpt.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("workspace: unexpected status %d", e.Code)
	}
	return fmt.Sprintf("workspace: unexpected status %d: %s", e.Code, e.Body)
}

// Client talks to one workspace; create it with NewClient so BaseURL is checked.
type Client struct {
	BaseURL     string       // validated: https://host[:port], or http:// to a loopback host only
	Key, Secret string       // sent as Modal-Key / Modal-Secret when non-empty
	HTTP        *http.Client // nil = a client with sane timeouts; redirects are never followed either way
	// Redactor removes every credential value of the account (and its
	// encoded forms) from text the workspace sends back; nil = Key and Secret only.
	Redactor *Redactor
}

// Health is the answer of GET /health.
type Health struct {
	Status   string   `json:"status"`
	Models   []string `json:"models"`
	Capacity int      `json:"capacity"`
	Running  int      `json:"running"`
}

// TaskRequest is the body of POST /tasks.
type TaskRequest struct {
	TaskID         string          `json:"task_id"`
	Type           string          `json:"type"`
	Model          string          `json:"model"`
	Mode           string          `json:"mode"`
	Prompt         string          `json:"prompt"`
	NegativePrompt string          `json:"negative_prompt"`
	Params         json.RawMessage `json:"params"`
	Image          []byte          `json:"image,omitempty"` // the i2v input image; base64 on the wire
	ImageType      string          `json:"-"`               // its content type (image/png, image/jpeg, image/webp)
}

// TaskState is what a workspace says about one task.
type TaskState struct {
	TaskID   string `json:"task_id"`
	Status   string `json:"status"`
	Progress int    `json:"progress"`
	Error    string `json:"error,omitempty"`
}

// NewClient validates baseURL (ErrTargetInvalid when not https and not loopback http).
func NewClient(baseURL, key, secret string) (*Client, error) {
	norm, err := checkTarget(baseURL)
	if err != nil {
		return nil, err
	}
	return &Client{BaseURL: norm, Key: key, Secret: secret}, nil
}

// BaseURLFor fills {workspace} in template, re-checking the name so it cannot reshape the URL.
func BaseURLFor(template, workspace string) (string, error) {
	if !WorkspaceName.MatchString(workspace) {
		return "", fmt.Errorf("%w: workspace name must match %s", ErrTargetInvalid, WorkspaceName)
	}
	if !strings.Contains(template, "{workspace}") {
		return "", fmt.Errorf("%w: template has no {workspace}", ErrTargetInvalid)
	}
	return checkTarget(strings.ReplaceAll(template, "{workspace}", workspace))
}

// checkTarget returns the URL without a trailing slash, or ErrTargetInvalid.
func checkTarget(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: not a URL", ErrTargetInvalid)
	}
	switch {
	case u.Opaque != "":
		return "", fmt.Errorf("%w: not an absolute URL", ErrTargetInvalid)
	case u.User != nil:
		return "", fmt.Errorf("%w: user info not allowed", ErrTargetInvalid)
	case u.RawQuery != "" || u.ForceQuery:
		return "", fmt.Errorf("%w: query not allowed", ErrTargetInvalid)
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", fmt.Errorf("%w: fragment not allowed", ErrTargetInvalid)
	case u.Path != "" && u.Path != "/":
		return "", fmt.Errorf("%w: path not allowed", ErrTargetInvalid)
	}
	host := u.Hostname()
	if host == "" {
		return "", fmt.Errorf("%w: no host", ErrTargetInvalid)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%w: bad port", ErrTargetInvalid)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("%w: bad port", ErrTargetInvalid)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(host) {
			return "", fmt.Errorf("%w: plain http only to a loopback host", ErrTargetInvalid)
		}
	default:
		return "", fmt.Errorf("%w: scheme must be https (or http to loopback)", ErrTargetInvalid)
	}
	return u.Scheme + "://" + u.Host, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return false
	}
	return a.Unmap().IsLoopback()
}

var defaultHTTP = &http.Client{
	Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: CallTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   8,
		ForceAttemptHTTP2:     true,
	},
	CheckRedirect: refuseRedirect,
}

func refuseRedirect(*http.Request, []*http.Request) error { return ErrRedirect }

// httpClient returns a client that never follows redirects, even when the caller supplied one.
func (c *Client) httpClient() *http.Client {
	if c.HTTP == nil {
		return defaultHTTP
	}
	hc := *c.HTTP
	hc.CheckRedirect = refuseRedirect
	return &hc
}

// do sends one request; the response body is the caller's to close.
func (c *Client) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// Re-checked per call: a Client built as a struct literal must not leak credentials either.
	base, err := checkTarget(c.BaseURL)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("workspace: build request: %w", ErrTargetInvalid)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Key != "" {
		req.Header.Set("Modal-Key", c.Key)
	}
	if c.Secret != "" {
		req.Header.Set("Modal-Secret", c.Secret)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, c.cleanErr(method, path, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %w (status %d)", method, path, ErrRedirect, resp.StatusCode)
	}
	return resp, nil
}

// cleanErr drops the *url.Error wrapper (it repeats the URL) and keeps the cause chain.
func (c *Client) cleanErr(method, path string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, ErrRedirect) {
		return fmt.Errorf("%s %s: %w", method, path, ErrRedirect)
	}
	return fmt.Errorf("workspace: %s %s: %w", method, path, c.redactErr(err))
}

// redactErr guards against a credential echoed into an error text by a lower layer.
func (c *Client) redactErr(err error) error {
	msg := err.Error()
	if red := c.redact(msg); red != msg {
		return errors.New(red)
	}
	return err
}

func (c *Client) redact(s string) string {
	s = c.Redactor.Redact(s)
	for _, v := range []string{c.Secret, c.Key} {
		if len(v) >= 1 {
			s = strings.ReplaceAll(s, v, Redacted)
		}
	}
	return s
}

// statusErr turns a non-2xx answer into ErrNotFound, *BusyError (429 or
// 503: CONTRACT section 14) or *StatusError and closes the body.
func (c *Client) statusErr(resp *http.Response) error {
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return &BusyError{Status: resp.StatusCode, RetryAfter: RetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	if resp.StatusCode == http.StatusNotFound {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return ErrNotFound
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	body := strings.ToValidUTF8(strings.TrimSpace(string(b)), "?")
	return &StatusError{Code: resp.StatusCode, Body: c.redact(body)}
}

// withCallTimeout applies CallTimeout unless the caller's deadline is sooner.
func withCallTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// callJSON does one JSON round trip and returns the bounded body of a 2xx answer.
func (c *Client) callJSON(ctx context.Context, method, path string, body []byte) ([]byte, int, error) {
	ctx, cancel := withCallTimeout(ctx, CallTimeout)
	defer cancel()
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, resp.StatusCode, c.statusErr(resp)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBody+1))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("workspace: %s %s: read body: %w", method, path, c.redactErr(err))
	}
	if len(b) > maxJSONBody {
		return nil, resp.StatusCode, fmt.Errorf("%w: %s %s: body over %d bytes", ErrBadResponse, method, path, maxJSONBody)
	}
	return b, resp.StatusCode, nil
}

func taskPath(id string, suffix string) (string, error) {
	if !taskid.Valid(id) {
		return "", ErrTaskIDInvalid
	}
	return "/tasks/" + url.PathEscape(id) + suffix, nil
}

// Health asks GET /health.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	b, _, err := c.callJSON(ctx, http.MethodGet, "/health", nil)
	if err != nil {
		return nil, err
	}
	h, err := ParseHealth(b)
	if err == nil {
		h.Status = c.redact(h.Status)
	}
	return h, err
}

// Submit sends POST /tasks; resending the same task id is safe by contract (no twin).
func (c *Client) Submit(ctx context.Context, req *TaskRequest) (*TaskState, error) {
	if req == nil {
		return nil, errors.New("workspace: nil task request")
	}
	if !taskid.Valid(req.TaskID) {
		return nil, ErrTaskIDInvalid
	}
	body := *req
	if len(bytes.TrimSpace(body.Params)) == 0 {
		body.Params = json.RawMessage("{}")
	}
	enc, err := json.Marshal(&body)
	if err != nil {
		return nil, fmt.Errorf("workspace: encode task: %w", err)
	}
	b, _, err := c.callJSON(ctx, http.MethodPost, "/tasks", enc)
	if err != nil {
		return nil, err
	}
	st, err := ParseTaskState(b)
	if err != nil {
		return nil, err
	}
	if st.TaskID != "" && st.TaskID != req.TaskID {
		return nil, fmt.Errorf("%w: answer names another task", ErrBadResponse)
	}
	st.TaskID = req.TaskID
	return st, nil
}

// Status asks GET /tasks/{id}; ErrNotFound when the workspace does not know it.
func (c *Client) Status(ctx context.Context, id string) (*TaskState, error) {
	path, err := taskPath(id, "")
	if err != nil {
		return nil, err
	}
	b, _, err := c.callJSON(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	st, err := ParseTaskState(b)
	if err != nil {
		return nil, err
	}
	if st.TaskID != "" && st.TaskID != id {
		return nil, fmt.Errorf("%w: answer names another task", ErrBadResponse)
	}
	st.TaskID = id
	st.Error = c.redact(st.Error)
	return st, nil
}

// Result fetches the media bytes; the caller closes the body. Non-200 is an error.
func (c *Client) Result(ctx context.Context, id string) (*Media, error) {
	return c.media(ctx, id, "/result")
}

// Preview fetches the preview image; the caller closes the body. Non-200 is an error.
func (c *Client) Preview(ctx context.Context, id string) (*Media, error) {
	return c.media(ctx, id, "/preview")
}

// Close is a no-op: a v1 client holds nothing between calls.
func (c *Client) Close() error { return nil }

func (c *Client) media(ctx context.Context, id, suffix string) (*Media, error) {
	path, err := taskPath(id, suffix)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withCallTimeout(ctx, mediaTimeout)
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		err := c.statusErr(resp)
		cancel()
		return nil, err
	}
	return &Media{
		Body:        &cancelOnClose{ReadCloser: resp.Body, cancel: cancel},
		ContentType: resp.Header.Get("Content-Type"),
		Length:      resp.ContentLength,
	}, nil
}

var _ Driver = (*Client)(nil)

// CancelOnClose ties a download's timeout context to its body's lifetime:
// closing the returned body closes rc, then calls cancel.
func CancelOnClose(rc io.ReadCloser, cancel context.CancelFunc) io.ReadCloser {
	return &cancelOnClose{ReadCloser: rc, cancel: cancel}
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// Cancel sends DELETE /tasks/{id}; ErrNotFound when the workspace has already forgotten it.
func (c *Client) Cancel(ctx context.Context, id string) error {
	path, err := taskPath(id, "")
	if err != nil {
		return err
	}
	_, _, err = c.callJSON(ctx, http.MethodDelete, path, nil)
	return err
}

// Task statuses a workspace may report.
const (
	StatusPending    = "pending"
	StatusProcessing = "processing"
	StatusDone       = "done"
	StatusFailed     = "failed"
)

// ParseTaskState decodes a task answer: extra fields are ignored, wrong types and
// unknown statuses or progress outside 0..100 are errors.
func ParseTaskState(data []byte) (*TaskState, error) {
	var raw struct {
		TaskID   *string `json:"task_id"`
		Status   *string `json:"status"`
		Progress *int    `json:"progress"`
		Error    *string `json:"error"`
	}
	if err := decodeObject(data, &raw); err != nil {
		return nil, err
	}
	st := &TaskState{}
	if raw.Status == nil {
		return nil, fmt.Errorf("%w: task status missing", ErrBadResponse)
	}
	switch *raw.Status {
	case StatusPending, StatusProcessing, StatusDone, StatusFailed:
		st.Status = *raw.Status
	default:
		return nil, fmt.Errorf("%w: unknown task status", ErrBadResponse)
	}
	if raw.TaskID != nil {
		if *raw.TaskID != "" && !taskid.Valid(*raw.TaskID) {
			return nil, fmt.Errorf("%w: task id malformed", ErrBadResponse)
		}
		st.TaskID = *raw.TaskID
	}
	if raw.Progress != nil {
		if *raw.Progress < 0 || *raw.Progress > 100 {
			return nil, fmt.Errorf("%w: progress outside 0..100", ErrBadResponse)
		}
		st.Progress = *raw.Progress
	}
	if raw.Error != nil {
		msg := *raw.Error
		if len(msg) > 1024 {
			msg = msg[:1024]
		}
		// The cut may split a rune; drop the remnant so the text stays valid UTF-8.
		st.Error = strings.ToValidUTF8(msg, "")
	}
	return st, nil
}

// ParseHealth decodes a health answer with the same tolerance as ParseTaskState.
func ParseHealth(data []byte) (*Health, error) {
	var raw struct {
		Status   *string  `json:"status"`
		Models   []string `json:"models"`
		Capacity *int     `json:"capacity"`
		Running  *int     `json:"running"`
	}
	if err := decodeObject(data, &raw); err != nil {
		return nil, err
	}
	if raw.Status == nil || *raw.Status == "" {
		return nil, fmt.Errorf("%w: health status missing", ErrBadResponse)
	}
	h := &Health{Status: *raw.Status, Models: raw.Models}
	if raw.Capacity != nil {
		if *raw.Capacity < 0 {
			return nil, fmt.Errorf("%w: negative capacity", ErrBadResponse)
		}
		h.Capacity = *raw.Capacity
	}
	if raw.Running != nil {
		if *raw.Running < 0 {
			return nil, fmt.Errorf("%w: negative running", ErrBadResponse)
		}
		h.Running = *raw.Running
	}
	return h, nil
}

// decodeObject insists on exactly one JSON object (null and arrays are refused).
func decodeObject(data []byte, v any) error {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return fmt.Errorf("%w: not a JSON object", ErrBadResponse)
	}
	if err := json.Unmarshal(trimmed, v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadResponse, JSONErrSummary(err))
	}
	return nil
}

// JSONErrSummary words a decoding error from encoding/json without echoing
// the body it read (a workspace can echo secrets): "field \"x\" has the
// wrong type", "invalid JSON at offset N" or "invalid JSON".
func JSONErrSummary(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at offset %d", se.Offset)
	}
	return "invalid JSON"
}
