package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gooni/internal/testutil"
)

func newTask(prompt string) *Task {
	return &Task{Type: "image", Model: "flux", Mode: "t2i", Prompt: prompt, Params: []byte(`{"steps":28}`)}
}

func newAccount(t testing.TB, db *DB, name string) *Account {
	t.Helper()
	a := &Account{Name: name, Workspace: "ws-" + name, Capacity: 2}
	if err := db.CreateAccount(bg, a, nil); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCreateAndGetTask(t *testing.T) {
	db, clock := openClocked(t, time.Date(2025, 1, 2, 3, 4, 5, 6_000_000, time.UTC))

	for _, tc := range []struct {
		name string
		task *Task
	}{
		{"t2i without image", &Task{Type: "image", Model: "pony", Mode: "t2i", Prompt: "a cat", NegativePrompt: "dogs", Params: []byte(`{"seed":-1}`)}},
		{"i2v with image", &Task{Type: "video", Model: "anisora", Mode: "i2v", Prompt: "move",
			InputPath: "media/x.input.png", InputType: "image/png", InputBytes: 1234}},
		{"caller chosen id", &Task{ID: "fixed-id", Type: "image", Model: "flux", Mode: "t2i", Prompt: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, create := range []struct {
				name string
				fn   func(context.Context, *Task, CreateOptions) error
			}{{"grouped", db.CreateTask}, {"single", db.createTaskSingle}} {
				task := *tc.task
				if task.ID != "" {
					task.ID += "-" + create.name
				}
				if err := create.fn(bg, &task, CreateOptions{}); err != nil {
					t.Fatalf("%s: %v", create.name, err)
				}
				got, err := db.GetTask(bg, task.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Status != StatusPending || got.Progress != 0 || got.Attempts != 0 || got.AccountID != 0 {
					t.Errorf("%s: new task state %+v", create.name, got)
				}
				if got.Prompt != task.Prompt || got.NegativePrompt != task.NegativePrompt || got.Model != task.Model || got.Mode != task.Mode || got.Type != task.Type {
					t.Errorf("%s: fields not kept: %+v", create.name, got)
				}
				wantParams := string(task.Params)
				if string(got.Params) != wantParams || wantParams == "" {
					t.Errorf("%s: params %s, want %s", create.name, got.Params, wantParams)
				}
				if !got.CreatedAt.Equal(clock.Now().Truncate(time.Millisecond)) || !got.StartedAt.IsZero() || !got.CompletedAt.IsZero() {
					t.Errorf("%s: times %v %v %v", create.name, got.CreatedAt, got.StartedAt, got.CompletedAt)
				}
				if got.HasImage() != (tc.task.InputPath != "") || got.InputPath != tc.task.InputPath ||
					got.InputType != tc.task.InputType || got.InputBytes != tc.task.InputBytes {
					t.Errorf("%s: input %q %q %d, want %q %q %d", create.name, got.InputPath, got.InputType, got.InputBytes,
						tc.task.InputPath, tc.task.InputType, tc.task.InputBytes)
				}
			}
		})
	}
	if _, err := db.GetTask(bg, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetTask unknown: %v", err)
	}
	dup := &Task{ID: "fixed-id-grouped", Prompt: "again"}
	if err := db.CreateTask(bg, dup, CreateOptions{QueueMax: 0}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate id: %v", err)
	}
}

func TestQueueFull(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	creates := []func(context.Context, *Task, CreateOptions) error{db.CreateTask, db.createTaskSingle}
	for i := 0; i < 6; i++ {
		// Each limit leaves room for exactly this one.
		if err := creates[i%2](bg, newTask("q"), CreateOptions{QueueMax: i + 1}); err != nil {
			t.Fatal(err)
		}
	}
	// 6 pending now.
	for _, tc := range []struct {
		max  int
		want error
	}{{6, ErrQueueFull}, {1, ErrQueueFull}, {0, nil}, {-1, nil}, {100, nil}} {
		err := db.CreateTask(bg, newTask("x"), CreateOptions{QueueMax: tc.max})
		if !errors.Is(err, tc.want) {
			t.Errorf("queueMax %d: %v, want %v", tc.max, err, tc.want)
		}
		err = db.createTaskSingle(bg, newTask("x"), CreateOptions{QueueMax: tc.max})
		if !errors.Is(err, tc.want) {
			t.Errorf("single queueMax %d: %v, want %v", tc.max, err, tc.want)
		}
	}
	// Only pending tasks count toward the limit.
	pending, _ := db.ListPending(bg, 0)
	a := newAccount(t, db, "acc")
	for _, p := range pending {
		if _, err := db.ClaimTask(bg, p.ID, a.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.CreateTask(bg, newTask("x"), CreateOptions{QueueMax: 1}); err != nil {
		t.Fatalf("processing tasks counted as queued: %v", err)
	}
}

func TestGroupCommitConcurrent(t *testing.T) {
	db, dir := openTest(t, testOptions(t))
	raw := rawDB(t, filepath.Join(dir, FileName))
	const n = 50
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			task := newTask(fmt.Sprintf("p%d", i))
			if i%5 == 0 {
				task.InputPath, task.InputType, task.InputBytes = fmt.Sprintf("media/p%d.input.png", i), "image/png", int64(i+1)
			}
			errs[i] = db.CreateTask(bg, task, CreateOptions{})
			ids[i] = task.ID
			// The instant it returns, the row is committed for everyone.
			if errs[i] == nil && !visible(t, raw, task.ID) {
				t.Errorf("task %d: CreateTask returned before its row was committed", i)
			}
		}(i)
	}
	wg.Wait()
	// A second, independent Open sees every row: each return meant a commit.
	other, err := Open(dir, testutil.Schema(t), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("task %d: %v", i, errs[i])
		}
		got, err := other.GetTask(bg, ids[i])
		if err != nil || got.Prompt != fmt.Sprintf("p%d", i) {
			t.Fatalf("task %d not durable: %v", i, err)
		}
		if i%5 == 0 && (got.InputBytes != int64(i+1) || got.InputPath != fmt.Sprintf("media/p%d.input.png", i)) {
			t.Fatalf("task %d: input %q %d not durable", i, got.InputPath, got.InputBytes)
		}
	}
	counts, _ := other.CountByStatus(bg)
	if counts[StatusPending] != n {
		t.Fatalf("pending = %d, want %d", counts[StatusPending], n)
	}
}

func TestGroupCommitQueueMaxExact(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	const n, limit = 50, 17
	var ok, full atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := db.CreateTask(bg, newTask("q"), CreateOptions{QueueMax: limit}); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrQueueFull):
				full.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != limit || full.Load() != n-limit {
		t.Fatalf("accepted %d, refused %d; want %d and %d", ok.Load(), full.Load(), limit, n-limit)
	}
	counts, _ := db.CountByStatus(bg)
	if counts[StatusPending] != limit {
		t.Fatalf("pending = %d, want %d", counts[StatusPending], limit)
	}
}

func TestGroupCommitBadRequestFailsAlone(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	if err := db.CreateTask(bg, &Task{ID: "taken", Prompt: "first"}, CreateOptions{QueueMax: 0}); err != nil {
		t.Fatal(err)
	}
	// Build one batch by hand so the duplicate and the good ones share a transaction.
	mk := func(task *Task, max int) *createRequest {
		db.prepareTask(task)
		return &createRequest{ctx: bg, tasks: []*Task{task}, opts: CreateOptions{QueueMax: max}, done: make(chan error, 1)}
	}
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	batch := []*createRequest{
		mk(&Task{ID: "good-1", Prompt: "a"}, 0),
		mk(&Task{ID: "taken", Prompt: "dup"}, 0),
		mk(&Task{ID: "full", Prompt: "b"}, 1),
		mk(&Task{ID: "good-2", Prompt: "c"}, 0),
		{ctx: cancelled, tasks: []*Task{{ID: "gone", Prompt: "d"}}, done: make(chan error, 1)},
		// A request of several tasks is all or none: one duplicate undoes its siblings.
		{ctx: bg, tasks: []*Task{{ID: "sibling-1", Prompt: "e"}, {ID: "taken", Prompt: "f"}}, done: make(chan error, 1)},
		// and the batch carries on after it.
		mk(&Task{ID: "good-3", Prompt: "g"}, 0),
	}
	db.commitBatch(batch)
	want := []error{nil, ErrDuplicate, ErrQueueFull, nil, context.Canceled, ErrDuplicate, nil}
	for i, req := range batch {
		if err := <-req.done; !errors.Is(err, want[i]) {
			t.Errorf("request %s: %v, want %v", req.tasks[0].ID, err, want[i])
		}
	}
	for _, id := range []string{"good-1", "good-2", "good-3"} {
		if _, err := db.GetTask(bg, id); err != nil {
			t.Errorf("%s not committed: %v", id, err)
		}
	}
	for _, id := range []string{"full", "gone", "sibling-1"} {
		if _, err := db.GetTask(bg, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s committed: %v", id, err)
		}
	}
	if got, _ := db.GetTask(bg, "taken"); got.Prompt != "first" {
		t.Errorf("duplicate overwrote the first task: %q", got.Prompt)
	}
}

// handed names, in the transition table, a pending task a workspace took.
const handed = "handed"

func TestTaskTransitions(t *testing.T) {
	db, _ := openClocked(t, time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC))
	acc := newAccount(t, db, "w1")

	// setup brings a fresh task to a status; "handed" is a pending task a
	// workspace took but has not started.
	setup := func(t *testing.T, status string) string {
		t.Helper()
		task := newTask("s")
		if err := db.CreateTask(bg, task, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if status == StatusPending {
			return task.ID
		}
		if _, err := db.ClaimTask(bg, task.ID, acc.ID); err != nil {
			t.Fatal(err)
		}
		if status == handed {
			return task.ID
		}
		if _, err := db.StartTask(bg, task.ID, acc.ID); err != nil {
			t.Fatal(err)
		}
		switch status {
		case StatusDone:
			if err := db.CompleteTask(bg, task.ID, "r", "image/png", "p", "image/png"); err != nil {
				t.Fatal(err)
			}
		case StatusFailed:
			if err := db.FailTask(bg, task.ID, "timeout", "too slow"); err != nil {
				t.Fatal(err)
			}
		}
		return task.ID
	}
	ops := map[string]func(id string) error{
		"claim":    func(id string) error { _, err := db.ClaimTask(bg, id, acc.ID); return err },
		"start":    func(id string) error { _, err := db.StartTask(bg, id, acc.ID); return err },
		"release":  func(id string) error { return db.ReleaseTask(bg, id, acc.ID) },
		"requeue":  func(id string) error { return db.RequeueTask(bg, id, "refused") },
		"progress": func(id string) error { return db.SetProgress(bg, id, 50) },
		"complete": func(id string) error { return db.CompleteTask(bg, id, "r.png", "image/png", "p.png", "image/png") },
		"fail":     func(id string) error { return db.FailTask(bg, id, "worker_error", "boom") },
	}
	for _, tc := range []struct {
		op, from, to string
		want         error
	}{
		{"claim", StatusPending, StatusPending, nil}, // handed: pending until the workspace runs it
		{"claim", handed, StatusPending, ErrConflict},
		{"claim", StatusProcessing, StatusProcessing, ErrConflict},
		{"claim", StatusDone, StatusDone, ErrConflict},
		{"claim", StatusFailed, StatusFailed, ErrConflict},
		{"start", handed, StatusProcessing, nil},
		{"start", StatusPending, StatusPending, ErrConflict},
		{"start", StatusProcessing, StatusProcessing, ErrConflict},
		{"start", StatusDone, StatusDone, ErrConflict},
		{"release", handed, StatusPending, nil},
		{"release", StatusPending, StatusPending, ErrConflict},
		{"release", StatusProcessing, StatusProcessing, ErrConflict},
		{"requeue", StatusProcessing, StatusPending, nil},
		{"requeue", handed, StatusPending, nil},
		{"requeue", StatusPending, StatusPending, ErrConflict},
		{"requeue", StatusDone, StatusDone, ErrConflict},
		{"progress", StatusProcessing, StatusProcessing, nil},
		{"progress", StatusPending, StatusPending, ErrConflict},
		{"progress", handed, StatusPending, ErrConflict},
		{"progress", StatusDone, StatusDone, ErrConflict},
		{"complete", StatusProcessing, StatusDone, nil},
		{"complete", StatusPending, StatusPending, ErrConflict},
		{"complete", handed, StatusPending, ErrConflict},
		{"complete", StatusDone, StatusDone, ErrConflict},
		{"complete", StatusFailed, StatusFailed, ErrConflict},
		{"fail", StatusPending, StatusFailed, nil},
		{"fail", handed, StatusFailed, nil},
		{"fail", StatusProcessing, StatusFailed, nil},
		{"fail", StatusDone, StatusDone, ErrConflict},
		{"fail", StatusFailed, StatusFailed, ErrConflict},
	} {
		t.Run(tc.op+" from "+tc.from, func(t *testing.T) {
			id := setup(t, tc.from)
			if err := ops[tc.op](id); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			got, _ := db.GetTask(bg, id)
			if got.Status != tc.to {
				t.Fatalf("status = %s, want %s", got.Status, tc.to)
			}
			if err := ops[tc.op]("missing-id"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("unknown id: %v, want ErrNotFound", err)
			}
		})
	}
}

func TestTaskLifecycleFields(t *testing.T) {
	db, clock := openClocked(t, time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC))
	acc := newAccount(t, db, "w1")
	task := newTask("life")
	task.InputPath, task.InputType, task.InputBytes = "media/life.input.png", "image/png", 3
	if err := db.CreateTask(bg, task, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	claimed, err := db.ClaimTask(bg, task.ID, acc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if claimed.Status != StatusPending || claimed.AccountID != acc.ID || claimed.Attempts != 1 ||
		!claimed.HandedAt.Equal(clock.Now()) || !claimed.StartedAt.IsZero() {
		t.Fatalf("claimed (handed, not started): %+v", claimed)
	}
	if pos, _ := db.QueuePosition(bg, task.ID); pos != 0 {
		t.Fatalf("a handed task has queue position %d, want 0", pos)
	}
	clock.Advance(time.Second)
	started, err := db.StartTask(bg, task.ID, acc.ID)
	if err != nil || started.Status != StatusProcessing || !started.StartedAt.Equal(clock.Now()) || !started.HandedAt.Equal(clock.Now().Add(-time.Second)) {
		t.Fatalf("started: %+v %v", started, err)
	}
	if err := db.RequeueTask(bg, task.ID, "workspace refused: 503"); err != nil {
		t.Fatal(err)
	}
	got, _ := db.GetTask(bg, task.ID)
	if got.AccountID != 0 || got.Attempts != 1 || !got.StartedAt.IsZero() || !got.HandedAt.IsZero() {
		t.Fatalf("requeued: %+v", got)
	}
	if _, err := db.ClaimTask(bg, task.ID, acc.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.RequeueTask(bg, task.ID, "connection dropped"); err != nil {
		t.Fatal(err)
	}
	reasons, err := db.RetryReasons(bg, task.ID)
	if err != nil || strings.Join(reasons, "|") != "workspace refused: 503|connection dropped" {
		t.Fatalf("reasons %q %v", reasons, err)
	}
	claimed, _ = db.ClaimTask(bg, task.ID, acc.ID)
	if claimed.Attempts != 3 {
		t.Fatalf("attempts = %d, want 3", claimed.Attempts)
	}
	// A busy workspace gives a task back without using a try.
	if err := db.ReleaseTask(bg, task.ID, acc.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.GetTask(bg, task.ID); got.Attempts != 2 || got.AccountID != 0 || !got.HandedAt.IsZero() {
		t.Fatalf("released: %+v", got)
	}
	if r, _ := db.RetryReasons(bg, task.ID); len(r) != 2 {
		t.Fatalf("a release recorded a retry reason: %q", r)
	}
	claimed, _ = db.ClaimTask(bg, task.ID, acc.ID)
	if _, err := db.StartTask(bg, task.ID, acc.ID); err != nil {
		t.Fatal(err)
	}

	for _, step := range []struct{ set, want int }{{10, 10}, {5, 10}, {-3, 10}, {100, 99}, {250, 99}, {42, 99}} {
		if err := db.SetProgress(bg, task.ID, step.set); err != nil {
			t.Fatal(err)
		}
		got, _ := db.GetTask(bg, task.ID)
		if got.Progress != step.want {
			t.Fatalf("SetProgress(%d): progress %d, want %d", step.set, got.Progress, step.want)
		}
	}
	clock.Advance(time.Minute)
	if err := db.CompleteTask(bg, task.ID, "media/x.png", "image/png", "media/x.preview.png", "image/png"); err != nil {
		t.Fatal(err)
	}
	got, _ = db.GetTask(bg, task.ID)
	if got.Status != StatusDone || got.Progress != 100 || got.ResultPath != "media/x.png" || got.ResultType != "image/png" ||
		got.PreviewPath != "media/x.preview.png" || got.PreviewType != "image/png" || !got.CompletedAt.Equal(clock.Now()) {
		t.Fatalf("done: %+v", got)
	}
	// The input image stays with the task (the gallery shows it, Retry
	// reuses it) until the task is deleted.
	if got.InputPath != "media/life.input.png" || got.InputBytes != 3 {
		t.Fatalf("input image dropped when the task finished: %+v", got)
	}

	failed := newTask("f")
	db.CreateTask(bg, failed, CreateOptions{})
	if err := db.FailTask(bg, failed.ID, "dispatch_failed", "3 tries used"); err != nil {
		t.Fatal(err)
	}
	got, _ = db.GetTask(bg, failed.ID)
	if got.ErrorCode != "dispatch_failed" || got.ErrorMessage != "3 tries used" || got.CompletedAt.IsZero() || got.Progress != 0 {
		t.Fatalf("failed: %+v", got)
	}

	if err := db.DeleteTask(bg, task.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetTask(bg, task.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted task still there: %v", err)
	}
	if err := db.DeleteTask(bg, task.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if r, _ := db.RetryReasons(bg, task.ID); len(r) != 0 {
		t.Fatalf("retry log outlived its task: %q", r)
	}
}

func TestTaskQueries(t *testing.T) {
	db, clock := openClocked(t, time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC))
	a1, a2 := newAccount(t, db, "a1"), newAccount(t, db, "a2")

	if _, ok, err := db.OldestPending(bg); ok || err != nil {
		t.Fatalf("OldestPending on empty: %v %v", ok, err)
	}
	var ids []string
	for i := 0; i < 6; i++ {
		task := newTask(fmt.Sprint(i))
		if i >= 3 {
			task.Type = "video"
		}
		if err := db.CreateTask(bg, task, CreateOptions{QueueMax: 0}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, task.ID)
		clock.Advance(time.Second)
	}
	start := clock.Now().Add(-6 * time.Second)
	// 0,1 pending; 2,3 processing on a1; 4 processing on a2; 5 failed
	for _, c := range []struct {
		i   int
		acc int64
	}{{2, a1.ID}, {3, a1.ID}, {4, a2.ID}} {
		if _, err := db.ClaimTask(bg, ids[c.i], c.acc); err != nil {
			t.Fatal(err)
		}
		if _, err := db.StartTask(bg, ids[c.i], c.acc); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
	}
	db.FailTask(bg, ids[5], "timeout", "x")

	for _, tc := range []struct {
		id   string
		want int
	}{{ids[0], 1}, {ids[1], 2}, {ids[2], 0}, {ids[5], 0}} {
		pos, err := db.QueuePosition(bg, tc.id)
		if err != nil || pos != tc.want {
			t.Errorf("QueuePosition(%s) = %d %v, want %d", tc.id, pos, err, tc.want)
		}
	}
	if _, err := db.QueuePosition(bg, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("QueuePosition unknown: %v", err)
	}
	counts, _ := db.CountByStatus(bg)
	if fmt.Sprint(counts) != fmt.Sprint(map[string]int{"pending": 2, "processing": 3, "done": 0, "failed": 1}) {
		t.Errorf("counts %v", counts)
	}
	oldest, ok, err := db.OldestPending(bg)
	if !ok || err != nil || !oldest.Equal(start) {
		t.Errorf("OldestPending = %v %v %v, want %v", oldest, ok, err, start)
	}
	taskIDs := func(ts []*Task) string {
		var s []string
		for _, t := range ts {
			s = append(s, t.ID)
		}
		return strings.Join(s, ",")
	}
	if p, _ := db.ListPending(bg, 0); taskIDs(p) != ids[0]+","+ids[1] {
		t.Errorf("ListPending = %s", taskIDs(p))
	}
	if p, _ := db.ListPending(bg, 1); taskIDs(p) != ids[0] {
		t.Errorf("ListPending(1) = %s", taskIDs(p))
	}
	if p, _ := db.ListProcessing(bg); taskIDs(p) != strings.Join(ids[2:5], ",") {
		t.Errorf("ListProcessing = %s", taskIDs(p))
	}
	if r, _ := db.RunningByAccount(bg); r[a1.ID] != 2 || r[a2.ID] != 1 || len(r) != 2 {
		t.Errorf("RunningByAccount = %v", r)
	}
	if u, _ := db.UnfinishedTasksOfAccount(bg, a1.ID); taskIDs(u) != ids[2]+","+ids[3] {
		t.Errorf("UnfinishedTasksOfAccount = %s", taskIDs(u))
	}
	// Task 2 (image) started 3 min before now, 3 (video) 2 min, 4 (video) 1 min.
	// Task 2 reports progress now: staleness counts from started_at, so a
	// task that keeps reporting still runs out of time.
	if err := db.SetProgress(bg, ids[2], 40); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		typ    string
		cutoff time.Duration
		want   string
	}{
		{"image", 150 * time.Second, ids[2]},
		{"image", 179 * time.Second, ids[2]},
		{"image", 180 * time.Second, ""}, // ran exactly as long as the cutoff: not yet stale
		{"image", 200 * time.Second, ""},
		{"video", 90 * time.Second, ids[3]},
		{"video", 30 * time.Second, ids[3] + "," + ids[4]},
	} {
		stale, err := db.ListStale(bg, tc.typ, clock.Now().Add(-tc.cutoff))
		if err != nil || taskIDs(stale) != tc.want {
			t.Errorf("ListStale(%s, -%v) = %s %v, want %s", tc.typ, tc.cutoff, taskIDs(stale), err, tc.want)
		}
	}
	// A task handed to a workspace but not started: still pending, out of
	// Gooni's queue, counted against its account, polled, and timed by
	// handed_at (GG_TTL_QUEUED), not by the processing TTL.
	if _, err := db.ClaimTask(bg, ids[1], a2.ID); err != nil {
		t.Fatal(err)
	}
	if pos, _ := db.QueuePosition(bg, ids[1]); pos != 0 {
		t.Errorf("QueuePosition of a handed task = %d, want 0", pos)
	}
	if p, _ := db.ListPending(bg, 0); taskIDs(p) != ids[0] {
		t.Errorf("ListPending with a handed task = %s, want only %s", taskIDs(p), ids[0])
	}
	if r, _ := db.RunningByAccount(bg); r[a2.ID] != 2 {
		t.Errorf("RunningByAccount with a handed task = %v, want 2 on a2", r)
	}
	if f, _ := db.ListInFlight(bg); taskIDs(f) != strings.Join(ids[1:5], ",") {
		t.Errorf("ListInFlight = %s", taskIDs(f))
	}
	clock.Advance(10 * time.Minute)
	if q, _ := db.ListQueuedStale(bg, clock.Now().Add(-5*time.Minute)); taskIDs(q) != ids[1] {
		t.Errorf("ListQueuedStale = %s, want %s", taskIDs(q), ids[1])
	}
	if q, _ := db.ListQueuedStale(bg, clock.Now().Add(-11*time.Minute)); len(q) != 0 {
		t.Errorf("ListQueuedStale before it was handed = %s", taskIDs(q))
	}
	db.RequeueTask(bg, ids[1], "back")
	// Deleting an account leaves its finished tasks without one.
	db.CompleteTask(bg, ids[4], "r", "video/mp4", "p", "image/webp")
	if err := db.DeleteAccount(bg, a2.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.GetTask(bg, ids[4]); got.AccountID != 0 {
		t.Errorf("done task still points at deleted account %d", got.AccountID)
	}
}

func TestGalleryPaging(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	acc := newAccount(t, db, "g")
	var done []string
	for i := 0; i < 7; i++ {
		task := newTask(fmt.Sprint(i))
		db.CreateTask(bg, task, CreateOptions{QueueMax: 0})
		if i == 3 {
			continue // stays pending: never in the gallery
		}
		db.ClaimTask(bg, task.ID, acc.ID)
		db.StartTask(bg, task.ID, acc.ID)
		if err := db.CompleteTask(bg, task.ID, "r", "image/png", "p", "image/png"); err != nil {
			t.Fatal(err)
		}
		done = append([]string{task.ID}, done...) // newest first
	}
	for _, tc := range []struct {
		limit int
		pages [][]string
	}{
		{2, [][]string{done[0:2], done[2:4], done[4:6]}},
		{4, [][]string{done[0:4], done[4:6]}},
		{6, [][]string{done[0:6]}},
		{100, [][]string{done}},
		{0, [][]string{done}},
	} {
		t.Run(fmt.Sprint("limit ", tc.limit), func(t *testing.T) {
			cursor := ""
			for i, page := range tc.pages {
				items, next, err := db.Gallery(bg, cursor, tc.limit)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, it := range items {
					got = append(got, it.ID)
				}
				if strings.Join(got, ",") != strings.Join(page, ",") {
					t.Fatalf("page %d = %v, want %v", i, got, page)
				}
				last := i == len(tc.pages)-1
				if last != (next == "") {
					t.Fatalf("page %d next = %q", i, next)
				}
				cursor = next
			}
		})
	}
}

// TestQueryPlans proves the queue and gallery queries walk the index in order,
// so they stay fast with 100k rows instead of sorting the table.
func TestQueryPlans(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	for _, tc := range []struct {
		name, query string
		args        []any
	}{
		{"pending", `SELECT ` + taskColumns + ` FROM tasks WHERE status = 'pending' ORDER BY id LIMIT ?`, []any{10}},
		{"gallery first", `SELECT ` + taskColumns + ` FROM tasks WHERE status = 'done' ORDER BY id DESC LIMIT ?`, []any{10}},
		{"gallery next", `SELECT ` + taskColumns + ` FROM tasks WHERE status = 'done' AND id < ? ORDER BY id DESC LIMIT ?`, []any{"x", 10}},
		{"queue position", `SELECT count(*) FROM tasks p WHERE p.status = 'pending' AND p.id < ?`, []any{"x"}},
		// The reaper's, every 2 s: the processing tasks, not every task of the type.
		{"stale processing", listStaleQuery, []any{"image", 0}},
	} {
		rows, err := db.reader.Query("EXPLAIN QUERY PLAN "+tc.query, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			rows.Scan(&id, &parent, &notused, &detail)
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		if !strings.Contains(joined, "tasks_status_id") || strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("%s: plan %q", tc.name, joined)
		}
	}
}

func TestCreateTaskDurableAcrossOpen(t *testing.T) {
	db, dir := openTest(t, testOptions(t))
	task := newTask("durable")
	if err := db.CreateTask(bg, task, CreateOptions{QueueMax: 0}); err != nil {
		t.Fatal(err)
	}
	// Read the file with a plain connection, as a restarted process would.
	raw := rawDB(t, filepath.Join(dir, FileName))
	var prompt string
	if err := raw.QueryRow(`SELECT prompt FROM tasks WHERE id = ?`, task.ID).Scan(&prompt); err != nil || prompt != "durable" {
		t.Fatalf("row not visible to another connection: %q %v", prompt, err)
	}
}

// BenchmarkReaperQueries runs the reaper's two queries (ListStale for
// images, ListQueuedStale) on an empty database and beside 100,000 done
// and 100,000 pending image tasks, with 2 tasks processing and 1 handed
// out in both; the two should cost about the same:
//
//	go test ./store -run '^$' -bench BenchmarkReaperQueries
func BenchmarkReaperQueries(b *testing.B) {
	for _, n := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("tasks=%d", 2*n), func(b *testing.B) {
			db, clock := openClocked(b, time.Now())
			first := clock.Now().Add(-72 * time.Hour)
			err := db.SeedTasks(bg, 2*n, func(i int) Task {
				c := first.Add(time.Duration(i) * time.Millisecond)
				t := Task{ID: IDAt(c), Type: "image", Model: "flux", Mode: "t2i", Prompt: "a lighthouse",
					Status: StatusPending, CreatedAt: c}
				if i < n {
					t.Status, t.Progress, t.StartedAt, t.CompletedAt = StatusDone, 100, c, c.Add(time.Second)
				}
				return t
			})
			if err != nil {
				b.Fatal(err)
			}
			acc := newAccount(b, db, "gpu")
			for i := 0; i < 3; i++ {
				task := newTask("in flight")
				if err := db.CreateTask(bg, task, CreateOptions{}); err != nil {
					b.Fatal(err)
				}
				if _, err := db.ClaimTask(bg, task.ID, acc.ID); err != nil {
					b.Fatal(err)
				}
				if i < 2 {
					if _, err := db.StartTask(bg, task.ID, acc.ID); err != nil {
						b.Fatal(err)
					}
				}
			}
			clock.Advance(time.Hour)
			for b.Loop() {
				stale, err := db.ListStale(bg, "image", clock.Now().Add(-time.Minute))
				if err != nil || len(stale) != 2 {
					b.Fatalf("ListStale: %d tasks, %v", len(stale), err)
				}
				queued, err := db.ListQueuedStale(bg, clock.Now().Add(-time.Minute))
				if err != nil || len(queued) != 1 {
					b.Fatalf("ListQueuedStale: %d tasks, %v", len(queued), err)
				}
			}
		})
	}
}

func BenchmarkCreateTask(b *testing.B) {
	db, _ := openTest(b, testOptions(b))
	b.SetParallelism(benchParallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := db.CreateTask(bg, newTask("bench"), CreateOptions{QueueMax: 0}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkCreateTaskSingle(b *testing.B) {
	db, _ := openTest(b, testOptions(b))
	b.SetParallelism(benchParallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := db.createTaskSingle(bg, newTask("bench"), CreateOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRawInsert is the baseline: one row per transaction through the same
// driver and pragmas, without the store's queue check.
func BenchmarkRawInsert(b *testing.B) {
	db, _ := openTest(b, testOptions(b))
	b.SetParallelism(benchParallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := time.Now().UnixMilli()
			_, err := db.writer.Exec(`INSERT INTO tasks (id, type, model, mode, prompt, params, status, created_at, updated_at)
				VALUES (?, 'image', 'flux', 't2i', 'bench', '{}', 'pending', ?, ?)`, NewID(), now, now)
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchParallelism * GOMAXPROCS goroutines submit at once, like many HTTP
// clients posting /generate together.
const benchParallelism = 8
