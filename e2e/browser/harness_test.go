package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"gooni/internal/testutil"
)

// adminKey is the fixed admin key every test server runs with (GG_ADMIN_KEY);
// it is a test value, never a real credential.
const adminKey = "browser-test-admin-key-0123456789abcdef"

var (
	// gooniBin is the binary TestMain built; empty when the tests skip.
	gooniBin string
	// chromiumPath is the browser the tests drive; empty when none exists.
	chromiumPath string
	// shotsDir collects the screenshots of the run as build artifacts.
	shotsDir = filepath.Join(os.TempDir(), "gooni-screenshots")
)

func TestMain(m *testing.M) {
	chromiumPath = findChromium()
	if chromiumPath == "" {
		if os.Getenv("GG_REQUIRE_BROWSER") == "1" {
			fmt.Fprintln(os.Stderr, "browser tests: GG_REQUIRE_BROWSER=1 but no Chromium binary found (install Debian's chromium)")
			os.Exit(1)
		}
		os.Exit(m.Run()) // every test skips with the reason
	}
	bin, cleanup, err := testutil.BuildGooni()
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser tests:", err)
		os.Exit(1)
	}
	gooniBin = bin
	code := m.Run()
	if _, err := os.Stat(shotsDir); err == nil {
		fmt.Println("browser tests: screenshots in", shotsDir)
	}
	cleanup()
	os.Exit(code)
}

// findChromium honours GG_CHROMIUM, then prefers Debian's binary, then PATH.
func findChromium() string {
	if p, ok := os.LookupEnv("GG_CHROMIUM"); ok {
		// an explicit choice wins; a missing file means no browser
		if _, err := os.Stat(p); err != nil {
			return ""
		}
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func needBrowser(t *testing.T) {
	t.Helper()
	if chromiumPath == "" {
		t.Skip("no Chromium binary (looked for /usr/bin/chromium and chromium on PATH); install Debian's chromium, or set GG_REQUIRE_BROWSER=1 to make this a failure")
	}
}

// server is one gooni --demo process with its own data directory.
type server struct {
	URL     string
	DataDir string
	proc    *testutil.Process
}

// startServer runs the built binary with --demo on a free loopback port and
// waits for /health; the process is stopped when the test ends. env adds
// variables (NAME=value) to the fixed ones.
func startServer(t *testing.T, env ...string) *server {
	t.Helper()
	needBrowser(t)
	dataDir := t.TempDir()
	var lastErr error
	// another process can take the port between the probe and the bind: retry
	for range 3 {
		addr := testutil.FreeAddr(t)
		p := testutil.NewProcess(t, "gooni --demo", gooniBin, []string{"--demo"},
			append([]string{"GG_DATA_DIR=" + dataDir, "GG_ADDR=" + addr, "GG_ADMIN_KEY=" + adminKey}, env...))
		p.Start()
		s := &server{URL: "http://" + addr, DataDir: dataDir, proc: p}
		if lastErr = p.WaitHTTP(s.URL+"/health", 20*time.Second, func(code int) bool { return code == http.StatusOK }); lastErr == nil {
			t.Cleanup(func() { p.Stop(5 * time.Second) }) // runs before the kill NewProcess registered
			return s
		}
		p.Kill()
	}
	t.Fatalf("gooni did not start: %v", lastErr)
	return nil
}

// apiClient is a plain HTTP user of the server with its own gg_session, for
// seeding data and for checking what the UI shows against the API.
type apiClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (s *server) client(t *testing.T) *apiClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &apiClient{t: t, base: s.URL, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	if code, body := c.do("POST", "/auth/session", nil, nil); code != http.StatusOK {
		t.Fatalf("POST /auth/session: %d %s", code, body)
	}
	return c
}

func (c *apiClient) do(method, path string, body any, header map[string]string) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, out
}

type taskView struct {
	TaskID string         `json:"task_id"`
	Type   string         `json:"type"`
	Model  string         `json:"model"`
	Mode   string         `json:"mode"`
	Prompt string         `json:"prompt"`
	Status string         `json:"status"`
	Params map[string]any `json:"params"`
}

// generate submits a task through the API and returns its id.
func (c *apiClient) generate(model, mode, prompt string, params map[string]any) string {
	c.t.Helper()
	code, body := c.do("POST", "/generate", map[string]any{"model": model, "mode": mode, "prompt": prompt, "params": params}, nil)
	if code != http.StatusAccepted && code != http.StatusOK && code != http.StatusCreated {
		c.t.Fatalf("POST /generate: %d %s", code, body)
	}
	var v taskView
	if err := json.Unmarshal(body, &v); err != nil || v.TaskID == "" {
		c.t.Fatalf("POST /generate answer %s: %v", body, err)
	}
	return v.TaskID
}

// waitDone polls /status until every task is done (the demo takes about 3 s each).
func (c *apiClient) waitDone(ids ...string) {
	c.t.Helper()
	for _, id := range ids {
		testutil.WaitFor(c.t, 30*time.Second, "task "+id+" done", func() bool {
			code, body := c.do("GET", "/status/"+id, nil, nil)
			var v taskView
			json.Unmarshal(body, &v)
			if v.Status == "failed" || code != http.StatusOK {
				c.t.Fatalf("task %s: %d %s", id, code, body)
			}
			return v.Status == "done"
		})
	}
}

func (c *apiClient) gallery() []taskView {
	c.t.Helper()
	code, body := c.do("GET", "/gallery?limit=100", nil, nil)
	if code != http.StatusOK {
		c.t.Fatalf("GET /gallery: %d %s", code, body)
	}
	var page struct {
		Items []taskView `json:"items"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		c.t.Fatal(err)
	}
	return page.Items
}

// viewport is a window size the UI must work at.
type viewport struct {
	name   string
	w, h   int
	mobile bool
}

var (
	desktop = viewport{name: "desktop", w: 1280, h: 900}
	phone   = viewport{name: "phone", w: 390, h: 844, mobile: true}
)

// page is one Chromium tab on a server, with the JavaScript errors it saw.
type page struct {
	t   *testing.T
	ctx context.Context
	srv *server
	vp  viewport

	mu       sync.Mutex
	jsErrors []string
}

// openBrowser starts a fresh headless Chromium (own profile) at the viewport
// size and fails the test at its end if the page threw or logged an error;
// extra adds Chromium options.
func openBrowser(t *testing.T, srv *server, vp viewport, extra ...chromedp.ExecAllocatorOption) *page {
	t.Helper()
	needBrowser(t)
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(vp.w, vp.h),
	}
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	p := &page{t: t, srv: srv, vp: vp}
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(p.listen))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	t.Cleanup(p.checkErrors) // runs before the browser closes
	p.ctx = ctx
	var emu []chromedp.EmulateViewportOption
	if vp.mobile {
		emu = append(emu, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(vp.w), int64(vp.h), emu...)); err != nil {
		t.Fatalf("starting Chromium %s: %v", chromiumPath, err)
	}
	return p
}

// listen collects JavaScript errors: uncaught exceptions and unhandled
// rejections, console.error/assert calls, and browser log entries of level
// error except those from the network source (a 401 the UI answers by
// renewing its session is logged there by the browser, not by our code).
// A CSP violation is a "security" error entry and so counts.
func (p *page) listen(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg = "exception: " + d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		msg += fmt.Sprintf(" at %s:%d", d.URL, d.LineNumber+1)
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		msg = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
	case *log.EventEntryAdded:
		e := ev.Entry
		if e == nil || e.Level != log.EntryLevelError || e.Source == log.EntrySourceNetwork {
			return
		}
		msg = fmt.Sprintf("browser log (%s): %s %s", e.Source, e.Text, e.URL)
	default:
		return
	}
	p.mu.Lock()
	p.jsErrors = append(p.jsErrors, msg)
	p.mu.Unlock()
}

func (p *page) checkErrors() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.jsErrors {
		p.t.Errorf("JavaScript error in the page: %s", e)
	}
}

// do runs actions with a bound so a stuck page fails the test instead of hanging it.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\npage: %s", what, err, p.snapshot())
	}
}

// open navigates to a path of the server (a full page load).
func (p *page) open(path string) {
	p.t.Helper()
	p.do("open "+path, chromedp.Navigate(p.srv.URL+path))
}

// eval returns the JSON value of a JavaScript expression (promises awaited).
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	return evalAs[T](p, expr, expr)
}

// evalAs is eval with a description for failures, for expressions that hold
// something a log must not show (the admin key).
func evalAs[T any](p *page, what, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v\npage: %s", what, err, p.snapshot())
	}
	return v
}

// ctrlEnter presses Ctrl+Enter in the prompt.
func ctrlEnter() chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Focus(chromedp.CSS(`textarea[aria-label="Prompt"]`)),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
	)
}

// waitFor polls a JavaScript predicate until it is truthy.
func (p *page) waitFor(what, expr string, timeout time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		p.t.Fatalf("waiting %s for %s: %v\npage: %s", timeout, what, err, p.snapshot())
	}
}

// snapshot is the visible text of the page, for failure messages.
func (p *page) snapshot() string {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + (document.body ? document.body.innerText : "")`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	if len(s) > 3000 {
		s = s[:3000] + "…"
	}
	return s
}

// click presses an element the way a person does (mouse at its centre).
func (p *page) click(xpath string) {
	p.t.Helper()
	p.do("click "+xpath, chromedp.Click(xpath))
}

// typeInto replaces a field's value with keystrokes.
func (p *page) typeInto(css, text string) {
	p.t.Helper()
	p.do("focus "+css, chromedp.Focus(chromedp.CSS(css)))
	p.do("select "+css, chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	p.do("type into "+css, chromedp.KeyEvent(text))
}

// chooseOption picks the option whose visible text starts with label, the
// way a select change reaches the page (input and change events).
func (p *page) chooseOption(css, label string) {
	p.t.Helper()
	js := fmt.Sprintf(`(() => {
		const s = document.querySelector(%q);
		if (!s) return "no select " + %q;
		const o = [...s.options].find((o) => o.textContent.trim().startsWith(%q));
		if (!o) return "no option " + %q + " in " + [...s.options].map((o) => o.textContent).join(", ");
		s.focus();
		s.value = o.value;
		s.dispatchEvent(new Event("input", {bubbles: true}));
		s.dispatchEvent(new Event("change", {bubbles: true}));
		return "";
	})()`, css, css, label, label)
	if msg := eval[string](p, js); msg != "" {
		p.t.Fatal(msg)
	}
}

// screenshot saves the viewport as a PNG among the run's artifacts.
func (p *page) screenshot(name string) string {
	p.t.Helper()
	return p.capture(name, chromedp.CaptureScreenshot())
}

// screenshotFull saves the whole page, below the fold too.
func (p *page) screenshotFull(name string) string {
	p.t.Helper()
	return p.capture(name+"-full", chromedp.FullScreenshot(100))
}

func (p *page) capture(name string, shot chromedp.Action[[]byte]) string {
	p.t.Helper()
	if err := os.MkdirAll(shotsDir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	// let images, fonts and the last layout settle
	chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`document.fonts.status === "loaded" && [...document.images].every((i) => i.complete)`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(5*time.Second)))
	buf, err := chromedp.Run(ctx, shot)
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(shotsDir, name+"-"+p.vp.name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
	return path
}

// noHorizontalScroll fails when the page is wider than the viewport.
func (p *page) noHorizontalScroll(where string) {
	p.t.Helper()
	over := eval[int](p, `document.documentElement.scrollWidth - window.innerWidth`)
	if over > 0 {
		p.t.Errorf("%s at %dx%d: the page is %d px wider than the window", where, p.vp.w, p.vp.h, over)
	}
}

// fetchJSON runs fetch in the page (its cookies, its session) and returns
// {status, body} so tests can compare the UI with the API it uses.
type fetched struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

func (p *page) fetch(method, path string, headers map[string]string, body any) fetched {
	p.t.Helper()
	h, _ := json.Marshal(headers)
	b := "undefined"
	if body != nil {
		raw, _ := json.Marshal(body)
		bs, _ := json.Marshal(string(raw))
		b = string(bs)
	}
	js := fmt.Sprintf(`(async () => {
		const r = await fetch(%q, {method: %q, headers: Object.assign({"Content-Type": "application/json"}, %s), body: %s, credentials: "same-origin"});
		const text = await r.text();
		let body = null;
		try { body = text ? JSON.parse(text) : null; } catch { body = text; }
		return {status: r.status, body};
	})()`, path, method, string(h), b)
	return evalAs[fetched](p, method+" "+path, js)
}
