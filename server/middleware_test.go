package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gooni/internal/testutil"
)

// TestErrorShapes: every failing answer is the contract's JSON error with one
// code and a correlation id equal to the header.
func TestErrorShapes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	cases := []struct {
		name   string
		r      req
		status int
		code   string
	}{
		{"unknown route", req{method: "GET", path: "/nope"}, 404, "not_found"},
		{"unknown route with traversal", req{method: "GET", path: "/assets/../../etc/passwd"}, 404, "not_found"},
		{"wrong method", req{method: "PUT", path: "/health"}, 405, "method_not_allowed"},
		{"wrong method on a user route", req{method: "POST", path: "/status/x", header: key}, 405, "method_not_allowed"},
		{"malformed JSON", req{method: "POST", path: "/generate", header: key, body: `{"model":`}, 400, "invalid_json"},
		{"not an object", req{method: "POST", path: "/generate", header: key, body: `[1,2]`}, 400, "invalid_json"},
		{"oversize body", req{method: "POST", path: "/generate", header: key, body: `{"prompt":"` + strings.Repeat("a", 17<<20) + `"}`}, 413, "payload_too_large"},
		{"task id with bad characters", req{method: "GET", path: "/status/..%2f..%2fetc", header: key}, 404, "task_not_found"},
		{"task id too long", req{method: "GET", path: "/status/" + strings.Repeat("a", 65), header: key}, 404, "task_not_found"},
		// An empty id matches no route, but it is an id outside the pattern.
		{"empty task id in a status", req{method: "GET", path: "/status/", header: key}, 404, "task_not_found"},
		{"empty task id in a result", req{method: "GET", path: "/results/", header: key}, 404, "task_not_found"},
		{"empty task id in a preview", req{method: "GET", path: "/preview/", header: key}, 404, "task_not_found"},
		{"empty task id in an input", req{method: "GET", path: "/inputs/", header: key}, 404, "task_not_found"},
		{"empty task id in a stream", req{method: "GET", path: "/events/", header: key}, 404, "task_not_found"},
		{"empty task id in a cancel", req{method: "POST", path: "/tasks//cancel", header: key}, 404, "task_not_found"},
		{"empty task id in a gallery delete", req{method: "DELETE", path: "/gallery/", header: key}, 404, "task_not_found"},
		{"a route's prefix is still no route", req{method: "GET", path: "/status", header: key}, 404, "not_found"},
		{"bad gallery limit", req{method: "GET", path: "/gallery?limit=0", header: key}, 400, "validation_failed"},
		{"huge gallery limit", req{method: "GET", path: "/gallery?limit=99999999999999999999", header: key}, 400, "validation_failed"},
		{"bad gallery cursor", req{method: "GET", path: "/gallery?cursor=%00", header: key}, 400, "validation_failed"},
		{"account id not a number", req{method: "GET", path: "/admin/accounts/abc"}, 401, "session_required"},
	}
	for _, c := range cases {
		w := e.do(c.r)
		if w.Code != c.status || errCode(t, w) != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, w.Code, w.Body.String(), c.status, c.code)
		}
	}
}

func TestRecoveredPanicIsInternalError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.srv.correlate(e.srv.recoverPanics(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom: secret detail") })))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
	if w.Code != 500 || errCode(t, w) != "internal" || strings.Contains(w.Body.String(), "boom") {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
	if !strings.Contains(e.logs.String(), "boom") {
		t.Error("panic not logged for the operator")
	}
}

func TestCorrelationID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct{ in, want string }{
		{"abc-123_X.y", "abc-123_X.y"},
		{"", ""},
		{"has space", ""},
		{strings.Repeat("a", 65), ""},
		{"\xff\xfe", ""},
		{"<script>", ""},
	}
	for _, c := range cases {
		w := e.do(req{method: "GET", path: "/nope", header: map[string]string{"X-Correlation-ID": c.in}})
		got := w.Header().Get("X-Correlation-ID")
		if c.want != "" && got != c.want {
			t.Errorf("%q: got %q", c.in, got)
		}
		if c.want == "" && (got == "" || got == c.in || !validCorrelationID(got)) {
			t.Errorf("%q not replaced: %q", c.in, got)
		}
		errCode(t, w)
	}
	if w := e.do(req{method: "GET", path: "/health"}); w.Header().Get("X-Correlation-ID") == "" {
		t.Error("success without correlation id")
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.FrontendOrigins = []string{"https://app.example.com"} })
	pre := func(origin string) req {
		return req{method: "OPTIONS", path: "/generate", header: map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST"}}
	}
	// Allowed origin, preflight.
	w := e.do(pre("https://app.example.com"))
	h := w.Header()
	if w.Code != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" || h.Get("Access-Control-Allow-Credentials") != "true" ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "X-API-Key") || !strings.Contains(h.Get("Vary"), "Origin") ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") {
		t.Errorf("allowed preflight: %d %v", w.Code, h)
	}
	// Allowed origin, actual request.
	w = e.do(req{method: "GET", path: "/health", header: map[string]string{"Origin": "https://app.example.com"}})
	if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("allowed request: %d %v", w.Code, w.Header())
	}
	// Same origin passes without CORS headers.
	w = e.do(req{method: "GET", path: "/health", header: map[string]string{"Origin": "http://example.com"}})
	if w.Code != 200 || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("same origin: %d %v", w.Code, w.Header())
	}
	// Everything else is blocked, preflight or not, with no CORS headers.
	for _, o := range []string{"https://evil.example", "null", "", "https://app.example.com.evil", "HTTPS://APP.EXAMPLE.COM", "https://app.example.com/", "\xff"} {
		for _, r := range []req{pre(o), {method: "GET", path: "/health", header: map[string]string{"Origin": o}}} {
			w := e.do(r)
			if w.Code != 403 || errCode(t, w) != "cors_origin_blocked" {
				t.Errorf("origin %q %s: %d %s", o, r.method, w.Code, w.Body.String())
			}
			for k := range w.Header() {
				if strings.HasPrefix(k, "Access-Control-Allow") {
					t.Errorf("origin %q got %s", o, k)
				}
			}
		}
	}
	if !strings.Contains(e.logs.String(), `"action":"security.cors_blocked"`) {
		t.Error("CORS denial not audited")
	}
	// Same origin means same scheme, host and port: an http page is not the
	// origin of a server reached over https, nor one on another port.
	for _, o := range []string{"https://example.com", "http://example.com:8080", "http://EXAMPLE.com.evil", "ws://example.com"} {
		w := e.do(req{method: "GET", path: "/health", header: map[string]string{"Origin": o}})
		if w.Code != 403 || errCode(t, w) != "cors_origin_blocked" {
			t.Errorf("origin %q against http://example.com: %d %s, want 403 cors_origin_blocked", o, w.Code, w.Body.String())
		}
	}
	// CORS is checked before throttling and auth: a blocked origin never reaches them.
	w = e.do(req{method: "GET", path: "/gallery", header: map[string]string{"Origin": "https://evil.example"}})
	if errCode(t, w) != "cors_origin_blocked" {
		t.Errorf("order: %s", w.Body.String())
	}
}

// TestSameOriginComparesTheScheme: behind TLS (served directly or declared
// with Config.TLS) the server's own origin is https://host; an http:// page
// on the same host is cross-origin and blocked, an https:// one passes.
func TestSameOriginComparesTheScheme(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		tls    bool // Config.TLS (TLS terminated by the server itself)
		direct bool // the request arrived over TLS (r.TLS set)
	}{
		{"Config.TLS", true, false},
		{"request over TLS", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.TLS = tc.tls })
			for _, c := range []struct {
				origin string
				want   int
			}{
				{"https://example.com", 200},
				{"http://example.com", 403},
				{"https://example.com:8443", 403},
			} {
				r := httptest.NewRequest("GET", "/health", nil)
				if tc.direct {
					r = httptest.NewRequest("GET", "https://example.com/health", nil)
				}
				r.Header.Set("Origin", c.origin)
				w := httptest.NewRecorder()
				e.h.ServeHTTP(w, r)
				if w.Code != c.want {
					t.Errorf("origin %q against https://example.com: %d %s, want %d", c.origin, w.Code, w.Body.String(), c.want)
				}
				if c.want == 403 && errCode(t, w) != "cors_origin_blocked" {
					t.Errorf("origin %q: code %s", c.origin, errCode(t, w))
				}
				if w.Header().Get("Access-Control-Allow-Origin") != "" {
					t.Errorf("origin %q got Access-Control-Allow-Origin", c.origin)
				}
			}
		})
	}
}

// TestRollingWindowLimiter: never more than N admitted in any window span.
func TestRollingWindowLimiter(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock(time.Unix(1000, 0))
	l := NewLimiter(3, time.Minute, clk.Now, 0)
	at := func(sec int) (bool, time.Duration, bool) {
		clk.Set(time.Unix(1000+int64(sec), 0))
		return l.Allow("k")
	}
	steps := []struct {
		sec   int
		ok    bool
		first bool
		retry time.Duration
	}{
		{0, true, false, 0},
		{10, true, false, 0},
		{59, true, false, 0},
		{59, false, true, 1 * time.Second},  // 3 in [0,59]
		{60, true, false, 0},                // the one at 0 left the window
		{61, false, false, 9 * time.Second}, // 10, 59, 60 inside; not the first rejection
		{69, false, false, 1 * time.Second},
		{70, true, false, 0},
		{200, true, false, 0},
	}
	for i, s := range steps {
		ok, retry, first := at(s.sec)
		if ok != s.ok || first != s.first || retry != s.retry {
			t.Errorf("step %d at %ds: ok=%v retry=%v first=%v, want %v %v %v", i, s.sec, ok, retry, first, s.ok, s.retry, s.first)
		}
	}
	if ok, _, _ := l.Allow("other"); !ok {
		t.Error("keys are not independent")
	}
}

func TestAuthSessionThrottle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ip := func(s string) req { return req{method: "POST", path: "/auth/session", remote: s + ":5555"} }
	for i := 0; i < 10; i++ {
		if w := e.do(ip("198.51.100.7")); w.Code != 200 {
			t.Fatalf("request %d: %d", i+1, w.Code)
		}
		e.clock.Advance(time.Second)
	}
	w := e.do(ip("198.51.100.7"))
	if w.Code != 429 || errCode(t, w) != "rate_limited" || w.Header().Get("Retry-After") != "50" {
		t.Fatalf("11th: %d %s retry %q", w.Code, w.Body.String(), w.Header().Get("Retry-After"))
	}
	// The limit is per client IP.
	if w := e.do(ip("198.51.100.8")); w.Code != 200 {
		t.Errorf("another IP is throttled: %d", w.Code)
	}
	e.clock.Advance(50 * time.Second)
	if w := e.do(ip("198.51.100.7")); w.Code != 200 {
		t.Errorf("after the window: %d", w.Code)
	}
	if n := strings.Count(e.logs.String(), `"action":"security.throttled"`); n != 1 {
		t.Errorf("%d throttle audit lines, want 1", n)
	}
}

func TestAdminThrottles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Login: 30 per rolling 60 s per IP, wrong keys count too, checked before the key.
	for i := 0; i < 30; i++ {
		w := e.do(req{method: "POST", path: "/admin/session", remote: "198.51.100.9:1", header: map[string]string{"X-Admin-Key": "wrong"}})
		if errCode(t, w) != "invalid_admin_key" {
			t.Fatalf("login %d: %s", i+1, w.Body.String())
		}
	}
	w := e.do(req{method: "POST", path: "/admin/session", remote: "198.51.100.9:1", header: map[string]string{"X-Admin-Key": e.sec.AdminKey}})
	if errCode(t, w) != "rate_limited" {
		t.Fatalf("31st login: %s", w.Body.String())
	}
	// Other admin routes: 120 per rolling 60 s per admin session.
	ac := e.adminSession()
	for i := 0; i < 120; i++ {
		if w := e.do(req{method: "GET", path: "/admin/logs/verify", cookies: []*http.Cookie{ac}}); w.Code != 200 {
			t.Fatalf("admin request %d: %d %s", i+1, w.Code, w.Body.String())
		}
	}
	w = e.do(req{method: "GET", path: "/admin/accounts", cookies: []*http.Cookie{ac}})
	if errCode(t, w) != "rate_limited" || w.Header().Get("Retry-After") == "" {
		t.Fatalf("121st admin request: %s", w.Body.String())
	}
	// Another session has its own budget.
	ac2 := e.adminSession()
	if w := e.do(req{method: "GET", path: "/admin/accounts", cookies: []*http.Cookie{ac2}}); w.Code != 200 {
		t.Errorf("second session: %d", w.Code)
	}
	e.clock.Advance(61 * time.Second)
	if w := e.do(req{method: "GET", path: "/admin/accounts", cookies: []*http.Cookie{ac}}); w.Code != 200 {
		t.Errorf("after the window: %d", w.Code)
	}
}

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	mk := func(remote, xff string) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		return r
	}
	cases := []struct{ remote, xff, want string }{
		{"203.0.113.1:1", "1.2.3.4", "203.0.113.1"},             // untrusted peer: header ignored
		{"10.0.0.5:1", "1.2.3.4", "1.2.3.4"},                    // trusted proxy
		{"10.0.0.5:1", "9.9.9.9, 1.2.3.4, 10.0.0.7", "1.2.3.4"}, // nearest untrusted hop
		{"10.0.0.5:1", "garbage", "10.0.0.5"},
		{"10.0.0.5:1", "", "10.0.0.5"},
	}
	for _, c := range cases {
		if got := e.srv.clientIP(mk(c.remote, c.xff)); got != c.want {
			t.Errorf("%s xff %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.do(req{method: "GET", path: "/health"})
	for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
		if w.Header().Get(h) == "" {
			t.Errorf("missing %s", h)
		}
	}
	if strings.Contains(w.Header().Get("Content-Security-Policy"), "unsafe-inline") {
		t.Error("CSP allows inline code")
	}
}
