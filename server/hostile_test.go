package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"gooni/internal/workspace"
	"gooni/store"
)

// trap is a loopback HTTP server that records every request it gets: hostile
// account targets point at it, and it must never hear from the server.
type trap struct {
	*httptest.Server
	mu   sync.Mutex
	hits []string
}

func newTrap(t *testing.T) *trap {
	tr := &trap{}
	tr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.hits = append(tr.hits, r.Method+" "+r.URL.Path)
		tr.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok","models":[],"capacity":1,"running":0}`)
	}))
	t.Cleanup(tr.Close)
	return tr
}

func (tr *trap) Hits() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.hits...)
}

// serveRaw runs a hand-built request (raw bytes in paths and headers that
// httptest.NewRequest would refuse to parse) and records the body.
func (e *testEnv) serveRaw(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	e.bodies = append(e.bodies, w.Body.String())
	return w
}

// hostileRoute is one route with the credentials that get it past auth, so
// the hostile part reaches validation.
type hostileRoute struct {
	method, path string
	body         bool // takes a JSON body
}

// TestHostileInput sends malformed, oversized, odd and injection-looking input
// to every route. Each answer is a 2xx or a structured 4xx: never a 5xx, a
// panic or a hang; and no account target that fails validation ever receives
// a request (the trap server records any).
func TestHostileInput(t *testing.T) {
	t.Parallel()
	e := newDispatchEnv(t, workspace.SimConfig{}, "true", func(c *Config) { c.FrontendOrigins = []string{"https://app.example.com"} })
	tr := newTrap(t)
	_, trapPort, _ := net.SplitHostPort(strings.TrimPrefix(tr.URL, "http://"))
	ctx := context.Background()
	good := e.account("good-one", e.sim.URL, map[string]string{})
	if a, err := e.d.HealthCheck(ctx, good.ID); err != nil || a.Status != "ready" {
		t.Fatalf("health check: %v %+v", err, a)
	}
	done := e.task("done", good.ID)
	ac := e.adminSession()
	key := e.sec.APIKey

	routes := []hostileRoute{
		{"GET", "/health", false}, {"GET", "/config", false},
		{"POST", "/auth/session", false}, {"GET", "/auth/session", false}, {"DELETE", "/auth/session", false},
		{"POST", "/generate", true}, {"GET", "/status/" + done.ID, false}, {"GET", "/events/" + done.ID, false},
		{"GET", "/results/" + done.ID, false}, {"GET", "/preview/" + done.ID, false}, {"GET", "/gallery", false},
		{"DELETE", "/gallery/nosuchtask", false},
		{"POST", "/admin/session", false}, {"GET", "/admin/health", false}, {"GET", "/admin/logs", false},
		{"GET", "/admin/logs/verify", false}, {"GET", "/admin/accounts", false}, {"POST", "/admin/accounts", true},
		{"GET", fmt.Sprintf("/admin/accounts/%d", good.ID), false}, {"PATCH", fmt.Sprintf("/admin/accounts/%d", good.ID), true},
		{"POST", "/admin/accounts/999999/health-check", false}, {"POST", "/admin/accounts/999999/deploy", false},
		{"DELETE", "/admin/accounts/999999", false},
	}
	// authed gives a request the credentials its route takes.
	nreq := 0
	authed := func(rt hostileRoute, body []byte) *http.Request {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		r := httptest.NewRequest(rt.method, rt.path, rd)
		if strings.HasPrefix(rt.path, "/admin/") && rt.path != "/admin/session" {
			r.AddCookie(ac)
		} else {
			r.Header.Set("X-API-Key", key)
		}
		// A new client address per request and a second between requests keep
		// the table under the throttles: it probes input handling, not limits.
		nreq++
		r.RemoteAddr = fmt.Sprintf("198.51.%d.%d:1234", nreq/250, nreq%250+1)
		return r
	}

	deep := strings.Repeat("[", 100000)
	bodies := []struct {
		name string
		body []byte
	}{
		{"malformed", []byte(`{"name":`)},
		{"not an object", []byte(`"just a string"`)},
		{"null", []byte(`null`)},
		{"deep nesting", []byte(deep)},
		{"deep nesting in a field", []byte(`{"name":` + deep)},
		{"deep nesting closed", []byte(`{"credentials":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`)},
		{"huge exponent", []byte(`{"capacity":1e400,"params":{"steps":1e400}}`)},
		{"huge integer", []byte(`{"capacity":99999999999999999999,"params":{"seed":99999999999999999999}}`)},
		{"negative huge", []byte(`{"capacity":-99999999999999999999}`)},
		{"NaN", []byte(`{"capacity":NaN}`)},
		{"Infinity", []byte(`{"params":{"guidance":Infinity}}`)},
		{"-Infinity", []byte(`{"capacity":-Infinity}`)},
		{"escaped NUL", []byte(`{"name":"a\u0000b","prompt":"a\u0000b","model":"flux\u0000","mode":"t2i"}`)},
		{"raw NUL", []byte("{\"name\":\"a\x00b\",\"prompt\":\"x\x00\"}")},
		{"invalid UTF-8", []byte("{\"name\":\"\xff\xfe\",\"prompt\":\"\xc3\x28\",\"model\":\"flux\",\"mode\":\"t2i\"}")},
		{"lone surrogate", []byte(`{"name":"\ud800","prompt":"\udfff","model":"flux","mode":"t2i"}`)},
		{"BOM", []byte("\xef\xbb\xbf{\"name\":\"x\"}")},
		{"duplicate keys", []byte(`{"name":"a","name":"b","prompt":"x","prompt":"y"}`)},
		{"trailing garbage", []byte(`{"name":"a"} x`)},
		{"two objects", []byte(`{}{}`)},
		{"wrong types", []byte(`{"name":1,"workspace":[],"credentials":"x","capacity":"2","model":{},"prompt":true,"params":[]}`)},
		{"__proto__", []byte(`{"__proto__":{"admin":true},"constructor":{"prototype":{}}}`)},
		{"only whitespace", []byte("  \n\t ")},
	}

	type outcome struct {
		name string
		w    *httptest.ResponseRecorder
		// strict: a 2xx would be wrong too (hostile bodies on body routes)
		strict bool
	}
	var results []outcome
	run := func(name string, r *http.Request, strict bool) {
		e.clock.Advance(time.Second)
		done := make(chan *httptest.ResponseRecorder, 1)
		go func() { done <- e.serveRaw(r) }()
		select {
		case w := <-done:
			results = append(results, outcome{name, w, strict})
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no answer within 5 s", name)
		}
	}

	for _, rt := range routes {
		n := rt.method + " " + rt.path
		if rt.body {
			for _, b := range bodies {
				run(n+" body "+b.name, authed(rt, b.body), true)
			}
			// Over the route's limit, and a Content-Length that lies either way.
			limit := int64(maxSmallBody)
			if rt.path == "/generate" {
				limit = maxGenerateBody
			}
			big := []byte(`{"name":"` + strings.Repeat("a", int(limit)) + `"}`)
			run(n+" oversize", authed(rt, big), true)
			r := authed(rt, []byte(`{}`))
			r.ContentLength = 1 << 40
			run(n+" Content-Length claims a terabyte", r, true)
			r = authed(rt, big)
			r.ContentLength = 10
			run(n+" Content-Length claims 10 bytes", r, true)
			r = authed(rt, []byte(`{"name":"x"}`))
			r.Header.Set("Content-Type", "multipart/form-data; boundary=xyz")
			run(n+" wrong content type", r, false)
		}
		// Headers, cookies and query strings.
		hdr := func(name string, set func(r *http.Request)) {
			r := authed(rt, nil)
			set(r)
			run(n+" "+name, r, false)
		}
		hdr("invalid UTF-8 correlation id", func(r *http.Request) { r.Header["X-Correlation-Id"] = []string{"\xff\xfe\x00"} })
		hdr("60 KiB correlation id", func(r *http.Request) { r.Header.Set("X-Correlation-ID", strings.Repeat("a", 60<<10)) })
		hdr("two correlation ids", func(r *http.Request) { r.Header["X-Correlation-Id"] = []string{"a", "b"} })
		hdr("invalid UTF-8 API key", func(r *http.Request) { r.Header["X-Api-Key"] = []string{"\xff\x00" + key} })
		hdr("60 KiB API key", func(r *http.Request) { r.Header.Set("X-API-Key", strings.Repeat("k", 60<<10)) })
		hdr("two API keys", func(r *http.Request) { r.Header["X-Api-Key"] = []string{key, key} })
		hdr("60 KiB cookie", func(r *http.Request) {
			r.Header.Del("X-API-Key")
			r.Header.Set("Cookie", "gg_session="+strings.Repeat("c", 60<<10)+"; gg_admin="+strings.Repeat("d", 1000))
		})
		hdr("thousand cookies", func(r *http.Request) {
			var b strings.Builder
			for i := 0; i < 1000; i++ {
				fmt.Fprintf(&b, "gg_session=%d; ", i)
			}
			r.Header.Set("Cookie", b.String())
		})
		hdr("invalid UTF-8 cookie", func(r *http.Request) {
			r.Header.Del("X-API-Key")
			r.Header.Set("Cookie", "gg_session=\xff\xfe\x00; gg_admin=\"\xc3\x28\"")
		})
		hdr("malformed cookie header", func(r *http.Request) { r.Header.Set("Cookie", ";;=;gg_session;==x;\"") })
		hdr("query with invalid UTF-8 and NUL", func(r *http.Request) {
			r.URL.RawQuery = "limit=%FF&cursor=%00&action=%C3%28&since=%00&outcome=%FF&download=%00"
		})
		hdr("query api_key invalid UTF-8", func(r *http.Request) { r.Header.Del("X-API-Key"); r.URL.RawQuery = "api_key=%FF%00" })
		hdr("broken query escapes", func(r *http.Request) { r.URL.RawQuery = "limit=%zz&cursor=%&&&==" })
		hdr("huge numbers in query", func(r *http.Request) { r.URL.RawQuery = "limit=1e400&cursor=99999999999999999999999" })
		hdr("odd Range", func(r *http.Request) { r.Header.Set("Range", "bytes=-0,99999999999999999999-,5-1,\xff") })
		hdr("X-Forwarded-For garbage", func(r *http.Request) {
			r.Header.Set("X-Forwarded-For", "\xff, 999.1.1.1, ::::, "+strings.Repeat("1,", 5000))
		})
		hdr("Host with odd bytes", func(r *http.Request) { r.Host = "ex\xffample.com:99999" })
		for _, o := range []string{"null", "", "\xff\xfe", "http://example.com\x00", "http://EXAMPLE.COM", "http://example.com:80",
			"https://app.example.com.evil", "file://", "javascript:alert(1)", strings.Repeat("o", 10000), "https://app.example.com\r\nX-Evil: 1"} {
			hdr(fmt.Sprintf("Origin %.20q", o), func(r *http.Request) { r.Header.Set("Origin", o) })
		}
	}

	// Path tricks in every id.
	idRoutes := []struct{ method, prefix, suffix string }{
		{"GET", "/status/", ""}, {"GET", "/events/", ""}, {"GET", "/results/", ""}, {"GET", "/preview/", ""},
		{"DELETE", "/gallery/", ""}, {"GET", "/admin/accounts/", ""}, {"PATCH", "/admin/accounts/", ""},
		{"DELETE", "/admin/accounts/", ""}, {"POST", "/admin/accounts/", "/health-check"}, {"POST", "/admin/accounts/", "/deploy"},
	}
	ids := []string{"..", "%2e%2e", "..%2f..%2fetc%2fpasswd", "%2f", "%2F..%2F", "%00", "a%00b", "%ff", "%c3%28", "a%20b",
		strings.Repeat("a", 1000), strings.Repeat("1", 1000), "-1", "0x10", "1e3", "%E2%80%AE", "%u002e", "%252e%252e", "1;DROP TABLE accounts", "*"}
	for _, ir := range idRoutes {
		for _, id := range ids {
			r := authed(hostileRoute{method: ir.method, path: ir.prefix + "x" + ir.suffix}, nil)
			r.URL.RawPath = ir.prefix + id + ir.suffix
			r.URL.Path = strings.NewReplacer("%2f", "/", "%2F", "/", "%2e", ".", "%00", "\x00").Replace(r.URL.RawPath)
			r.RequestURI = r.URL.RawPath
			if ir.method == "PATCH" {
				r.Body = io.NopCloser(strings.NewReader(`{"name":"x"}`))
			}
			run(fmt.Sprintf("%s %s{%.30s}%s", ir.method, ir.prefix, id, ir.suffix), r, false)
		}
		// Raw NUL and invalid UTF-8 bytes in the decoded path, as a buggy proxy might pass them.
		for _, id := range []string{"a\x00b", "\xff\xfe", "../../etc/passwd"} {
			r := authed(hostileRoute{method: ir.method, path: ir.prefix + "x" + ir.suffix}, nil)
			r.URL.Path, r.URL.RawPath = ir.prefix+id+ir.suffix, ""
			run(fmt.Sprintf("%s %s{raw %q}%s", ir.method, ir.prefix, id, ir.suffix), r, false)
		}
	}

	// Admin body fields: wrong types, unknown fields, oversize and
	// injection-looking values; every base_url trick points at the trap.
	inject := []string{"'; DROP TABLE accounts; --", "<script>alert(1)</script>", "$(reboot)", "`reboot`", "../../etc/passwd",
		"a\nb", "x; rm -rf /", "%s%s%n", "{{7*7}}", "gpu.evil.com", "127.0.0.1:" + trapPort, "UPPER", "ab", strings.Repeat("a", 65), "a b", "a\u0000b", "é-gpu"}
	type adminBody struct{ name, body string }
	var adminBodies []adminBody
	q := func(s string) string { b, _ := jsonMarshal(s); return b }
	for i, v := range inject {
		adminBodies = append(adminBodies, adminBody{"workspace " + v, fmt.Sprintf(`{"name":"inj-%d","workspace":%s,"credentials":{}}`, i, q(v))})
		if !credentialKey.MatchString(v) {
			adminBodies = append(adminBodies, adminBody{"credential name " + v, fmt.Sprintf(`{"name":"cred-%d","workspace":"cred-ws","credentials":{%s:"x"}}`, i, q(v))})
		}
	}
	trapHost := "127.0.0.1:" + trapPort
	targets := []string{
		"http://0.0.0.0:" + trapPort, "http://[::]:" + trapPort, "http://localhost.:" + trapPort, "http://127.1:" + trapPort,
		"http://2130706433:" + trapPort, "http://0x7f000001:" + trapPort, "http://user:pw@" + trapHost, "http://" + trapHost + "@gpu.example.com",
		"https://gpu.example.com@" + trapHost, "http://" + trapHost + "/path", "http://" + trapHost + "/?q=1", "http://" + trapHost + "/#frag",
		"http://" + trapHost + "?", "file:///etc/passwd", "gopher://" + trapHost, "ftp://" + trapHost, "javascript:alert(1)", "//" + trapHost,
		trapHost, "http:/" + trapHost, "http://" + trapHost + "\\@gpu.example.com", " http://" + trapHost, "http://" + trapHost + "\r\nX: y",
		"http://[fe80::1%25lo]:" + trapPort, "http://gpu.example.com", "http://10.0.0.1:" + trapPort, "http://169.254.169.254", "http://" + trapHost + ":80",
		"https://" + strings.Repeat("a", 3000) + ".com", "http://%31%32%37.0.0.1:" + trapPort,
	}
	for i, u := range targets {
		adminBodies = append(adminBodies, adminBody{"base_url " + u, fmt.Sprintf(`{"name":"url-%d","workspace":"url-ws","credentials":{"proxy_key":"pk","proxy_secret":"ps"},"base_url":%s}`, i, q(u))})
	}
	for _, b := range []string{`"x"`, `1.5`, `-1`, `0`, `65`, `true`, `[]`, `{}`, `1e400`, `99999999999999999999`} {
		adminBodies = append(adminBodies, adminBody{"capacity " + b, `{"name":"cap","workspace":"cap-ws","credentials":{},"capacity":` + b + `}`})
	}
	for _, b := range []string{`"x"`, `[]`, `{"a":1}`, `{"a":{"b":"c"}}`, `{"token_id":"x\ny"}`, `{"token_id":"` + strings.Repeat("s", 5000) + `"}`,
		`{"a1":"","a2":"","a3":"","a4":"","a5":"","a6":"","a7":"","a8":"","a9":"","b1":"","b2":"","b3":"","b4":"","b5":"","b6":"","b7":"","b8":""}`} {
		adminBodies = append(adminBodies, adminBody{"credentials " + b, `{"name":"creds","workspace":"creds-ws","credentials":` + b + `}`})
	}
	for _, b := range []string{`1`, `null`, `[]`, `""`, `"   "`, `"` + strings.Repeat("n", 101) + `"`, `"a\u0007b"`} {
		adminBodies = append(adminBodies, adminBody{"name " + b, `{"name":` + b + `,"workspace":"name-ws","credentials":{}}`})
	}
	adminBodies = append(adminBodies,
		adminBody{"unknown field status", `{"name":"u","workspace":"u-ws","credentials":{},"status":"ready"}`},
		adminBody{"unknown field id", `{"name":"u","workspace":"u-ws","credentials":{},"id":1}`},
		adminBody{"workspace null", `{"name":"u","workspace":null,"credentials":{}}`},
		adminBody{"base_url number", `{"name":"u","workspace":"u-ws","credentials":{},"base_url":1}`},
	)
	for _, b := range adminBodies {
		r := authed(hostileRoute{method: "POST", path: "/admin/accounts"}, []byte(b.body))
		run("create account "+b.name, r, true)
	}
	patchPath := fmt.Sprintf("/admin/accounts/%d", good.ID)
	for _, b := range []string{`{"name":1}`, `{"name":"` + strings.Repeat("n", 101) + `"}`, `{"capacity":1e400}`, `{"capacity":"1"}`, `{"capacity":-1}`,
		`{"credentials":{"token_id":1}}`, `{"credentials":"x"}`, `{"status":"ready"}`, `{"status":"'; DROP TABLE accounts; --"}`, `{"status":1}`,
		`{"base_url":"http://10.0.0.1"}`, `{"base_url":"gopher://` + trapHost + `"}`, `{"base_url":"https://u:p@` + trapHost + `"}`,
		`{"driver":"ssh"}`, `{"driver":"comfyui","base_url":""}`, `{"driver":1}`,
		`{"base_url":"http://` + trapHost + `/path"}`, `{"base_url":"http://gpu.example.com"}`, `{"base_url":1}`,
		`{"credentials":{"a b":"x"}}`, `{"credentials":{"token_id":"x\ny"}}`, `{"workspace":"$(reboot)"}`, `{"id":2}`, `{}`, `[]`} {
		run("patch account "+b, authed(hostileRoute{method: "PATCH", path: patchPath}, []byte(b)), true)
	}

	// Every answer: 2xx or the structured 4xx; strict cases only 4xx.
	for _, o := range results {
		w := o.w
		switch {
		case w.Code >= 500:
			t.Errorf("%s: %d %.200s", o.name, w.Code, w.Body.String())
		case w.Code >= 400:
			if w.Code == 429 {
				t.Errorf("%s: throttled; the hostile table should stay under the limits", o.name)
			}
			errCode(t, w)
		case o.strict && w.Code < 300:
			t.Errorf("%s: accepted (%d) %.200s", o.name, w.Code, w.Body.String())
		}
	}
	if strings.Contains(e.logs.String(), `"msg":"panic"`) {
		t.Error("a handler panicked")
	}

	// Injection-looking names that are valid names are stored literally; the
	// accounts table is intact and every stored target is a valid one.
	w := e.do(req{method: "POST", path: "/admin/accounts", cookies: []*http.Cookie{ac},
		body: `{"name":"'; DROP TABLE accounts; -- <script>$(reboot)</script>","workspace":"lit-ws","credentials":{}}`})
	if w.Code != 201 {
		t.Fatalf("literal name: %d %s", w.Code, w.Body.String())
	}
	accs, err := e.db.ListAccounts(ctx)
	if err != nil {
		t.Fatalf("accounts table after hostile input: %v", err)
	}
	foundLiteral := false
	for _, a := range accs {
		if a.Name == "'; DROP TABLE accounts; -- <script>$(reboot)</script>" {
			foundLiteral = true
		}
		if !workspace.WorkspaceName.MatchString(a.Workspace) {
			t.Errorf("account %d stored with workspace %q", a.ID, a.Workspace)
		}
		if a.BaseURL != "" {
			if _, err := workspace.CheckBaseURL(a.BaseURL); err != nil {
				t.Errorf("account %d stored with invalid base_url %q", a.ID, a.BaseURL)
			}
		}
	}
	if !foundLiteral {
		t.Error("the injection-looking name was not stored literally")
	}

	// Rows written behind the server's back with unvalidated targets: a
	// health check fails and a proxied result is refused, without a request.
	for i, u := range []string{"http://0.0.0.0:" + trapPort, "http://localhost.:" + trapPort, "http://user:pw@" + trapHost, "http://" + trapHost + "/x?y",
		"http://[::]:" + trapPort, "ftp://" + trapHost} {
		a := e.account(fmt.Sprintf("behind-%d", i), u, map[string]string{"proxy_key": "pk", "proxy_secret": "ps"})
		w := e.do(req{method: "POST", path: fmt.Sprintf("/admin/accounts/%d/health-check", a.ID), cookies: []*http.Cookie{ac}})
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"status":"failed"`) {
			t.Errorf("health check of %q: %d %s", u, w.Code, w.Body.String())
		}
		tk := e.task("processing", a.ID)
		if w := e.do(req{method: "GET", path: "/results/" + tk.ID, header: map[string]string{"X-API-Key": key}}); errCode(t, w) != "proxy_target_invalid" {
			t.Errorf("proxied result via %q: %d %s", u, w.Code, w.Body.String())
		}
	}
	// A workspace name stored behind the server's back that would reshape the URL template.
	bad := &store.Account{Name: "bad-ws", Workspace: "evil.com/x?", Capacity: 1, Status: "pending"}
	if err := e.db.CreateAccount(ctx, bad, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if w := e.do(req{method: "POST", path: fmt.Sprintf("/admin/accounts/%d/health-check", bad.ID), cookies: []*http.Cookie{ac}}); !strings.Contains(w.Body.String(), `"status":"failed"`) {
		t.Errorf("health check of a bad workspace name: %d %s", w.Code, w.Body.String())
	}
	if !strings.Contains(e.logs.String(), `"action":"security.proxy_refused"`) {
		t.Error("refused proxy targets not audited")
	}
	if hits := tr.Hits(); len(hits) > 0 {
		t.Errorf("the trap received %d requests, first %q", len(hits), hits[0])
	}
	// Control: the trap does hear a validated target, so its silence above means something.
	valid := e.account("trap-valid", tr.URL, map[string]string{})
	e.do(req{method: "POST", path: fmt.Sprintf("/admin/accounts/%d/health-check", valid.ID), cookies: []*http.Cookie{ac}})
	if hits := tr.Hits(); len(hits) != 1 || hits[0] != "GET /health" {
		t.Errorf("control request to a valid target: %v", hits)
	}
	t.Logf("%d hostile requests", len(results))
}

func jsonMarshal(s string) (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}

// TestHostileWire: what the handler tests cannot show, on a real listener
// with the binary's header limit: a Content-Length far over the limit is
// refused before the body is read, a header block over the limit is refused,
// and a client that lies about its body length gets an answer, not a hang.
func TestHostileWire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.readyAccount()
	hs := httptest.NewUnstartedServer(e.h)
	hs.Config.MaxHeaderBytes = 64 << 10
	hs.Config.ReadHeaderTimeout = 2 * time.Second
	hs.Start()
	defer hs.Close()
	addr := strings.TrimPrefix(hs.URL, "http://")
	send := func(raw string) (int, string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer to %.60q: %v", raw, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	k := e.sec.APIKey
	// Claims a huge body, sends a few bytes and waits: answered at once.
	for _, path := range []string{"/generate", "/admin/accounts", "/admin/accounts/1"} {
		st, body := send("POST " + path + " HTTP/1.1\r\nHost: x\r\nX-API-Key: " + k + "\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{\"a\":")
		if path == "/generate" && (st != 413 || !strings.Contains(body, `"payload_too_large"`)) {
			t.Errorf("%s huge Content-Length: %d %s", path, st, body)
		}
		if st >= 500 {
			t.Errorf("%s huge Content-Length: %d %s", path, st, body)
		}
	}
	// Claims fewer bytes than it sends: the server reads what was declared.
	st, body := send("POST /generate HTTP/1.1\r\nHost: x\r\nX-API-Key: " + k + "\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{\"model\":\"flux\",\"mode\":\"t2i\",\"prompt\":\"x\"}")
	if st != 400 || !strings.Contains(body, `"invalid_json"`) {
		t.Errorf("short Content-Length: %d %s", st, body)
	}
	// Header block over the limit.
	st, _ = send("GET /gallery HTTP/1.1\r\nHost: x\r\nX-API-Key: " + k + "\r\nCookie: gg_session=" + strings.Repeat("c", 80<<10) + "\r\n\r\n")
	if st != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversize header block: %d", st)
	}
	// Under the limit, a long cookie is just a bad session.
	st, body = send("GET /gallery HTTP/1.1\r\nHost: x\r\nCookie: gg_session=" + strings.Repeat("c", 50<<10) + "\r\nConnection: close\r\n\r\n")
	if st != 401 || !strings.Contains(body, `"session_expired"`) {
		t.Errorf("long cookie: %d %.200s", st, body)
	}
	// Raw NUL and invalid UTF-8 in the request line never reach a handler as a 5xx.
	for _, line := range []string{"GET /status/a\x00b HTTP/1.1", "GET /status/\xff\xfe HTTP/1.1", "GET /status/%00 HTTP/1.1", "GET /gallery?limit=\xff HTTP/1.1"} {
		st, body := send(line + "\r\nHost: x\r\nX-API-Key: " + k + "\r\nConnection: close\r\n\r\n")
		if st >= 500 || st < 400 {
			t.Errorf("%q: %d %.200s", line, st, body)
		}
	}
	if strings.Contains(e.logs.String(), `"msg":"panic"`) {
		t.Error("a handler panicked")
	}
}
