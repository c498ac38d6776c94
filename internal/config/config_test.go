package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Load(nil, func(string) string { return "" }, func(io.Writer) {}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DataDir != "./data" || c.HealthInterval != time.Minute || c.SessionMode != "open" ||
		c.SessionTTL != 24*time.Hour || c.AdminSessionTTL != 8*time.Hour || c.TTLImage != 10*time.Minute ||
		c.TTLVideo != 30*time.Minute || c.QueueMax != 1000 || c.DeployCommand != "modal deploy modal/modal_app.py" ||
		c.WorkspaceURL != "https://{workspace}--gooni-inference.modal.run" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestConfigFlagsOverrideEnvironment(t *testing.T) {
	env := map[string]string{"GG_ADDR": "127.0.0.1:1", "GG_DATA_DIR": "/env"}
	c, err := Load([]string{"--addr", "127.0.0.1:2", "--demo"}, func(k string) string { return env[k] }, func(io.Writer) {}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:2" || c.DataDir != "/env" || !c.Demo {
		t.Fatalf("%+v", c)
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	cases := map[string]string{
		"GG_SESSION_MODE":    "maybe",
		"GG_TTL_IMAGE":       "soon",
		"GG_QUEUE_MAX":       "-1",
		"FRONTEND_ORIGINS":   "*",
		"GG_TRUSTED_PROXIES": "not-a-cidr",
		"GG_ADDR":            "8080",
		"GG_WORKSPACE_URL":   "https://fixed.example",
		"GG_TLS_CERT":        "/only/cert.pem",
		"GG_AUDIT_RETENTION": "720h",
		"GG_API_KEY_GRACE":   "soon",
	}
	for k, v := range cases {
		_, err := Load(nil, func(name string) string {
			if name == k {
				return v
			}
			return ""
		}, func(io.Writer) {}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: err %v", k, v, err)
		}
	}
}

func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "[::1]:80": true, "localhost:1": true,
		"0.0.0.0:8080": false, ":8080": false, "192.168.1.2:80": false} {
		if got := LoopbackAddr(addr); got != want {
			t.Errorf("%s: %v", addr, got)
		}
	}
}

// TestAPIKeyGraceZeroMeansNone: SECURITY.md tells operators to set
// GG_API_KEY_GRACE=0 after a compromise; the server must start with it (it
// once refused with "must be a positive duration" while the rotation command
// accepted it), and a negative or unreadable grace is refused by name.
func TestAPIKeyGraceZeroMeansNone(t *testing.T) {
	for v, want := range map[string]time.Duration{"": DefaultAPIKeyGrace, "0": 0, "0s": 0, "36h": 36 * time.Hour} {
		c, err := Load(nil, func(k string) string { return map[string]string{"GG_API_KEY_GRACE": v}[k] }, func(io.Writer) {}, io.Discard)
		if err != nil || c.Secrets.APIKeyGrace != want {
			t.Errorf("GG_API_KEY_GRACE=%q: grace %v, err %v; want %v", v, c.Secrets.APIKeyGrace, err, want)
		}
		o, err := LoadOffline(func(k string) string { return map[string]string{"GG_API_KEY_GRACE": v}[k] })
		if err != nil || o.Secrets.APIKeyGrace != want {
			t.Errorf("offline GG_API_KEY_GRACE=%q: grace %v, err %v; want %v", v, o.Secrets.APIKeyGrace, err, want)
		}
	}
	for _, v := range []string{"-1h", "soon"} {
		if _, err := LoadOffline(func(k string) string { return map[string]string{"GG_API_KEY_GRACE": v}[k] }); err == nil || !strings.Contains(err.Error(), "GG_API_KEY_GRACE") {
			t.Errorf("GG_API_KEY_GRACE=%q: err %v, want one naming the variable", v, err)
		}
	}
}

// TestLimitsVariables: the version 2 limits (CONTRACT section 18) have their
// defaults and refuse what is not a positive number or size.
func TestLimitsVariables(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := Load(nil, env(nil), func(io.Writer) {}, io.Discard)
	if err != nil || c.MaxStreams != 2000 || c.MaxUploads != 4 || c.InputQuota != 2<<30 {
		t.Fatalf("defaults: streams %d uploads %d quota %d (%v)", c.MaxStreams, c.MaxUploads, c.InputQuota, err)
	}
	c, err = Load(nil, env(map[string]string{"GG_MAX_STREAMS": "10", "GG_MAX_UPLOADS": "1", "GG_INPUT_QUOTA": "512MiB"}), func(io.Writer) {}, io.Discard)
	if err != nil || c.MaxStreams != 10 || c.MaxUploads != 1 || c.InputQuota != 512<<20 {
		t.Fatalf("set: %+v %v", c, err)
	}
	for k, v := range map[string]string{"GG_MAX_STREAMS": "0", "GG_MAX_UPLOADS": "many", "GG_INPUT_QUOTA": "2 lots"} {
		if _, err := Load(nil, env(map[string]string{k: v}), func(io.Writer) {}, io.Discard); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: %v, want an error naming it", k, v, err)
		}
	}
	for in, want := range map[string]int64{"1048576": 1 << 20, "2GiB": 2 << 30, "10 MB": 10 << 20, "3k": 3 << 10} {
		if n, err := ParseSize(in); err != nil || n != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, n, err, want)
		}
	}
}

// TestPublicURL: GG_PUBLIC_URL gives the host a Host header must name and
// the base path a proxy strips (CONTRACT section 17); anything that is not
// a plain http(s) URL is refused at start with the variable's name.
func TestPublicURL(t *testing.T) {
	good := []struct {
		raw, scheme, host, base, origin string
	}{
		{"https://gen.example.com", "https", "gen.example.com", "", "https://gen.example.com"},
		{"https://Gen.Example.COM./", "https", "gen.example.com", "", "https://gen.example.com"},
		{"https://example.com:443/gooni/", "https", "example.com", "/gooni", "https://example.com"},
		{"http://example.com:80/a/b", "http", "example.com", "/a/b", "http://example.com"},
		{"https://example.com:8443/gooni", "https", "example.com:8443", "/gooni", "https://example.com:8443"},
		{"http://[2001:db8::1]:8080", "http", "[2001:db8::1]:8080", "", "http://[2001:db8::1]:8080"},
		{"https://[2001:DB8::1]", "https", "[2001:db8::1]", "", "https://[2001:db8::1]"},
	}
	for _, g := range good {
		c, err := Load(nil, func(k string) string { return map[string]string{"GG_PUBLIC_URL": g.raw}[k] }, func(io.Writer) {}, io.Discard)
		if err != nil {
			t.Errorf("%s: %v", g.raw, err)
			continue
		}
		p := c.PublicURL
		if p == nil || p.Scheme != g.scheme || p.Host != g.host || p.BasePath != g.base || p.Origin() != g.origin {
			t.Errorf("%s: %+v", g.raw, p)
		}
	}
	for _, bad := range []string{"gen.example.com", "ftp://example.com", "https://", "https://user:pw@example.com",
		"https://example.com/?q=1", "https://example.com/#top", "https://example.com:99999", "https://example.com/a//b",
		"https://example.com/a/../b", "javascript:alert(1)", "https:///path"} {
		_, err := Load(nil, func(k string) string { return map[string]string{"GG_PUBLIC_URL": bad}[k] }, func(io.Writer) {}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "GG_PUBLIC_URL") {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
	c, err := Load(nil, func(string) string { return "" }, func(io.Writer) {}, io.Discard)
	if err != nil || c.PublicURL != nil {
		t.Errorf("unset: %+v %v", c.PublicURL, err)
	}
}

func TestSessionModeInvite(t *testing.T) {
	c, err := Load(nil, func(k string) string { return map[string]string{"GG_SESSION_MODE": "invite"}[k] }, func(io.Writer) {}, io.Discard)
	if err != nil || c.SessionMode != "invite" {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestNormalizeHost(t *testing.T) {
	for _, c := range []struct{ in, scheme, want string }{
		{"Example.COM", "http", "example.com"},
		{"example.com:80", "http", "example.com"},
		{"example.com:80", "https", "example.com:80"},
		{"example.com:443", "https", "example.com"},
		{"localhost.:8080", "http", "localhost:8080"},
		{"[::1]:8080", "http", "[::1]:8080"},
		{"[::1]", "http", "[::1]"},
		{"127.0.0.1:8080", "https", "127.0.0.1:8080"},
	} {
		if got := NormalizeHost(c.in, c.scheme); got != c.want {
			t.Errorf("NormalizeHost(%q, %s) = %q, want %q", c.in, c.scheme, got, c.want)
		}
	}
}
