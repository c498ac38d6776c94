package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gooni/store"
)

// accessConformance gives the conformance table its rows for CONTRACT
// sections 16 and 17 (invites, the Host allowlist): the routes to run the
// auth and CORS rows on, the cases, and the environments they need
// ("invite": GG_SESSION_MODE=invite; "hosts": a listen address, so the
// Host check is on). admin is an admin session of e.
func accessConformance(t *testing.T, e *testEnv, admin *http.Cookie, envs map[string]*testEnv) (adminRoutes, publicRoutes [][2]string, cases []confCase) {
	t.Helper()
	ac := []*http.Cookie{admin}
	mk := func(uses int) (*store.Invite, string) {
		inv := &store.Invite{Uses: uses, ExpiresAt: e.clock.Now().Add(time.Hour)}
		token := fmt.Sprintf("conformance-invite-token-of-%d-uses", uses)
		if err := e.db.CreateInviteAudited(context.Background(), inv, tokenHash(token), nil); err != nil {
			t.Fatal(err)
		}
		return inv, token
	}
	live, liveToken := mk(5)
	toRevoke, _ := mk(1)
	_, spentToken := mk(2)
	for i := range 2 {
		if _, _, err := e.db.UseInvite(context.Background(), tokenHash(spentToken), tokenHash(fmt.Sprint("spent-session-", i)), e.clock.Now().Add(time.Hour), nil); err != nil {
			t.Fatal(err)
		}
	}
	invitePath := func(tok string) string { return "/auth/invite/" + tok }
	revoke := fmt.Sprintf("/admin/invites/%d", toRevoke.ID)

	invite := newEnv(t, func(c *Config) { c.SessionMode = "invite" })
	hostsEnv := newEnv(t, func(c *Config) { c.ListenAddr = "127.0.0.1:8080" })
	envs["invite"], envs["hosts"] = invite, hostsEnv

	adminRoutes = [][2]string{{"POST", "/admin/invites"}, {"GET", "/admin/invites"}, {"DELETE", revoke}}
	publicRoutes = [][2]string{{"GET", invitePath(liveToken)}}
	inviteRemote := "192.0.2.99:1"
	cases = []confCase{
		{name: "create invite", r: req{method: "POST", path: "/admin/invites", cookies: ac, body: `{"label":"team","uses":3,"expires_in":"24h"}`}, status: 201,
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				m := jsonKeys(t, w, append([]string{"url"}, inviteKeys...), nil)
				if !strings.HasPrefix(fmt.Sprint(m["url"]), "http://example.com/auth/invite/") || m["uses_left"] != float64(3) || m["status"] != "active" {
					t.Errorf("%v", m)
				}
			}},
		{name: "create invite defaults", r: req{method: "POST", path: "/admin/invites", cookies: ac, body: `{}`}, status: 201},
		{name: "create invite uses 0", r: req{method: "POST", path: "/admin/invites", cookies: ac, body: `{"uses":0}`}, status: 400, code: "validation_failed", field: "uses"},
		{name: "create invite expiry too long", r: req{method: "POST", path: "/admin/invites", cookies: ac, body: `{"expires_in":"721h"}`}, status: 400, code: "validation_failed", field: "expires_in"},
		{name: "create invite unknown field", r: req{method: "POST", path: "/admin/invites", cookies: ac, body: `{"token":"x"}`}, status: 400, code: "validation_failed", field: "token"},
		{name: "create invite malformed", r: req{method: "POST", path: "/admin/invites", cookies: ac, body: `{"uses":`}, status: 400, code: "invalid_json"},
		{name: "create invite oversize", r: req{method: "POST", path: "/admin/invites", cookies: ac, body: `{"label":"` + strings.Repeat("a", 70<<10) + `"}`}, status: 413, code: "payload_too_large"},
		{name: "list invites", r: req{method: "GET", path: "/admin/invites", cookies: ac}, status: 200, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			m := jsonKeys(t, w, []string{"items"}, nil)
			items, _ := m["items"].([]any)
			if len(items) < 3 {
				t.Fatalf("%d invites listed", len(items))
			}
			for _, it := range items {
				checkKeys(t, "listed invite", it.(map[string]any), inviteKeys, nil)
			}
		}},
		{name: "revoke invite", r: req{method: "DELETE", path: revoke, cookies: ac}, status: 204},
		{name: "revoke invite twice", r: req{method: "DELETE", path: revoke, cookies: ac}, status: 204},
		{name: "revoke unknown invite", r: req{method: "DELETE", path: "/admin/invites/999999", cookies: ac}, status: 404, code: "not_found"},
		{name: "revoke invite id not a number", r: req{method: "DELETE", path: "/admin/invites/abc", cookies: ac}, status: 404, code: "not_found"},
		{name: "PUT /admin/invites", r: req{method: "PUT", path: "/admin/invites", cookies: ac}, status: 405, code: "method_not_allowed"},
		{name: "GET /admin/invites/{id}", r: req{method: "GET", path: revoke, cookies: ac}, status: 405, code: "method_not_allowed"},
		{name: "POST /auth/invite/{token}", r: req{method: "POST", path: invitePath(liveToken)}, status: 405, code: "method_not_allowed"},
		{name: "open invite", r: req{method: "GET", path: invitePath(liveToken), remote: inviteRemote}, status: 303, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			c := cookieOf(w, "gg_session")
			if w.Header().Get("Location") != "../../" || c == nil || !c.HttpOnly || c.Path != "/" {
				t.Errorf("Location %q cookie %+v", w.Header().Get("Location"), c)
			}
			if got, _ := e.db.GetInvite(context.Background(), live.ID); got.UsesLeft != 4 {
				t.Errorf("uses left %d", got.UsesLeft)
			}
		}},
		{name: "open used-up invite", r: req{method: "GET", path: invitePath(spentToken), remote: inviteRemote}, status: 303, check: func(t *testing.T, w *httptest.ResponseRecorder) {
			if w.Header().Get("Location") != "../../?signin=invalid&reason=used_up" || cookieOf(w, "gg_session") != nil {
				t.Errorf("Location %q", w.Header().Get("Location"))
			}
		}},
		{name: "open used-up invite as JSON", r: req{method: "GET", path: invitePath(spentToken), remote: inviteRemote, header: map[string]string{"Accept": "application/json"}}, status: 401, code: "invite_invalid"},
		{name: "open unknown invite as JSON", r: req{method: "GET", path: invitePath("nope"), remote: inviteRemote, header: map[string]string{"Accept": "application/json"}}, status: 401, code: "invite_invalid"},
		{name: "invite mode POST /auth/session", env: "invite", r: req{method: "POST", path: "/auth/session"}, status: 401, code: "session_required"},
		{name: "invite mode GET /auth/session", env: "invite", r: req{method: "GET", path: "/auth/session"}, status: 401, code: "session_required"},
		{name: "foreign Host", env: "hosts", r: req{method: "GET", path: "/health"}, status: 421, code: "host_not_allowed"},
		{name: "foreign Host before auth", env: "hosts", r: req{method: "GET", path: "/admin/accounts"}, status: 421, code: "host_not_allowed"},
		{name: "foreign Host before CORS", env: "hosts", r: req{method: "POST", path: "/auth/session", header: map[string]string{"Origin": "http://example.com"}}, status: 421, code: "host_not_allowed"},
	}
	return adminRoutes, publicRoutes, cases
}
