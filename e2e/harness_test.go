// Package e2e runs the real gooni binary as separate processes (server and
// workspace simulators) and checks what a user and an operator would see
// through HTTP, the logs and the database file, including after kill -9.
package e2e

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// gooniBin is the binary built once for the whole package.
var gooniBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gooni-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		os.Exit(1)
	}
	gooniBin = filepath.Join(dir, "gooni")
	build := exec.Command("go", "build", "-o", gooniBin, ".")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building gooni:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr picks a loopback address nobody listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// logBuffer collects a process's output across restarts; it is shown only
// when the test fails, so passing runs stay quiet.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLines returns the JSON log records whose msg equals msg.
func (b *logBuffer) records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(b.String(), "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// process is one gooni process that can be started again with the same
// arguments and environment after it was killed or stopped.
type process struct {
	t      testing.TB
	name   string
	args   []string
	env    []string
	logs   *logBuffer
	prefix []string // a command the binary runs under (e.g. prlimit ...), or none

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

func newProcess(t testing.TB, name string, args, env []string) *process {
	p := &process{t: t, name: name, args: args, env: env, logs: &logBuffer{}}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			out := p.logs.String()
			if len(out) > 64<<10 {
				out = "...\n" + out[len(out)-64<<10:]
			}
			t.Logf("---- %s output ----\n%s", p.name, out)
		}
	})
	return p
}

// start launches the process; it fails the test if it cannot be started.
func (p *process) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.t.Fatalf("%s: already running", p.name)
	}
	cmd := exec.Command(gooniBin, p.args...)
	if len(p.prefix) > 0 {
		cmd = exec.Command(p.prefix[0], append(append(p.prefix[1:len(p.prefix):len(p.prefix)], gooniBin), p.args...)...)
	}
	cmd.Env = append(baseEnv(), p.env...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	// Own process group, so a Ctrl-C of go test does not reach it before cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("%s: start: %v", p.name, err)
	}
	p.starts++
	fmt.Fprintf(p.logs, "==== %s start #%d pid %d ====\n", p.name, p.starts, cmd.Process.Pid)
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *process) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.exited
	fmt.Fprintf(p.logs, "==== %s killed (SIGKILL) ====\n", p.name)
	p.cmd = nil
}

// stop sends SIGTERM and waits up to timeout for a graceful exit, then kills.
func (p *process) stop(timeout time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-p.exited:
		if st := p.cmd.ProcessState; st != nil && !st.Success() {
			err = fmt.Errorf("%s exited with %v after SIGTERM", p.name, st)
		}
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.exited
		err = fmt.Errorf("%s did not exit within %v of SIGTERM", p.name, timeout)
	}
	fmt.Fprintf(p.logs, "==== %s stopped (SIGTERM) ====\n", p.name)
	p.cmd = nil
	return err
}

// running reports whether the process is alive.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// baseEnv keeps what the binary needs from the test's environment and drops
// every GG_ variable, so the developer's settings cannot change a test.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GG_") || strings.HasPrefix(kv, "FRONTEND_ORIGINS=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// sim is a `gooni workspace-sim` process on a fixed loopback address.
type sim struct {
	*process
	addr string
}

// startSim runs a workspace simulator with the given extra flags and waits
// until it answers HTTP.
func startSim(t testing.TB, name string, flags ...string) *sim {
	t.Helper()
	s := &sim{addr: freeAddr(t)}
	s.process = newProcess(t, name, append([]string{"workspace-sim", "--addr", s.addr}, flags...), nil)
	s.start()
	return s
}

func (s *sim) baseURL() string { return "http://" + s.addr }

// start (re)launches the simulator and waits until it answers anything.
func (s *sim) start() {
	s.t.Helper()
	s.process.start()
	waitFor(s.t, 10*time.Second, s.name+" answering", func() bool {
		resp, err := http.Get(s.baseURL() + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
}

// restartWith replaces the simulator's flags (same address) and starts it.
func (s *sim) restartWith(flags ...string) {
	s.t.Helper()
	s.kill()
	s.args = append([]string{"workspace-sim", "--addr", s.addr}, flags...)
	s.start()
}

// server is a `gooni` serve process with its data directory and keys.
type server struct {
	*process
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
	s := &server{addr: freeAddr(t), dataDir: dataDir}
	full := append([]string{"GG_ADDR=" + s.addr, "GG_DATA_DIR=" + dataDir}, env...)
	s.process = newProcess(t, "gooni", nil, full)
	s.process.prefix = prefix
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
	s.process.start()
	s.waitHealthy(20 * time.Second)
}

func (s *server) waitHealthy(timeout time.Duration) {
	s.t.Helper()
	waitFor(s.t, timeout, "gooni /health", func() bool {
		if !s.running() {
			s.t.Fatalf("gooni exited before it was healthy")
		}
		resp, err := s.client.Get(s.url("/health"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// do sends a user request with the API key.
func (s *server) do(method, path string, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url(path), rd)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("X-API-Key", s.apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
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
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.url(path), rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
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

// waitFor polls cond every 50 ms until it holds, or fails the test.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
