package cli

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"gooni/internal/config"
)

// TestWarnHosts: bound beyond loopback without GG_PUBLIC_URL, the server
// says at start that people on the network will get 421; on loopback, or
// with a public URL, it does not warn.
func TestWarnHosts(t *testing.T) {
	pub, _ := config.ParsePublicURL("https://gen.example.com/gooni")
	cases := []struct {
		addr string
		pub  *config.PublicURL
		warn bool
	}{
		{"0.0.0.0:8080", nil, true},
		{"192.168.1.5:8080", nil, true},
		{":8080", nil, true},
		{"127.0.0.1:8080", nil, false},
		{"localhost:8080", nil, false},
		{"0.0.0.0:8080", pub, false},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		warnHosts(&config.Config{Addr: c.addr, PublicURL: c.pub}, slog.New(slog.NewJSONHandler(&buf, nil)))
		got := strings.Contains(buf.String(), `"level":"WARN"`) && strings.Contains(buf.String(), "GG_PUBLIC_URL")
		if got != c.warn {
			t.Errorf("%s (public %v): warned %v, want %v: %s", c.addr, c.pub != nil, got, c.warn, buf.String())
		}
	}
}
