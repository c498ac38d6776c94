package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gooni/internal/testutil"
	"gooni/internal/workspace"
	"gooni/internal/workspace/comfyui"
	"gooni/store"
)

// healthChecked creates an account and runs a real health check on it, so
// its models are what its workspace reports.
func (e *env) healthChecked(d *Dispatcher, name, baseURL, driver string, capacity int) *store.Account {
	e.t.Helper()
	a := &store.Account{Name: name, Workspace: name, BaseURL: baseURL, Capacity: capacity, Driver: driver}
	if err := e.db.CreateAccount(context.Background(), a, nil); err != nil {
		e.t.Fatal(err)
	}
	got, err := d.HealthCheck(context.Background(), a.ID)
	if err != nil || got.Status != store.AccountReady {
		e.t.Fatalf("health check of %s: %+v %v", name, got, err)
	}
	return got
}

// TestRoutingByModel (issue 12 point 4): each health check records the
// catalog models a workspace serves, and a task only goes to an account that
// serves its model; a model nobody serves stays queued. Inputs tried: one
// simulator serving only flux, one only anisora (and a name the catalog does
// not know, which is dropped), a flux, an anisora and a pony task.
func TestRoutingByModel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.Models = []string{"anisora", "phr00t", "pony", "flux"}
	d := e.start(cfg)
	fluxOnly := e.healthChecked(d, "flux-box", e.sim(workspace.SimConfig{Models: []string{"flux", "sdxl-unknown"}}).URL, "", 2)
	videoOnly := e.healthChecked(d, "video-box", e.sim(workspace.SimConfig{Models: []string{"anisora"}}).URL, "", 2)
	if strings.Join(fluxOnly.Models, ",") != "flux" || strings.Join(videoOnly.Models, ",") != "anisora" {
		t.Fatalf("models recorded: %v and %v", fluxOnly.Models, videoOnly.Models)
	}
	img, vid := e.task("image"), e.task("video")
	pony := &store.Task{Type: "image", Model: "pony", Mode: "t2i", Prompt: "nobody serves me", Params: []byte(`{"seed":1}`)}
	if err := e.db.CreateTask(context.Background(), pony, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := e.waitTerminal(img.ID); got.Status != "done" || got.AccountID != fluxOnly.ID {
		t.Errorf("flux task on account %d (%s), want %d", got.AccountID, got.Status, fluxOnly.ID)
	}
	if got := e.waitTerminal(vid.ID); got.Status != "done" || got.AccountID != videoOnly.ID {
		t.Errorf("anisora task on account %d (%s), want %d", got.AccountID, got.Status, videoOnly.ID)
	}
	if got := e.get(pony.ID); got.Status != "pending" || got.Attempts != 0 {
		t.Errorf("a task of a model nobody serves: %s after %d tries, want pending and untried", got.Status, got.Attempts)
	}
	ok, _ := e.db.HasReadyAccountFor(context.Background(), "pony")
	if ok {
		t.Error("HasReadyAccountFor(pony) with no account serving it")
	}
	if ok, _ := e.db.HasReadyAccountFor(context.Background(), "flux"); !ok {
		t.Error("HasReadyAccountFor(flux) is false")
	}
}

// TestBusyIsNotAFailedTry (issue 12 point 5, CONTRACT section 14): a
// workspace answering 429/503 used to burn all 3 tries in 0.7 s. Busy is
// backpressure: the task stays pending without using a try, the account gets
// nothing for its Retry-After and stays ready, and the task runs once it is
// free. Input tried: 503 with Retry-After: 1 for the first three submits.
func TestBusyIsNotAFailedTry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sim, err := workspace.NewSim(workspace.SimConfig{Duration: 100 * time.Millisecond, Capacity: 4})
	if err != nil {
		t.Fatal(err)
	}
	var refusals atomic.Int64
	var submits []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/tasks" {
			submits = append(submits, time.Now())
			if refusals.Add(1) <= 3 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(503)
				fmt.Fprint(w, `{"error":{"code":"busy","message":"cold"}}`)
				return
			}
		}
		sim.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	acc := e.account("busy-box", srv.URL, 1, "ready", nil)
	e.start(e.config())
	task := e.task("image")
	got := e.waitTerminal(task.ID)
	if got.Status != "done" || got.Attempts != 1 {
		t.Fatalf("task %s after %d tries (%s), want done after 1", got.Status, got.Attempts, got.ErrorMessage)
	}
	if a := e.getAccount(acc.ID); a.Status != "ready" {
		t.Errorf("a busy workspace was marked %s", a.Status)
	}
	for i := 1; i < len(submits) && i <= 3; i++ {
		if gap := submits[i].Sub(submits[i-1]); gap < 900*time.Millisecond {
			t.Errorf("submit %d came %v after a Retry-After: 1", i+1, gap)
		}
	}
	// Backpressure is not a fault: giving the task back logs no error.
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("error logged for a busy workspace: %s", line)
		}
	}
}

// TestColdStartIsNotAFailure (issue 12 point 5): one slow cold start used to
// mark the account failed and requeue tasks that were still running there.
// A submit that times out leaves the task with its workspace, which the
// poller then asks; the account is marked failed only after 3 timeouts in a
// row. Input tried: a workspace whose first submit answers after 2x the
// per-call timeout (it took the task meanwhile).
func TestColdStartIsNotAFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sim, err := workspace.NewSim(workspace.SimConfig{Duration: 200 * time.Millisecond, Capacity: 4})
	if err != nil {
		t.Fatal(err)
	}
	var first atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/tasks" && first.CompareAndSwap(false, true) {
			sim.Handler().ServeHTTP(httptest.NewRecorder(), r) // it takes the task...
			time.Sleep(600 * time.Millisecond)                 // ...but answers after the caller gave up
			return
		}
		sim.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	acc := e.account("cold-box", srv.URL, 1, "ready", nil)
	cfg := e.config()
	cfg.RequestTimeout = 300 * time.Millisecond
	e.start(cfg)
	task := e.task("image")
	got := e.waitTerminal(task.ID)
	if got.Status != "done" || got.Attempts != 1 || got.AccountID != acc.ID {
		t.Fatalf("task %s after %d tries on %d (%s), want done after 1 try on the cold box", got.Status, got.Attempts, got.AccountID, got.ErrorMessage)
	}
	if a := e.getAccount(acc.ID); a.Status != "ready" {
		t.Errorf("one slow cold start marked the account %s (%s)", a.Status, a.StatusReason)
	}
}

// TestQueuedTTLAndProcessingTTL (issue 12 point 5, CONTRACT section 14): a
// task handed to a workspace that keeps it in its own queue stays pending
// (queue position 0) and fails with timeout after GG_TTL_QUEUED; the
// processing TTL counts from when the workspace reports it running, not
// from the hand-over. Inputs tried: a workspace that answers "pending"
// forever; one that answers "pending" and then "processing".
func TestQueuedTTLAndProcessingTTL(t *testing.T) {
	t.Parallel()
	var mu atomic.Int64 // the store's and the dispatcher's clock, in ms since start
	base := time.Now()
	clock := func() time.Time { return base.Add(time.Duration(mu.Load()) * time.Millisecond) }
	e := newEnvClock(t, clock)
	var running atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/health":
			fmt.Fprint(w, `{"status":"ok","models":["flux"],"capacity":4,"running":0}`)
		case r.Method == "POST":
			var b struct {
				TaskID string `json:"task_id"`
			}
			json.NewDecoder(r.Body).Decode(&b)
			w.WriteHeader(202)
			fmt.Fprintf(w, `{"task_id":%q,"status":"pending"}`, b.TaskID)
		default:
			id := strings.TrimPrefix(r.URL.Path, "/tasks/")
			st := "pending"
			if running.Load() {
				st = "processing"
			}
			fmt.Fprintf(w, `{"task_id":%q,"status":%q,"progress":0}`, id, st)
		}
	}))
	t.Cleanup(srv.Close)
	e.account("queueing-box", srv.URL, 4, "ready", nil)
	cfg := e.config()
	cfg.Now = clock
	cfg.TTLQueued = 10 * time.Minute
	cfg.ReapInterval = time.Hour // the test reaps by hand
	d := e.start(cfg)
	task := e.task("image")
	testutil.WaitFor(t, 5*time.Second, "the task handed to the workspace", func() bool { return e.get(task.ID).AccountID != 0 })
	if got := e.get(task.ID); got.Status != "pending" || got.HandedAt.IsZero() || !got.StartedAt.IsZero() {
		t.Fatalf("handed task: %+v", got)
	}
	if pos, _ := e.db.QueuePosition(context.Background(), task.ID); pos != 0 {
		t.Fatalf("queue position of a handed task = %d, want 0", pos)
	}
	// Nine minutes in the workspace's queue: not past GG_TTL_QUEUED (10 min),
	// and the image TTL (10 min) does not apply to a task that never ran.
	mu.Store((9 * time.Minute).Milliseconds())
	if n, _ := d.Reap(context.Background()); n != 0 {
		t.Fatalf("reaped %d tasks still within GG_TTL_QUEUED", n)
	}
	// Then the workspace runs it: the processing clock starts now.
	running.Store(true)
	testutil.WaitFor(t, 5*time.Second, "the task running", func() bool { return e.get(task.ID).Status == "processing" })
	mu.Store((17 * time.Minute).Milliseconds()) // 8 min running, 17 min since the hand-over
	if n, _ := d.Reap(context.Background()); n != 0 {
		t.Fatalf("a task running 8 min of a 10 min TTL was reaped (the clock must start when it runs)")
	}
	// A second task stays queued past GG_TTL_QUEUED.
	running.Store(false)
	queued := e.task("image")
	testutil.WaitFor(t, 5*time.Second, "the second task handed over", func() bool { return e.get(queued.ID).AccountID != 0 })
	mu.Store((30 * time.Minute).Milliseconds())
	n, err := d.Reap(context.Background())
	if got := e.get(queued.ID); got.Status != "failed" || got.ErrorCode != "timeout" || !strings.Contains(got.ErrorMessage, "queue") {
		t.Fatalf("a task queued on its workspace past GG_TTL_QUEUED: %s %s %q (reaped %d)", got.Status, got.ErrorCode, got.ErrorMessage, n)
	}
	// The first task has now run 21 min of its 10: Reap fails and counts
	// both, and finishes its pass (LastReap, what /admin/health shows).
	if got := e.get(task.ID); got.Status != "failed" || got.ErrorCode != "timeout" || !strings.Contains(got.ErrorMessage, "ran longer") {
		t.Errorf("the task running past its TTL: %s %s %q", got.Status, got.ErrorCode, got.ErrorMessage)
	}
	if n != 2 || err != nil {
		t.Errorf("Reap = %d, %v; want 2 tasks failed", n, err)
	}
	if !d.LastReap().Equal(clock().Truncate(time.Millisecond).UTC()) {
		t.Errorf("LastReap %v after the pass at %v", d.LastReap(), clock())
	}
}

// comfyBox starts comfy-sim with cfg and a dispatcher serving every model,
// and returns a health-checked comfyui account of capacity 1 in front of it.
func (e *env) comfyBox(name string, cfg comfyui.SimConfig) *store.Account {
	e.t.Helper()
	sim, err := comfyui.NewSim(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	e.t.Cleanup(srv.Close)
	dcfg := e.config()
	dcfg.Models = []string{"anisora", "phr00t", "pony", "flux"}
	d := e.start(dcfg)
	return e.healthChecked(d, name, srv.URL, store.DriverComfyUI, 1)
}

// TestComfyUIThroughTheDispatcher (issue 12 point 6): an account with the
// comfyui driver in front of comfy-sim health-checks to the models its
// workflows can serve, runs a task to done with its media in media/, and a
// ComfyUI restart mid-task sends the task back to the queue, where it
// completes without a twin.
func TestComfyUIThroughTheDispatcher(t *testing.T) {
	t.Parallel()
	for _, fault := range []string{comfyui.FaultNone, comfyui.FaultRestart} {
		t.Run(fault, func(t *testing.T) {
			e := newEnv(t)
			acc := e.comfyBox("comfy-box", comfyui.SimConfig{Duration: 300 * time.Millisecond, Fault: fault})
			if len(acc.Models) != 4 {
				t.Fatalf("models of a ComfyUI with every file: %v", acc.Models)
			}
			task := e.task("image")
			got := e.waitTerminal(task.ID)
			if got.Status != "done" || got.ResultType != "image/png" {
				t.Fatalf("task %s %s %q", got.Status, got.ResultType, got.ErrorMessage)
			}
			if fault == comfyui.FaultRestart && got.Attempts < 2 {
				t.Errorf("a ComfyUI restart mid-task: done after %d tries, want a second try", got.Attempts)
			}
			names := e.mediaFiles()
			if !strings.Contains(strings.Join(names, ","), task.ID+".png") {
				t.Errorf("media/ holds %v, want the result", names)
			}
		})
	}
}

// TestOldComfyUIIsNamed: a ComfyUI too old to honour a client's prompt_id
// (comfy-sim --fault old_version) passes its health check, but the first
// task sent there marks the account failed with the reason and the fix, and
// the task's try says the same; before, every try ended "the workspace gave
// an unusable answer".
func TestOldComfyUIIsNamed(t *testing.T) {
	e := newEnv(t)
	acc := e.comfyBox("old-box", comfyui.SimConfig{Duration: time.Hour, Fault: comfyui.FaultOldVersion})
	task := e.task("image")
	testutil.WaitFor(t, 10*time.Second, "the account marked failed", func() bool {
		a, err := e.db.GetAccount(context.Background(), acc.ID)
		return err == nil && a.Status == store.AccountFailed
	})
	a, _ := e.db.GetAccount(context.Background(), acc.ID)
	if !strings.Contains(a.StatusReason, "too old") || !strings.Contains(a.StatusReason, "update ComfyUI") {
		t.Fatalf("account reason %q, want it to say the ComfyUI is too old and to update it", a.StatusReason)
	}
	got := e.get(task.ID)
	if got.Status != "pending" || got.AccountID != 0 {
		t.Fatalf("the task is %s on account %d, want back in the queue", got.Status, got.AccountID)
	}
	recs := e.logs.Records("workspace did not take the task")
	if len(recs) == 0 || !strings.Contains(fmt.Sprint(recs[0]["reason"]), "update ComfyUI") {
		t.Fatalf("the dispatch log does not name the fix: %v", recs)
	}
}
