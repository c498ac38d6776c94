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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
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
	// Secrets are the account's other credential values: redacted from
	// anything ComfyUI sends back, like the ones the driver sends.
	Secrets []string
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
	// pingEvery and pongWait replace socketPingEvery and socketPongWait when set.
	pingEvery, pongWait time.Duration
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
		red:  newRedactor(cfg.BearerToken, cfg.ProxyKey, cfg.ProxySecret, cfg.Secrets),
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
		return &workspace.BusyError{Status: resp.StatusCode, RetryAfter: workspace.RetryAfter(resp.Header.Get("Retry-After"), d.now())}
	}
	return &workspace.StatusError{Code: resp.StatusCode, Body: d.red.clean(string(b), maxErrorText)}
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
