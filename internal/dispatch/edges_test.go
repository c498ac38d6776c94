package dispatch

import (
	"testing"
	"time"

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
