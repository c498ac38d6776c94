package dispatch

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"gooni/internal/testutil"
	"gooni/internal/workspace"
)

// TestProgressNeverGoesDownAcrossAResend: a workspace that forgets a running
// task (restarted empty: its polls answer 404) makes the dispatcher send the
// task again, and the new run starts from 0. The progress committed for the
// task, as every listener sees it, must never go down on the way to done.
func TestProgressNeverGoesDownAcrossAResend(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Two simulators behind one address: the second is the first restarted
	// empty. Each run takes long enough to report progress several times.
	first, err := workspace.NewSim(workspace.SimConfig{Duration: 2 * time.Second, Capacity: 2})
	if err != nil {
		t.Fatal(err)
	}
	second, err := workspace.NewSim(workspace.SimConfig{Duration: time.Second, Capacity: 2})
	if err != nil {
		t.Fatal(err)
	}
	var restarted atomic.Bool
	firstH, secondH := first.Handler(), second.Handler()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if restarted.Load() {
			secondH.ServeHTTP(w, r)
			return
		}
		firstH.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	t.Cleanup(first.Close)
	t.Cleanup(second.Close)
	acc := e.account("forgets", front.URL, 2, "ready", nil)
	e.start(e.config())
	task := e.task("image")

	var before int
	testutil.WaitFor(t, 10*time.Second, "the first run to report progress", func() bool {
		got := e.get(task.ID)
		if got.Status != "processing" && got.Status != "pending" {
			t.Fatalf("task ended %s before the workspace was restarted: the case proves nothing", got.Status)
		}
		before = got.Progress
		return got.Status == "processing" && got.Progress >= 30 && got.Progress < 100
	})
	restarted.Store(true)

	got := e.waitTerminal(task.ID)
	if got.Status != "done" || got.AccountID != acc.ID {
		t.Fatalf("task %s on account %d (%s), want done on %d", got.Status, got.AccountID, got.ErrorMessage, acc.ID)
	}
	if got.Attempts != 2 {
		t.Fatalf("attempts %d, want 2: the task was not sent again after the workspace forgot it", got.Attempts)
	}
	seen := e.changesUntilDone(task.ID)
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("committed progress went down (contract 6: never going down): %v", seen)
		}
	}
	if seen[len(seen)-1] != 100 {
		t.Errorf("last committed progress %d, want 100: %v", seen[len(seen)-1], seen)
	}
	t.Logf("progress committed: %v (%d%% when the workspace forgot the task)", seen, before)
}
