package browser

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"gooni/internal/testutil"
)

func TestStaticAssetsCacheAndCSP(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	res, html := get("/")
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("GET /: %d Cache-Control %q, want 200 no-cache", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	csp := res.Header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("CSP %q lacks %q", csp, d)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows inline or eval: %q", csp)
	}
	if regexp.MustCompile(`<script(\s[^>]*)?>\s*[^<\s]`).MatchString(html) || strings.Contains(html, " style=") || strings.Contains(html, "<style") {
		t.Error("index.html carries inline script or style, which the CSP blocks")
	}

	// Asset URLs are relative to the page, so the UI also works under a base path.
	assets := regexp.MustCompile(`(?:src|href)="(assets/[^"]+)"`).FindAllStringSubmatch(html, -1)
	if len(assets) < 2 {
		t.Fatalf("index.html references %d assets, want the script and the stylesheet", len(assets))
	}
	if regexp.MustCompile(`(?:src|href)="/`).MatchString(html) {
		t.Error("index.html references an absolute path, which breaks under a base path")
	}
	hashed := regexp.MustCompile(`^/assets/[A-Za-z0-9_.-]+-[A-Z0-9]{8,}\.[a-z0-9]+$`)
	for _, m := range assets {
		path := "/" + m[1]
		if !hashed.MatchString(path) {
			t.Errorf("asset %s has no content hash in its name", path)
		}
		res, _ := get(path)
		cc := res.Header.Get("Cache-Control")
		if res.StatusCode != 200 || !strings.Contains(cc, "immutable") || !strings.Contains(cc, "max-age=31536000") {
			t.Errorf("GET %s: %d Cache-Control %q, want 200 and a year immutable", path, res.StatusCode, cc)
		}
		if res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s has no CSP header", path)
		}
	}
}

// TestErrorWatchSeesErrors keeps the no-JavaScript-errors check honest: an
// exception and a console.error must be caught, a failed request must not.
func TestErrorWatchSeesErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	eval[bool](p, `fetch("/gallery", {credentials: "omit"}).then(() => true)`) // a 401 the browser logs itself
	eval[bool](p, `(() => { console.error("probe console error"); setTimeout(() => { throw new Error("probe exception"); }, 0); return true; })()`)
	var got string
	testutil.WaitFor(t, 3*time.Second, "the error watch to see both probes", func() bool {
		p.mu.Lock()
		got = strings.Join(p.jsErrors, "\n")
		p.mu.Unlock()
		return strings.Contains(got, "probe console error") && strings.Contains(got, "probe exception")
	})
	if strings.Contains(got, "401") {
		t.Errorf("a failed request counted as a JavaScript error: %s", got)
	}
	p.mu.Lock()
	p.jsErrors = nil // the probes were planted on purpose
	p.mu.Unlock()
}
