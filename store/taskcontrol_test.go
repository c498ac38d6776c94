package store

import (
	"errors"
	"fmt"
	"gooni/internal/testutil"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ctlTask(prompt string) *Task {
	return &Task{Type: "image", Model: "flux", Mode: "t2i", Prompt: prompt, Params: []byte(`{"seed":1}`)}
}

// TestIdempotencyCommitsWithTheTasks: the key and the tasks commit together;
// a second batch with the same key creates nothing; an expired key is free
// again; purge removes old keys.
func TestIdempotencyCommitsWithTheTasks(t *testing.T) {
	clk := testutil.NewClock(time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC))
	opts := testOptions(t)
	opts.Now = clk.Now
	db, _ := openTest(t, opts)
	rec := &IdempotencyRecord{Key: "k-1", BodyHash: []byte("hash-a"), Response: []byte(`{"task_id":"x"}`)}
	first := []*Task{ctlTask("one"), ctlTask("two")}
	if err := db.CreateTasks(bg, first, CreateOptions{Idempotency: rec}); err != nil {
		t.Fatal(err)
	}
	got, err := db.IdempotentAnswer(bg, "k-1")
	if err != nil || string(got.Response) != `{"task_id":"x"}` || !got.SameBody([]byte("hash-a")) || got.SameBody([]byte("hash-b")) {
		t.Fatalf("stored answer: %+v %v", got, err)
	}
	second := []*Task{ctlTask("three"), ctlTask("four")}
	if err := db.CreateTasks(bg, second, CreateOptions{Idempotency: &IdempotencyRecord{Key: "k-1", BodyHash: []byte("hash-b"), Response: []byte(`{}`)}}); !errors.Is(err, ErrIdempotencyKeyUsed) {
		t.Fatalf("same key again: %v, want ErrIdempotencyKeyUsed", err)
	}
	for _, tk := range second {
		if _, err := db.GetTask(bg, tk.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("task %q of the refused batch exists: %v", tk.Prompt, err)
		}
	}
	// A single task is all or none with its key too.
	lone := ctlTask("lone")
	if err := db.CreateTasks(bg, []*Task{lone}, CreateOptions{Idempotency: &IdempotencyRecord{Key: "k-1", BodyHash: []byte("hash-c"), Response: []byte(`{}`)}}); !errors.Is(err, ErrIdempotencyKeyUsed) {
		t.Fatalf("same key again for one task: %v, want ErrIdempotencyKeyUsed", err)
	}
	if _, err := db.GetTask(bg, lone.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the task refused for its used key exists: %v", err)
	}
	if got, _ := db.IdempotentAnswer(bg, "k-1"); !got.SameBody([]byte("hash-a")) {
		t.Error("the refused batch replaced the stored key")
	}
	// Past 24 h the key counts as unused and may be stored anew.
	clk.Advance(IdempotencyTTL + time.Second)
	if _, err := db.IdempotentAnswer(bg, "k-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired key still answers: %v", err)
	}
	if err := db.CreateTasks(bg, []*Task{ctlTask("five")}, CreateOptions{Idempotency: &IdempotencyRecord{Key: "k-1", BodyHash: []byte("hash-c"), Response: []byte(`{}`)}}); err != nil {
		t.Fatalf("reuse after expiry: %v", err)
	}
	if err := db.CreateTasks(bg, []*Task{ctlTask("six")}, CreateOptions{Idempotency: &IdempotencyRecord{Key: "k-2", BodyHash: []byte("h"), Response: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(IdempotencyTTL + time.Second)
	n, err := db.PurgeIdempotencyKeys(bg, clk.Now().Add(-IdempotencyTTL))
	if err != nil || n != 2 {
		t.Fatalf("purge removed %d (%v), want 2", n, err)
	}
}

// TestIdempotencyQueueFullStoresNoKey: a batch refused as a whole leaves no key behind.
func TestIdempotencyQueueFullStoresNoKey(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	rec := &IdempotencyRecord{Key: "full", BodyHash: []byte("h"), Response: []byte(`{}`)}
	err := db.CreateTasks(bg, []*Task{ctlTask("a"), ctlTask("b"), ctlTask("c")}, CreateOptions{QueueMax: 2, Idempotency: rec})
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("3 tasks into a queue of 2: %v", err)
	}
	if _, err := db.IdempotentAnswer(bg, "full"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused batch stored its key: %v", err)
	}
	if c, _ := db.CountByStatus(bg); c[StatusPending] != 0 {
		t.Fatalf("%d tasks created by a refused batch", c[StatusPending])
	}
}

func TestCancelTask(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	pending, processing := ctlTask("p"), ctlTask("q")
	if err := db.CreateTasks(bg, []*Task{pending, processing}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	acc := &Account{Name: "a", Workspace: "a", Capacity: 1, Status: "ready"}
	if err := db.CreateAccount(bg, acc, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ClaimTask(bg, processing.ID, acc.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartTask(bg, processing.ID, acc.ID); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		task       *Task
		wasStatus  string
		wasAccount int64
	}{{pending, StatusPending, 0}, {processing, StatusProcessing, acc.ID}} {
		was, err := db.CancelTask(bg, c.task.ID, "canceled by the user")
		if err != nil || was.Status != c.wasStatus || was.AccountID != c.wasAccount {
			t.Fatalf("cancel %s: %+v %v", c.wasStatus, was, err)
		}
		now, _ := db.GetTask(bg, c.task.ID)
		if now.Status != StatusFailed || now.ErrorCode != ErrorCanceled || now.CompletedAt.IsZero() {
			t.Errorf("after cancel: %s %s", now.Status, now.ErrorCode)
		}
		if _, err := db.CancelTask(bg, c.task.ID, "again"); !errors.Is(err, ErrConflict) {
			t.Errorf("second cancel: %v, want ErrConflict", err)
		}
		// A late "done" from the workspace cannot revive it.
		if err := db.CompleteTask(bg, c.task.ID, "media/x.png", "image/png", "", ""); !errors.Is(err, ErrConflict) {
			t.Errorf("complete after cancel: %v, want ErrConflict", err)
		}
	}
	if _, err := db.CancelTask(bg, "NOPE", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancel unknown: %v", err)
	}
}

// TestListTasksFilters covers every filter, their combination, paging and
// the prompt index's upkeep on delete.
func TestListTasksFilters(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	models := []struct{ model, typ, mode string }{{"flux", "image", "t2i"}, {"anisora", "video", "t2v"}}
	statuses := []string{StatusDone, StatusFailed, StatusPending, StatusProcessing}
	prompts := []string{"A red Lighthouse at dusk", "a blue boat", "Éclair on a red plate"}
	const n = 60
	err := db.SeedTasks(bg, n, func(i int) Task {
		m := models[i%2]
		return Task{ID: IDAt(first.Add(time.Duration(i) * time.Second)), Type: m.typ, Model: m.model, Mode: m.mode,
			Prompt: fmt.Sprintf("%s %d", prompts[i%3], i), Status: statuses[i%4], CreatedAt: first.Add(time.Duration(i) * time.Second)}
	})
	if err != nil {
		t.Fatal(err)
	}
	all := func(f TaskFilter) []*Task {
		t.Helper()
		var out []*Task
		for pages := 0; ; pages++ {
			items, next, err := db.ListTasks(bg, f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, items...)
			if next == "" {
				return out
			}
			if pages > n {
				t.Fatal("paging does not end")
			}
			f.Cursor = next
		}
	}
	cases := []struct {
		name string
		f    TaskFilter
		want func(i int) bool
	}{
		{"all", TaskFilter{Limit: 7}, func(i int) bool { return true }},
		{"failed", TaskFilter{Statuses: []string{StatusFailed}, Limit: 4}, func(i int) bool { return i%4 == 1 }},
		{"pending or processing", TaskFilter{Statuses: []string{StatusPending, StatusProcessing}}, func(i int) bool { return i%4 >= 2 }},
		{"model", TaskFilter{Model: "anisora", Limit: 5}, func(i int) bool { return i%2 == 1 }},
		{"type", TaskFilter{Type: "image"}, func(i int) bool { return i%2 == 0 }},
		{"q one word, any case", TaskFilter{Query: "LIGHTHOUSE", Limit: 3}, func(i int) bool { return i%3 == 0 }},
		{"q all words", TaskFilter{Query: "red dusk", Limit: 3}, func(i int) bool { return i%3 == 0 }},
		{"q whole words and accents", TaskFilter{Query: "eclair plate"}, func(i int) bool { return i%3 == 2 }},
		{"q red (two prompts)", TaskFilter{Query: "red", Limit: 4}, func(i int) bool { return i%3 != 1 }},
		{"q with model and status", TaskFilter{Query: "red", Model: "flux", Statuses: []string{StatusDone}, Limit: 2}, func(i int) bool { return i%3 != 1 && i%2 == 0 && i%4 == 0 }},
		{"q matching nothing", TaskFilter{Query: "zebra"}, func(i int) bool { return false }},
		{"q a word's prefix is not the word", TaskFilter{Query: "lighthous"}, func(i int) bool { return false }},
		{"three statuses merged", TaskFilter{Statuses: []string{StatusDone, StatusFailed, StatusPending}, Limit: 9}, func(i int) bool { return i%4 != 3 }},
		{"a status twice", TaskFilter{Statuses: []string{StatusFailed, StatusFailed}, Limit: 6}, func(i int) bool { return i%4 == 1 }},
		{"statuses with model and type", TaskFilter{Statuses: []string{StatusDone, StatusFailed}, Model: "anisora", Type: "video", Limit: 3}, func(i int) bool { return i%2 == 1 && i%4 <= 1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := all(c.f)
			var want []string
			for i := n - 1; i >= 0; i-- {
				if c.want(i) {
					want = append(want, IDAt(first.Add(time.Duration(i) * time.Second))[:10])
				}
			}
			var ids []string
			for _, tk := range got {
				ids = append(ids, tk.ID[:10]) // the time part: the order newest first
			}
			if strings.Join(ids, ",") != strings.Join(want, ",") {
				t.Errorf("got %d tasks %v\nwant %d %v", len(ids), ids, len(want), want)
			}
		})
	}
	// Deleting a task takes it out of the prompt index too.
	victim := all(TaskFilter{Query: "lighthouse"})[0]
	if err := db.DeleteTask(bg, victim.ID); err != nil {
		t.Fatal(err)
	}
	for _, tk := range all(TaskFilter{Query: "lighthouse"}) {
		if tk.ID == victim.ID {
			t.Fatal("a deleted task is still found by q")
		}
	}
}

// openMigrated opens a database made with the schema's steps before step,
// lets before write into it, then opens it again with the whole schema
// (closed at cleanup): a database an older binary wrote, upgraded.
func openMigrated(t *testing.T, step int, before func(old *DB)) (*DB, string) {
	t.Helper()
	schema := testutil.Schema(t)
	cut := strings.Index(schema, fmt.Sprintf("-- migrate: %d\n", step))
	if cut < 0 {
		t.Fatalf("no step %d in the schema", step)
	}
	dir := filepath.Join(t.TempDir(), "data")
	old, err := Open(dir, schema[:cut], testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	before(old)
	old.Close()
	db, err := Open(dir, schema, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dir
}

// TestPromptIndexMigration: tasks written before step 6 are searchable after it.
func TestPromptIndexMigration(t *testing.T) {
	db, dir := openMigrated(t, 6, func(old *DB) {
		if err := old.CreateTasks(bg, []*Task{ctlTask("an old harbour"), ctlTask("a new moon")}, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	items, _, err := db.ListTasks(bg, TaskFilter{Query: "harbour"})
	if err != nil || len(items) != 1 || items[0].Prompt != "an old harbour" {
		t.Fatalf("q after migration: %v %v", items, err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
}

func TestRecentRunTimesAndPendingAhead(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err := db.SeedTasks(bg, 6, func(i int) Task {
		c := first.Add(time.Duration(i) * time.Minute)
		tk := Task{ID: IDAt(c), Type: "image", Model: "flux", Mode: "t2i", Prompt: "x", Status: StatusDone, CreatedAt: c,
			StartedAt: c.Add(time.Second), CompletedAt: c.Add(time.Second + time.Duration(i+1)*time.Second)}
		if i == 5 {
			tk.Mode = "other"
		}
		return tk
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := db.RecentRunTimes(bg, "flux", "t2i", 3)
	if err != nil || len(d) != 3 || d[0] != 5*time.Second || d[2] != 3*time.Second {
		t.Fatalf("run times %v %v", d, err)
	}
	a, b, c := ctlTask("a"), ctlTask("b"), ctlTask("c")
	c.Model = "pony"
	if err := db.CreateTasks(bg, []*Task{a, b, c}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ahead, err := db.PendingAhead(bg, c.ID)
	if err != nil || ahead[ModelMode{"flux", "t2i"}] != 2 || len(ahead) != 1 {
		t.Fatalf("ahead of c: %v %v", ahead, err)
	}
}
