package dispatch

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	_ "image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fernet/fernet-go"
	_ "golang.org/x/image/webp"

	"gooni/internal/audit"
	"gooni/internal/testutil"
	"gooni/internal/workspace"
	"gooni/store"
)

// ---- fixtures ----

type env struct {
	t       *testing.T
	db      *store.DB
	dataDir string

	mu      sync.Mutex
	changes map[string][]int   // progress seen at each committed change, per task
	logs    testutil.LogBuffer // the dispatcher's log, shown when a test fails
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvClock(t, nil)
}

// newEnvAt is newEnv whose store reads the given clock, so that started_at
// and updated_at follow a test's time.
func newEnvAt(t *testing.T, clock *testutil.Clock) *env {
	t.Helper()
	return newEnvClock(t, clock.Now)
}

// newEnvClock is newEnv with the store on clock now (nil = real time), so a
// test can move the store's and the dispatcher's time together.
func newEnvClock(t *testing.T, now func() time.Time) *env {
	t.Helper()
	var k fernet.Key
	if err := k.Generate(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	db, err := store.Open(dir, testutil.Schema(t), store.Options{
		AccountKeys: []string{k.Encode()},
		AuditKey:    bytes.Repeat([]byte("k"), 32),
		Now:         now,
	})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, db: db, dataDir: dir, changes: map[string][]int{}}
	t.Cleanup(db.ListenTasks(func(id string) {
		t, err := e.db.GetTask(context.Background(), id)
		if err != nil {
			return
		}
		e.mu.Lock()
		e.changes[id] = append(e.changes[id], t.Progress)
		e.mu.Unlock()
	}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dispatcher log:\n%s", e.logs.String())
		}
	})
	return e
}

// config returns a fast Config; tests change fields before start.
func (e *env) config() Config {
	return Config{
		DB:             e.db,
		DataDir:        e.dataDir,
		WorkspaceURL:   "https://{workspace}--gooni-inference.modal.run",
		PollInterval:   20 * time.Millisecond,
		ReapInterval:   50 * time.Millisecond,
		RequestTimeout: 10 * time.Second,
		DeployTimeout:  5 * time.Second,
		Logger:         slogJSON(&e.logs),
		Audit:          audit.NewWriter(e.db, slogJSON(&e.logs), nil),
	}
}

// audits returns the audit rows written so far, oldest first.
// changesUntilDone is the progress seen at each committed change of task id,
// once the change of its last commit (progress 100) has reached the
// listener, or after 5 s: the listener runs just after the commit, so a
// test can see the task done first.
func (e *env) changesUntilDone(id string) []int {
	var seen []int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		e.mu.Lock()
		seen = append([]int(nil), e.changes[id]...)
		e.mu.Unlock()
		if (len(seen) > 0 && seen[len(seen)-1] == 100) || time.Now().After(deadline) {
			return seen
		}
	}
}

func (e *env) audits() []*store.AuditEvent {
	e.t.Helper()
	items, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Limit: 500})
	if err != nil {
		e.t.Fatal(err)
	}
	slices.Reverse(items)
	return items
}

// start runs a Dispatcher until the test ends.
func (e *env) start(cfg Config) *Dispatcher {
	e.t.Helper()
	d := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			e.t.Error("Run did not return after cancel")
		}
	})
	return d
}

// sim serves a workspace simulator on loopback.
func (e *env) sim(cfg workspace.SimConfig) *httptest.Server {
	e.t.Helper()
	if cfg.Duration == 0 {
		cfg.Duration = 200 * time.Millisecond
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = 4
	}
	s, err := workspace.NewSim(cfg)
	if err != nil {
		e.t.Fatalf("NewSim: %v", err)
	}
	srv := httptest.NewServer(s.Handler())
	e.t.Cleanup(srv.Close)
	e.t.Cleanup(s.Close) // runs first: releases hung calls so srv.Close returns
	return srv
}

func (e *env) account(name, baseURL string, capacity int, status string, creds map[string]string) *store.Account {
	e.t.Helper()
	ctx := context.Background()
	a := &store.Account{Name: name, Workspace: name, BaseURL: baseURL, Capacity: capacity}
	if err := e.db.CreateAccount(ctx, a, creds); err != nil {
		e.t.Fatalf("create account %s: %v", name, err)
	}
	if status != "" && status != "pending" {
		if _, err := e.db.SetAccountStatus(ctx, a.ID, status, "", time.Now()); err != nil {
			e.t.Fatalf("set status: %v", err)
		}
	}
	if status == "ready" {
		// As a health check of the simulator would record.
		if err := e.db.SetAccountModels(ctx, a.ID, a.ConfigRev, workspace.SimModels); err != nil {
			e.t.Fatal(err)
		}
	}
	got, err := e.db.GetAccount(ctx, a.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return got
}

func (e *env) task(typ string) *store.Task {
	e.t.Helper()
	t := &store.Task{Type: typ, Model: "flux", Mode: "t2i", Prompt: "a lighthouse at dusk",
		Params: []byte(`{"height":256,"seed":7,"steps":4,"width":256}`)}
	if typ == "video" {
		t.Model, t.Mode = "anisora", "t2v"
		t.Params = []byte(`{"fps":16,"height":256,"num_frames":17,"seed":7,"steps":4,"width":256}`)
	}
	if err := e.db.CreateTask(context.Background(), t, store.CreateOptions{QueueMax: 0}); err != nil {
		e.t.Fatalf("create task: %v", err)
	}
	return t
}

func (e *env) get(id string) *store.Task {
	e.t.Helper()
	t, err := e.db.GetTask(context.Background(), id)
	if err != nil {
		e.t.Fatalf("get task: %v", err)
	}
	return t
}

func (e *env) getAccount(id int64) *store.Account {
	e.t.Helper()
	a, err := e.db.GetAccount(context.Background(), id)
	if err != nil {
		e.t.Fatalf("get account: %v", err)
	}
	return a
}

// waitTerminal waits until the task is done or failed and returns it.
func (e *env) waitTerminal(id string) *store.Task {
	e.t.Helper()
	var t *store.Task
	testutil.WaitFor(e.t, 10*time.Second, "task "+id+" to finish", func() bool {
		t = e.get(id)
		return t.Status == "done" || t.Status == "failed"
	})
	return t
}

func (e *env) mediaFiles() []string {
	entries, _ := os.ReadDir(filepath.Join(e.dataDir, "media"))
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

// ---- lifecycle ----

func TestTasksFinishWithMediaOnDisk(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ, resultType, resultExt string
	}{
		{"image", "image/png", ".png"},
		{"video", "video/mp4", ".mp4"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			e := newEnv(t)
			srv := e.sim(workspace.SimConfig{Duration: 300 * time.Millisecond})
			acc := e.account("sim-one", srv.URL, 2, "ready", nil)
			e.start(e.config())
			task := e.task(tc.typ)

			got := e.waitTerminal(task.ID)
			if got.Status != "done" {
				t.Fatalf("status %s (%s: %s), want done", got.Status, got.ErrorCode, got.ErrorMessage)
			}
			if got.Progress != 100 || got.AccountID != acc.ID || got.Attempts != 1 {
				t.Errorf("progress %d account %d attempts %d", got.Progress, got.AccountID, got.Attempts)
			}
			if got.ResultPath != "media/"+task.ID+tc.resultExt || got.ResultType != tc.resultType {
				t.Errorf("result %q %q", got.ResultPath, got.ResultType)
			}
			if got.PreviewPath != "media/"+task.ID+".preview.jpg" || got.PreviewType != "image/jpeg" {
				t.Errorf("preview %q %q", got.PreviewPath, got.PreviewType)
			}
			res, err := os.ReadFile(filepath.Join(e.dataDir, got.ResultPath))
			if err != nil {
				t.Fatalf("result file: %v", err)
			}
			if tc.typ == "image" {
				if _, _, err := image.Decode(bytes.NewReader(res)); err != nil {
					t.Errorf("result does not decode: %v", err)
				}
			} else if len(res) < 12 || string(res[4:8]) != "ftyp" {
				t.Errorf("result is not an MP4")
			}
			prev, err := os.ReadFile(filepath.Join(e.dataDir, got.PreviewPath))
			if err != nil {
				t.Fatalf("preview file: %v", err)
			}
			if _, _, err := image.Decode(bytes.NewReader(prev)); err != nil {
				t.Errorf("preview does not decode: %v", err)
			}
			if n := len(e.mediaFiles()); n != 2 {
				t.Errorf("media dir holds %d files (%v), want 2 (no temp files left)", n, e.mediaFiles())
			}

			seen := e.changesUntilDone(task.ID)
			if len(seen) < 3 {
				t.Errorf("only %d change notifications: %v", len(seen), seen)
			}
			for i := 1; i < len(seen); i++ {
				if seen[i] < seen[i-1] {
					t.Errorf("progress went down: %v", seen)
				}
			}
			for i, p := range seen {
				if p >= 100 && i != len(seen)-1 {
					t.Errorf("progress 100 before done: %v", seen)
				}
			}
			// A run where nothing went wrong logs no error: operators
			// alert on these lines (the reaper ran every 50 ms meanwhile).
			for _, line := range strings.Split(e.logs.String(), "\n") {
				if strings.Contains(line, `"level":"ERROR"`) {
					t.Errorf("error logged by a run without faults: %s", line)
				}
			}
		})
	}
}

func TestCredentialsReachTheWorkspace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := e.sim(workspace.SimConfig{RequireKey: "wk-proxy-key", RequireSecret: "ws-proxy-secret"})
	// Created first, so it is tried first: its wrong secret gets a 401.
	wrong := e.account("wrong-key", srv.URL, 1, "ready", map[string]string{"proxy_key": "wk-proxy-key", "proxy_secret": "not-the-secret"})
	keyed := e.account("keyed", srv.URL, 1, "ready", map[string]string{"proxy_key": "wk-proxy-key", "proxy_secret": "ws-proxy-secret"})
	e.start(e.config())
	task := e.task("image")
	got := e.waitTerminal(task.ID)
	if got.Status != "done" || got.AccountID != keyed.ID || got.Attempts != 2 {
		t.Fatalf("status %s on account %d after %d tries (%s), want done on %d after 2", got.Status, got.AccountID, got.Attempts, got.ErrorMessage, keyed.ID)
	}
	a := e.getAccount(wrong.ID)
	if a.Status != "failed" || !strings.Contains(a.StatusReason, "credentials") {
		t.Errorf("wrong-credential account %q %q, want failed over credentials", a.Status, a.StatusReason)
	}
	for _, secret := range []string{"wk-proxy-key", "ws-proxy-secret", "not-the-secret"} {
		if strings.Contains(a.StatusReason, secret) || strings.Contains(e.logs.String(), secret) {
			t.Errorf("a credential value reached the status reason or the log")
		}
	}
}

func TestFaultsAndFailover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault string // of the first account, created first so it is picked first
		// with a healthy second account?
		second      bool
		wantStatus  string
		wantCode    string
		wantMessage string
		firstStatus string // status of the faulty account afterwards
	}{
		{name: "refuse lands on the other", fault: "refuse", second: true, wantStatus: "done", firstStatus: "ready"},
		{name: "drop is requeued", fault: "drop", second: true, wantStatus: "done", firstStatus: "ready"},
		{name: "drop everywhere", fault: "drop", wantStatus: "failed", wantCode: "dispatch_failed", wantMessage: "lost the task", firstStatus: "ready"},
		{name: "error", fault: "error", wantStatus: "failed", wantCode: "worker_error", wantMessage: "simulated failure: the model crashed", firstStatus: "ready"},
		{name: "5xx fails the account over", fault: "5xx", second: true, wantStatus: "done", firstStatus: "failed"},
		{name: "hang fails the account over", fault: "hang", second: true, wantStatus: "done", firstStatus: "failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			bad := e.account("faulty", e.sim(workspace.SimConfig{Fault: tc.fault}).URL, 2, "ready", nil)
			var good *store.Account
			if tc.second {
				good = e.account("healthy", e.sim(workspace.SimConfig{}).URL, 2, "ready", nil)
			}
			cfg := e.config()
			if tc.fault == "hang" {
				cfg.RequestTimeout = time.Second
			}
			d := e.start(cfg)
			task := e.task("image")

			got := e.waitTerminal(task.ID)
			// However it ended, a finished task leaves nothing in the
			// dispatcher's memory (the accounts it was tried on), or that
			// memory grows with every task.
			testutil.WaitFor(t, 5*time.Second, "the dispatcher to forget the finished task", func() bool {
				d.mu.Lock()
				defer d.mu.Unlock()
				return d.tried[task.ID] == nil
			})
			if got.Status != tc.wantStatus || got.ErrorCode != tc.wantCode {
				t.Fatalf("status %s code %q (%s), want %s %q", got.Status, got.ErrorCode, got.ErrorMessage, tc.wantStatus, tc.wantCode)
			}
			if !strings.Contains(got.ErrorMessage, tc.wantMessage) {
				t.Errorf("message %q does not mention %q", got.ErrorMessage, tc.wantMessage)
			}
			if tc.wantCode == "dispatch_failed" && got.Attempts != 3 {
				t.Errorf("attempts %d, want 3", got.Attempts)
			}
			if good != nil && got.AccountID != good.ID {
				t.Errorf("task ran on account %d, want the healthy %d", got.AccountID, good.ID)
			}
			if a := e.getAccount(bad.ID); a.Status != tc.firstStatus {
				t.Errorf("faulty account status %q (%s), want %q", a.Status, a.StatusReason, tc.firstStatus)
			} else if tc.firstStatus == "failed" && a.StatusReason == "" {
				t.Error("failed account has no reason")
			}
		})
	}
}

func TestCorruptResultIsNotServed(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{"image", "video"} {
		t.Run(typ, func(t *testing.T) {
			e := newEnv(t)
			e.account("corrupt", e.sim(workspace.SimConfig{Fault: "corrupt"}).URL, 1, "ready", nil)
			e.start(e.config())
			task := e.task(typ)
			got := e.waitTerminal(task.ID)
			if got.Status != "failed" || got.ErrorCode != "corrupt_result" {
				t.Fatalf("status %s code %q, want failed corrupt_result", got.Status, got.ErrorCode)
			}
			if got.ResultPath != "" {
				t.Errorf("result path %q set", got.ResultPath)
			}
			if files := e.mediaFiles(); len(files) != 0 {
				t.Errorf("media dir holds %v, want nothing", files)
			}
		})
	}
}

// TestMislabelledResultIsCorrupt: a real, decodable image whose declared type
// is not what its bytes are (a PNG sent as image/jpeg, as video/mp4, ...) is
// refused as corrupt_result: the declared type must match the bytes, being
// some known media type is not enough. Nothing is kept in media/.
func TestMislabelledResultIsCorrupt(t *testing.T) {
	t.Parallel()
	pic := image.NewRGBA(image.Rect(0, 0, 8, 8))
	var pngBuf, jpegBuf bytes.Buffer
	if err := png.Encode(&pngBuf, pic); err != nil {
		t.Fatal(err)
	}
	if err := jpeg.Encode(&jpegBuf, pic, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, typ, declared string
		body                []byte
	}{
		{"PNG declared as image/jpeg", "image", "image/jpeg", pngBuf.Bytes()},
		{"PNG declared as video/mp4", "video", "video/mp4", pngBuf.Bytes()},
		{"JPEG declared as image/png", "image", "image/png", jpegBuf.Bytes()},
		{"PNG declared as image/webp", "image", "image/webp", pngBuf.Bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			sim, err := workspace.NewSim(workspace.SimConfig{Duration: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			inner := sim.Handler()
			var served atomic.Int32
			ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/result") {
					served.Add(1)
					w.Header().Set("Content-Type", tc.declared)
					w.Write(tc.body)
					return
				}
				inner.ServeHTTP(w, r)
			}))
			t.Cleanup(ws.Close)
			t.Cleanup(sim.Close)
			e.account("mislabels", ws.URL, 1, "ready", nil)
			e.start(e.config())
			task := e.task(tc.typ)
			got := e.waitTerminal(task.ID)
			if served.Load() == 0 {
				t.Fatal("the result was never fetched: the case proves nothing")
			}
			if got.Status != "failed" || got.ErrorCode != "corrupt_result" {
				t.Fatalf("status %s code %q (%s), want failed corrupt_result", got.Status, got.ErrorCode, got.ErrorMessage)
			}
			if !strings.Contains(got.ErrorMessage, tc.declared) {
				t.Errorf("message %q does not name the declared %s", got.ErrorMessage, tc.declared)
			}
			if got.ResultPath != "" {
				t.Errorf("result path %q set", got.ResultPath)
			}
			if files := e.mediaFiles(); len(files) != 0 {
				t.Errorf("media dir holds %v, want nothing", files)
			}
		})
	}
}

func TestCapacityIsRespectedAndLoadSpread(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.account("one", e.sim(workspace.SimConfig{Duration: 300 * time.Millisecond}).URL, 1, "ready", nil)
	b := e.account("two", e.sim(workspace.SimConfig{Duration: 300 * time.Millisecond}).URL, 1, "ready", nil)
	var maxRunning atomic.Int64
	cfg := e.config()
	t.Cleanup(e.db.ListenTasks(func(id string) {
		run, _ := e.db.RunningByAccount(context.Background())
		for _, n := range run {
			if int64(n) > maxRunning.Load() {
				maxRunning.Store(int64(n))
			}
		}
	}))
	e.start(cfg)
	var ids []string
	for range 4 {
		ids = append(ids, e.task("image").ID)
	}
	used := map[int64]int{}
	for _, id := range ids {
		got := e.waitTerminal(id)
		if got.Status != "done" {
			t.Fatalf("task %s: %s %s", id, got.Status, got.ErrorMessage)
		}
		used[got.AccountID]++
	}
	if maxRunning.Load() > 1 {
		t.Errorf("an account ran %d tasks at once, capacity 1", maxRunning.Load())
	}
	if used[a.ID] == 0 || used[b.ID] == 0 {
		t.Errorf("load not spread: %v", used)
	}
}

func TestResumeFinishesProcessingTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := e.sim(workspace.SimConfig{Duration: 200 * time.Millisecond})
	acc := e.account("resume", srv.URL, 4, "ready", nil)
	ctx := context.Background()

	// Two tasks were claimed by a previous process: one reached the workspace,
	// the other was claimed but never sent (the crash came first).
	sent, unsent := e.task("image"), e.task("video")
	for _, task := range []*store.Task{sent, unsent} {
		if _, err := e.db.ClaimTask(ctx, task.ID, acc.ID); err != nil {
			t.Fatal(err)
		}
	}
	c, err := workspace.NewClient(srv.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(ctx, &workspace.TaskRequest{TaskID: sent.ID, Type: "image", Model: "flux", Mode: "t2i",
		Prompt: sent.Prompt, Params: sent.Params}); err != nil {
		t.Fatal(err)
	}

	e.start(e.config())
	for _, id := range []string{sent.ID, unsent.ID} {
		if got := e.waitTerminal(id); got.Status != "done" {
			t.Errorf("task %s: %s %s %s", id, got.Status, got.ErrorCode, got.ErrorMessage)
		}
	}
	if got := e.get(sent.ID); got.Attempts != 1 {
		t.Errorf("the task the workspace knew was dispatched again: attempts %d", got.Attempts)
	}
	if got := e.get(unsent.ID); got.Attempts != 2 {
		t.Errorf("the unknown task: attempts %d, want 2 (requeued once)", got.Attempts)
	}
}

// TestReaperFailsStaleTasks: a processing task is failed with timeout once it
// has run longer than its type's TTL, counted from started_at: not a moment
// before (half the TTL, or just under it, is not stale), and not later when it
// keeps reporting progress. Store and dispatcher share one injected clock.
func TestReaperFailsStaleTasks(t *testing.T) {
	t.Parallel()
	clock := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	e := newEnvAt(t, clock)
	sim := e.sim(workspace.SimConfig{Duration: time.Hour})
	var mu sync.Mutex
	cancelled := map[string]bool{} // tasks the workspace was asked to drop
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			mu.Lock()
			cancelled[strings.TrimPrefix(r.URL.Path, "/tasks/")] = true
			mu.Unlock()
		}
		sim.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(ws.Close)
	acc := e.account("slow", ws.URL, 4, "ready", nil)
	wasCancelled := func(id string) bool { mu.Lock(); defer mu.Unlock(); return cancelled[id] }
	ctx := context.Background()
	img, vid := e.task("image"), e.task("video")
	for _, task := range []*store.Task{img, vid} {
		if _, err := e.db.ClaimTask(ctx, task.ID, acc.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.StartTask(ctx, task.ID, acc.ID); err != nil {
			t.Fatal(err)
		}
	}
	start := clock.Now()
	var logs testutil.LogBuffer
	cfg := e.config()
	cfg.Now = clock.Now
	cfg.Logger = slogJSON(&logs)
	d := New(cfg)
	// at moves the shared clock to start+offset and runs one reaper pass.
	at := func(offset time.Duration) int {
		t.Helper()
		clock.Set(start.Add(offset))
		n, err := d.Reap(ctx)
		if err != nil {
			t.Fatalf("Reap at +%v: %v", offset, err)
		}
		return n
	}
	progress := func(task *store.Task, offset time.Duration, p int) {
		t.Helper()
		clock.Set(start.Add(offset))
		if err := e.db.SetProgress(ctx, task.ID, p); err != nil {
			t.Fatal(err)
		}
	}

	if !d.LastReap().IsZero() {
		t.Error("LastReap set before any pass")
	}
	if n := at(0); n != 0 {
		t.Fatalf("fresh tasks reaped: %d", n)
	}
	// The image TTL is 10 minutes, the video TTL 30.
	if n := at(5*time.Minute + time.Millisecond); n != 0 {
		t.Fatalf("%d task(s) reaped just past half the image TTL", n)
	}
	progress(img, 9*time.Minute, 40) // still working: progress does not restart its clock
	progress(vid, 9*time.Minute, 20)
	for _, off := range []time.Duration{10*time.Minute - time.Millisecond, 10 * time.Minute} {
		if n := at(off); n != 0 {
			t.Fatalf("%d task(s) reaped at +%v, not past the 10m image TTL", n, off)
		}
	}
	if got := e.get(img.ID); got.Status != "processing" {
		t.Fatalf("image task %s before its TTL", got.Status)
	}
	if n := at(11 * time.Minute); n != 1 { // past the image TTL, not the video TTL
		t.Fatalf("Reap at +11m = %d, want 1 (the image task, 2 minutes after its last progress)", n)
	}
	now := clock.Now()
	got := e.get(img.ID)
	if got.Status != "failed" || got.ErrorCode != "timeout" ||
		got.ErrorMessage != "task ran longer than the 10m0s limit for image tasks" {
		t.Errorf("image task: %s %s %q", got.Status, got.ErrorCode, got.ErrorMessage)
	}
	if got := e.get(vid.ID); got.Status != "processing" {
		t.Errorf("video task %s, want still processing", got.Status)
	}
	// The workspace is asked to drop what it no longer needs to run.
	testutil.WaitFor(t, 5*time.Second, "the workspace to be asked to drop the reaped task", func() bool { return wasCancelled(img.ID) })
	if wasCancelled(vid.ID) {
		t.Error("the workspace was asked to drop a task still within its TTL")
	}
	if !d.LastReap().Equal(now.Truncate(time.Millisecond).UTC()) {
		t.Errorf("LastReap %v, want %v", d.LastReap(), now)
	}
	out := logs.String()
	for _, want := range []string{`"task_id":"` + img.ID + `"`, `"type":"image"`, `"runtime":"11m0s"`, `"ttl":"10m0s"`} {
		if !strings.Contains(out, want) {
			t.Errorf("reaper log lacks %s: %s", want, out)
		}
	}
	progress(vid, 29*time.Minute, 90)
	if n := at(30 * time.Minute); n != 0 || e.get(vid.ID).Status != "processing" {
		t.Fatalf("video task reaped at exactly its 30m TTL (%d)", n)
	}
	if n := at(31 * time.Minute); n != 1 || e.get(vid.ID).ErrorCode != "timeout" {
		t.Errorf("video task not reaped after its TTL (%d, %s)", n, e.get(vid.ID).ErrorCode)
	}
	testutil.WaitFor(t, 5*time.Second, "the workspace to be asked to drop the reaped video task", func() bool { return wasCancelled(vid.ID) })
}

// ---- accounts ----

func TestHealthCheckTransitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ok := e.sim(workspace.SimConfig{})
	broken := e.sim(workspace.SimConfig{Fault: "5xx"})
	closedURL := testutil.ClosedURL(t)

	d := New(e.config())
	for _, tc := range []struct {
		name, url, from, want, reason string
	}{
		{"pending to ready", ok.URL, "pending", "ready", ""},
		{"failed to ready", ok.URL, "failed", "ready", ""},
		{"server error", broken.URL, "ready", "failed", "server error (500)"},
		{"connection refused", closedURL, "ready", "failed", "refused the connection"},
		{"non-loopback http", "http://10.1.2.3", "ready", "failed", "not a valid target"},
		{"disabled stays disabled", ok.URL, "disabled", "disabled", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acc := e.account(strings.ReplaceAll(tc.name, " ", "-"), tc.url, 1, tc.from, nil)
			got, err := d.HealthCheck(ctx, acc.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.want || !strings.Contains(got.StatusReason, tc.reason) {
				t.Errorf("status %q reason %q, want %q with %q", got.Status, got.StatusReason, tc.want, tc.reason)
			}
			if tc.want != "disabled" && got.LastHealthCheckAt.IsZero() {
				t.Error("last_health_check_at not set")
			}
		})
	}
	if _, err := d.HealthCheck(ctx, 9999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown account: %v, want ErrNotFound", err)
	}
}

func TestBackgroundHealthCheckRecoversAndAudits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sim, err := workspace.NewSim(workspace.SimConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var checks atomic.Int64 // health checks the workspace answered
	inner := sim.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r)
		if r.URL.Path == "/health" {
			checks.Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	failed := e.account("came-back", srv.URL, 1, "failed", nil)
	pending := e.account("not-checked", srv.URL, 1, "pending", nil)
	cfg := e.config()
	cfg.HealthInterval = 30 * time.Millisecond
	e.start(cfg)
	testutil.WaitFor(t, 5*time.Second, "failed account to become ready", func() bool {
		return e.getAccount(failed.ID).Status == "ready"
	})
	// Three more passes over the now ready account: no more audit rows without a change.
	after := checks.Load()
	testutil.WaitFor(t, 5*time.Second, "three more background checks", func() bool { return checks.Load() >= after+3 })
	if a := e.getAccount(pending.ID); a.Status != "pending" {
		t.Errorf("pending account changed by the background checker: %s", a.Status)
	}
	audits := e.audits()
	if len(audits) != 1 {
		t.Fatalf("%d audit events, want 1: %+v", len(audits), audits)
	}
	ev := audits[0]
	if ev.Action != "account.health_check" || ev.Actor != "system" || ev.Outcome != "success" || ev.CorrelationID == "" {
		t.Errorf("audit event %+v", ev)
	}
}

func TestClientRefusesInvalidTargets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var hits atomic.Int64
	trap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer trap.Close()
	d := New(e.config())
	ctx := context.Background()
	for _, tc := range []struct {
		name, workspace, baseURL, template string
	}{
		{"non-loopback http base url", "good-name", "http://10.1.2.3", ""},
		{"bad workspace name", "Bad_Name", trap.URL, ""},
		{"template with http", "good-name", "", "http://{workspace}.example.com"},
		{"name reshaping the host", "evil.com/x", "", "https://{workspace}.modal.run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.cfg.WorkspaceURL = tc.template
			acc := &store.Account{ID: 1, Workspace: tc.workspace, BaseURL: tc.baseURL}
			if _, err := d.Driver(ctx, acc); !errors.Is(err, workspace.ErrTargetInvalid) {
				t.Errorf("Client = %v, want ErrTargetInvalid", err)
			}
		})
	}
	d.cfg.WorkspaceURL = "https://{workspace}--gooni-inference.modal.run"
	c, err := d.Driver(ctx, &store.Account{ID: 2, Workspace: "my-ws"})
	if v1, ok := c.(*workspace.Client); err != nil || !ok || v1.BaseURL != "https://my-ws--gooni-inference.modal.run" {
		t.Errorf("derived URL: %v %v", c, err)
	}
	// A ComfyUI account names its box: there is nothing to derive.
	if _, err := d.Driver(ctx, &store.Account{ID: 3, Workspace: "my-box", Driver: store.DriverComfyUI}); !errors.Is(err, workspace.ErrTargetInvalid) {
		t.Errorf("comfyui account without a base URL: %v, want ErrTargetInvalid", err)
	}
	if hits.Load() != 0 {
		t.Errorf("%d requests reached the trap", hits.Load())
	}
}

func TestDispatchNeverSendsToInvalidTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	acc := e.account("far-away", "http://10.1.2.3", 2, "ready", map[string]string{"proxy_key": "pk-1234", "proxy_secret": "ps-5678"})
	e.start(e.config())
	task := e.task("image")
	testutil.WaitFor(t, 5*time.Second, "account to be marked failed", func() bool {
		return e.getAccount(acc.ID).Status == "failed"
	})
	testutil.WaitFor(t, 5*time.Second, "the refusal and the status change to be audited", func() bool {
		return len(e.audits()) >= 2
	})
	got := e.get(task.ID)
	if got.Status != "pending" || got.Attempts != 0 {
		t.Errorf("task %s attempts %d: it was claimed for an invalid target", got.Status, got.Attempts)
	}
	// One security event for the refusal, one for the account's change to failed.
	audits := e.audits()
	if len(audits) != 2 || audits[0].Action != "security.proxy_refused" || audits[0].Outcome != "denied" ||
		audits[1].Action != "account.update" || audits[1].Details["status"] != "failed" {
		t.Errorf("audit events %+v, want security.proxy_refused then account.update to failed", audits)
	}
}

func TestRemoveAccountFailsItsTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	srv := e.sim(workspace.SimConfig{Duration: time.Hour})
	acc := e.account("doomed", srv.URL, 2, "ready", nil)
	d := e.start(e.config())
	task := e.task("image")
	testutil.WaitFor(t, 5*time.Second, "task to run", func() bool {
		got := e.get(task.ID)
		return got.Status == "processing" && got.Progress > 0 || got.Status == "processing" && got.AccountID == acc.ID
	})
	if err := d.RemoveAccount(ctx, acc.ID, nil); err != nil {
		t.Fatal(err)
	}
	got := e.get(task.ID)
	if got.Status != "failed" || got.ErrorCode != "worker_removed" ||
		got.ErrorMessage != "the worker account running this task was deleted" {
		t.Errorf("task %s %s %q", got.Status, got.ErrorCode, got.ErrorMessage)
	}
	if _, err := e.db.GetAccount(ctx, acc.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("account still there: %v", err)
	}
	if err := d.RemoveAccount(ctx, acc.ID, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
}

func TestWorkspaceGoingAwayMidTaskFailsOverAndComesBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sim, err := workspace.NewSim(workspace.SimConfig{Duration: 5 * time.Second, Capacity: 2})
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	inner := sim.Handler()
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			<-r.Context().Done() // no answer until the caller gives up
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(flaky.Close)
	t.Cleanup(sim.Close)
	a := e.account("goes-away", flaky.URL, 1, "ready", nil)
	b := e.account("stays", e.sim(workspace.SimConfig{}).URL, 1, "pending", nil)

	cfg := e.config()
	cfg.RequestTimeout = 300 * time.Millisecond
	cfg.HealthInterval = 100 * time.Millisecond
	d := e.start(cfg)
	task := e.task("image")
	testutil.WaitFor(t, 5*time.Second, "task to run on the first account", func() bool {
		got := e.get(task.ID)
		return got.Status == "processing" && got.AccountID == a.ID && got.Progress > 0
	})

	down.Store(true)
	if _, err := d.HealthCheck(context.Background(), b.ID); err != nil {
		t.Fatal(err)
	}
	got := e.waitTerminal(task.ID)
	if got.Status != "done" || got.AccountID != b.ID {
		t.Fatalf("task %s on account %d (%s), want done on %d", got.Status, got.AccountID, got.ErrorMessage, b.ID)
	}
	if acc := e.getAccount(a.ID); acc.Status != "failed" || !strings.Contains(acc.StatusReason, "did not answer in time") {
		t.Errorf("vanished account %q %q, want failed for not answering", acc.Status, acc.StatusReason)
	}

	down.Store(false)
	testutil.WaitFor(t, 5*time.Second, "the account to be ready again", func() bool {
		return e.getAccount(a.ID).Status == "ready"
	})
}

func TestImageToVideoSendsTheInputImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sim, err := workspace.NewSim(workspace.SimConfig{Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var sentImage atomic.Value
	inner := sim.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/tasks" {
			body, _ := io.ReadAll(r.Body)
			var req struct {
				Image string `json:"image"`
			}
			if json.Unmarshal(body, &req) == nil && req.Image != "" {
				sentImage.Store(req.Image)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)
	e.account("i2v", srv.URL, 1, "ready", nil)

	var img bytes.Buffer
	if err := png.Encode(&img, image.NewRGBA(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	task := &store.Task{Type: "video", Model: "anisora", Mode: "i2v", Prompt: "the sea moves",
		Params: []byte(`{"fps":16,"height":256,"num_frames":17,"seed":1,"steps":4,"width":256}`)}
	task.ID = store.NewID()
	task.InputPath, task.InputType, task.InputBytes = store.InputPath(task.ID, "image/png"), "image/png", int64(img.Len())
	os.MkdirAll(filepath.Join(e.dataDir, "media"), 0o700)
	if err := os.WriteFile(filepath.Join(e.dataDir, task.InputPath), img.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.db.CreateTask(context.Background(), task, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Started after the task and its file exist, as a server's start cleans
	// media/ before it takes uploads.
	e.start(e.config())
	if got := e.waitTerminal(task.ID); got.Status != "done" {
		t.Fatalf("status %s (%s)", got.Status, got.ErrorMessage)
	}
	got, _ := sentImage.Load().(string)
	if got != base64.StdEncoding.EncodeToString(img.Bytes()) {
		t.Errorf("the workspace got image %.40q, want the task's input as base64", got)
	}
}

// TestStartRemovesPartialMedia: a temp file a crash left mid-download is
// removed at start; finished media stays.
func TestStartRemovesPartialMedia(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	media := filepath.Join(e.dataDir, "media")
	os.MkdirAll(media, 0o700)
	os.WriteFile(filepath.Join(media, ".01ABC.123.tmp"), []byte("half"), 0o600)
	os.WriteFile(filepath.Join(media, "01ABC.png"), []byte("kept"), 0o600)
	e.start(e.config())
	testutil.WaitFor(t, 5*time.Second, "partial file removed", func() bool {
		names := e.mediaFiles()
		return len(names) == 1 && names[0] == "01ABC.png"
	})
}

// TestDisableDuringHealthCheckWins: an admin's Disable made while a slow
// health check runs is not overwritten by the check's result.
func TestDisableDuringHealthCheckWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release, reached := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(reached) }) // the check has read the account and is probing
		<-release
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok","models":[],"capacity":1,"running":0}`))
	}))
	defer slow.Close()
	acc := e.account("slow", slow.URL, 1, "pending", nil)
	d := New(e.config())
	done := make(chan *store.Account)
	go func() {
		a, err := d.HealthCheck(context.Background(), acc.ID)
		if err != nil {
			t.Error(err)
		}
		done <- a
	}()
	select {
	case <-reached:
	case a := <-done:
		t.Fatalf("the health check ended before it reached the workspace: %+v", a)
	case <-time.After(10 * time.Second):
		t.Fatal("the health check never reached the workspace")
	}
	if _, err := e.db.SetAccountStatus(context.Background(), acc.ID, "disabled", "disabled by an admin", time.Time{}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if a := <-done; a == nil || a.Status != "disabled" {
		t.Fatalf("after the check: %+v", a)
	}
	if got := e.getAccount(acc.ID); got.Status != "disabled" {
		t.Fatalf("stored status %s", got.Status)
	}
}

// TestEditDuringHealthCheckWins: a health check's verdict is about the
// settings it probed. Inputs tried: an admin's edit of base_url while a slow
// check of the old target runs (the check probes the new target and answers
// for it; the old one's models are not taken); and an edit during every
// probe (after three probes the check gives up and the account stays
// pending, not ready, until the edit's own check).
func TestEditDuringHealthCheckWins(t *testing.T) {
	t.Parallel()
	health := func(models string) string {
		return `{"status":"ok","models":[` + models + `],"capacity":1,"running":0}`
	}
	check := func(t *testing.T, d *Dispatcher, id int64) *store.Account {
		t.Helper()
		done := make(chan *store.Account, 1)
		go func() {
			a, err := d.HealthCheck(context.Background(), id)
			if err != nil {
				t.Error(err)
			}
			done <- a
		}()
		select {
		case a := <-done:
			return a
		case <-time.After(20 * time.Second):
			t.Fatal("the health check did not end")
			return nil
		}
	}
	t.Run("edited once", func(t *testing.T) {
		e := newEnv(t)
		newTarget := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(health(`"pony"`)))
		}))
		defer newTarget.Close()
		var acc *store.Account
		var once sync.Once
		oldTarget := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The check has read the account and is probing: the edit lands.
			once.Do(func() {
				u := newTarget.URL
				if _, err := e.db.UpdateAccount(context.Background(), acc.ID, store.AccountPatch{BaseURL: &u}); err != nil {
					t.Error(err)
				}
			})
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(health(`"flux"`)))
		}))
		defer oldTarget.Close()
		acc = e.account("moving", oldTarget.URL, 1, "pending", nil)
		a := check(t, New(e.config()), acc.ID)
		if a == nil || a.Status != "ready" || !slices.Equal(a.Models, []string{"pony"}) || a.BaseURL != newTarget.URL {
			t.Fatalf("after an edit during the check: %+v, want ready on the new target serving pony", a)
		}
	})
	t.Run("edited during every probe", func(t *testing.T) {
		e := newEnv(t)
		var acc *store.Account
		var probes atomic.Int32
		var targets [2]*httptest.Server
		for i := range targets {
			targets[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				probes.Add(1)
				other := targets[1-i].URL
				if _, err := e.db.UpdateAccount(context.Background(), acc.ID, store.AccountPatch{BaseURL: &other}); err != nil {
					t.Error(err)
				}
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(health(`"flux"`)))
			}))
			defer targets[i].Close()
		}
		acc = e.account("restless", targets[0].URL, 1, "pending", nil)
		a := check(t, New(e.config()), acc.ID)
		if n := probes.Load(); n != healthCheckTries {
			t.Errorf("%d probes, want %d", n, healthCheckTries)
		}
		if a == nil || a.Status != "pending" || a.StatusReason != store.ReasonSettingsChanged {
			t.Fatalf("after edits during every probe: %+v, want pending (%s)", a, store.ReasonSettingsChanged)
		}
		if got := e.getAccount(acc.ID); got.Status != "pending" || len(got.Models) != 0 || !got.LastHealthCheckAt.IsZero() {
			t.Fatalf("stored: status %s, models %v, last check %v; want pending, none, never", got.Status, got.Models, got.LastHealthCheckAt)
		}
	})
}

// TestStartRemovesOrphanInputs: an input image is renamed into media/ just
// before its task's row commits; a crash between the two leaves a file no
// task names, which the next start removes. The input of a real task stays.
func TestStartRemovesOrphanInputs(t *testing.T) {
	e := newEnv(t)
	media := filepath.Join(e.dataDir, "media")
	os.MkdirAll(media, 0o700)
	task := &store.Task{ID: store.NewID(), Type: "video", Model: "anisora", Mode: "i2v", Prompt: "p"}
	task.InputPath, task.InputType, task.InputBytes = store.InputPath(task.ID, "image/png"), "image/png", 4
	if err := e.db.CreateTask(context.Background(), task, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.dataDir, task.InputPath), []byte("kept"), 0o600)
	orphan := store.NewID() + ".input.png"
	os.WriteFile(filepath.Join(media, orphan), []byte("orphan"), 0o600)
	d := New(e.config())
	d.CleanMedia(context.Background())
	names := e.mediaFiles()
	if len(names) != 1 || names[0] != filepath.Base(task.InputPath) {
		t.Fatalf("media after start: %v, want only %s", names, filepath.Base(task.InputPath))
	}
}

// TestEchoedCredentialsNeverStored (issue 11 point 10): a workspace that
// echoed its request headers in a task's error put the account's
// Modal-Key/Modal-Secret into the task view every user sees, the tasks table
// and the log. Every credential value of the account, and its base64 and
// URL-encoded forms, is redacted from what the workspace sends back. Inputs
// tried: an error text holding the headers as they are, base64 of the whole
// header block, the URL-encoded deploy token, and a 500 body echoing them.
func TestEchoedCredentialsNeverStored(t *testing.T) {
	e := newEnv(t)
	creds := map[string]string{"proxy_key": "wk-echo-key-1234", "proxy_secret": "ws+echo/secret=5678", "token_secret": "as-deploy-tok/9012"}
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var hdr strings.Builder
		r.Header.Write(&hdr)
		echo := hdr.String() + " b64:" + base64.StdEncoding.EncodeToString([]byte(hdr.String())) +
			" tok:" + url.QueryEscape(creds["token_secret"])
		switch {
		case r.URL.Path == "/health":
			fmt.Fprint(w, `{"status":"ok","models":["flux"],"capacity":1,"running":0}`)
		case r.Method == "POST" && r.URL.Path == "/tasks":
			var body struct {
				TaskID string `json:"task_id"`
			}
			json.NewDecoder(r.Body).Decode(&body)
			w.WriteHeader(202)
			fmt.Fprintf(w, `{"task_id":%q,"status":"pending"}`, body.TaskID)
		case strings.HasPrefix(r.URL.Path, "/tasks/"):
			id := strings.TrimPrefix(r.URL.Path, "/tasks/")
			b, _ := json.Marshal(map[string]any{"task_id": id, "status": "failed", "progress": 10, "error": echo})
			w.Write(b)
		}
	}))
	defer ws.Close()
	e.account("echoer", ws.URL, 1, "ready", creds)
	e.start(e.config())
	task := e.task("image")
	got := e.waitTerminal(task.ID)
	if got.Status != "failed" || got.ErrorCode != "worker_error" || !strings.Contains(got.ErrorMessage, "[redacted]") {
		t.Fatalf("task %s %s %q, want failed worker_error with redactions", got.Status, got.ErrorCode, got.ErrorMessage)
	}
	raw, err := os.ReadFile(filepath.Join(e.dataDir, "gooni.db"))
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(filepath.Join(e.dataDir, "gooni.db-wal"))
	for _, v := range creds {
		for _, form := range []string{v, url.QueryEscape(v), base64.StdEncoding.EncodeToString([]byte(v))} {
			if strings.Contains(got.ErrorMessage, form) || bytes.Contains(raw, []byte(form)) || bytes.Contains(wal, []byte(form)) ||
				strings.Contains(e.logs.String(), form) {
				t.Errorf("a form of a credential (%d bytes) reached the task, the database or the log", len(form))
			}
		}
	}
}
