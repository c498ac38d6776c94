package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gooni/store"
)

type inviteAnswer struct {
	ID         int64   `json:"id"`
	Label      string  `json:"label"`
	URL        string  `json:"url"`
	Uses       int     `json:"uses"`
	UsesLeft   int     `json:"uses_left"`
	Status     string  `json:"status"`
	ExpiresAt  string  `json:"expires_at"`
	CreatedAt  string  `json:"created_at"`
	RevokedAt  *string `json:"revoked_at"`
	LastUsedAt *string `json:"last_used_at"`
}

// createInvite makes an invite through the API and returns it with its token.
func (e *testEnv) createInvite(host string, admin *http.Cookie, body string) (inviteAnswer, string) {
	e.t.Helper()
	w := e.doAt(host, req{method: "POST", path: "/admin/invites", cookies: []*http.Cookie{admin}, body: body})
	if w.Code != 201 {
		e.t.Fatalf("POST /admin/invites %s: %d %s", body, w.Code, w.Body.String())
	}
	var inv inviteAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &inv); err != nil {
		e.t.Fatal(err)
	}
	i := strings.Index(inv.URL, "/auth/invite/")
	if i < 0 {
		e.t.Fatalf("invite url %q", inv.URL)
	}
	return inv, inv.URL[i+len("/auth/invite/"):]
}

// auditOf lists the audit rows of one action, oldest first.
func (e *testEnv) auditOf(action string) []*store.AuditEvent {
	e.t.Helper()
	items, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Limit: 500, Action: action})
	if err != nil {
		e.t.Fatal(err)
	}
	for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
		items[i], items[j] = items[j], items[i]
	}
	return items
}

// TestInviteMode walks CONTRACT section 16: in invite mode POST
// /auth/session issues nothing; an admin makes a link; opening it gives a
// session and 303 to the UI's root until its uses are spent; an invalid
// link lands on the root with ?signin=invalid (401 invite_invalid for JSON
// clients), each with its reason; revoking stops it at once and keeps the
// sessions it issued; every step is an audit row, and the token is never
// logged or stored.
func TestInviteMode(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionMode = "invite"; c.ListenAddr = "127.0.0.1:8080" })
	e.readyAccount()
	host := "127.0.0.1:8080"
	admin := e.adminSessionAt(host)

	// No session for the asking: the answer says which mode this is.
	w := e.doAt(host, req{method: "POST", path: "/auth/session"})
	if w.Code != 401 || errCode(t, w) != "session_required" || !strings.Contains(w.Body.String(), `"session_mode":"invite"`) {
		t.Fatalf("POST /auth/session in invite mode: %d %s", w.Code, w.Body.String())
	}
	if w := e.doAt(host, req{method: "GET", path: "/auth/session"}); !strings.Contains(w.Body.String(), `"session_mode":"invite"`) {
		t.Errorf("GET /auth/session without a cookie: %s", w.Body.String())
	}

	inv, token := e.createInvite(host, admin, `{"label":"Ana's laptop","uses":2,"expires_in":"48h"}`)
	wantExp := e.clock.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	if inv.URL != "http://127.0.0.1:8080/auth/invite/"+token || inv.Label != "Ana's laptop" || inv.UsesLeft != 2 ||
		inv.ExpiresAt != wantExp || inv.Status != "active" || len(token) < 40 {
		t.Fatalf("created %+v, want expiry %s", inv, wantExp)
	}

	open := func(token string, accept string) *httptest.ResponseRecorder {
		h := map[string]string{}
		if accept != "" {
			h["Accept"] = accept
		}
		return e.doAt(host, req{method: "GET", path: "/auth/invite/" + token, header: h, remote: "198.51.100.7:1"})
	}
	browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	var sessions []*http.Cookie
	for i := range 2 {
		w := open(token, browser)
		c := cookieOf(w, "gg_session")
		if w.Code != 303 || w.Header().Get("Location") != "../../" || c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
			t.Fatalf("use %d: %d Location %q cookie %+v", i+1, w.Code, w.Header().Get("Location"), c)
		}
		sessions = append(sessions, c)
	}
	// The session works like any other.
	if w := e.doAt(host, req{method: "GET", path: "/auth/session", cookies: sessions[:1]}); w.Code != 200 {
		t.Fatalf("GET /auth/session with the invite's session: %d %s", w.Code, w.Body.String())
	}
	if w := e.doAt(host, req{method: "POST", path: "/generate", cookies: sessions[1:], body: `{"model":"flux","mode":"t2i","prompt":"x"}`}); w.Code != 202 {
		t.Fatalf("generate with the invite's session: %d %s", w.Code, w.Body.String())
	}

	// Used up: a browser lands on the sign-in screen with the reason; a JSON client gets 401.
	w = open(token, browser)
	if w.Code != 303 || w.Header().Get("Location") != "../../?signin=invalid&reason=used_up" || cookieOf(w, "gg_session") != nil {
		t.Fatalf("used-up link: %d %q", w.Code, w.Header().Get("Location"))
	}
	w = open(token, "application/json")
	if w.Code != 401 || errCode(t, w) != "invite_invalid" || !strings.Contains(w.Body.String(), `"reason":"used_up"`) {
		t.Fatalf("used-up link, JSON: %d %s", w.Code, w.Body.String())
	}
	for _, bad := range []string{"short", strings.Repeat("A", 43), strings.Repeat("x", 200), "has%20space"} {
		if w := open(bad, "application/json"); w.Code != 401 || !strings.Contains(w.Body.String(), `"reason":"unknown"`) {
			t.Errorf("token %.20q: %d %s", bad, w.Code, w.Body.String())
		}
	}

	// Expired, at its time.
	_, expToken := e.createInvite(host, admin, `{"uses":5,"expires_in":"1m"}`)
	e.clock.Advance(time.Minute)
	if w := open(expToken, ""); w.Header().Get("Location") != "../../?signin=invalid&reason=expired" {
		t.Errorf("expired link: %d %q", w.Code, w.Header().Get("Location"))
	}

	// Revoked: at once; the sessions it gave stay; revoking twice is fine.
	live, liveToken := e.createInvite(host, admin, `{"uses":5}`)
	w = open(liveToken, browser)
	kept := cookieOf(w, "gg_session")
	if w := e.doAt(host, req{method: "DELETE", path: fmt.Sprintf("/admin/invites/%d", live.ID), cookies: []*http.Cookie{admin}}); w.Code != 204 {
		t.Fatalf("revoke: %d %s", w.Code, w.Body.String())
	}
	if w := e.doAt(host, req{method: "DELETE", path: fmt.Sprintf("/admin/invites/%d", live.ID), cookies: []*http.Cookie{admin}}); w.Code != 204 {
		t.Fatalf("revoke twice: %d %s", w.Code, w.Body.String())
	}
	if w := open(liveToken, browser); w.Header().Get("Location") != "../../?signin=invalid&reason=revoked" {
		t.Errorf("revoked link: %q", w.Header().Get("Location"))
	}
	if w := e.doAt(host, req{method: "GET", path: "/auth/session", cookies: []*http.Cookie{kept}}); w.Code != 200 {
		t.Errorf("a session the revoked invite gave: %d", w.Code)
	}

	// The list: newest first, states named, never a url or a token.
	w = e.doAt(host, req{method: "GET", path: "/admin/invites", cookies: []*http.Cookie{admin}})
	var list struct {
		Items []map[string]any `json:"items"`
	}
	json.Unmarshal(w.Body.Bytes(), &list)
	if w.Code != 200 || len(list.Items) != 3 {
		t.Fatalf("list: %d %s", w.Code, w.Body.String())
	}
	states := []string{}
	for _, it := range list.Items {
		checkKeys(t, "listed invite", it, inviteKeys, nil)
		states = append(states, fmt.Sprint(it["status"]))
	}
	if strings.Join(states, ",") != "revoked,expired,used_up" {
		t.Errorf("states newest first: %v", states)
	}
	for _, tok := range []string{token, expToken, liveToken} {
		if strings.Contains(w.Body.String(), tok) || strings.Contains(e.logs.String(), tok) {
			t.Errorf("a token shows in the list or the log")
		}
	}

	// Audit: create, success uses (as the session they made), denials with reasons, revoke.
	if n := len(e.auditOf("invite.create")); n != 3 {
		t.Errorf("%d invite.create rows, want 3", n)
	}
	uses := e.auditOf("invite.use")
	var ok, denied []string
	for _, u := range uses {
		if u.Outcome == "success" {
			ok = append(ok, u.Actor)
			if u.Target != fmt.Sprintf("invite:%d", inv.ID) && u.Target != fmt.Sprintf("invite:%d", live.ID) {
				t.Errorf("success row target %q", u.Target)
			}
		} else {
			denied = append(denied, fmt.Sprint(u.Details["reason"]))
		}
	}
	if len(ok) != 3 || !strings.HasPrefix(ok[0], "user:") {
		t.Errorf("success rows by %v, want 3 by user:<session>", ok)
	}
	// Denials from one client: one row per minute (the repeatable-denial rule),
	// here the used-up one; the clock then moved a minute, so expired and revoked have rows too.
	if strings.Join(denied, ",") != "used_up,expired" {
		t.Errorf("denied rows %v", denied)
	}
	if n := len(e.auditOf("invite.revoke")); n != 2 {
		t.Errorf("%d invite.revoke rows, want 2", n)
	}
	raw := readFile(t, e.dataDir+"/gooni.db")
	for _, tok := range []string{token, expToken, liveToken} {
		if strings.Contains(string(raw), tok) {
			t.Error("an invite token is stored in the database")
		}
	}
}

var inviteKeys = []string{"id", "label", "uses", "uses_left", "status", "expires_at", "created_at", "revoked_at", "last_used_at"}

// TestInviteValidation: the create body's bounds, each refused with the
// field named and an invite.create failure row; nothing stored.
func TestInviteValidation(t *testing.T) {
	e := newEnv(t)
	admin := e.adminSession()
	cases := []struct{ body, field string }{
		{`{"uses":0}`, "uses"},
		{`{"uses":1001}`, "uses"},
		{`{"uses":1.5}`, "uses"},
		{`{"uses":"2"}`, "uses"},
		{`{"expires_in":"721h"}`, "expires_in"},
		{`{"expires_in":"30s"}`, "expires_in"},
		{`{"expires_in":"-1h"}`, "expires_in"},
		{`{"expires_in":"soon"}`, "expires_in"},
		{`{"expires_in":72}`, "expires_in"},
		{`{"label":"` + strings.Repeat("l", 101) + `"}`, "label"},
		{`{"label":"a\u0007b"}`, "label"},
		{`{"label":"a\u202eb"}`, "label"},
		{`{"url":"x"}`, "url"},
	}
	for _, c := range cases {
		w := e.do(req{method: "POST", path: "/admin/invites", cookies: []*http.Cookie{admin}, body: c.body})
		if w.Code != 400 || errCode(t, w) != "validation_failed" {
			t.Errorf("%s: %d %s", c.body, w.Code, w.Body.String())
			continue
		}
		var b errorBody
		json.Unmarshal(w.Body.Bytes(), &b)
		if b.Error.Details["field"] != c.field {
			t.Errorf("%s: field %v, want %s", c.body, b.Error.Details["field"], c.field)
		}
	}
	if w := e.do(req{method: "POST", path: "/admin/invites", cookies: []*http.Cookie{admin}, body: `{`}); errCode(t, w) != "invalid_json" {
		t.Errorf("malformed: %s", w.Body.String())
	}
	// Defaults: 1 use, 72 h, no label.
	inv, _ := e.createInvite("", admin, `{}`)
	if inv.Uses != 1 || inv.UsesLeft != 1 || inv.Label != "" || inv.ExpiresAt != e.clock.Now().Add(72*time.Hour).UTC().Format(time.RFC3339) {
		t.Errorf("defaults: %+v", inv)
	}
	if list, _ := e.db.ListInvites(context.Background(), 10); len(list) != 1 {
		t.Errorf("%d invites stored, want only the valid one", len(list))
	}
	if n := len(e.auditOf("invite.create")); n != len(cases)+2 {
		t.Errorf("%d invite.create rows, want %d (failures and the success)", n, len(cases)+2)
	}
	for _, p := range []string{"/admin/invites/0", "/admin/invites/abc", "/admin/invites/99", "/admin/invites/01"} {
		if w := e.do(req{method: "DELETE", path: p, cookies: []*http.Cookie{admin}}); w.Code != 404 || errCode(t, w) != "not_found" {
			t.Errorf("DELETE %s: %d %s", p, w.Code, w.Body.String())
		}
	}
}

// TestInviteURLUsesPublicURL: the link carries GG_PUBLIC_URL and its base
// path; opened through the proxy it still lands on the UI's root (the
// relative Location resolves under /gooni/), with the cookie scoped there.
func TestInviteURLUsesPublicURL(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.ListenAddr = "127.0.0.1:8080"
		c.PublicURL = publicURL(t, "https://gen.example.com/gooni")
	})
	admin := e.adminSessionAt("gen.example.com")
	w := e.doAt("gen.example.com", req{method: "POST", path: "/admin/invites", cookies: []*http.Cookie{admin}, body: `{}`})
	var inv inviteAnswer
	json.Unmarshal(w.Body.Bytes(), &inv)
	if w.Code != 201 || !strings.HasPrefix(inv.URL, "https://gen.example.com/gooni/auth/invite/") {
		t.Fatalf("create: %d %s", w.Code, w.Body.String())
	}
	u := strings.TrimPrefix(inv.URL, "https://gen.example.com/gooni") // what the proxy forwards
	w = e.doAt("gen.example.com", req{method: "GET", path: u})
	c := cookieOf(w, "gg_session")
	if w.Code != 303 || c == nil || c.Path != "/gooni/" || !c.Secure {
		t.Fatalf("open: %d %+v", w.Code, c)
	}
	if w.Header().Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS under an https public URL")
	}
}

// TestInviteThrottle: the invite route shares POST /auth/session's limit
// per client IP (10 a minute), so tokens cannot be tried in bulk; the
// throttle row names the route without the token.
func TestInviteThrottle(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionMode = "invite" })
	remote := "198.51.100.9:1"
	for i := range 10 {
		tok := fmt.Sprintf("guess%040d", i)
		if w := e.do(req{method: "GET", path: "/auth/invite/" + tok, remote: remote}); w.Code != 303 {
			t.Fatalf("guess %d: %d", i, w.Code)
		}
	}
	secret := strings.Repeat("s", 43)
	w := e.do(req{method: "GET", path: "/auth/invite/" + secret, remote: remote})
	if w.Code != 429 || errCode(t, w) != "rate_limited" {
		t.Fatalf("11th try: %d %s", w.Code, w.Body.String())
	}
	rows := e.auditOf("security.throttled")
	if len(rows) != 1 || rows[0].Target != "GET /auth/invite/[token]" {
		t.Errorf("throttle rows %+v", rows)
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Error("the token tried is in the log")
	}
	// Ten denials from one client wrote one invite.use row; the rest are counted.
	if n := len(e.auditOf("invite.use")); n != 1 {
		t.Errorf("%d invite.use denied rows from one client in a minute, want 1", n)
	}
	if w := e.do(req{method: "HEAD", path: "/auth/invite/" + secret, remote: "198.51.100.10:1"}); w.Code != 405 {
		t.Errorf("HEAD of an invite link: %d (a link preview must not spend a use)", w.Code)
	}
}

// TestSessionReuseWritesNothing: the UI's page load with a live cookie
// (GET /auth/session) writes no audit row; a signed-out visitor in key
// mode learns the mode from the same GET, without a refused POST.
func TestSessionReuseWritesNothing(t *testing.T) {
	e := newEnv(t)
	c := e.userSession()
	before := len(e.auditOf(""))
	for range 5 {
		if w := e.do(req{method: "GET", path: "/auth/session", cookies: []*http.Cookie{c}}); w.Code != 200 {
			t.Fatalf("GET /auth/session: %d", w.Code)
		}
	}
	if after := len(e.auditOf("")); after != before {
		t.Errorf("reusing a live session wrote %d audit rows", after-before)
	}
	k := newEnv(t, func(c *Config) { c.SessionMode = "key" })
	w := k.do(req{method: "GET", path: "/auth/session"})
	if w.Code != 401 || !strings.Contains(w.Body.String(), `"session_mode":"key"`) {
		t.Errorf("key mode GET /auth/session: %d %s", w.Code, w.Body.String())
	}
	if w := e.do(req{method: "GET", path: "/auth/session"}); !strings.Contains(w.Body.String(), `"session_mode":"open"`) {
		t.Errorf("open mode GET /auth/session: %s", w.Body.String())
	}
}

// TestPatchAccountCredentials: an edit keeps what it leaves blank (the
// admin page's password fields), replaces what it gives, removes what it
// nulls, and can set the base URL; credentials never come back.
func TestPatchAccountCredentials(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.WorkspaceURL = "https://{workspace}--gooni-inference.modal.run" })
	admin := []*http.Cookie{e.adminSession()}
	a := &store.Account{Name: "gpu", Workspace: "gpu-one"}
	if err := e.db.CreateAccount(context.Background(), a, map[string]string{"token_id": "tid-1", "token_secret": "tsec-1", "proxy_key": "pk-1"}); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/admin/accounts/%d", a.ID)
	creds := func() map[string]string {
		c, err := e.db.AccountCredentials(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	w := e.do(req{method: "GET", path: path, cookies: admin})
	if m := decodeMap(t, w); m["effective_base_url"] != "https://gpu-one--gooni-inference.modal.run" || m["base_url"] != "" {
		t.Errorf("derived base URL: %v", m)
	}
	w = e.do(req{method: "PATCH", path: path, cookies: admin,
		body: `{"name":"gpu renamed","capacity":2,"base_url":"https://gpu.example.com","credentials":{"token_id":"","token_secret":"tsec-2","proxy_key":null}}`})
	if w.Code != 200 {
		t.Fatalf("patch: %d %s", w.Code, w.Body.String())
	}
	m := decodeMap(t, w)
	if m["name"] != "gpu renamed" || m["capacity"] != float64(2) || m["base_url"] != "https://gpu.example.com" ||
		m["effective_base_url"] != "https://gpu.example.com" || m["has_credentials"] != true {
		t.Errorf("patched: %v", m)
	}
	if got := creds(); fmt.Sprint(got) != fmt.Sprint(map[string]string{"token_id": "tid-1", "token_secret": "tsec-2"}) {
		t.Errorf("credentials after the edit: %v", got)
	}
	for _, s := range []string{"tid-1", "tsec-2", "pk-1"} {
		if strings.Contains(w.Body.String(), s) || strings.Contains(e.logs.String(), s) {
			t.Errorf("a credential value shows in the answer or the log")
		}
	}
	rows := e.auditOf("account.update")
	if len(rows) != 1 || fmt.Sprint(rows[0].Details["changed"]) != "[name capacity base_url credentials]" {
		t.Errorf("audit rows %+v", rows)
	}
	// Only blanks: nothing to change.
	if w := e.do(req{method: "PATCH", path: path, cookies: admin, body: `{"credentials":{"token_id":"","token_secret":""}}`}); w.Code != 400 || errCode(t, w) != "validation_failed" {
		t.Errorf("blank-only patch: %d %s", w.Code, w.Body.String())
	}
	// base_url "" derives it again.
	w = e.do(req{method: "PATCH", path: path, cookies: admin, body: `{"base_url":""}`})
	if m := decodeMap(t, w); m["base_url"] != "" || m["effective_base_url"] != "https://gpu-one--gooni-inference.modal.run" {
		t.Errorf("base_url cleared: %v", m)
	}
	for _, c := range []struct{ body, field string }{
		{`{"base_url":"http://gpu.example.com"}`, "base_url"},
		{`{"credentials":{"Bad Name":"x"}}`, "credentials"},
		{`{"credentials":{"token_id":"a\nb"}}`, "credentials.token_id"},
		{`{"credentials":{"token_id":5}}`, "credentials"},
	} {
		w := e.do(req{method: "PATCH", path: path, cookies: admin, body: c.body})
		var b errorBody
		json.Unmarshal(w.Body.Bytes(), &b)
		if w.Code != 400 || b.Error.Details["field"] != c.field {
			t.Errorf("%s: %d %s", c.body, w.Code, w.Body.String())
		}
	}
	many := []string{}
	for i := range 15 {
		many = append(many, fmt.Sprintf(`"extra_%d":"v"`, i))
	}
	if w := e.do(req{method: "PATCH", path: path, cookies: admin, body: `{"credentials":{` + strings.Join(many, ",") + `}}`}); w.Code != 400 || errCode(t, w) != "validation_failed" {
		t.Errorf("17 entries after the merge: %d %s", w.Code, w.Body.String())
	}
	if got := creds(); len(got) != 2 {
		t.Errorf("a refused merge changed the credentials: %d entries", len(got))
	}
}
