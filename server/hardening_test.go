package server

import (
	"bytes"
	"context"
	"net/http/httptest"
	"sync"

	"database/sql"
	"encoding/json"
	"fmt"
	"gooni/internal/testutil"
	"gooni/internal/workspace"
	"gooni/store"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestThrottleStateIsBounded (issue 11 point 4): 300k distinct client
// addresses used to make every new key scan the whole map under the mutex
// and the map never shrank inside the window. The limiter now remembers at
// most its cap of keys whatever arrives, and still enforces N per key for a
// key it remembers. Inputs tried: 5,000 distinct keys against a cap of 1,000,
// all inside one window.
func TestThrottleStateIsBounded(t *testing.T) {
	clk := testutil.NewClock(time.Unix(5000, 0))
	l := NewLimiter(2, time.Minute, clk.Now, 1000)
	for i := 0; i < 5000; i++ {
		l.Allow(fmt.Sprintf("ip:10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	if n := l.Len(); n > 1000 {
		t.Fatalf("the limiter holds %d keys, want at most its cap of 1000", n)
	}
	for i := 0; i < 2; i++ {
		if ok, _, _ := l.Allow("ip:victim"); !ok {
			t.Fatalf("request %d of a fresh key refused", i+1)
		}
	}
	if ok, _, _ := l.Allow("ip:victim"); ok {
		t.Fatal("the third request in the window was admitted")
	}
}

// TestThrottleKeysIPv6ByNetwork (issue 11 point 4): one IPv6 host owns a /64,
// so addresses of one /64 share a limit, while another /64 and IPv4 clients
// do not. Inputs tried: 10 admissions from 2001:db8:1:2::1 .. ::a, then an
// 11th from 2001:db8:1:2:ffff::9 (same /64), then 2001:db8:1:3::1.
func TestThrottleKeysIPv6ByNetwork(t *testing.T) {
	e := newEnv(t)
	do := func(addr string) int {
		return e.do(req{method: "POST", path: "/auth/session", remote: "[" + addr + "]:4000"}).Code
	}
	for i := 1; i <= 10; i++ {
		if c := do(fmt.Sprintf("2001:db8:1:2::%x", i)); c != 200 {
			t.Fatalf("request %d: status %d", i, c)
		}
	}
	if c := do("2001:db8:1:2:ffff::9"); c != 429 {
		t.Fatalf("11th request from the same /64: status %d, want 429", c)
	}
	if c := do("2001:db8:1:3::1"); c != 200 {
		t.Fatalf("another /64: status %d, want 200", c)
	}
	if clientKey("192.0.2.7") != "192.0.2.7" || clientKey("::ffff:192.0.2.7") != "::ffff:192.0.2.7" {
		t.Error("IPv4 clients must be keyed by their address")
	}
}

// BenchmarkLimiterManyKeys: the cost of one request with a full limiter of
// 100k remembered keys (compare BenchmarkLimiterOneKey in the same run).
func BenchmarkLimiterManyKeys(b *testing.B) {
	l := NewLimiter(10, time.Minute, time.Now, 0)
	for i := 0; i < DefaultLimiterKeys; i++ {
		l.Allow(fmt.Sprintf("ip:%d", i))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.Allow(fmt.Sprintf("ip:new-%d", i))
	}
}

// BenchmarkLimiterOneKey is the reference for BenchmarkLimiterManyKeys.
func BenchmarkLimiterOneKey(b *testing.B) {
	l := NewLimiter(1<<30, time.Minute, time.Now, 0)
	for i := 0; i < b.N; i++ {
		l.Allow("ip:one")
	}
}

// TestBadAuditDetailsRenderAsText (issue 11 point 5): one audit row whose
// details column is not valid JSON made every /admin/logs page holding it
// answer 500. It is shown as its text instead. Input tried: a row inserted
// straight into the database file with details `{"half":` .
func TestBadAuditDetailsRenderAsText(t *testing.T) {
	e := newEnv(t)
	admin := e.adminSession()
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(e.dataDir, "gooni.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`INSERT INTO audit_events (ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac)
		VALUES (?, 'admin:x', '127.0.0.1', 'account.update', 'account:1', 'success', 'c', '{"half":', x'00', x'00')`, time.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	w := e.do(req{method: "GET", path: "/admin/logs", cookies: []*http.Cookie{admin}})
	if w.Code != 200 {
		t.Fatalf("GET /admin/logs: %d %s", w.Code, w.Body.String())
	}
	var page struct {
		Items []struct {
			Action  string `json:"action"`
			Details any    `json:"details"`
		} `json:"items"`
	}
	json.Unmarshal(w.Body.Bytes(), &page)
	if len(page.Items) == 0 || page.Items[0].Details != `{"half":` {
		t.Fatalf("the bad row's details = %#v, want the stored text", page.Items)
	}
	for _, it := range page.Items[1:] {
		if _, ok := it.Details.(map[string]any); !ok {
			t.Errorf("a good row's details are not an object: %#v", it.Details)
		}
	}
}

// TestMalformedQueryKeyNeverFallsThrough (issue 11 point 13): url.Query()
// silently drops a pair it cannot decode, so "?api_key=%zz" with a valid
// session cookie was let in through the cookie. A credential that is present
// but unreadable is a wrong one. Inputs tried: api_key=%zz, api_key=%,
// api%5Fkey=%zz (escaped name), a;api_key=x (semicolon), api_key=%zz&api_key=<good>.
func TestMalformedQueryKeyNeverFallsThrough(t *testing.T) {
	e := newEnv(t)
	user := e.userSession()
	for _, q := range []string{"api_key=%zz", "api_key=%", "api%5Fkey=%zz", "a;api_key=x", "api_key=%zz&api_key=" + e.sec.APIKey} {
		w := e.do(req{method: "GET", path: "/gallery?" + q, cookies: []*http.Cookie{user}})
		if w.Code != 401 || errCode(t, w) != "invalid_api_key" {
			t.Errorf("?%s with a live cookie: %d %s, want 401 invalid_api_key", q, w.Code, w.Body.String())
		}
	}
	// Unrelated malformed pairs are not credentials: the cookie decides.
	if w := e.do(req{method: "GET", path: "/gallery?x=%zz", cookies: []*http.Cookie{user}}); w.Code != 200 {
		t.Errorf("?x=%%zz with a live cookie: %d, want 200", w.Code)
	}
	if w := e.do(req{method: "GET", path: "/gallery?api_key=" + url.QueryEscape(e.sec.APIKey)}); w.Code != 200 {
		t.Errorf("a right api_key: %d, want 200", w.Code)
	}
}

// TestMediaSymlinkIsNotFollowed (issue 11 point 15): a link planted in
// media/ in place of a result must not serve the file it points to. Input
// tried: media/<id>.png replaced by a symlink to a file outside the data dir.
func TestMediaSymlinkIsNotFollowed(t *testing.T) {
	e := newEnv(t)
	acc := e.readyAccount()
	done := e.task("done", acc.ID)
	outside := filepath.Join(t.TempDir(), "secret.txt")
	os.WriteFile(outside, []byte("outside the data directory"), 0o600)
	res := filepath.Join(e.dataDir, "media", done.ID+".png")
	os.Remove(res)
	if err := os.Symlink(outside, res); err != nil {
		t.Fatal(err)
	}
	w := e.do(req{method: "GET", path: "/results/" + done.ID, header: map[string]string{"X-API-Key": e.sec.APIKey}})
	if w.Code == 200 || strings.Contains(w.Body.String(), "outside the data directory") {
		t.Fatalf("a symlinked result was followed: %d %q", w.Code, w.Body.String())
	}
	if errCode(t, w) != "storage_failed" {
		t.Errorf("code %s, want storage_failed", errCode(t, w))
	}
}

// TestRangeWithAnotherUnitIsIgnored (issue 11 point 16): RFC 9110 section
// 14.2: a Range whose unit the server does not know is ignored (200, the
// whole file), not 416. Inputs tried: "items=0-1", "lines=1-2", "Bytes=0-3"
// (case-insensitive unit: a real range, 206).
func TestRangeWithAnotherUnitIsIgnored(t *testing.T) {
	e := newEnv(t)
	done := e.task("done", e.readyAccount().ID)
	key := e.sec.APIKey
	for _, rg := range []string{"items=0-1", "lines=1-2", "bogus"} {
		w := e.do(req{method: "GET", path: "/results/" + done.ID, header: map[string]string{"X-API-Key": key, "Range": rg}})
		if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), pngBytes) {
			t.Errorf("Range %q: %d (%d bytes), want 200 and the whole file", rg, w.Code, w.Body.Len())
		}
	}
	w := e.do(req{method: "GET", path: "/results/" + done.ID, header: map[string]string{"X-API-Key": key, "Range": "Bytes=0-3"}})
	if w.Code != 206 || !bytes.Equal(w.Body.Bytes(), pngBytes[:4]) {
		t.Errorf("Range Bytes=0-3: %d %q, want 206 and 4 bytes", w.Code, w.Body.Bytes())
	}
}

// TestWorkspaceNameNeverStartsWithHyphen (issue 11 point 16): a DNS label
// cannot start with '-' (RFC 1123), so neither can a workspace name.
func TestWorkspaceNameNeverStartsWithHyphen(t *testing.T) {
	e := newEnv(t)
	admin := e.adminSession()
	for name, want := range map[string]int{"-abc": 400, "--x": 400, "abc": 201, "a-b-": 201, "9ab": 201} {
		w := e.do(req{method: "POST", path: "/admin/accounts", cookies: []*http.Cookie{admin},
			body: fmt.Sprintf(`{"name":"n%s","workspace":%q,"credentials":{}}`, name, name)})
		if w.Code != want {
			t.Errorf("workspace %q: %d %s, want %d", name, w.Code, w.Body.String(), want)
		}
	}
}

// TestProxyRefusesWhatTheBytesDoNotShow (issue 11 point 11): while a task is
// on its workspace, /results and /preview pass its media through; the
// workspace's claimed Content-Type used to pass as it was (image/svg+xml
// with a script, video/html). The same allowlist and byte check as the copy
// into media/ apply, else worker_unavailable. Inputs tried: an SVG with a
// script as image/svg+xml, HTML as video/html, a PNG declared as image/jpeg,
// a PNG as video/mp4 for an image task, and a real PNG as image/png (passed).
func TestProxyRefusesWhatTheBytesDoNotShow(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	ctype, body := "", []byte(nil)
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", ctype)
		w.Write(body)
	}))
	defer ws.Close()
	e.wireDispatcher(workspace.SimConfig{}, nil)
	ctx := context.Background()
	acc := &store.Account{Name: "proxied", Workspace: "proxied", BaseURL: ws.URL, Capacity: 1}
	if err := e.db.CreateAccount(ctx, acc, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	task := e.task("processing", acc.ID)
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	for _, c := range []struct {
		ctype string
		body  []byte
		want  int
	}{
		{"image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), 502},
		{"video/html", []byte("<html><script>alert(1)</script></html>"), 502},
		{"image/jpeg", pngBytes, 502},
		{"video/mp4", pngBytes, 502},
		{"image/png", pngBytes, 200},
	} {
		mu.Lock()
		ctype, body = c.ctype, c.body
		mu.Unlock()
		for _, path := range []string{"/results/", "/preview/"} {
			w := e.do(req{method: "GET", path: path + task.ID, header: key})
			if w.Code != c.want {
				t.Errorf("%s%s with %s: %d %s, want %d", path, task.ID, c.ctype, w.Code, w.Body.String(), c.want)
			}
			if c.want == 502 && (errCode(t, w) != "worker_unavailable" || strings.Contains(w.Body.String(), "<script>")) {
				t.Errorf("%s with %s: %s, want worker_unavailable and none of the bytes", path, c.ctype, w.Body.String())
			}
			if c.want == 200 && (!bytes.Equal(w.Body.Bytes(), pngBytes) || w.Header().Get("Content-Type") != "image/png") {
				t.Errorf("%s of a real PNG: %q %q", path, w.Header().Get("Content-Type"), w.Body.Bytes())
			}
		}
	}
}
