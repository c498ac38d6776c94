package server

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"gooni/internal/config"
)

// doAt is e.do with the request's Host header set to host ("" keeps
// httptest's example.com).
func (e *testEnv) doAt(host string, r req) *httptest.ResponseRecorder {
	e.t.Helper()
	if host == "" {
		return e.do(r)
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	hr.Host = host
	if r.remote != "" {
		hr.RemoteAddr = r.remote
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	for _, c := range r.cookies {
		hr.AddCookie(c)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, hr)
	return w
}

// adminSessionAt is adminSession through host.
func (e *testEnv) adminSessionAt(host string) *http.Cookie {
	e.t.Helper()
	w := e.doAt(host, req{method: "POST", path: "/admin/session", header: map[string]string{"X-Admin-Key": e.sec.AdminKey}, remote: "203.0.113.60:1000"})
	c := cookieOf(w, "gg_admin")
	if w.Code != 200 || c == nil {
		e.t.Fatalf("POST /admin/session: %d %s", w.Code, w.Body.String())
	}
	return c
}

func publicURL(t *testing.T, raw string) *config.PublicURL {
	t.Helper()
	p, err := config.ParsePublicURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHostAllowlist: the server answers only for its own names (CONTRACT
// section 17); any other Host gets 421 host_not_allowed before CORS, the
// throttles and auth, in the contract's error shape.
func TestHostAllowlist(t *testing.T) {
	local := newEnv(t, func(c *Config) { c.ListenAddr = "127.0.0.1:8080" })
	lan := newEnv(t, func(c *Config) { c.ListenAddr = "192.168.1.20:8080" })
	all := newEnv(t, func(c *Config) { c.ListenAddr = "0.0.0.0:8080" })
	public := newEnv(t, func(c *Config) {
		c.ListenAddr = "0.0.0.0:8080"
		c.PublicURL = publicURL(t, "https://gen.example.com/gooni")
	})
	tls := newEnv(t, func(c *Config) { c.ListenAddr = "127.0.0.1:8443"; c.TLS = true })
	cases := []struct {
		env  *testEnv
		name string
		host string
		ok   bool
	}{
		{local, "listen address", "127.0.0.1:8080", true},
		{local, "localhost", "localhost:8080", true},
		{local, "LOCALHOST with a trailing dot", "LOCALHOST.:8080", true},
		{local, "IPv6 loopback", "[::1]:8080", true},
		{local, "another loopback IP", "127.0.0.2:8080", true},
		{local, "loopback on another port", "localhost:9999", false},
		{local, "no port (80) on 8080", "localhost", false},
		{local, "a rebound DNS name", "evil.example:8080", false},
		{local, "a name that ends in localhost", "evil.localhost:8080", false},
		{local, "empty Host", "", false},
		{local, "garbage", "\xff:8080", false},
		{lan, "its LAN address", "192.168.1.20:8080", true},
		{lan, "loopback too", "127.0.0.1:8080", true},
		{lan, "another LAN address", "192.168.1.21:8080", false},
		{all, "unspecified address is not a name", "0.0.0.0:8080", false},
		{all, "loopback", "localhost:8080", true},
		{all, "a LAN name without GG_PUBLIC_URL", "gooni.lan:8080", false},
		{public, "the public host", "gen.example.com", true},
		{public, "the public host, explicit default port", "gen.example.com:443", true},
		{public, "the public host in capitals", "GEN.EXAMPLE.COM", true},
		{public, "the public host on another port", "gen.example.com:8443", false},
		{public, "loopback for local tools", "127.0.0.1:8080", true},
		{public, "another host", "example.com", false},
		{public, "a rebound name", "evil.example:8080", false},
		{tls, "TLS: no port means 443", "localhost", false},
		{tls, "TLS: the port", "localhost:8443", true},
	}
	for _, c := range cases {
		w := c.env.doAt(c.host, req{method: "GET", path: "/health"})
		if c.ok && w.Code != 200 {
			t.Errorf("%s (%q): %d %s, want 200", c.name, c.host, w.Code, w.Body.String())
		}
		if !c.ok && (w.Code != 421 || errCode(t, w) != "host_not_allowed") {
			t.Errorf("%s (%q): %d %s, want 421 host_not_allowed", c.name, c.host, w.Code, w.Body.String())
		}
	}
	// Before throttling and auth: an admin route with no session still gets 421.
	if w := local.doAt("evil.example:8080", req{method: "GET", path: "/admin/accounts"}); w.Code != 421 {
		t.Errorf("admin route from a foreign host: %d", w.Code)
	}
	if w := local.doAt("evil.example:8080", req{method: "GET", path: "/admin/accounts"}); w.Header().Get("Content-Security-Policy") == "" {
		t.Error("the 421 answer has no security headers")
	}
}

// TestDNSRebinding: a page on evil.example whose name was rebound to this
// machine sends Host: evil.example:PORT and Origin: http://evil.example:PORT.
// Before, same-origin was computed from the Host, so it passed; now it
// answers 421 on every route and never issues a session. On a real
// loopback listener, as a browser would reach it.
func TestDNSRebinding(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	e := newEnv(t, func(c *Config) { c.ListenAddr = addr })
	hs := &http.Server{Handler: e.h, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	evil := "evil.example:" + port
	send := func(method, path, host, origin string) (*http.Response, string) {
		t.Helper()
		r, _ := http.NewRequest(method, "http://"+addr+path, nil)
		r.Host = host
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	for _, rt := range []struct{ method, path string }{
		{"POST", "/auth/session"}, {"GET", "/gallery"}, {"POST", "/generate"}, {"GET", "/admin/accounts"}, {"GET", "/"}, {"GET", "/health"},
	} {
		res, body := send(rt.method, rt.path, evil, "http://"+evil)
		if res.StatusCode != 421 || !strings.Contains(body, `"code":"host_not_allowed"`) {
			t.Errorf("%s %s from a rebound name: %d %s", rt.method, rt.path, res.StatusCode, body)
		}
		if len(res.Cookies()) > 0 {
			t.Errorf("%s %s from a rebound name set a cookie", rt.method, rt.path)
		}
	}
	// The same request under this server's own name is same-origin.
	own := "127.0.0.1:" + port
	if res, body := send("POST", "/auth/session", own, "http://"+own); res.StatusCode != 200 {
		t.Errorf("same-origin session from the loopback name: %d %s", res.StatusCode, body)
	}
	// An allowed Host with a foreign Origin is cross-origin: blocked.
	if res, body := send("POST", "/auth/session", own, "http://"+evil); res.StatusCode != 403 || !strings.Contains(body, "cors_origin_blocked") {
		t.Errorf("foreign origin: %d %s", res.StatusCode, body)
	}
}

// TestSameOriginFromAllowedOrigin: with GG_PUBLIC_URL the same-origin rule
// of section 5 uses its origin (and loopback names on the listen port),
// never the request's own Host.
func TestSameOriginFromAllowedOrigin(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.ListenAddr = "127.0.0.1:8080"
		c.PublicURL = publicURL(t, "https://gen.example.com")
	})
	cases := []struct {
		host, origin string
		ok           bool
	}{
		{"gen.example.com", "https://gen.example.com", true},
		{"gen.example.com", "https://GEN.example.com:443", true},
		{"127.0.0.1:8080", "https://gen.example.com", true}, // a proxy that sends its upstream's name
		{"localhost:8080", "http://localhost:8080", true},
		{"gen.example.com", "http://gen.example.com", false}, // the Host's own origin, but not the public scheme
		{"gen.example.com", "https://gen.example.com:8443", false},
		{"localhost:8080", "http://localhost:9999", false}, // another local service's page
		{"gen.example.com", "https://gen.example.com/", false},
		{"gen.example.com", "null", false},
	}
	for _, c := range cases {
		w := e.doAt(c.host, req{method: "GET", path: "/health", header: map[string]string{"Origin": c.origin}})
		if c.ok != (w.Code == 200) {
			t.Errorf("Host %q Origin %q: %d %s (want same-origin %v)", c.host, c.origin, w.Code, w.Body.String(), c.ok)
		}
		if !c.ok && errCode(t, w) != "cors_origin_blocked" {
			t.Errorf("Host %q Origin %q: %s", c.host, c.origin, w.Body.String())
		}
	}
}

// TestSecureBehindProxy: cookies get Secure and answers HSTS behind a
// trusted proxy that says X-Forwarded-Proto: https, not when an untrusted
// peer says it; with GG_PUBLIC_URL https always. Through a real reverse
// proxy on loopback.
func TestSecureBehindProxy(t *testing.T) {
	start := func(t *testing.T, mods ...func(*Config)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		e := newEnv(t, append([]func(*Config){func(c *Config) { c.ListenAddr = addr }}, mods...)...)
		hs := &http.Server{Handler: e.h, ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(ln)
		t.Cleanup(func() { hs.Close() })
		// The TLS-terminating proxy, reduced to what matters here: it tells
		// the upstream the client's scheme was https, and names the upstream
		// in Host (nginx's default, $proxy_host).
		target, _ := url.Parse("http://" + addr)
		proxy := httputil.NewSingleHostReverseProxy(target)
		director := proxy.Director
		proxy.Director = func(r *http.Request) {
			director(r)
			r.Host = target.Host
			r.Header.Set("X-Forwarded-Proto", "https")
		}
		front := httptest.NewServer(proxy)
		t.Cleanup(front.Close)
		return front.URL
	}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cases := []struct {
		name   string
		mods   []func(*Config)
		secure bool
	}{
		{"trusted proxy says https", []func(*Config){func(c *Config) { c.TrustedProxies = loopback }}, true},
		{"untrusted peer says https", nil, false},
		{"proxy trusted for another network", []func(*Config){func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }}, false},
		{"public URL is https", []func(*Config){func(c *Config) { c.PublicURL = publicURL(t, "https://gen.example.com") }}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			front := start(t, c.mods...)
			res, err := http.Post(front+"/auth/session", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			var sess *http.Cookie
			for _, ck := range res.Cookies() {
				if ck.Name == "gg_session" {
					sess = ck
				}
			}
			if res.StatusCode != 200 || sess == nil {
				t.Fatalf("POST /auth/session through the proxy: %d", res.StatusCode)
			}
			if sess.Secure != c.secure {
				t.Errorf("gg_session Secure = %v, want %v", sess.Secure, c.secure)
			}
			if hsts := res.Header.Get("Strict-Transport-Security"); (hsts != "") != c.secure {
				t.Errorf("HSTS %q, want present = %v", hsts, c.secure)
			}
		})
	}
}

// TestForwardedProtoNearestProxyDecides: behind a trusted proxy the scheme
// is the last X-Forwarded-Proto element, the one the nearest proxy added,
// whether proxies appended to one header line or each sent its own; an
// untrusted peer's word counts for nothing (CONTRACT section 17).
func TestForwardedProtoNearestProxyDecides(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	for _, c := range []struct {
		name   string
		values []string // X-Forwarded-Proto header lines, in order
		remote string
		secure bool
	}{
		{"https", []string{"https"}, "127.0.0.1:4000", true},
		{"http", []string{"http"}, "127.0.0.1:4000", false},
		{"appended on one line", []string{"http, https"}, "127.0.0.1:4000", true},
		{"nearest says http", []string{"https, http"}, "127.0.0.1:4000", false},
		{"an empty element first", []string{",https"}, "127.0.0.1:4000", true},
		{"one line per proxy", []string{"http", "https"}, "127.0.0.1:4000", true},
		{"one line per proxy, nearest http", []string{"https", "http"}, "127.0.0.1:4000", false},
		{"untrusted peer", []string{"https"}, "198.51.100.7:4000", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := e.do(req{method: "POST", path: "/auth/session", remote: c.remote, multi: http.Header{"X-Forwarded-Proto": c.values}})
			ck := cookieOf(w, "gg_session")
			if w.Code != 200 || ck == nil {
				t.Fatalf("POST /auth/session: %d %s", w.Code, w.Body.String())
			}
			if ck.Secure != c.secure {
				t.Errorf("gg_session Secure = %v, want %v", ck.Secure, c.secure)
			}
			if hsts := w.Header().Get("Strict-Transport-Security"); (hsts != "") != c.secure {
				t.Errorf("HSTS %q, want present = %v", hsts, c.secure)
			}
		})
	}
}

// TestBasePath: with GG_PUBLIC_URL=https://gen.example.com/gooni the URLs
// the API returns carry /gooni, and the session cookie is scoped to it when
// the request came through the public host (a loopback tool keeps "/").
func TestBasePath(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.ListenAddr = "127.0.0.1:8080"
		c.PublicURL = publicURL(t, "https://gen.example.com/gooni/")
	})
	ready := e.readyAccount()
	w := e.doAt("gen.example.com", req{method: "POST", path: "/auth/session"})
	c := cookieOf(w, "gg_session")
	if w.Code != 200 || c == nil || c.Path != "/gooni/" || !c.Secure {
		t.Fatalf("session through the public host: %d %+v", w.Code, c)
	}
	if w := e.doAt("127.0.0.1:8080", req{method: "POST", path: "/auth/session", remote: "127.0.0.1:5"}); cookieOf(w, "gg_session").Path != "/" {
		t.Errorf("session on the loopback name: cookie %+v", cookieOf(w, "gg_session"))
	}
	w = e.doAt("gen.example.com", req{method: "POST", path: "/generate", cookies: []*http.Cookie{c},
		body: `{"model":"flux","mode":"t2i","prompt":"a lighthouse"}`})
	var acc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &acc); err != nil || w.Code != 202 {
		t.Fatalf("generate: %d %s", w.Code, w.Body.String())
	}
	id, _ := acc["task_id"].(string)
	for k, want := range map[string]string{"status_url": "/gooni/status/" + id, "result_url": "/gooni/results/" + id, "preview_url": "/gooni/preview/" + id} {
		if acc[k] != want {
			t.Errorf("%s = %q, want %q", k, acc[k], want)
		}
	}
	w = e.doAt("gen.example.com", req{method: "GET", path: "/status/" + id, cookies: []*http.Cookie{c}})
	var v TaskView
	json.Unmarshal(w.Body.Bytes(), &v)
	if v.ResultURL != "/gooni/results/"+id || v.PreviewURL != "/gooni/preview/"+id {
		t.Errorf("task view URLs %q %q", v.ResultURL, v.PreviewURL)
	}
	e.task("done", ready.ID)
	w = e.doAt("gen.example.com", req{method: "GET", path: "/gallery", cookies: []*http.Cookie{c}})
	if !strings.Contains(w.Body.String(), `"result_url":"/gooni/results/`) {
		t.Errorf("gallery URLs lack the base path: %s", w.Body.String())
	}
	// Logging out clears the cookie at the path it was set.
	w = e.doAt("gen.example.com", req{method: "DELETE", path: "/auth/session", cookies: []*http.Cookie{c}})
	if out := cookieOf(w, "gg_session"); out == nil || out.Path != "/gooni/" || out.MaxAge >= 0 {
		t.Errorf("logout cookie %+v", out)
	}
}

// TestServedDocs: the Admin page's guides are served read-only as text,
// without auth, from the files the binary carries.
func TestServedDocs(t *testing.T) {
	docs := map[string]string{"docs/WORKSPACES.md": "# Workspaces\n", "modal/README.md": "# Modal\n"}
	fsys := fstest.MapFS{}
	for name, text := range docs {
		fsys[name] = &fstest.MapFile{Data: []byte(text)}
	}
	e := newEnv(t, func(c *Config) { c.Docs = fsys })
	for route, file := range map[string]string{"/docs/WORKSPACES.md": "docs/WORKSPACES.md", "/docs/modal/README.md": "modal/README.md"} {
		w := e.do(req{method: "GET", path: route})
		if w.Code != 200 || w.Body.String() != docs[file] || w.Header().Get("Content-Type") != "text/plain; charset=utf-8" ||
			w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d %q %v", route, w.Code, w.Body.String(), w.Header())
		}
	}
	for _, p := range []string{"/docs/ARCHITECTURE.md", "/docs/../SECURITY.md", "/docs/modal/modal_app.py"} {
		if w := e.do(req{method: "GET", path: p}); w.Code != 404 {
			t.Errorf("GET %s: %d", p, w.Code)
		}
	}
	if w := newEnv(t).do(req{method: "GET", path: "/docs/WORKSPACES.md"}); w.Code != 404 {
		t.Errorf("without docs: %d", w.Code)
	}
}
