package server

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestUserAuthPrecedence walks the credential matrix of CONTRACT.md section 3
// over every user route: the first credential present decides and a wrong one
// never falls through to the next.
func TestUserAuthPrecedence(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := e.userSession()
	revoked := e.userSession()
	if w := e.do(req{method: "DELETE", path: "/auth/session", cookies: []*http.Cookie{revoked}}); w.Code != 204 {
		t.Fatalf("revoke: %d", w.Code)
	}
	tampered := *good
	tampered.Value = good.Value[:len(good.Value)-4] + "AAAA"
	garbage := &http.Cookie{Name: "gg_session", Value: "%%%not-a-cookie"}
	key := e.sec.APIKey

	routes := []struct{ method, path, passCode string }{
		{"GET", "/status/nosuchtask", "task_not_found"},
		{"GET", "/events/nosuchtask", "task_not_found"},
		{"GET", "/results/nosuchtask", "task_not_found"},
		{"GET", "/preview/nosuchtask", "task_not_found"},
		{"DELETE", "/gallery/nosuchtask", "task_not_found"},
		{"GET", "/gallery", ""},
		{"POST", "/generate", "invalid_json"},
	}
	creds := []struct {
		name    string
		header  map[string]string
		multi   http.Header
		query   string
		cookies []*http.Cookie
		want    string // "" = passes auth
	}{
		{"nothing", nil, nil, "", nil, "session_required"},
		{"right header", map[string]string{"X-API-Key": key}, nil, "", nil, ""},
		{"wrong header", map[string]string{"X-API-Key": "wrong"}, nil, "", nil, "invalid_api_key"},
		{"empty header", map[string]string{"X-API-Key": ""}, nil, "", nil, "invalid_api_key"},
		{"wrong header, right query", map[string]string{"X-API-Key": "wrong"}, nil, "api_key=" + key, nil, "invalid_api_key"},
		{"wrong header, live cookie", map[string]string{"X-API-Key": "wrong"}, nil, "", []*http.Cookie{good}, "invalid_api_key"},
		{"right header, tampered cookie", map[string]string{"X-API-Key": key}, nil, "", []*http.Cookie{&tampered}, ""},
		{"right query", nil, nil, "api_key=" + key, nil, ""},
		{"wrong query", nil, nil, "api_key=nope", nil, "invalid_api_key"},
		{"empty query", nil, nil, "api_key=", nil, "invalid_api_key"},
		{"wrong query, live cookie", nil, nil, "api_key=nope", []*http.Cookie{good}, "invalid_api_key"},
		{"live cookie", nil, nil, "", []*http.Cookie{good}, ""},
		{"tampered cookie", nil, nil, "", []*http.Cookie{&tampered}, "session_expired"},
		{"garbage cookie", nil, nil, "", []*http.Cookie{garbage}, "session_expired"},
		{"revoked cookie", nil, nil, "", []*http.Cookie{revoked}, "session_expired"},
		{"admin key header grants nothing", map[string]string{"X-Admin-Key": e.sec.AdminKey}, nil, "", nil, "session_required"},
		// X-API-Key sent twice is one ambiguous credential: never decided by
		// the first value alone, and a wrong value never falls through.
		{"header twice, right then wrong", nil, http.Header{"X-Api-Key": {key, "wrong"}}, "", nil, "invalid_api_key"},
		{"header twice, wrong then right", nil, http.Header{"X-Api-Key": {"wrong", key}}, "", nil, "invalid_api_key"},
		{"header twice, right both times", nil, http.Header{"X-Api-Key": {key, key}}, "", nil, "invalid_api_key"},
		{"header twice, right then wrong, live cookie", nil, http.Header{"X-Api-Key": {key, "wrong"}}, "", []*http.Cookie{good}, "invalid_api_key"},
		{"query twice, right then wrong", nil, nil, "api_key=" + key + "&api_key=wrong", nil, "invalid_api_key"},
	}
	for _, rt := range routes {
		for _, c := range creds {
			path := rt.path
			if c.query != "" {
				path += "?" + c.query
			}
			w := e.do(req{method: rt.method, path: path, header: c.header, multi: c.multi, cookies: c.cookies})
			want := c.want
			if want == "" {
				want = rt.passCode
			}
			if got := errCode(t, w); got != want {
				t.Errorf("%s %s with %s: code %q (status %d), want %q", rt.method, rt.path, c.name, got, w.Code, want)
			}
		}
	}
}

func TestSessionLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.do(req{method: "POST", path: "/auth/session"})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"authenticated":true`) || !strings.Contains(w.Body.String(), `"expires_at":"2026-03-01T13:00:00Z"`) {
		t.Fatalf("issue: %d %s", w.Code, w.Body.String())
	}
	c := cookieOf(w, "gg_session")
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure {
		t.Errorf("cookie attributes: %+v", c)
	}
	if w := e.do(req{method: "GET", path: "/auth/session", cookies: []*http.Cookie{c}}); w.Code != 200 {
		t.Errorf("GET live session: %d", w.Code)
	}
	if w := e.do(req{method: "GET", path: "/auth/session"}); errCode(t, w) != "session_required" {
		t.Errorf("GET without cookie: %s", w.Body.String())
	}
	// The database keeps only a hash of the token.
	token, ok := decodeToken(e.srv.cookies, "gg_session", c.Value)
	if !ok {
		t.Fatal("cookie does not decode")
	}
	e.db.Close()
	db, err := os.ReadFile(e.dataDir + "/gooni.db")
	if err != nil || len(db) == 0 {
		t.Fatalf("read the database file: %v", err)
	}
	if strings.Contains(string(db), token) {
		t.Error("session token stored in the clear")
	}
}

func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.userSession()
	e.clock.Advance(59 * time.Minute)
	if w := e.do(req{method: "GET", path: "/gallery", cookies: []*http.Cookie{c}}); w.Code != 200 {
		t.Fatalf("before expiry: %d", w.Code)
	}
	e.clock.Advance(2 * time.Minute)
	if w := e.do(req{method: "GET", path: "/gallery", cookies: []*http.Cookie{c}}); errCode(t, w) != "session_expired" {
		t.Fatalf("after expiry: %s", w.Body.String())
	}
	// The UI reads details.session_mode to know whether asking again can work (API.md).
	if w := e.do(req{method: "GET", path: "/auth/session", cookies: []*http.Cookie{c}}); errCode(t, w) != "session_expired" ||
		!strings.Contains(w.Body.String(), `"session_mode":"open"`) {
		t.Fatalf("GET /auth/session after expiry: %s", w.Body.String())
	}
}

func TestSessionModeKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.SessionMode = "key" })
	cases := []struct {
		name   string
		header map[string]string
		want   int
		code   string
	}{
		{"no key", nil, 401, "session_required"},
		{"wrong key", map[string]string{"X-API-Key": "nope"}, 401, "invalid_api_key"},
		{"right key", map[string]string{"X-API-Key": e.sec.APIKey}, 200, ""},
	}
	for _, c := range cases {
		w := e.do(req{method: "POST", path: "/auth/session", header: c.header})
		if w.Code != c.want || errCode(t, w) != c.code {
			t.Errorf("%s: %d %s", c.name, w.Code, w.Body.String())
		}
	}
}

// TestFailClosedWhenSessionStoreUnreadable: with the database closed, a
// session cookie gets auth_unavailable, never anonymous access.
func TestFailClosedWhenSessionStoreUnreadable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.userSession()
	ac := e.adminSession()
	e.db.Close()
	if w := e.do(req{method: "GET", path: "/gallery", cookies: []*http.Cookie{c}}); w.Code != 503 || errCode(t, w) != "auth_unavailable" {
		t.Errorf("user route: %d %s", w.Code, w.Body.String())
	}
	if w := e.do(req{method: "GET", path: "/admin/accounts", cookies: []*http.Cookie{ac}}); w.Code != 503 || errCode(t, w) != "auth_unavailable" {
		t.Errorf("admin route: %d %s", w.Code, w.Body.String())
	}
	if w := e.do(req{method: "GET", path: "/health"}); w.Code != 503 {
		t.Errorf("health with a closed database: %d", w.Code)
	}
}

// TestAdminAuth: X-Admin-Key only in the header of POST /admin/session; every
// other admin route needs the admin session cookie.
func TestAdminAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	user := e.userSession()
	cases := []struct {
		name    string
		method  string
		path    string
		header  map[string]string
		cookies []*http.Cookie
		body    string
		code    string
	}{
		{"login without key", "POST", "/admin/session", nil, nil, "", "invalid_admin_key"},
		{"login with wrong key", "POST", "/admin/session", map[string]string{"X-Admin-Key": "nope"}, nil, "", "invalid_admin_key"},
		{"login with key in query", "POST", "/admin/session?admin_key=" + e.sec.AdminKey, nil, nil, "", "invalid_admin_key"},
		{"login with key in body", "POST", "/admin/session", map[string]string{"Content-Type": "application/json"}, nil, `{"admin_key":"` + e.sec.AdminKey + `"}`, "invalid_admin_key"},
		{"login with the API key", "POST", "/admin/session", map[string]string{"X-Admin-Key": e.sec.APIKey}, nil, "", "invalid_admin_key"},
		{"accounts without session", "GET", "/admin/accounts", nil, nil, "", "session_required"},
		{"accounts with admin key header", "GET", "/admin/accounts", map[string]string{"X-Admin-Key": e.sec.AdminKey}, nil, "", "session_required"},
		{"accounts with user session", "GET", "/admin/accounts", nil, []*http.Cookie{user}, "", "session_required"},
		{"accounts with API key", "GET", "/admin/accounts", map[string]string{"X-API-Key": e.sec.APIKey}, nil, "", "session_required"},
		{"logs with user cookie renamed", "GET", "/admin/logs", nil, []*http.Cookie{{Name: "gg_admin", Value: user.Value}}, "", "session_expired"},
		{"unknown admin path without session", "GET", "/admin/nothing", nil, nil, "", "session_required"},
	}
	for _, c := range cases {
		w := e.do(req{method: c.method, path: c.path, header: c.header, cookies: c.cookies, body: c.body})
		if got := errCode(t, w); got != c.code {
			t.Errorf("%s: %q (%d), want %q", c.name, got, w.Code, c.code)
		}
	}
	// The login answers the session it made: a UI shows when it ends.
	login := e.do(req{method: "POST", path: "/admin/session", header: map[string]string{"X-Admin-Key": e.sec.AdminKey}})
	if login.Code != 200 || !strings.Contains(login.Body.String(), `"authenticated":true`) ||
		!strings.Contains(login.Body.String(), `"expires_at":"2026-03-01T13:00:00Z"`) {
		t.Fatalf("admin login: %d %s", login.Code, login.Body.String())
	}
	ac := cookieOf(login, "gg_admin")
	if ac == nil {
		t.Fatal("admin login set no gg_admin cookie")
	}
	if !strings.Contains(e.logs.String(), `"action":"admin.login"`) {
		t.Error("admin login not audited in the log")
	}
	w := e.do(req{method: "GET", path: "/admin/accounts", cookies: []*http.Cookie{ac}})
	if w.Code != 200 {
		t.Fatalf("admin session: %d %s", w.Code, w.Body.String())
	}
	if w := e.do(req{method: "DELETE", path: "/admin/session", cookies: []*http.Cookie{ac}}); w.Code != 204 {
		t.Fatalf("logout: %d", w.Code)
	}
	if w := e.do(req{method: "GET", path: "/admin/accounts", cookies: []*http.Cookie{ac}}); errCode(t, w) != "session_expired" {
		t.Errorf("after logout: %s", w.Body.String())
	}
}

func TestMetricsNeedAdmin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.readyAccount()
	e.do(req{method: "POST", path: "/generate", header: map[string]string{"X-API-Key": e.sec.APIKey}, body: `{"model":"pony","mode":"t2i","prompt":"x"}`})
	if w := e.do(req{method: "GET", path: "/metrics", cookies: []*http.Cookie{e.userSession()}}); errCode(t, w) != "session_required" {
		t.Fatalf("user session on /metrics: %s", w.Body.String())
	}
	w := e.do(req{method: "GET", path: "/metrics", cookies: []*http.Cookie{e.adminSession()}})
	body := w.Body.String()
	for _, want := range []string{
		`gooni_tasks{status="pending",type="image"} 1`,
		`gooni_queue_depth 1`,
		`gooni_worker_accounts{status="ready"} 1`,
		`gooni_http_requests_total{code="202",method="POST",route="/generate"} 1`,
		`gooni_http_requests_total{code="401",method="GET",route="/metrics"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestTLSCookiesAndHSTS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.TLS = true })
	w := e.do(req{method: "POST", path: "/auth/session"})
	if c := cookieOf(w, "gg_session"); c == nil || !c.Secure || !c.HttpOnly {
		t.Errorf("user cookie over TLS: %+v", c)
	}
	w = e.do(req{method: "POST", path: "/admin/session", header: map[string]string{"X-Admin-Key": e.sec.AdminKey}})
	if c := cookieOf(w, "gg_admin"); c == nil || !c.Secure || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("admin cookie over TLS: %+v", c)
	}
	if h := w.Header().Get("Strict-Transport-Security"); !strings.Contains(h, "max-age=") {
		t.Errorf("HSTS %q", h)
	}
	plain := newEnv(t)
	if h := plain.do(req{method: "GET", path: "/health"}).Header().Get("Strict-Transport-Security"); h != "" {
		t.Errorf("HSTS over plain HTTP: %q", h)
	}
}
