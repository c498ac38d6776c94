package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gooni/internal/testutil"
	"gooni/internal/workspace"
	"gooni/store"
)

// The edges below are where scripts/mutation.sh found dispatcher behaviour
// no test pinned: the documented defaults, the choice of account, and the
// dispatch_failed message.

// TestNewFillsDefaults: a zero or negative setting takes its documented
// default (CONFIG: image TTL 10m, video TTL 30m, deploy 15m, poll 500ms,
// reaper 2s, 3 tries, 30s per workspace request, 1h in the queue); a
// positive one is kept.
func TestNewFillsDefaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	want := Config{TTLImage: 10 * time.Minute, TTLVideo: 30 * time.Minute, DeployTimeout: 15 * time.Minute,
		PollInterval: 500 * time.Millisecond, ReapInterval: 2 * time.Second, MaxAttempts: 3, RequestTimeout: 30 * time.Second,
		TTLQueued: time.Hour}
	for _, neg := range []time.Duration{0, -time.Second} {
		d := New(Config{DB: e.db, DataDir: e.dataDir, TTLImage: neg, TTLVideo: neg, DeployTimeout: neg,
			PollInterval: neg, ReapInterval: neg, MaxAttempts: int(neg), RequestTimeout: neg, TTLQueued: neg})
		got := d.cfg
		if got.TTLImage != want.TTLImage || got.TTLVideo != want.TTLVideo || got.DeployTimeout != want.DeployTimeout ||
			got.PollInterval != want.PollInterval || got.ReapInterval != want.ReapInterval || got.MaxAttempts != want.MaxAttempts ||
			got.RequestTimeout != want.RequestTimeout || got.TTLQueued != want.TTLQueued {
			t.Errorf("settings %v: got %+v, want the defaults %+v", neg, got, want)
		}
	}
	set := Config{DB: e.db, DataDir: e.dataDir, TTLImage: time.Second, TTLVideo: 2 * time.Second, DeployTimeout: 3 * time.Second,
		PollInterval: 4 * time.Millisecond, ReapInterval: 5 * time.Millisecond, MaxAttempts: 6, RequestTimeout: 7 * time.Second,
		TTLQueued: 8 * time.Second}
	got := New(set).cfg
	if got.TTLImage != set.TTLImage || got.TTLVideo != set.TTLVideo || got.DeployTimeout != set.DeployTimeout ||
		got.PollInterval != set.PollInterval || got.ReapInterval != set.ReapInterval || got.MaxAttempts != set.MaxAttempts ||
		got.RequestTimeout != set.RequestTimeout || got.TTLQueued != set.TTLQueued {
		t.Errorf("explicit settings changed: %+v", got)
	}
}

// TestPickChoosesTheLeastLoadedUntriedAccount: among ready accounts with
// room, the one with the lowest share of its capacity in use wins, then the
// one running fewer tasks, then the lowest id; an account that refused the
// task is chosen only when no other has room, and not while one that has not
// refused it is merely full (the task waits for it); an account being
// removed and a full one are never chosen.
func TestPickChoosesTheLeastLoadedUntriedAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := New(e.config())
	cand := func(id int64, running, capacity int) *candidate {
		return &candidate{acc: &store.Account{ID: id, Capacity: capacity, Models: []string{"flux"}}, running: running}
	}
	for _, tc := range []struct {
		name     string
		cands    []*candidate
		tried    []int64 // accounts that refused the task
		removing []int64
		want     int64 // 0 = none
	}{
		{"lowest share of capacity", []*candidate{cand(1, 1, 2), cand(2, 1, 4)}, nil, nil, 2},
		{"share, not count", []*candidate{cand(1, 2, 8), cand(2, 1, 2)}, nil, nil, 1},
		{"equal share: fewer running", []*candidate{cand(1, 2, 4), cand(2, 1, 2)}, nil, nil, 2},
		{"all equal: lowest id", []*candidate{cand(7, 1, 2), cand(3, 1, 2), cand(5, 1, 2)}, nil, nil, 3},
		{"idle first", []*candidate{cand(1, 1, 10), cand(2, 0, 1)}, nil, nil, 2},
		{"full accounts have no room", []*candidate{cand(1, 2, 2), cand(2, 3, 3)}, nil, nil, 0},
		{"the one with room", []*candidate{cand(1, 2, 2), cand(2, 2, 3)}, nil, nil, 2},
		{"untried before a less loaded refuser", []*candidate{cand(1, 3, 4), cand(2, 0, 4)}, []int64{2}, nil, 1},
		{"wait for a busy untried account", []*candidate{cand(1, 4, 4), cand(2, 0, 4)}, []int64{2}, nil, 0},
		{"only refusers: the least loaded", []*candidate{cand(1, 2, 4), cand(2, 1, 4)}, []int64{1, 2}, nil, 2},
		{"only refusers, one full", []*candidate{cand(1, 4, 4), cand(2, 3, 4)}, []int64{1, 2}, nil, 2},
		{"never one being removed", []*candidate{cand(1, 0, 4), cand(2, 3, 4)}, nil, []int64{1}, 2},
		{"no candidates", nil, nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.mu.Lock()
			d.tried["task"] = map[int64]bool{}
			for _, id := range tc.tried {
				d.tried["task"][id] = true
			}
			d.mu.Unlock()
			d.claimMu.Lock()
			d.removing = map[int64]bool{}
			for _, id := range tc.removing {
				d.removing[id] = true
			}
			d.claimMu.Unlock()
			got := d.pick(&store.Task{ID: "task", Model: "flux"}, tc.cands)
			var id int64
			if got != nil {
				id = got.acc.ID
			}
			if id != tc.want {
				t.Errorf("picked account %d, want %d", id, tc.want)
			}
		})
	}
}

// TestDescribeTries: dispatch_failed names each try's reason, numbered; when
// the log holds more reasons than tries (an older run's), the last ones
// count, and when it holds fewer (tries before a restart left none), the
// numbers still end at the last try.
func TestDescribeTries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		attempts int
		reasons  []string
		want     string
	}{
		{3, []string{"refused", "lost", "timed out"}, "no worker ran the task after 3 tries: try 1: refused; try 2: lost; try 3: timed out"},
		{3, []string{"old", "refused", "lost", "timed out"}, "no worker ran the task after 3 tries: try 1: refused; try 2: lost; try 3: timed out"},
		{3, []string{"lost", "timed out"}, "no worker ran the task after 3 tries: try 2: lost; try 3: timed out"},
		{1, []string{"refused"}, "no worker ran the task after 1 tries: try 1: refused"},
		{2, nil, "no worker ran the task after 2 tries"},
	} {
		if got := describeTries(tc.attempts, tc.reasons); got != tc.want {
			t.Errorf("describeTries(%d, %q) =\n  %q\nwant\n  %q", tc.attempts, tc.reasons, got, tc.want)
		}
	}
}

// TestDispatchPassFillsEveryFreeSlot: one dispatch pass hands a burst of
// queued tasks to every free slot at once (capacity 40; the API allows up
// to 64), oldest first, instead of a slice of them per poll interval; the
// rest wait in the queue.
func TestDispatchPassFillsEveryFreeSlot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	acc := e.account("wide", e.sim(workspace.SimConfig{Duration: time.Hour, Capacity: 64}).URL, 40, "ready", nil)
	d := New(e.config())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); d.workers.Wait() })
	var ids []string
	for range 45 {
		ids = append(ids, e.task("image").ID)
	}
	d.dispatchPass(ctx)
	for i, id := range ids {
		got := e.get(id)
		if handed := got.AccountID == acc.ID; handed != (i < 40) {
			t.Errorf("task %d of 45: account %d, attempts %d (40 slots free)", i+1, got.AccountID, got.Attempts)
		}
	}
}

// TestZeroCapacityAccountHoldsNothingBack: an account whose capacity is 0
// (the schema allows it) takes no task, and a task that one account
// already refused is not kept waiting for it: it goes back to the account
// with room.
func TestZeroCapacityAccountHoldsNothingBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	open := e.account("open", e.sim(workspace.SimConfig{Duration: time.Hour}).URL, 1, "ready", nil)
	shut := e.account("shut", e.sim(workspace.SimConfig{Duration: time.Hour}).URL, 1, "ready", nil)
	zero := 0
	if _, err := e.db.UpdateAccount(context.Background(), shut.ID, store.AccountPatch{Capacity: &zero}); err != nil {
		t.Fatal(err)
	}
	d := New(e.config())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); d.workers.Wait() })
	task := e.task("image")
	d.mu.Lock()
	d.tried[task.ID] = map[int64]bool{open.ID: true} // it refused the task once
	d.mu.Unlock()
	d.dispatchPass(ctx)
	if got := e.get(task.ID); got.AccountID != open.ID {
		t.Errorf("task on account %d, want %d (the other has capacity 0)", got.AccountID, open.ID)
	}
}

// TestSubmitAnsweredRunningStartsTheClock: when the workspace's answer to
// the submit already says processing, the task is processing from that
// moment (its TTL clock and what the user sees start then), not from the
// next poll.
func TestSubmitAnsweredRunningStartsTheClock(t *testing.T) {
	t.Parallel()
	clock := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	e := newEnvAt(t, clock)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			TaskID string `json:"task_id"`
		}
		json.NewDecoder(r.Body).Decode(&b)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"task_id":%q,"status":"processing","progress":0}`, b.TaskID)
	}))
	t.Cleanup(srv.Close)
	acc := e.account("eager", srv.URL, 1, "ready", nil)
	cfg := e.config()
	cfg.Now = clock.Now
	d := New(cfg)
	ctx := context.Background()
	task := e.task("image")
	claimed, err := e.db.ClaimTask(ctx, task.ID, acc.ID)
	if err != nil {
		t.Fatal(err)
	}
	client, err := d.Driver(ctx, acc)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Second)
	d.submit(ctx, claimed, &candidate{acc: acc, client: client})
	if got := e.get(task.ID); got.Status != "processing" || !got.StartedAt.Equal(clock.Now()) {
		t.Errorf("after a submit answered processing: %s, started %v (now %v)", got.Status, got.StartedAt, clock.Now())
	}
}

// TestAccountDownHandsItsTasksOnAtOnce: when an account goes down, its
// tasks are handed to another ready account right away, not at the next
// dispatch pass (an hour away here).
func TestAccountDownHandsItsTasksOnAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The first workspace reports every task running until it goes down.
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/health" {
			fmt.Fprint(w, `{"status":"ok","models":["flux"],"capacity":1,"running":1}`)
			return
		}
		fmt.Fprintf(w, `{"task_id":%q,"status":"processing","progress":10}`, strings.TrimPrefix(r.URL.Path, "/tasks/"))
	}))
	t.Cleanup(first.Close)
	down := e.account("going-down", first.URL, 1, "ready", nil)
	ctx := context.Background()
	task := e.task("image")
	if _, err := e.db.ClaimTask(ctx, task.ID, down.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.StartTask(ctx, task.ID, down.ID); err != nil {
		t.Fatal(err)
	}
	other := e.account("other", e.sim(workspace.SimConfig{Duration: time.Hour}).URL, 1, "ready", nil)
	cfg := e.config()
	cfg.PollInterval = time.Hour
	d := e.start(cfg)
	// The loops run once the reaper has finished a pass (after Run's first poll and dispatch passes).
	testutil.WaitFor(t, 5*time.Second, "the dispatcher's loops", func() bool { return !d.LastReap().IsZero() })
	if got := e.get(task.ID); got.AccountID != down.ID || got.Status != "processing" {
		t.Fatalf("before the account went down: %s on %d", got.Status, got.AccountID)
	}
	d.accountDown(ctx, down, "the test took it down", nil)
	testutil.WaitFor(t, 5*time.Second, "the task handed to the other account", func() bool { return e.get(task.ID).AccountID == other.ID })
	if a := e.getAccount(down.ID); a.Status != store.AccountFailed {
		t.Errorf("account that went down is %s", a.Status)
	}
}

// TestAccountDownSparesEditedSettings: a failure of a call made with
// settings an edit has since replaced (the old base_url) neither marks the
// account failed nor moves the task now running on the new target, and
// failed polls of the old settings do not count toward the new ones'
// limit: the new target has its own health check. Inputs tried: an account
// moved to another base_url and found ready there, with a task on it; a
// failure reported with the old settings; two failed polls of the old
// settings, then one of the new; then a failure with the current settings.
func TestAccountDownSparesEditedSettings(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	old := e.account("moved", e.sim(workspace.SimConfig{}).URL, 1, "ready", nil)
	elsewhere := e.sim(workspace.SimConfig{Duration: time.Hour}).URL
	if _, err := e.db.UpdateAccount(ctx, old.ID, store.AccountPatch{BaseURL: &elsewhere}); err != nil {
		t.Fatal(err)
	}
	d := New(e.config())
	now, err := d.HealthCheck(ctx, old.ID)
	if err != nil || now.Status != store.AccountReady {
		t.Fatalf("the new target's check: %+v %v", now, err)
	}
	task := e.task("image")
	if _, err := e.db.ClaimTask(ctx, task.ID, now.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.StartTask(ctx, task.ID, now.ID); err != nil {
		t.Fatal(err)
	}
	tries := e.get(task.ID).Attempts
	d.accountDown(ctx, old, "the old target went away", nil)
	if got := e.getAccount(old.ID); got.Status != store.AccountReady {
		t.Fatalf("after a failure of the old settings: %s (%s), want ready", got.Status, got.StatusReason)
	}
	if got := e.get(task.ID); got.Status != "processing" || got.AccountID != now.ID || got.Attempts != tries {
		t.Fatalf("the task on the new target after a failure of the old settings: %s on %d, %d tries; want processing there, still %d", got.Status, got.AccountID, got.Attempts, tries)
	}
	for _, a := range []*store.Account{old, old, now} {
		d.pollFailed(ctx, a, "no answer", nil)
	}
	if got := e.getAccount(old.ID); got.Status != store.AccountReady {
		t.Fatalf("after 2 failed polls of the old settings and 1 of the new: %s (%s), want ready", got.Status, got.StatusReason)
	}
	d.accountDown(ctx, now, "the new target went away", nil)
	if got := e.getAccount(old.ID); got.Status != store.AccountFailed || got.StatusReason != "the new target went away" {
		t.Fatalf("after a failure of the current settings: %s (%s), want failed", got.Status, got.StatusReason)
	}
}
