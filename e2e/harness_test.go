// Package e2e runs the real gooni binary as separate processes (server and
// workspace simulators) and checks what a user and an operator would see
// through HTTP, the logs and the database file, including after kill -9.
package e2e

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "golang.org/x/image/webp"
	_ "modernc.org/sqlite"

	"gooni/internal/testutil"
)

// gooniBin is the binary built once for the whole package.
var gooniBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := testutil.BuildGooni()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	gooniBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// newProcess prepares a gooni process with the given arguments and extra
// environment (see testutil.Process: killed at the end, output shown on failure).
func newProcess(t testing.TB, name string, args, env []string) *testutil.Process {
	return testutil.NewProcess(t, name, gooniBin, args, env)
}

// sim is a `gooni workspace-sim` process on a fixed loopback address.
type sim struct {
	*testutil.Process
	t    testing.TB
	addr string
}

// startSim runs a workspace simulator with the given extra flags and waits
// until it answers HTTP.
func startSim(t testing.TB, name string, flags ...string) *sim {
	t.Helper()
	s := &sim{t: t, addr: testutil.FreeAddr(t)}
	s.Process = newProcess(t, name, append([]string{"workspace-sim", "--addr", s.addr}, flags...), nil)
	s.start()
	return s
}

func (s *sim) baseURL() string { return "http://" + s.addr }

// start (re)launches the simulator and waits until it answers anything.
func (s *sim) start() {
	s.t.Helper()
	s.Process.Start()
	if err := s.WaitHTTP(s.baseURL()+"/health", 10*time.Second, func(int) bool { return true }); err != nil {
		s.t.Fatal(err)
	}
}

// restartWith replaces the simulator's flags (same address) and starts it.
func (s *sim) restartWith(flags ...string) {
	s.t.Helper()
	s.Kill()
	s.Args = append([]string{"workspace-sim", "--addr", s.addr}, flags...)
	s.start()
}

// server is a `gooni` serve process with its data directory and keys.
type server struct {
	*testutil.Process
	t       testing.TB
	addr    string
	dataDir string
	apiKey  string
	client  *http.Client // user calls, X-API-Key added per request
	admin   *http.Client // carries the gg_admin cookie
}

// startServer runs gooni on a fresh data directory with the extra environment
// and waits for /health; the API and admin keys are read from the secrets it
// generated (so they never pass through argv or the test's output).
func startServer(t testing.TB, env ...string) *server {
	t.Helper()
	return startServerOn(t, t.TempDir(), env...)
}

// startServerOn is startServer on an existing data directory.
func startServerOn(t testing.TB, dataDir string, env ...string) *server {
	t.Helper()
	return startServerUnder(t, dataDir, nil, env...)
}

// startServerUnder is startServerOn with the binary run under prefix (a
// command such as prlimit that then runs it).
func startServerUnder(t testing.TB, dataDir string, prefix []string, env ...string) *server {
	t.Helper()
	s := &server{t: t, addr: testutil.FreeAddr(t), dataDir: dataDir}
	full := append([]string{"GG_ADDR=" + s.addr, "GG_DATA_DIR=" + dataDir}, env...)
	s.Process = newProcess(t, "gooni", nil, full)
	s.Process.Prefix = prefix
	s.client = &http.Client{Timeout: 10 * time.Second}
	jar, _ := cookiejar.New(nil)
	s.admin = &http.Client{Timeout: 30 * time.Second, Jar: jar}
	s.start()
	key, err := os.ReadFile(filepath.Join(dataDir, "secrets", "api_key"))
	if err != nil {
		t.Fatalf("read generated api key: %v", err)
	}
	s.apiKey = strings.TrimSpace(string(key))
	return s
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

// start (re)launches the server and waits until /health is 200.
func (s *server) start() {
	s.t.Helper()
	s.Process.Start()
	s.waitHealthy(20 * time.Second)
}

func (s *server) waitHealthy(timeout time.Duration) {
	s.t.Helper()
	if err := s.WaitHTTP(s.url("/health"), timeout, func(code int) bool { return code == http.StatusOK }); err != nil {
		s.t.Fatal(err)
	}
}

// jsonRequest is a request with body (when not nil) sent as JSON.
func jsonRequest(method, url string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err == nil && body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, err
}

// do sends a user request with the API key.
func (s *server) do(method, path string, body any) (*http.Response, []byte, error) {
	req, err := jsonRequest(method, s.url(path), body)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("X-API-Key", s.apiKey)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// generateBody is a valid request of the given type (image or video).
func generateBody(typ string, n int) map[string]any {
	if typ == "video" {
		return map[string]any{"model": "anisora", "mode": "t2v", "prompt": fmt.Sprintf("e2e video %d", n),
			"params": map[string]any{"width": 256, "height": 256, "num_frames": 17}}
	}
	return map[string]any{"model": "flux", "mode": "t2i", "prompt": fmt.Sprintf("e2e image %d", n),
		"params": map[string]any{"width": 256, "height": 256}}
}

// generate submits one task; it returns the id only on 202.
func (s *server) generate(typ string, n int) (string, error) {
	resp, b, err := s.do("POST", "/generate", generateBody(typ, n))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("generate: %d %s", resp.StatusCode, b)
	}
	var out struct {
		TaskID string `json:"task_id"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.TaskID == "" {
		return "", fmt.Errorf("generate: bad 202 body %s", b)
	}
	return out.TaskID, nil
}

// mustGenerate submits one task or fails the test.
func (s *server) mustGenerate(t testing.TB, typ string, n int) string {
	t.Helper()
	id, err := s.generate(typ, n)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// taskView is the part of the contract's task view the tests read.
type taskView struct {
	TaskID      string `json:"task_id"`
	Type        string `json:"type"`
	Status      string `json:"status"`
	Progress    int    `json:"progress"`
	StartedAt   string `json:"started_at"`
	CompletedAt string `json:"completed_at"`
	CreatedAt   string `json:"created_at"`
	Error       *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (v *taskView) terminal() bool { return v.Status == "done" || v.Status == "failed" }

func (v *taskView) errCode() string {
	if v.Error == nil {
		return ""
	}
	return v.Error.Code
}

// status reads GET /status/{id}; code is the HTTP status.
func (s *server) status(id string) (*taskView, int, error) {
	resp, b, err := s.do("GET", "/status/"+id, nil)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("status %s: %d %s", id, resp.StatusCode, b)
	}
	var v taskView
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, resp.StatusCode, fmt.Errorf("status %s: %v in %s", id, err, b)
	}
	return &v, resp.StatusCode, nil
}

// waitTerminal polls until every task is done or failed and returns the last
// views; it fails the test naming the tasks still unfinished at the deadline.
func (s *server) waitTerminal(t testing.TB, ids []string, timeout time.Duration) map[string]*taskView {
	t.Helper()
	views := map[string]*taskView{}
	deadline := time.Now().Add(timeout)
	for {
		var open []string
		for _, id := range ids {
			if v, ok := views[id]; ok && v.terminal() {
				continue
			}
			v, code, err := s.status(id)
			if err != nil {
				if code == http.StatusNotFound {
					t.Fatalf("acknowledged task %s is gone: %v", id, err)
				}
				open = append(open, id+" ("+err.Error()+")")
				continue
			}
			views[id] = v
			if !v.terminal() {
				open = append(open, fmt.Sprintf("%s (%s %d%%)", id, v.Status, v.Progress))
			}
		}
		if len(open) == 0 {
			return views
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks not terminal after %v: %s", len(open), len(ids), timeout, strings.Join(open, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkMedia fetches a done task's result and preview as a user does and
// checks the bytes, not just the status: a 200 whose Content-Length is the
// body's length, a body identical to the file the server stored in media/,
// and media that is what the Content-Type says (an image decodes as that
// format, at the 256x256 generateBody asks for when it is an image result; a
// video result is an MP4 with its ftyp and moov boxes).
func (s *server) checkMedia(t testing.TB, v *taskView) {
	t.Helper()
	for _, which := range []string{"results", "preview"} {
		what := which + " of " + v.Type + " task " + v.TaskID
		resp, body, err := s.do("GET", "/"+which+"/"+v.TaskID, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %v %v", what, err, resp)
			continue
		}
		ct := resp.Header.Get("Content-Type")
		if resp.ContentLength != int64(len(body)) || len(body) == 0 {
			t.Errorf("%s: Content-Length %d, body %d bytes", what, resp.ContentLength, len(body))
		}
		pattern := v.TaskID + ".*"
		if which == "preview" {
			pattern = v.TaskID + ".preview.*"
		}
		files, _ := filepath.Glob(filepath.Join(s.dataDir, "media", pattern))
		var stored []byte
		for _, f := range files {
			if which == "results" && strings.Contains(filepath.Base(f), ".preview.") {
				continue
			}
			stored, _ = os.ReadFile(f)
		}
		if !bytes.Equal(body, stored) {
			t.Errorf("%s: the %d bytes served are not the %d-byte file stored in media/ (%v)", what, len(body), len(stored), files)
		}
		if which == "results" && v.Type == "video" {
			if ct != "video/mp4" || len(body) < 12 || string(body[4:8]) != "ftyp" || !bytes.Contains(body, []byte("moov")) {
				t.Errorf("%s: %s of %d bytes is not an MP4 (starts %q)", what, ct, len(body), body[:min(len(body), 12)])
			}
			continue
		}
		cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
		if err != nil || "image/"+format != ct || cfg.Width <= 0 || cfg.Height <= 0 {
			t.Errorf("%s: served as %s, decodes as %q %dx%d (%v)", what, ct, format, cfg.Width, cfg.Height, err)
			continue
		}
		if which == "results" && (cfg.Width != 256 || cfg.Height != 256) {
			t.Errorf("%s: %dx%d, want the 256x256 asked for", what, cfg.Width, cfg.Height)
		}
	}
}

// adminLogin opens an admin session with the generated admin key.
func (s *server) adminLogin(t testing.TB) {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(s.dataDir, "secrets", "admin_key"))
	if err != nil {
		t.Fatalf("read generated admin key: %v", err)
	}
	req, _ := http.NewRequest("POST", s.url("/admin/session"), nil)
	req.Header.Set("X-Admin-Key", strings.TrimSpace(string(key)))
	resp, err := s.admin.Do(req)
	if err != nil {
		t.Fatalf("admin session: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin session: %d", resp.StatusCode)
	}
}

// account is the part of the contract's account the tests read.
type account struct {
	ID           int64  `json:"id"`
	Name         string `json:"name"`
	Status       string `json:"status"`
	StatusReason string `json:"status_reason"`
}

func (s *server) adminCall(t testing.TB, method, path string, body any, want int, out any) {
	t.Helper()
	req, err := jsonRequest(method, s.url(path), body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp, err := s.admin.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s (want %d)", method, path, resp.StatusCode, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// addAccount registers a worker account for a simulator and health-checks it;
// it returns the account after the check (ready unless the sim is faulty).
func (s *server) addAccount(t testing.TB, name string, w *sim, capacity int) *account {
	t.Helper()
	var a account
	s.adminCall(t, "POST", "/admin/accounts", map[string]any{
		"name": name, "workspace": name, "credentials": map[string]string{},
		"base_url": w.baseURL(), "capacity": capacity,
	}, http.StatusCreated, &a)
	var checked account
	s.adminCall(t, "POST", fmt.Sprintf("/admin/accounts/%d/health-check", a.ID), nil, http.StatusOK, &checked)
	return &checked
}

// mustAddReady is addAccount that insists on a ready account.
func (s *server) mustAddReady(t testing.TB, name string, w *sim, capacity int) *account {
	t.Helper()
	a := s.addAccount(t, name, w, capacity)
	if a.Status != "ready" {
		t.Fatalf("account %s is %s (%s), want ready", name, a.Status, a.StatusReason)
	}
	return a
}

func (s *server) getAccount(t testing.TB, id int64) *account {
	t.Helper()
	var a account
	s.adminCall(t, "GET", fmt.Sprintf("/admin/accounts/%d", id), nil, http.StatusOK, &a)
	return &a
}

// integrityCheck opens a database file read-only and runs PRAGMA integrity_check.
func integrityCheck(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		t.Fatalf("integrity_check %s: %v", path, err)
	}
	if res != "ok" {
		t.Fatalf("integrity_check %s = %q", path, res)
	}
	return db
}

// loadClients submits tasks from n goroutines until stop is closed, and
// records every id that got a 202. Connection errors (a killed server) are
// expected and only counted.
type loadClients struct {
	srv     *server
	mu      sync.Mutex
	acked   []string
	errs    int
	stop    chan struct{}
	wg      sync.WaitGroup
	counter int
}

func startLoad(srv *server, n int, pause func() time.Duration) *loadClients {
	l := &loadClients{srv: srv, stop: make(chan struct{})}
	for i := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for k := 0; ; k++ {
				select {
				case <-l.stop:
					return
				default:
				}
				typ := "image"
				if (i+k)%3 == 2 {
					typ = "video"
				}
				l.mu.Lock()
				l.counter++
				c := l.counter
				l.mu.Unlock()
				id, err := srv.generate(typ, c)
				l.mu.Lock()
				if err != nil {
					l.errs++
				} else {
					l.acked = append(l.acked, id)
				}
				l.mu.Unlock()
				select {
				case <-l.stop:
					return
				case <-time.After(pause()):
				}
			}
		}()
	}
	return l
}

// snapshot is the acknowledged ids so far.
func (l *loadClients) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...)
}

// finish stops the clients and returns every acknowledged id and the error count.
func (l *loadClients) finish() ([]string, int) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...), l.errs
}

func jitter(min, max time.Duration) func() time.Duration {
	return func() time.Duration { return min + time.Duration(rand.Int64N(int64(max-min))) }
}

// copyDir copies a directory tree of regular files (secrets/, media/).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}
