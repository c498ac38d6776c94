package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"gooni/store"
)

// The edges below are where scripts/mutation.sh found behaviour of the auth,
// throttle and CORS middleware that no test pinned.

// TestDecodeTokenLength: a session cookie must carry a token of 16 to 128
// bytes, even when its MAC is good (only the server could have made it).
func TestDecodeTokenLength(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		n  int
		ok bool
	}{{15, false}, {16, true}, {32, true}, {128, true}, {129, false}} {
		val, err := e.srv.cookies.Encode(userCookie, []byte(strings.Repeat("t", tc.n)))
		if err != nil {
			t.Fatal(err)
		}
		if tok, ok := decodeToken(e.srv.cookies, userCookie, val); ok != tc.ok || ok && len(tok) != tc.n {
			t.Errorf("a %d-byte token: decoded %v (%d bytes), want %v", tc.n, ok, len(tok), tc.ok)
		}
	}
	if _, ok := decodeToken(e.srv.cookies, userCookie, ""); ok {
		t.Error("an empty cookie decoded")
	}
}

// TestSessionCookieLifetime: a session cookie lives as long as its session
// (Max-Age and Expires), and logging out expires it at once.
func TestSessionCookieLifetime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.SessionTTL = 90 * time.Minute })
	w := e.do(req{method: "POST", path: "/auth/session"})
	c := cookieOf(w, userCookie)
	if c == nil || c.MaxAge != 90*60 || !c.Expires.Equal(e.clock.Now().Add(90*time.Minute)) {
		t.Fatalf("session cookie %+v: want Max-Age 5400 and Expires in 90 minutes", c)
	}
	w = e.do(req{method: "DELETE", path: "/auth/session", cookies: []*http.Cookie{c}})
	gone := cookieOf(w, userCookie)
	if w.Code != 204 || gone == nil || gone.MaxAge >= 0 || gone.Value != "" || !gone.Expires.Before(e.clock.Now()) {
		t.Fatalf("logout: %d cookie %+v, want it expired now (Max-Age=0)", w.Code, gone)
	}
	if !strings.Contains(w.Header().Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout Set-Cookie %q lacks Max-Age=0", w.Header().Get("Set-Cookie"))
	}
}

// TestSessionRequiredSaysWhichSession: without a session, an admin route
// asks for an admin session and a user route for a user one.
func TestSessionRequiredSaysWhichSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	msg := func(r req) string {
		w := e.do(r)
		if code := errCode(t, w); code != "session_required" {
			t.Fatalf("%s %s: %s, want session_required", r.method, r.path, code)
		}
		var b errorBody
		if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		return b.Error.Message
	}
	if m := msg(req{method: "GET", path: "/admin/accounts"}); !strings.Contains(m, "admin session") {
		t.Errorf("admin route without a session says %q, want it to ask for an admin session", m)
	}
	if m := msg(req{method: "GET", path: "/gallery"}); strings.Contains(m, "admin") {
		t.Errorf("user route without a session says %q", m)
	}
}

// TestAdminLoginFailureReason: a failed admin sign-in is audited with why:
// no X-Admin-Key header, or a wrong key (never the key itself).
func TestAdminLoginFailureReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.do(req{method: "POST", path: "/admin/session", remote: "198.51.100.20:1"})
	e.do(req{method: "POST", path: "/admin/session", remote: "198.51.100.21:1", header: map[string]string{"X-Admin-Key": "wrong-key-value"}})
	rows, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "admin.login", Outcome: "failure"})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, r := range rows {
		reasons[r.Source] = fmt.Sprint(r.Details["reason"])
	}
	if reasons["198.51.100.20"] != "no X-Admin-Key header" || reasons["198.51.100.21"] != "wrong admin key" {
		t.Errorf("failure reasons by source: %v", reasons)
	}
	if strings.Contains(e.logs.String(), "wrong-key-value") {
		t.Error("the wrong key reached the log")
	}
}

// TestThrottleAuditNamesTheLimit: the first rejection of a key writes one
// security.throttled row naming the limit and its window in seconds.
func TestThrottleAuditNamesTheLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := 0; i < 12; i++ {
		e.do(req{method: "POST", path: "/auth/session", remote: "198.51.100.30:1"})
	}
	rows, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "security.throttled"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Details["limit"] != float64(10) || rows[0].Details["window_seconds"] != float64(60) {
		var got []map[string]any
		for _, r := range rows {
			got = append(got, r.Details)
		}
		t.Fatalf("throttle audit rows %v, want one with limit 10 and window_seconds 60", got)
	}
}
