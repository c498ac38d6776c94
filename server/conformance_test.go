package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"gooni/internal/dispatch"
	"gooni/internal/testutil"
	"gooni/internal/workspace"
	"gooni/store"
)

// dispatchEnv is a server on the settable clock with a real dispatcher that is
// not running: admin health checks, deploys and deletes work against a real
// simulated workspace, while tasks only move when a test moves them.
type dispatchEnv struct {
	*testEnv
	d   *dispatch.Dispatcher
	sim *httptest.Server
}

func newDispatchEnv(t *testing.T, simCfg workspace.SimConfig, deployCommand string, mods ...func(*Config)) *dispatchEnv {
	t.Helper()
	if simCfg.Capacity == 0 {
		simCfg.Capacity = 2
	}
	e := newEnv(t, mods...)
	d, hs := e.wireDispatcher(simCfg, func(c *dispatch.Config) {
		c.DeployCommand, c.DeployTimeout, c.RequestTimeout = deployCommand, 5*time.Second, 2*time.Second
	})
	return &dispatchEnv{testEnv: e, d: d, sim: hs}
}

// account registers a worker account straight in the store.
func (e *dispatchEnv) account(name, baseURL string, creds map[string]string) *store.Account {
	e.t.Helper()
	a := &store.Account{Name: name, Workspace: name, BaseURL: baseURL, Capacity: 1, Status: "pending"}
	if err := e.db.CreateAccount(context.Background(), a, creds); err != nil {
		e.t.Fatal(err)
	}
	return a
}

// task creates a task and moves it to status; a done task gets real files.
func (e *testEnv) task(status string, accountID int64) *store.Task {
	e.t.Helper()
	ctx := context.Background()
	t := &store.Task{ID: store.NewID(), Type: "image", Model: "flux", Mode: "t2i", Prompt: "a lighthouse",
		Params: json.RawMessage(`{"width":512}`), Status: "pending"}
	if err := e.db.CreateTask(ctx, t, store.CreateOptions{QueueMax: 0}); err != nil {
		e.t.Fatal(err)
	}
	if status == "pending" {
		return t
	}
	if status == "failed" {
		if err := e.db.FailTask(ctx, t.ID, "worker_error", "the workspace ran out of memory"); err != nil {
			e.t.Fatal(err)
		}
		return t
	}
	if _, err := e.db.ClaimTask(ctx, t.ID, accountID); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.db.StartTask(ctx, t.ID, accountID); err != nil {
		e.t.Fatal(err)
	}
	if status == "done" {
		res, prev := "media/"+t.ID+".png", "media/"+t.ID+".preview.png"
		for _, p := range []string{res, prev} {
			if err := os.WriteFile(filepath.Join(e.dataDir, p), pngBytes, 0o600); err != nil {
				e.t.Fatal(err)
			}
		}
		if err := e.db.CompleteTask(ctx, t.ID, res, "image/png", prev, "image/png"); err != nil {
			e.t.Fatal(err)
		}
	}
	return t
}

// pngBytes is a 1x1 PNG.
var pngBytes = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89" +
	"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// jsonKeys decodes a JSON object body and checks it has exactly want keys,
// plus any of optional.
func jsonKeys(t *testing.T, w *httptest.ResponseRecorder, want, optional []string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("body is not a JSON object: %q", w.Body.String())
	}
	checkKeys(t, "body", m, want, optional)
	return m
}

func checkKeys(t *testing.T, what string, m map[string]any, want, optional []string) {
	t.Helper()
	allowed := map[string]bool{}
	for _, k := range optional {
		allowed[k] = true
	}
	for _, k := range want {
		allowed[k] = true
		if _, ok := m[k]; !ok {
			t.Errorf("%s lacks %q: has %v", what, k, keysOf(m))
		}
	}
	for k := range m {
		if !allowed[k] {
			t.Errorf("%s has unexpected key %q", what, k)
		}
	}
}

var (
	accountKeys = []string{"id", "name", "workspace", "base_url", "capacity", "status", "status_reason",
		"last_health_check_at", "deploy_status", "last_deploy_at", "has_credentials", "created_at", "updated_at",
		"driver", "models"}
	// deploy_output is the redacted deploy log the contract shows to admins (section 7).
	// effective_base_url is where an account is reached (base_url, or derived from GG_WORKSPACE_URL).
	accountOptional = []string{"deploy_output", "effective_base_url"}
	taskViewKeys    = []string{"task_id", "type", "model", "mode", "prompt", "params", "status", "progress",
		"created_at", "started_at", "completed_at", "result_url", "preview_url"}
	taskViewOptional = []string{"queue_position", "error", "negative_prompt", "eta_seconds"}
	auditKeys        = []string{"id", "timestamp", "actor", "source", "action", "target", "outcome", "correlation_id", "details"}
)

func checkAccount(t *testing.T, what string, m map[string]any) {
	t.Helper()
	checkKeys(t, what, m, accountKeys, accountOptional)
}

func decodeMap(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("body is not a JSON object: %q", w.Body.String())
	}
	return m
}

// confCase is one request of the conformance table and what the contract says
// it gets. Each case runs as its own subtest, in table order, on environments
// the cases share; a case that needs an earlier state (a throttled IP, an
// existing name, a deleted account) makes it itself with before, so it also
// passes, and fails, alone.
type confCase struct {
	name   string
	env    string // "" = main; "empty", "full", "later", "closed"
	before []req  // sent first on the same env; each must answer below 500 and not 429
	r      req
	warm   int // send the same request this many times first (throttles)
	status int
	code   string // "" = success
	field  string // details.field of validation_failed
	check  func(t *testing.T, w *httptest.ResponseRecorder)
}

// TestContractConformance walks every route of CONTRACT.md section 6 with the
// rejection cases of sections 2-5, asserting the exact status and code, the
// error schema of every failure and the success shapes; then it checks that
// every audit row and audit log line written meanwhile carries the mandatory
// fields of section 9 (SC-005, SC-006, SC-007).
func TestContractConformance(t *testing.T) {
	t.Parallel()
	origin := func(c *Config) { c.FrontendOrigins = []string{"https://app.example.com"} }
	e := newDispatchEnv(t, workspace.SimConfig{Duration: time.Hour}, `echo "deploying $GG_WORKSPACE"`, origin)
	ctx := context.Background()

	// Worker accounts: one ready (health-checked against the sim), one to
	// deploy, one to delete.
	simAcc := e.account("sim-one", e.sim.URL, map[string]string{"token_id": "tid", "token_secret": "tsec"})
	if a, err := e.d.HealthCheck(ctx, simAcc.ID); err != nil || a.Status != "ready" {
		t.Fatalf("health check of the sim: %v %+v", err, a)
	}
	deployAcc := e.account("deploy-me", e.sim.URL, map[string]string{"token_id": "tid2"})
	deleteAcc := e.account("delete-me", e.sim.URL, map[string]string{})
	deleteTwiceAcc := e.account("delete-me-twice", e.sim.URL, map[string]string{})

	pending := e.task("pending", 0)
	processing := e.task("processing", simAcc.ID)
	done := e.task("done", simAcc.ID)
	e.task("done", simAcc.ID) // a second done task, so the gallery pages
	toDelete := e.task("done", simAcc.ID)
	gone := e.task("done", simAcc.ID)
	failed := e.task("failed", 0)
	toCancel := e.task("pending", 0)
	toCancelRunning := e.task("processing", simAcc.ID)
	goneTask, _ := e.db.GetTask(ctx, gone.ID)
	os.Remove(filepath.Join(e.dataDir, goneTask.ResultPath))
	os.Remove(filepath.Join(e.dataDir, goneTask.PreviewPath))

	// noEcho checks that a value sent as a key shows in neither the answer nor the log.
	noEcho := func(v string) func(t *testing.T, w *httptest.ResponseRecorder) {
		return func(t *testing.T, w *httptest.ResponseRecorder) {
			if strings.Contains(w.Body.String(), v) || strings.Contains(e.logs.String(), v) {
				t.Errorf("the key %q was echoed", v)
			}
		}
	}

	user := e.userSession()
	admin := e.adminSession()
	throttledAdmin := e.adminSession()
	revokedUser := e.userSession()
	if w := e.do(req{method: "DELETE", path: "/auth/session", cookies: []*http.Cookie{revokedUser}}); w.Code != 204 {
		t.Fatalf("revoke: %d", w.Code)
	}
	tamperedUser := &http.Cookie{Name: "gg_session", Value: user.Value[:len(user.Value)-4] + "AAAA"}
	tamperedAdmin := &http.Cookie{Name: "gg_admin", Value: admin.Value[:len(admin.Value)-4] + "AAAA"}
	userAsAdmin := &http.Cookie{Name: "gg_admin", Value: user.Value}

	// No ready account at all.
	empty := newEnv(t)
	emptyKey := map[string]string{"X-API-Key": empty.sec.APIKey}
	// The queue holds one pending task and takes no more.
	full := newEnv(t, func(c *Config) { c.QueueMax = 1 })
	full.readyAccount()
	full.task("pending", 0)
	fullKey := map[string]string{"X-API-Key": full.sec.APIKey}
	// Sessions issued, then the clock moves past both lifetimes.
	later := newEnv(t)
	laterUser, laterAdmin := later.userSession(), later.adminSession()
	later.clock.Advance(2 * time.Hour)
	// Session storage that cannot be read.
	closed := newEnv(t)
	closedUser, closedAdmin := closed.userSession(), closed.adminSession()
	closed.db.Close()
	envs := map[string]*testEnv{"": e.testEnv, "empty": empty, "full": full, "later": later, "closed": closed}

	key := map[string]string{"X-API-Key": e.sec.APIKey}
	withKey := func(extra map[string]string) map[string]string {
		h := map[string]string{"X-API-Key": e.sec.APIKey}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	ac := []*http.Cookie{admin}
	gen := `{"model":"flux","mode":"t2i","prompt":"a lighthouse at night"}`

	type route struct{ method, path string }
	userRoutes := []route{
		{"POST", "/generate"}, {"GET", "/status/" + done.ID}, {"GET", "/events/" + done.ID},
		{"GET", "/results/" + done.ID}, {"GET", "/preview/" + done.ID}, {"GET", "/gallery"}, {"DELETE", "/gallery/" + done.ID},
		{"GET", "/tasks"}, {"POST", "/tasks/" + pending.ID + "/cancel"}, {"GET", "/events"},
	}
	acct := func(id int64, suffix string) string { return fmt.Sprintf("/admin/accounts/%d%s", id, suffix) }
	adminRoutes := []route{
		{"DELETE", "/admin/session"}, {"GET", "/admin/health"}, {"GET", "/admin/logs"}, {"GET", "/admin/logs/verify"},
		{"GET", "/admin/accounts"}, {"POST", "/admin/accounts"}, {"GET", acct(simAcc.ID, "")}, {"PATCH", acct(simAcc.ID, "")},
		{"DELETE", acct(simAcc.ID, "")}, {"POST", acct(simAcc.ID, "/health-check")}, {"POST", acct(simAcc.ID, "/deploy")},
	}
	publicRoutes := []route{{"GET", "/health"}, {"GET", "/config"}, {"POST", "/auth/session"}, {"GET", "/auth/session"},
		{"DELETE", "/auth/session"}, {"POST", "/admin/session"}}
	// Sections 16 and 17: invites and the Host allowlist (conformance_access_test.go).
	accessAdmin, accessPublic, accessCases := accessConformance(t, e.testEnv, admin, envs)
	for _, rt := range accessAdmin {
		adminRoutes = append(adminRoutes, route{rt[0], rt[1]})
	}
	for _, rt := range accessPublic {
		publicRoutes = append(publicRoutes, route{rt[0], rt[1]})
	}

	// Case names hold no generated id, so a case has the same name every run.
	ids := strings.NewReplacer(done.ID, "{id}", acct(simAcc.ID, ""), "/admin/accounts/{id}")
	routeName := func(method, path string) string { return method + " " + ids.Replace(path) }

	cases := accessCases
	// Section 3 on every user route.
	for _, rt := range userRoutes {
		n := routeName(rt.method, rt.path)
		cases = append(cases,
			confCase{name: n + " without credentials", r: req{method: rt.method, path: rt.path}, status: 401, code: "session_required"},
			confCase{name: n + " wrong X-API-Key", r: req{method: rt.method, path: rt.path, header: map[string]string{"X-API-Key": "nope"}}, status: 401, code: "invalid_api_key"},
			confCase{name: n + " wrong api_key query", r: req{method: rt.method, path: rt.path + "?api_key=nope"}, status: 401, code: "invalid_api_key"},
			confCase{name: n + " X-API-Key twice, right then wrong", r: req{method: rt.method, path: rt.path, multi: http.Header{"X-Api-Key": {e.sec.APIKey, "nope"}}}, status: 401, code: "invalid_api_key"},
			confCase{name: n + " wrong header beats live cookie", r: req{method: rt.method, path: rt.path, header: map[string]string{"X-API-Key": "nope"}, cookies: []*http.Cookie{user}}, status: 401, code: "invalid_api_key"},
			confCase{name: n + " tampered cookie", r: req{method: rt.method, path: rt.path, cookies: []*http.Cookie{tamperedUser}}, status: 401, code: "session_expired"},
			confCase{name: n + " revoked cookie", r: req{method: rt.method, path: rt.path, cookies: []*http.Cookie{revokedUser}}, status: 401, code: "session_expired"},
			confCase{name: n + " admin session only", r: req{method: rt.method, path: rt.path, cookies: ac}, status: 401, code: "session_required"},
			confCase{name: n + " X-Admin-Key only", r: req{method: rt.method, path: rt.path, header: map[string]string{"X-Admin-Key": e.sec.AdminKey}}, status: 401, code: "session_required"},
			confCase{name: n + " expired cookie", env: "later", r: req{method: rt.method, path: rt.path, cookies: []*http.Cookie{laterUser}}, status: 401, code: "session_expired"},
			confCase{name: n + " unreadable session store", env: "closed", r: req{method: rt.method, path: rt.path, cookies: []*http.Cookie{closedUser}}, status: 503, code: "auth_unavailable"},
		)
	}
	// Section 3 on every admin route.
	for _, rt := range adminRoutes {
		n := routeName(rt.method, rt.path)
		cases = append(cases,
			confCase{name: n + " without session", r: req{method: rt.method, path: rt.path}, status: 401, code: "session_required"},
			confCase{name: n + " with a user session", r: req{method: rt.method, path: rt.path, cookies: []*http.Cookie{user}}, status: 401, code: "session_required"},
			confCase{name: n + " with X-Admin-Key", r: req{method: rt.method, path: rt.path, header: map[string]string{"X-Admin-Key": e.sec.AdminKey}}, status: 401, code: "session_required"},
			confCase{name: n + " with the API key", r: req{method: rt.method, path: rt.path, header: key}, status: 401, code: "session_required"},
			confCase{name: n + " tampered admin cookie", r: req{method: rt.method, path: rt.path, cookies: []*http.Cookie{tamperedAdmin}}, status: 401, code: "session_expired"},
			confCase{name: n + " user cookie renamed gg_admin", r: req{method: rt.method, path: rt.path, cookies: []*http.Cookie{userAsAdmin}}, status: 401, code: "session_expired"},
			confCase{name: n + " expired admin session", env: "later", r: req{method: rt.method, path: rt.path, cookies: []*http.Cookie{laterAdmin}}, status: 401, code: "session_expired"},
			confCase{name: n + " unreadable session store", env: "closed", r: req{method: rt.method, path: rt.path, cookies: []*http.Cookie{closedAdmin}}, status: 503, code: "auth_unavailable"},
		)
	}
	// Section 5 on every route: blocked origins, preflight or not, before anything else.
	for _, rt := range append(append(append([]route{}, userRoutes...), adminRoutes...), publicRoutes...) {
		n := routeName(rt.method, rt.path)
		cases = append(cases,
			confCase{name: n + " blocked origin", r: req{method: rt.method, path: rt.path, header: withKey(map[string]string{"Origin": "https://evil.example"}), cookies: ac}, status: 403, code: "cors_origin_blocked"},
			confCase{name: n + " blocked preflight", r: req{method: "OPTIONS", path: rt.path, header: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": rt.method}}, status: 403, code: "cors_origin_blocked"},
			confCase{name: n + " allowed preflight", r: req{method: "OPTIONS", path: rt.path, header: map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": rt.method}}, status: 204,
				check: func(t *testing.T, w *httptest.ResponseRecorder) {
					h := w.Header()
					if h.Get("Access-Control-Allow-Origin") != "https://app.example.com" || h.Get("Access-Control-Allow-Credentials") != "true" ||
						!strings.Contains(h.Get("Access-Control-Allow-Methods"), rt.method) || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "X-Correlation-ID") ||
						!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Idempotency-Key") ||
						!strings.Contains(h.Get("Vary"), "Origin") {
						t.Errorf("preflight headers: %v", h)
					}
				}},
		)
	}

	cases = append(cases, []confCase{
		// Routing.
		{name: "unknown route", r: req{method: "GET", path: "/nope"}, status: 404, code: "not_found"},
		{name: "unknown route with a key", r: req{method: "POST", path: "/v1/generate", header: key}, status: 404, code: "not_found"},
		{name: "unknown admin route with a session", r: req{method: "GET", path: "/admin/nothing", cookies: ac}, status: 404, code: "not_found"},
		{name: "PUT /health", r: req{method: "PUT", path: "/health"}, status: 405, code: "method_not_allowed"},
		{name: "POST /config", r: req{method: "POST", path: "/config"}, status: 405, code: "method_not_allowed"},
		{name: "PUT /auth/session", r: req{method: "PUT", path: "/auth/session"}, status: 405, code: "method_not_allowed"},
		{name: "GET /generate", r: req{method: "GET", path: "/generate", header: key}, status: 405, code: "method_not_allowed"},
		{name: "DELETE /status/{id}", r: req{method: "DELETE", path: "/status/" + done.ID, header: key}, status: 405, code: "method_not_allowed"},
		{name: "POST /gallery", r: req{method: "POST", path: "/gallery", header: key}, status: 405, code: "method_not_allowed"},
		{name: "GET /gallery/{id}", r: req{method: "GET", path: "/gallery/" + done.ID, header: key}, status: 405, code: "method_not_allowed"},
		{name: "GET /admin/session", r: req{method: "GET", path: "/admin/session", cookies: ac}, status: 405, code: "method_not_allowed"},
		{name: "PUT /admin/accounts", r: req{method: "PUT", path: "/admin/accounts", cookies: ac}, status: 405, code: "method_not_allowed"},
		{name: "GET /admin/accounts/{id}/deploy", r: req{method: "GET", path: acct(simAcc.ID, "/deploy"), cookies: ac}, status: 405, code: "method_not_allowed"},
		{name: "DELETE /admin/logs", r: req{method: "DELETE", path: "/admin/logs", cookies: ac}, status: 405, code: "method_not_allowed"},

		// Public routes.
		{name: "GET /health", r: req{method: "GET", path: "/health"}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, []string{"status", "version"}, nil)
			if m["status"] != "ok" || m["version"] != "test" {
				t.Errorf("health: %v", m)
			}
		}},
		{name: "GET /health on an unreadable database", env: "closed", r: req{method: "GET", path: "/health"}, status: 503, code: "storage_failed"},
		{name: "GET /config", r: req{method: "GET", path: "/config"}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			var c struct {
				Version int `json:"version"`
				Models  []struct {
					ID     string           `json:"id"`
					Type   string           `json:"type"`
					Modes  []string         `json:"modes"`
					Params []map[string]any `json:"params"`
				} `json:"models"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, m := range c.Models {
				ids = append(ids, m.ID)
				if len(m.Modes) == 0 || len(m.Params) == 0 || m.Type == "" {
					t.Errorf("model %s incomplete", m.ID)
				}
			}
			sort.Strings(ids)
			if c.Version != 1 || strings.Join(ids, ",") != "anisora,flux,phr00t,pony" {
				t.Errorf("config: version %d models %v", c.Version, ids)
			}
		}},

		// User sessions.
		{name: "POST /auth/session", r: req{method: "POST", path: "/auth/session", remote: "192.0.2.1:1"}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, []string{"authenticated", "expires_at"}, nil)
			if m["authenticated"] != true {
				t.Errorf("%v", m)
			}
			if _, err := time.Parse(time.RFC3339, fmt.Sprint(m["expires_at"])); err != nil {
				t.Errorf("expires_at: %v", err)
			}
			c := cookieOf(w, "gg_session")
			if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
				t.Errorf("cookie: %+v", c)
			}
		}},
		{name: "GET /auth/session live", r: req{method: "GET", path: "/auth/session", cookies: []*http.Cookie{user}}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			jsonKeys(t, w, []string{"authenticated", "expires_at"}, nil)
		}},
		{name: "GET /auth/session without cookie", r: req{method: "GET", path: "/auth/session"}, status: 401, code: "session_required"},
		{name: "GET /auth/session revoked", r: req{method: "GET", path: "/auth/session", cookies: []*http.Cookie{revokedUser}}, status: 401, code: "session_expired"},
		{name: "GET /auth/session tampered", r: req{method: "GET", path: "/auth/session", cookies: []*http.Cookie{tamperedUser}}, status: 401, code: "session_expired"},
		{name: "GET /auth/session expired", env: "later", r: req{method: "GET", path: "/auth/session", cookies: []*http.Cookie{laterUser}}, status: 401, code: "session_expired"},
		{name: "GET /auth/session storage unreadable", env: "closed", r: req{method: "GET", path: "/auth/session", cookies: []*http.Cookie{closedUser}}, status: 503, code: "auth_unavailable"},
		{name: "POST /auth/session throttled", r: req{method: "POST", path: "/auth/session", remote: "198.51.100.77:9"}, warm: 10, status: 429, code: "rate_limited", check: retryAfter},
		{name: "throttled IP with a blocked origin: CORS first", before: repeat(10, req{method: "POST", path: "/auth/session", remote: "198.51.100.80:9"}),
			r: req{method: "POST", path: "/auth/session", remote: "198.51.100.80:9", header: map[string]string{"Origin": "https://evil.example"}}, status: 403, code: "cors_origin_blocked",
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				// The IP really is throttled: CORS answered first.
				if w := e.do(req{method: "POST", path: "/auth/session", remote: "198.51.100.80:9"}); w.Code != 429 {
					t.Errorf("the IP was not throttled (%d): the case proves nothing", w.Code)
				}
			}},

		// Admin sessions.
		{name: "POST /admin/session without key", r: req{method: "POST", path: "/admin/session"}, status: 401, code: "invalid_admin_key"},
		{name: "POST /admin/session wrong key", r: req{method: "POST", path: "/admin/session", header: map[string]string{"X-Admin-Key": "nope"}}, status: 401, code: "invalid_admin_key"},
		{name: "POST /admin/session key in query", r: req{method: "POST", path: "/admin/session?admin_key=" + e.sec.AdminKey}, status: 401, code: "invalid_admin_key"},
		{name: "POST /admin/session key in body", r: req{method: "POST", path: "/admin/session", body: `{"admin_key":"` + e.sec.AdminKey + `"}`}, status: 401, code: "invalid_admin_key"},
		{name: "POST /admin/session", r: req{method: "POST", path: "/admin/session", header: map[string]string{"X-Admin-Key": e.sec.AdminKey}}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			jsonKeys(t, w, []string{"authenticated", "expires_at"}, nil)
			c := cookieOf(w, "gg_admin")
			if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
				t.Errorf("cookie: %+v", c)
			}
		}},
		{name: "POST /admin/session throttled even with the right key", r: req{method: "POST", path: "/admin/session", remote: "198.51.100.78:9", header: map[string]string{"X-Admin-Key": e.sec.AdminKey}},
			warm: 30, status: 429, code: "rate_limited", check: retryAfter},
		{name: "admin routes throttled per session", r: req{method: "GET", path: "/admin/logs/verify", cookies: []*http.Cookie{throttledAdmin}}, warm: 120, status: 429, code: "rate_limited", check: retryAfter},
		{name: "admin routes throttled per IP without a session, before auth", r: req{method: "GET", path: "/admin/accounts", remote: "198.51.100.79:9"}, warm: 120, status: 429, code: "rate_limited"},

		// POST /generate.
		{name: "generate 202", r: req{method: "POST", path: "/generate", header: key, body: gen}, status: 202, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, []string{"task_id", "status", "status_url", "result_url", "preview_url", "task_ids", "tasks"}, nil)
			id := fmt.Sprint(m["task_id"])
			if ids, _ := m["task_ids"].([]any); len(ids) != 1 || ids[0] != id {
				t.Errorf("task_ids %v, want [%s]", m["task_ids"], id)
			}
			if m["status"] != "pending" || m["status_url"] != "/status/"+id || m["result_url"] != "/results/"+id || m["preview_url"] != "/preview/"+id {
				t.Errorf("%v", m)
			}
			if _, err := e.db.GetTask(context.Background(), id); err != nil {
				t.Errorf("202 before the row exists: %v", err)
			}
		}},
		{name: "generate with a session cookie", r: req{method: "POST", path: "/generate", cookies: []*http.Cookie{user}, body: gen}, status: 202},
		{name: "generate with api_key query", r: req{method: "POST", path: "/generate?api_key=" + e.sec.APIKey, body: gen}, status: 202},
		{name: "generate empty body", r: req{method: "POST", path: "/generate", header: key}, status: 400, code: "invalid_json"},
		{name: "generate malformed", r: req{method: "POST", path: "/generate", header: key, body: `{"model":`}, status: 400, code: "invalid_json"},
		{name: "generate array", r: req{method: "POST", path: "/generate", header: key, body: `[]`}, status: 400, code: "invalid_json"},
		{name: "generate two objects", r: req{method: "POST", path: "/generate", header: key, body: gen + gen}, status: 400, code: "invalid_json"},
		{name: "generate unknown model", r: req{method: "POST", path: "/generate", header: key, body: `{"model":"nope","mode":"t2i","prompt":"x"}`}, status: 400, code: "validation_failed", field: "model"},
		{name: "generate steps over", r: req{method: "POST", path: "/generate", header: key, body: `{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":51}}`}, status: 400, code: "validation_failed", field: "params.steps"},
		{name: "generate unknown field", r: req{method: "POST", path: "/generate", header: key, body: `{"model":"flux","mode":"t2i","prompt":"x","nsfw":true}`}, status: 400, code: "validation_failed", field: "nsfw"},
		{name: "generate empty prompt", r: req{method: "POST", path: "/generate", header: key, body: `{"model":"flux","mode":"t2i","prompt":""}`}, status: 400, code: "validation_failed", field: "prompt"},
		{name: "generate i2v without image", r: req{method: "POST", path: "/generate", header: key, body: `{"model":"anisora","mode":"i2v","prompt":"x"}`}, status: 400, code: "validation_failed", field: "image"},
		{name: "generate oversize", r: req{method: "POST", path: "/generate", header: key, body: `{"prompt":"` + strings.Repeat("a", 17<<20) + `"}`}, status: 413, code: "payload_too_large"},
		{name: "generate without ready workers", env: "empty", r: req{method: "POST", path: "/generate", header: emptyKey, body: gen}, status: 503, code: "no_workers"},
		{name: "generate with a full queue", env: "full", r: req{method: "POST", path: "/generate", header: fullKey, body: gen}, status: 503, code: "queue_full"},
		{name: "generate validation before no_workers", env: "empty", r: req{method: "POST", path: "/generate", header: emptyKey, body: `{"model":"x"}`}, status: 400, code: "validation_failed"},

		// Task control (section 12).
		{name: "generate count 3", r: req{method: "POST", path: "/generate", header: key, body: `{"model":"flux","mode":"t2i","prompt":"three","count":3}`}, status: 202,
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				var a generateAccepted
				json.Unmarshal(w.Body.Bytes(), &a)
				if len(a.TaskIDs) != 3 || len(a.Tasks) != 3 || a.TaskID != a.TaskIDs[0] || a.Tasks[2].StatusURL != "/status/"+a.TaskIDs[2] {
					t.Errorf("batch answer %s", w.Body.String())
				}
			}},
		{name: "generate count 9", r: req{method: "POST", path: "/generate", header: key, body: `{"model":"flux","mode":"t2i","prompt":"x","count":9}`}, status: 400, code: "validation_failed", field: "count"},
		{name: "generate count over the queue", env: "full", r: req{method: "POST", path: "/generate", header: fullKey, body: `{"model":"flux","mode":"t2i","prompt":"x","count":2}`}, status: 503, code: "queue_full"},
		{name: "generate empty Idempotency-Key", r: req{method: "POST", path: "/generate", header: withKey(map[string]string{"Idempotency-Key": ""}), body: gen}, status: 400, code: "validation_failed", field: "Idempotency-Key"},
		{name: "generate Idempotency-Key of 256", r: req{method: "POST", path: "/generate", header: withKey(map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}), body: gen}, status: 400, code: "validation_failed", field: "Idempotency-Key"},
		{name: "generate Idempotency-Key not ASCII", r: req{method: "POST", path: "/generate", header: withKey(map[string]string{"Idempotency-Key": "ключ"}), body: gen}, status: 400, code: "validation_failed", field: "Idempotency-Key"},
		{name: "generate with an Idempotency-Key", r: req{method: "POST", path: "/generate", header: withKey(map[string]string{"Idempotency-Key": "conf-1"}), body: gen}, status: 202},
		{name: "generate replayed", r: req{method: "POST", path: "/generate", header: withKey(map[string]string{"Idempotency-Key": "conf-1"}), body: gen}, status: 202,
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if w.Header().Get("Idempotent-Replayed") != "true" {
					t.Errorf("replay lacks Idempotent-Replayed: %v", w.Header())
				}
			}},
		{name: "generate idempotency conflict", r: req{method: "POST", path: "/generate", header: withKey(map[string]string{"Idempotency-Key": "conf-1"}), body: `{"model":"flux","mode":"t2i","prompt":"other"}`}, status: 422, code: "idempotency_conflict"},
		{name: "cancel pending", r: req{method: "POST", path: "/tasks/" + toCancel.ID + "/cancel", header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, taskViewKeys, taskViewOptional)
			if e, _ := m["error"].(map[string]any); m["status"] != "failed" || e["code"] != "canceled" {
				t.Errorf("%v", m)
			}
		}},
		{name: "cancel processing", r: req{method: "POST", path: "/tasks/" + toCancelRunning.ID + "/cancel", header: key}, status: 200},
		{name: "cancel a canceled task", r: req{method: "POST", path: "/tasks/" + toCancel.ID + "/cancel", header: key}, status: 409, code: "task_finished"},
		{name: "cancel done", r: req{method: "POST", path: "/tasks/" + done.ID + "/cancel", header: key}, status: 409, code: "task_finished"},
		{name: "cancel failed", r: req{method: "POST", path: "/tasks/" + failed.ID + "/cancel", header: key}, status: 409, code: "task_finished"},
		{name: "cancel unknown", r: req{method: "POST", path: "/tasks/01ZZZZZZZZZZZZZZZZZZZZZZZZ/cancel", header: key}, status: 404, code: "task_not_found"},
		{name: "cancel bad id shape", r: req{method: "POST", path: "/tasks/a.b/cancel", header: key}, status: 404, code: "task_not_found"},
		{name: "GET /tasks/{id}/cancel", r: req{method: "GET", path: "/tasks/" + pending.ID + "/cancel", header: key}, status: 405, code: "method_not_allowed"},
		{name: "POST /tasks", r: req{method: "POST", path: "/tasks", header: key}, status: 405, code: "method_not_allowed"},
		{name: "POST /events", r: req{method: "POST", path: "/events", header: key}, status: 405, code: "method_not_allowed"},
		{name: "list tasks", r: req{method: "GET", path: "/tasks?limit=2", header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, []string{"items", "next_cursor"}, nil)
			items, _ := m["items"].([]any)
			if len(items) != 2 || m["next_cursor"] == nil {
				t.Fatalf("%v", m)
			}
			for _, it := range items {
				checkKeys(t, "task", it.(map[string]any), taskViewKeys, taskViewOptional)
			}
		}},
		{name: "list failed tasks", r: req{method: "GET", path: "/tasks?status=failed", header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			var p galleryPage
			json.Unmarshal(w.Body.Bytes(), &p)
			if len(p.Items) < 2 {
				t.Errorf("%d failed tasks listed", len(p.Items))
			}
			for _, it := range p.Items {
				if it.Status != "failed" {
					t.Errorf("status=failed lists a %s task", it.Status)
				}
			}
		}},
		{name: "list bad status", r: req{method: "GET", path: "/tasks?status=done,gone", header: key}, status: 400, code: "validation_failed", field: "status"},
		{name: "list empty status", r: req{method: "GET", path: "/tasks?status=", header: key}, status: 400, code: "validation_failed", field: "status"},
		{name: "list limit 0", r: req{method: "GET", path: "/tasks?limit=0", header: key}, status: 400, code: "validation_failed", field: "limit"},
		{name: "list limit 101", r: req{method: "GET", path: "/tasks?limit=101", header: key}, status: 400, code: "validation_failed", field: "limit"},
		{name: "list bad cursor", r: req{method: "GET", path: "/tasks?cursor=..%2F", header: key}, status: 400, code: "validation_failed", field: "cursor"},
		{name: "list made-up cursor", r: req{method: "GET", path: "/tasks?cursor=zzz", header: key}, status: 400, code: "validation_failed", field: "cursor"},
		{name: "list lower-case cursor", r: req{method: "GET", path: "/tasks?cursor=" + strings.ToLower(store.NewID()), header: key}, status: 400, code: "validation_failed", field: "cursor"},
		{name: "list cursor of no task", r: req{method: "GET", path: "/tasks?cursor=" + store.NewID(), header: key}, status: 200},
		{name: "list unknown model", r: req{method: "GET", path: "/tasks?model=nope", header: key}, status: 400, code: "validation_failed", field: "model"},
		{name: "list unknown type", r: req{method: "GET", path: "/tasks?type=audio", header: key}, status: 400, code: "validation_failed", field: "type"},
		{name: "list q without words", r: req{method: "GET", path: "/tasks?q=%21%21", header: key}, status: 400, code: "validation_failed", field: "q"},
		{name: "list q too long", r: req{method: "GET", path: "/tasks?q=" + strings.Repeat("a", 201), header: key}, status: 400, code: "validation_failed", field: "q"},
		{name: "list status twice", r: req{method: "GET", path: "/tasks?status=done&status=failed", header: key}, status: 400, code: "validation_failed", field: "status"},
		{name: "gallery filters", r: req{method: "GET", path: "/gallery?model=flux&type=image&q=lighthouse", header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			var p galleryPage
			json.Unmarshal(w.Body.Bytes(), &p)
			if len(p.Items) < 3 {
				t.Errorf("%d items", len(p.Items))
			}
		}},
		{name: "gallery bad model", r: req{method: "GET", path: "/gallery?model=nope", header: key}, status: 400, code: "validation_failed", field: "model"},
		{name: "gallery takes no status", r: req{method: "GET", path: "/gallery?status=failed", header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			var p galleryPage
			json.Unmarshal(w.Body.Bytes(), &p)
			for _, it := range p.Items {
				if it.Status != "done" {
					t.Errorf("gallery lists a %s task", it.Status)
				}
			}
		}},

		// Task views.
		{name: "status pending", r: req{method: "GET", path: "/status/" + pending.ID, header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, taskViewKeys, taskViewOptional)
			if m["status"] != "pending" || m["queue_position"] == nil || m["progress"] != float64(0) {
				t.Errorf("%v", m)
			}
		}},
		{name: "status done", r: req{method: "GET", path: "/status/" + done.ID, header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, taskViewKeys, taskViewOptional)
			if m["status"] != "done" || m["progress"] != float64(100) || m["result_url"] != "/results/"+done.ID {
				t.Errorf("%v", m)
			}
			for _, k := range []string{"created_at", "started_at", "completed_at"} {
				if s, _ := m[k].(string); !strings.HasSuffix(s, "Z") {
					t.Errorf("%s not RFC 3339 UTC: %v", k, m[k])
				}
			}
		}},
		{name: "status failed", r: req{method: "GET", path: "/status/" + failed.ID, header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, taskViewKeys, taskViewOptional)
			errObj, _ := m["error"].(map[string]any)
			if m["status"] != "failed" || errObj == nil {
				t.Fatalf("%v", m)
			}
			checkKeys(t, "task error", errObj, []string{"code", "message"}, nil)
		}},
		{name: "status unknown", r: req{method: "GET", path: "/status/01ZZZZZZZZZZZZZZZZZZZZZZZZ", header: key}, status: 404, code: "task_not_found"},
		{name: "status bad id shape", r: req{method: "GET", path: "/status/a.b", header: key}, status: 404, code: "task_not_found"},
		{name: "events done", r: req{method: "GET", path: "/events/" + done.ID, header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			if w.Header().Get("Content-Type") != "text/event-stream" || !strings.Contains(w.Body.String(), `"status":"done"`) {
				t.Errorf("%v %q", w.Header(), w.Body.String())
			}
		}},
		{name: "events unknown", r: req{method: "GET", path: "/events/nosuch", header: key}, status: 404, code: "task_not_found"},

		// Media.
		{name: "result done", r: req{method: "GET", path: "/results/" + done.ID + "?download=1", header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			h := w.Header()
			if h.Get("Content-Type") != "image/png" || h.Get("Accept-Ranges") != "bytes" || h.Get("ETag") == "" ||
				!strings.HasPrefix(h.Get("Content-Disposition"), "attachment") || w.Body.Len() != len(pngBytes) {
				t.Errorf("%v", h)
			}
		}},
		{name: "result range", r: req{method: "GET", path: "/results/" + done.ID, header: withKey(map[string]string{"Range": "bytes=0-3"})}, status: 206},
		{name: "result unsatisfiable range", r: req{method: "GET", path: "/results/" + done.ID, header: withKey(map[string]string{"Range": "bytes=999999-"})},
			status: 416, code: "validation_failed", field: "Range", check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if w.Header().Get("Content-Range") != fmt.Sprintf("bytes */%d", len(pngBytes)) {
					t.Errorf("Content-Range %q", w.Header().Get("Content-Range"))
				}
			}},
		{name: "result failed If-Match", r: req{method: "GET", path: "/results/" + done.ID, header: withKey(map[string]string{"If-Match": `"other"`})},
			status: 412, code: "validation_failed", field: "If-Match"},
		{name: "unknown field that looks like a secret is not echoed", r: req{method: "PATCH", path: acct(simAcc.ID, ""), cookies: ac, body: `{"Xy9-secret-value-42":1}`},
			status: 400, code: "validation_failed", field: "(unknown)", check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if strings.Contains(w.Body.String(), "Xy9-secret") || strings.Contains(e.logs.String(), "Xy9-secret") {
					t.Error("the unknown key was echoed")
				}
			}},
		// POST /generate follows the admin routes' echo rule: a key that could
		// be a pasted secret is not repeated, as a field, a parameter or a duplicate.
		{name: "generate unknown field that looks like a secret is not echoed", r: req{method: "POST", path: "/generate", header: key,
			body: `{"model":"flux","mode":"t2i","prompt":"x","Xy9-secret-value-43":1}`},
			status: 400, code: "validation_failed", field: "(unknown)", check: noEcho("Xy9-secret-value-43")},
		{name: "generate unknown param that looks like a secret is not echoed", r: req{method: "POST", path: "/generate", header: key,
			body: `{"model":"flux","mode":"t2i","prompt":"x","params":{"Xy9-secret-value-44":1}}`},
			status: 400, code: "validation_failed", field: "params.(unknown)", check: noEcho("Xy9-secret-value-44")},
		{name: "generate duplicate key that looks like a secret is not echoed", r: req{method: "POST", path: "/generate", header: key,
			body: `{"model":"flux","mode":"t2i","prompt":"x","Xy9-secret-value-45":1,"Xy9-secret-value-45":2}`},
			status: 400, code: "validation_failed", field: "(unknown)", check: noEcho("Xy9-secret-value-45")},
		{name: "preview done", r: req{method: "GET", path: "/preview/" + done.ID, header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			if ct := w.Header().Get("Content-Type"); ct != "image/png" && ct != "image/webp" && ct != "image/jpeg" {
				t.Errorf("preview type %q", ct)
			}
		}},
		{name: "result pending", r: req{method: "GET", path: "/results/" + pending.ID, header: key}, status: 409, code: "result_not_ready"},
		{name: "preview pending", r: req{method: "GET", path: "/preview/" + pending.ID, header: key}, status: 409, code: "result_not_ready"},
		{name: "result processing (the workspace has nothing yet)", r: req{method: "GET", path: "/results/" + processing.ID, header: key}, status: 409, code: "result_not_ready"},
		{name: "result failed", r: req{method: "GET", path: "/results/" + failed.ID, header: key}, status: 409, code: "task_failed", check: func(t *testing.T, w *httptest.ResponseRecorder) {
			if !strings.Contains(w.Body.String(), "ran out of memory") {
				t.Errorf("task_failed does not say why: %s", w.Body.String())
			}
		}},
		{name: "preview failed", r: req{method: "GET", path: "/preview/" + failed.ID, header: key}, status: 409, code: "task_failed"},
		{name: "result gone", r: req{method: "GET", path: "/results/" + gone.ID, header: key}, status: 410, code: "result_gone"},
		{name: "preview gone", r: req{method: "GET", path: "/preview/" + gone.ID, header: key}, status: 410, code: "result_gone"},
		{name: "result unknown", r: req{method: "GET", path: "/results/nosuch", header: key}, status: 404, code: "task_not_found"},
		{name: "preview unknown", r: req{method: "GET", path: "/preview/nosuch", header: key}, status: 404, code: "task_not_found"},

		// Gallery.
		{name: "gallery page", r: req{method: "GET", path: "/gallery?limit=1", header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, []string{"items", "next_cursor"}, nil)
			items, _ := m["items"].([]any)
			if len(items) != 1 || m["next_cursor"] == nil {
				t.Fatalf("%v", m)
			}
			checkKeys(t, "gallery item", items[0].(map[string]any), taskViewKeys, taskViewOptional)
			w2 := e.do(req{method: "GET", path: "/gallery?limit=100&cursor=" + fmt.Sprint(m["next_cursor"]), header: key})
			m2 := decodeMap(t, w2)
			if items2, _ := m2["items"].([]any); w2.Code != 200 || len(items2) == 0 {
				t.Errorf("second page: %d %v", w2.Code, m2)
			}
			if _, ok := m2["next_cursor"]; !ok {
				t.Error("last page lacks next_cursor")
			}
		}},
		{name: "gallery done only", r: req{method: "GET", path: "/gallery", header: key}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			var p galleryPage
			json.Unmarshal(w.Body.Bytes(), &p)
			for _, it := range p.Items {
				if it.Status != "done" {
					t.Errorf("gallery lists a %s task", it.Status)
				}
			}
			if len(p.Items) < 3 || p.NextCursor != nil {
				t.Errorf("gallery: %d items, cursor %v", len(p.Items), p.NextCursor)
			}
		}},
		{name: "gallery limit 0", r: req{method: "GET", path: "/gallery?limit=0", header: key}, status: 400, code: "validation_failed", field: "limit"},
		{name: "gallery limit 101", r: req{method: "GET", path: "/gallery?limit=101", header: key}, status: 400, code: "validation_failed", field: "limit"},
		{name: "gallery bad cursor", r: req{method: "GET", path: "/gallery?cursor=..%2F", header: key}, status: 400, code: "validation_failed", field: "cursor"},
		{name: "gallery made-up cursor", r: req{method: "GET", path: "/gallery?cursor=zzz", header: key}, status: 400, code: "validation_failed", field: "cursor"},
		{name: "gallery delete pending", r: req{method: "DELETE", path: "/gallery/" + pending.ID, header: key}, status: 409, code: "task_not_done"},
		{name: "gallery delete failed", r: req{method: "DELETE", path: "/gallery/" + failed.ID, header: key}, status: 409, code: "task_not_done"},
		{name: "gallery delete processing", r: req{method: "DELETE", path: "/gallery/" + processing.ID, header: key}, status: 409, code: "task_not_done"},
		{name: "gallery delete unknown", r: req{method: "DELETE", path: "/gallery/nosuch", header: key}, status: 404, code: "task_not_found"},
		{name: "gallery delete done", r: req{method: "DELETE", path: "/gallery/" + toDelete.ID, header: key}, status: 204, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			if _, err := os.Stat(filepath.Join(e.dataDir, "media", toDelete.ID+".png")); !os.IsNotExist(err) {
				t.Errorf("result file still there: %v", err)
			}
		}},

		// Admin health, logs.
		{name: "GET /admin/health", r: req{method: "GET", path: "/admin/health", cookies: ac}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, []string{"status", "version", "uptime_seconds", "database", "disk_free_bytes", "media_dir",
				"queue_depth", "oldest_pending_age_seconds", "accounts", "last_reaper_run"}, []string{"tasks"})
			accs, _ := m["accounts"].(map[string]any)
			for _, s := range []string{"pending", "ready", "failed", "disabled"} {
				if _, ok := accs[s]; !ok {
					t.Errorf("accounts lacks %s: %v", s, accs)
				}
			}
			if m["queue_depth"].(float64) < 1 || m["oldest_pending_age_seconds"] == nil {
				t.Errorf("queue: %v %v", m["queue_depth"], m["oldest_pending_age_seconds"])
			}
		}},
		{name: "GET /admin/logs", r: req{method: "GET", path: "/admin/logs?limit=2", cookies: ac}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, []string{"items", "next_cursor"}, nil)
			items, _ := m["items"].([]any)
			if len(items) != 2 || m["next_cursor"] == nil {
				t.Fatalf("%v", m)
			}
			for _, it := range items {
				checkKeys(t, "audit event", it.(map[string]any), auditKeys, nil)
			}
			if a, b := items[0].(map[string]any)["id"].(float64), items[1].(map[string]any)["id"].(float64); a <= b {
				t.Errorf("not newest first: %v then %v", a, b)
			}
		}},
		{name: "GET /admin/logs filtered", before: []req{{method: "POST", path: "/admin/session", remote: "198.51.100.81:9", header: map[string]string{"X-Admin-Key": "wrong"}}}, r: req{method: "GET", path: "/admin/logs?action=admin.login&outcome=failure&since=2026-01-01T00:00:00Z", cookies: ac}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			var p struct{ Items []AuditView }
			json.Unmarshal(w.Body.Bytes(), &p)
			if len(p.Items) == 0 {
				t.Error("no failed admin logins listed")
			}
			for _, it := range p.Items {
				if it.Action != "admin.login" || it.Outcome != "failure" {
					t.Errorf("filter leaked %s/%s", it.Action, it.Outcome)
				}
			}
		}},
		{name: "GET /admin/logs limit 501", r: req{method: "GET", path: "/admin/logs?limit=501", cookies: ac}, status: 400, code: "validation_failed", field: "limit"},
		{name: "GET /admin/logs bad outcome", r: req{method: "GET", path: "/admin/logs?outcome=maybe", cookies: ac}, status: 400, code: "validation_failed", field: "outcome"},
		{name: "GET /admin/logs bad since", r: req{method: "GET", path: "/admin/logs?since=yesterday", cookies: ac}, status: 400, code: "validation_failed", field: "since"},
		{name: "GET /admin/logs bad cursor", r: req{method: "GET", path: "/admin/logs?cursor=-4", cookies: ac}, status: 400, code: "validation_failed", field: "cursor"},
		{name: "GET /admin/logs/verify", r: req{method: "GET", path: "/admin/logs/verify", cookies: ac}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, []string{"ok", "checked", "first_bad_id"}, nil)
			if m["ok"] != true || m["checked"].(float64) < 1 || m["first_bad_id"] != nil {
				t.Errorf("%v", m)
			}
		}},

		// Worker accounts.
		{name: "list accounts", r: req{method: "GET", path: "/admin/accounts", cookies: ac}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, []string{"items"}, nil)
			items, _ := m["items"].([]any)
			if len(items) != 4 { // the four registered above: sim-one, deploy-me, delete-me, delete-me-twice
				t.Errorf("%d accounts, want 4", len(items))
			}
			for _, it := range items {
				checkAccount(t, "listed account", it.(map[string]any))
			}
		}},
		{name: "create account", r: req{method: "POST", path: "/admin/accounts", cookies: ac,
			body: `{"name":"Main GPU","workspace":"main-gpu","credentials":{"token_id":"abc1","proxy_key":"k1"},"capacity":2}`}, status: 201,
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				m := decodeMap(t, w)
				checkAccount(t, "created account", m)
				if m["has_credentials"] != true || m["status"] != "pending" || m["capacity"] != float64(2) || m["workspace"] != "main-gpu" {
					t.Errorf("%v", m)
				}
			}},
		{name: "create account default capacity", r: req{method: "POST", path: "/admin/accounts", cookies: ac,
			body: `{"name":"Second","workspace":"second-gpu","credentials":{},"base_url":"https://gpu.example.com"}`}, status: 201,
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if m := decodeMap(t, w); m["capacity"] != float64(1) || m["has_credentials"] != false || m["base_url"] != "https://gpu.example.com" {
					t.Errorf("%v", m)
				}
			}},
		{name: "create duplicate name", before: []req{{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"name":"Dup GPU","workspace":"dup-gpu","credentials":{}}`}},
			r: req{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"name":"Dup GPU","workspace":"dup-gpu-2","credentials":{}}`}, status: 400, code: "validation_failed", field: "name"},
		{name: "create without name", r: req{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"workspace":"abc","credentials":{}}`}, status: 400, code: "validation_failed", field: "name"},
		{name: "create without workspace", r: req{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"name":"x","credentials":{}}`}, status: 400, code: "validation_failed", field: "workspace"},
		{name: "create bad workspace", r: req{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"name":"x","workspace":"Bad_Name","credentials":{}}`}, status: 400, code: "validation_failed", field: "workspace"},
		{name: "create without credentials", r: req{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"name":"x","workspace":"abc"}`}, status: 400, code: "validation_failed", field: "credentials"},
		{name: "create credentials not strings", r: req{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"name":"x","workspace":"abc","credentials":{"token_id":1}}`}, status: 400, code: "validation_failed", field: "credentials"},
		{name: "create http base_url", r: req{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"name":"x","workspace":"abc","credentials":{},"base_url":"http://gpu.example.com"}`}, status: 400, code: "validation_failed", field: "base_url"},
		{name: "create capacity 0", r: req{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"name":"x","workspace":"abc","credentials":{},"capacity":0}`}, status: 400, code: "validation_failed", field: "capacity"},
		{name: "create unknown field", r: req{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"name":"x","workspace":"abc","credentials":{},"status":"ready"}`}, status: 400, code: "validation_failed", field: "status"},
		{name: "create malformed", r: req{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"name":`}, status: 400, code: "invalid_json"},
		{name: "create empty body", r: req{method: "POST", path: "/admin/accounts", cookies: ac}, status: 400, code: "invalid_json"},
		{name: "create oversize", r: req{method: "POST", path: "/admin/accounts", cookies: ac, body: `{"name":"` + strings.Repeat("a", 70<<10) + `"}`}, status: 413, code: "payload_too_large"},
		{name: "get account", r: req{method: "GET", path: acct(simAcc.ID, ""), cookies: ac}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := decodeMap(t, w)
			checkAccount(t, "account", m)
			if m["status"] != "ready" || m["last_health_check_at"] == nil {
				t.Errorf("%v", m)
			}
		}},
		{name: "get unknown account", r: req{method: "GET", path: "/admin/accounts/999999", cookies: ac}, status: 404, code: "account_not_found"},
		{name: "get account id not a number", r: req{method: "GET", path: "/admin/accounts/abc", cookies: ac}, status: 404, code: "account_not_found"},
		{name: "get account id 0", r: req{method: "GET", path: "/admin/accounts/0", cookies: ac}, status: 404, code: "account_not_found"},
		{name: "get account id with leading zero", r: req{method: "GET", path: fmt.Sprintf("/admin/accounts/0%d", simAcc.ID), cookies: ac}, status: 404, code: "account_not_found"},
		{name: "patch account", r: req{method: "PATCH", path: acct(simAcc.ID, ""), cookies: ac, body: `{"name":"Sim renamed","capacity":3}`}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := decodeMap(t, w)
			checkAccount(t, "patched account", m)
			if m["name"] != "Sim renamed" || m["capacity"] != float64(3) || m["status"] != "ready" {
				t.Errorf("%v", m)
			}
		}},
		{name: "patch nothing", r: req{method: "PATCH", path: acct(simAcc.ID, ""), cookies: ac, body: `{}`}, status: 400, code: "validation_failed"},
		{name: "patch status ready", r: req{method: "PATCH", path: acct(simAcc.ID, ""), cookies: ac, body: `{"status":"ready"}`}, status: 400, code: "validation_failed", field: "status"},
		{name: "patch capacity type", r: req{method: "PATCH", path: acct(simAcc.ID, ""), cookies: ac, body: `{"capacity":"3"}`}, status: 400, code: "validation_failed", field: "capacity"},
		{name: "patch workspace", r: req{method: "PATCH", path: acct(simAcc.ID, ""), cookies: ac, body: `{"workspace":"other"}`}, status: 400, code: "validation_failed", field: "workspace"},
		{name: "patch credentials not an object", r: req{method: "PATCH", path: acct(simAcc.ID, ""), cookies: ac, body: `{"credentials":"x"}`}, status: 400, code: "validation_failed", field: "credentials",
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if !strings.Contains(w.Body.String(), "credentials must be an object") {
					t.Errorf("message: %s", w.Body.String())
				}
			}},
		{name: "patch capacity out of any range", r: req{method: "PATCH", path: acct(simAcc.ID, ""), cookies: ac, body: `{"capacity":1e100}`}, status: 400, code: "validation_failed", field: "capacity",
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if !strings.Contains(w.Body.String(), "capacity must be a whole number in range") {
					t.Errorf("message: %s", w.Body.String())
				}
			}},
		{name: "patch malformed", r: req{method: "PATCH", path: acct(simAcc.ID, ""), cookies: ac, body: `{`}, status: 400, code: "invalid_json"},
		{name: "patch unknown account", r: req{method: "PATCH", path: "/admin/accounts/999999", cookies: ac, body: `{"name":"x"}`}, status: 404, code: "account_not_found"},
		{name: "health-check", r: req{method: "POST", path: acct(simAcc.ID, "/health-check"), cookies: ac}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := decodeMap(t, w)
			checkAccount(t, "checked account", m)
			if m["status"] != "ready" {
				t.Errorf("%v", m)
			}
		}},
		{name: "health-check unknown", r: req{method: "POST", path: "/admin/accounts/999999/health-check", cookies: ac}, status: 404, code: "account_not_found"},
		{name: "deploy", r: req{method: "POST", path: acct(deployAcc.ID, "/deploy"), cookies: ac}, status: 202, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := decodeMap(t, w)
			checkAccount(t, "deploying account", m)
			if m["deploy_status"] != "running" {
				t.Errorf("deploy_status %v", m["deploy_status"])
			}
		}},
		{name: "deploy unknown", r: req{method: "POST", path: "/admin/accounts/999999/deploy", cookies: ac}, status: 404, code: "account_not_found"},
		{name: "delete account", r: req{method: "DELETE", path: acct(deleteAcc.ID, ""), cookies: ac}, status: 204},
		{name: "delete account twice", before: []req{{method: "DELETE", path: acct(deleteTwiceAcc.ID, ""), cookies: ac}},
			r: req{method: "DELETE", path: acct(deleteTwiceAcc.ID, ""), cookies: ac}, status: 404, code: "account_not_found"},
		{name: "disable unknown account", r: req{method: "PATCH", path: acct(deleteAcc.ID+1000, ""), cookies: ac, body: `{"status":"disabled"}`}, status: 404, code: "account_not_found"},

		{name: "DELETE /auth/session", r: req{method: "DELETE", path: "/auth/session", cookies: []*http.Cookie{e.userSession()}}, status: 204},
		{name: "DELETE /admin/session", r: req{method: "DELETE", path: "/admin/session", cookies: []*http.Cookie{e.adminSession()}}, status: 204},
	}...)

	names := map[string]bool{}
	for _, c := range cases {
		if names[c.name] {
			t.Fatalf("two cases are named %q: each must be runnable alone", c.name)
		}
		names[c.name] = true
	}
	ran := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ran++
			env := envs[c.env]
			for i, b := range c.before {
				if w := env.do(b); w.Code >= 500 || w.Code == 429 {
					t.Fatalf("setup request %d (%s %s) got %d %s", i+1, b.method, b.path, w.Code, w.Body.String())
				}
			}
			for i := 0; i < c.warm; i++ {
				if w := env.do(c.r); w.Code >= 500 || w.Code == 429 {
					t.Fatalf("warm-up request %d got %d %s", i+1, w.Code, w.Body.String())
				}
			}
			w := env.do(c.r)
			checkOpenAPI(t, c.name, c.r, w) // the answer is one docs/openapi.json describes (openapi_test.go)
			code := errCode(t, w)
			if w.Code != c.status || code != c.code {
				t.Fatalf("%d %q, want %d %q (%.200s)", w.Code, code, c.status, c.code, w.Body.String())
			}
			if w.Header().Get("X-Correlation-ID") == "" {
				t.Error("no X-Correlation-ID")
			}
			if c.code == "cors_origin_blocked" {
				for k := range w.Header() {
					if strings.HasPrefix(k, "Access-Control-Allow") {
						t.Errorf("blocked answer carries %s", k)
					}
				}
			}
			if c.field != "" {
				var b errorBody
				json.Unmarshal(w.Body.Bytes(), &b)
				if b.Error.Details["field"] != c.field {
					t.Errorf("details %v, want field %q", b.Error.Details, c.field)
				}
			}
			if c.check != nil {
				c.check(t, w)
			}
		})
	}

	// SC-007 over everything the table wrote: this subtest reads the audit
	// rows and log lines of all the cases above, so it runs last and needs
	// the whole table (a case filter that selects it alone is refused).
	t.Run("audit trail of the table", func(t *testing.T) {
		if ran != len(cases) {
			t.Fatalf("only %d of %d cases ran: this check reads what the whole table wrote; run TestContractConformance without a case filter", ran, len(cases))
		}
		// The deploy ends on its own; its result is audited.
		waitDeploy(t, e.testEnv, deployAcc.ID)
		checkAuditRows(t, e.testEnv, []string{"admin.login", "account.create", "account.update", "account.health_check",
			"account.deploy", "account.delete", "session.issue", "session.revoke", "security.throttled", "security.cors_blocked",
			"invite.create", "invite.revoke", "invite.use"})
		checkAuditLines(t, e.logs.String())
		checkAuditLines(t, closed.logs.String())
	})
}

// repeat is n copies of r.
func repeat(n int, r req) []req {
	out := make([]req, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func retryAfter(t *testing.T, w *httptest.ResponseRecorder) {
	if ra := w.Header().Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
}

// waitDeploy waits (on the real clock) until a deploy has ended and done all
// it does afterwards: its account.deploy audit row is written and, after a
// success, the follow-up health check has run.
func waitDeploy(t *testing.T, e *testEnv, id int64) *store.Account {
	t.Helper()
	ctx := context.Background()
	var a *store.Account
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("the deploy of account %d and its follow-up", id), func() bool {
		var err error
		if a, err = e.db.GetAccount(ctx, id); err != nil {
			t.Fatal(err)
		}
		if a.DeployStatus == "running" || a.DeployStatus == "" {
			return false
		}
		if a.DeployStatus == "succeeded" && (a.LastHealthCheckAt.IsZero() || a.LastHealthCheckAt.Before(a.LastDeployAt)) {
			return false
		}
		rows, _, err := e.db.ListAudit(ctx, store.AuditFilter{Action: "account.deploy", Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Target == fmt.Sprintf("account:%d", id) {
				return true
			}
		}
		return false
	})
	return a
}

// checkAuditRows reads every audit row and checks the mandatory fields and
// that each wanted action occurred.
func checkAuditRows(t *testing.T, e *testEnv, wantActions []string) []*store.AuditEvent {
	t.Helper()
	var all []*store.AuditEvent
	var cursor int64
	for {
		items, next, err := e.db.ListAudit(context.Background(), store.AuditFilter{Limit: 500, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, items...)
		if next == 0 {
			break
		}
		cursor = next
	}
	seen := map[string]bool{}
	for _, ev := range all {
		seen[ev.Action] = true
		for name, v := range map[string]string{"actor": ev.Actor, "source": ev.Source, "action": ev.Action, "target": ev.Target,
			"outcome": ev.Outcome, "correlation_id": ev.CorrelationID} {
			if strings.TrimSpace(v) == "" {
				t.Errorf("audit row %d (%s) has an empty %s", ev.ID, ev.Action, name)
			}
		}
		if ev.Timestamp.IsZero() {
			t.Errorf("audit row %d (%s) has no timestamp", ev.ID, ev.Action)
		}
		switch ev.Outcome {
		case "success", "failure", "denied":
		default:
			t.Errorf("audit row %d outcome %q", ev.ID, ev.Outcome)
		}
	}
	for _, a := range wantActions {
		if !seen[a] {
			t.Errorf("no audit row for %s", a)
		}
	}
	return all
}

// checkAuditLines checks every audit log line for the mandatory fields.
func checkAuditLines(t *testing.T, logs string) {
	t.Helper()
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %.120q", line)
			continue
		}
		if m["audit"] != true && !strings.HasPrefix(fmt.Sprint(m["msg"]), "audit") {
			continue
		}
		n++
		for _, k := range []string{"actor", "source", "action", "target", "outcome", "timestamp", "correlation_id"} {
			if s, _ := m[k].(string); strings.TrimSpace(s) == "" {
				t.Errorf("audit log line lacks %s: %.300s", k, line)
			}
		}
	}
	if n == 0 {
		t.Error("no audit log lines at all")
	}
}
