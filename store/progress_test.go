package store

import (
	"sync"
	"testing"
)

// TestProgressNeverGoesDown: the task view's progress never goes down
// (contract section 6), through every store call that touches a task on its
// way to done: SetProgress only raises it, and sending the task back to the
// queue (RequeueTask, RequeueOrFail) and claiming it again keep it, so a
// second workspace starting from 0 does not pull the bar back. Every
// committed change a listener sees carries a progress at least the last one.
func TestProgressNeverGoesDown(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	acc := newAccount(t, db, "w1")
	task := newTask("progress")
	if err := db.CreateTask(bg, task, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []int
	stop := db.ListenTasks(func(id string) {
		if got, err := db.GetTask(bg, id); err == nil {
			mu.Lock()
			seen = append(seen, got.Progress)
			mu.Unlock()
		}
	})
	defer stop()

	progress := func(want int, what string) {
		t.Helper()
		got, err := db.GetTask(bg, task.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Progress != want {
			t.Fatalf("after %s: progress %d, want %d", what, got.Progress, want)
		}
	}
	describe := func(int, []string) string { return "out of tries" }
	// claim hands the task to acc and acc reports it running.
	claim := func() error {
		if _, err := db.ClaimTask(bg, task.ID, acc.ID); err != nil {
			return err
		}
		_, err := db.StartTask(bg, task.ID, acc.ID)
		return err
	}
	steps := []struct {
		what string
		do   func() error
		want int
	}{
		{"claim", claim, 0},
		{"progress 40", func() error { return db.SetProgress(bg, task.ID, 40) }, 40},
		{"progress 25 (lower)", func() error { return db.SetProgress(bg, task.ID, 25) }, 40},
		{"progress 0", func() error { return db.SetProgress(bg, task.ID, 0) }, 40},
		{"requeue", func() error { return db.RequeueTask(bg, task.ID, "the workspace lost the task") }, 40},
		{"claim again", claim, 40},
		{"the new workspace starts at 5", func() error { return db.SetProgress(bg, task.ID, 5) }, 40},
		{"requeue or fail (requeued)", func() error {
			out, _, err := db.RequeueOrFail(bg, task.ID, acc.ID, "refused", 3, describe)
			if err == nil && out != Requeued {
				t.Fatalf("RequeueOrFail = %v, want Requeued", out)
			}
			return err
		}, 40},
		{"third claim", claim, 40},
		{"progress 60", func() error { return db.SetProgress(bg, task.ID, 60) }, 60},
		{"progress 59", func() error { return db.SetProgress(bg, task.ID, 59) }, 60},
		{"done", func() error {
			return db.CompleteTask(bg, task.ID, "media/x.png", "image/png", "media/x.preview.jpg", "image/jpeg")
		}, 100},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		progress(s.want, s.what)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 8 {
		t.Fatalf("only %d change notifications: %v", len(seen), seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("a listener saw progress go down: %v", seen)
		}
	}
}
