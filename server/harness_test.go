package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"gooni/internal/catalog"
	"gooni/internal/config"
	"gooni/internal/dispatch"
	"gooni/internal/secrets"
	"gooni/internal/testutil"
	"gooni/internal/workspace"
	"gooni/store"
)

type testEnv struct {
	t       testing.TB
	srv     *Server
	h       http.Handler
	db      *store.DB
	sec     *secrets.Set
	clock   *testutil.Clock
	logs    *testutil.LogBuffer
	dataDir string
	bodies  []string // every response body, for the leak scan
}

// newEnv starts a server over a real SQLite file in a temp dir.
func newEnv(t testing.TB, mods ...func(*Config)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	sec, err := secrets.Load(dir, config.Secrets{})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(testutil.Catalog(t))
	if err != nil {
		t.Fatal(err)
	}
	clk := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	db, err := store.Open(dir, testutil.Schema(t), store.Options{AccountKeys: sec.AccountKeys, AuditKey: sec.AuditKey, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	os.MkdirAll(dir+"/media", 0o700)
	logs := &testutil.LogBuffer{}
	cfg := Config{
		DB: db, Catalog: cat, Secrets: sec, DataDir: dir, Version: "test",
		SessionMode: "open", SessionTTL: time.Hour, AdminSessionTTL: time.Hour, QueueMax: 1000,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), Now: clk.Now,
	}
	for _, m := range mods {
		m(&cfg)
	}
	srv := New(cfg)
	return &testEnv{t: t, srv: srv, h: srv.Handler(), db: db, sec: sec, clock: clk, logs: logs, dataDir: dir}
}

// req describes one request of a scenario table.
type req struct {
	method, path string
	body         string
	header       map[string]string
	multi        http.Header // headers that repeat, added after header
	cookies      []*http.Cookie
	remote       string
}

func (e *testEnv) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.remote != "" {
		hr.RemoteAddr = r.remote
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	for k, vs := range r.multi {
		for _, v := range vs {
			hr.Header.Add(k, v)
		}
	}
	for _, c := range r.cookies {
		hr.AddCookie(c)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, hr)
	e.bodies = append(e.bodies, w.Body.String())
	return w
}

// errCode checks the contract's error shape and returns its code.
func errCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if w.Code < 400 {
		return ""
	}
	var b struct {
		Error struct {
			Code          string         `json:"code"`
			Message       string         `json:"message"`
			CorrelationID string         `json:"correlation_id"`
			Details       map[string]any `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("status %d body is not the error JSON: %q", w.Code, w.Body.String())
	}
	if b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("error body lacks code or message: %s", w.Body.String())
	}
	if cid := w.Header().Get("X-Correlation-ID"); cid == "" || cid != b.Error.CorrelationID {
		t.Fatalf("correlation id header %q != body %q", cid, b.Error.CorrelationID)
	}
	if !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("error content type %q", w.Header().Get("Content-Type"))
	}
	return b.Error.Code
}

func cookieOf(w *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// userSession obtains a gg_session cookie the way the UI does.
func (e *testEnv) userSession() *http.Cookie {
	e.t.Helper()
	return e.session(req{method: "POST", path: "/auth/session", remote: "203.0.113.50:1000"}, "gg_session")
}

// adminSession signs in with the admin key and returns the gg_admin cookie.
func (e *testEnv) adminSession() *http.Cookie {
	e.t.Helper()
	return e.session(req{method: "POST", path: "/admin/session", header: map[string]string{"X-Admin-Key": e.sec.AdminKey}, remote: "203.0.113.60:1000"}, "gg_admin")
}

// session sends a sign-in request that must answer 200 with the named cookie.
func (e *testEnv) session(r req, cookie string) *http.Cookie {
	e.t.Helper()
	w := e.do(r)
	if w.Code != 200 {
		e.t.Fatalf("%s %s: %d %s", r.method, r.path, w.Code, w.Body.String())
	}
	c := cookieOf(w, cookie)
	if c == nil {
		e.t.Fatalf("no %s cookie", cookie)
	}
	return c
}

// readyAccount registers a worker account and marks it ready, so that
// POST /generate accepts tasks (no dispatcher runs in these tests).
func (e *testEnv) readyAccount() *store.Account {
	e.t.Helper()
	ctx := context.Background()
	a := &store.Account{Name: "gpu-" + store.NewID()[20:], Workspace: "gpu-one", BaseURL: "http://127.0.0.1:9", Capacity: 1, Status: "pending"}
	if err := e.db.CreateAccount(ctx, a, map[string]string{}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.SetAccountModels(ctx, a.ID, a.ConfigRev, workspace.SimModels); err != nil {
		e.t.Fatal(err)
	}
	a, err := e.db.SetAccountStatus(ctx, a.ID, "ready", "", e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// wireDispatcher starts a simulated workspace on loopback, builds a
// dispatcher over e's store (tune adjusts its config), and rebuilds e's
// server with it wired in: task changes reach the event hub, background
// audit events the server's audit writer. The dispatcher is not running.
func (e *testEnv) wireDispatcher(simCfg workspace.SimConfig, tune func(*dispatch.Config)) (*dispatch.Dispatcher, *httptest.Server) {
	e.t.Helper()
	sim, err := workspace.NewSim(simCfg)
	if err != nil {
		e.t.Fatal(err)
	}
	hs := httptest.NewServer(sim.Handler())
	e.t.Cleanup(hs.Close)
	dc := dispatch.Config{
		DB: e.db, DataDir: e.dataDir, WorkspaceURL: "https://{workspace}.invalid",
		Logger: e.srv.log, Now: e.clock.Now, Audit: e.srv.auditLog,
	}
	if tune != nil {
		tune(&dc)
	}
	d := dispatch.New(dc)
	cfg := e.srv.cfg
	cfg.Dispatcher = d
	cfg.Audit = e.srv.auditLog
	srv := New(cfg)
	e.srv, e.h = srv, srv.Handler()
	return d, hs
}

// readFile is the file at p, failing the test when it cannot be read.
func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
