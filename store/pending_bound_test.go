package store

import (
	"errors"
	"testing"
	"time"
)

// The committer skips count(*) while an upper bound proves there is room;
// every way a pending row appears or disappears must keep the limit exact.
func TestQueueLimitExactAcrossClaimRequeueFailAndDelete(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	a := newAccount(t, db, "acc")
	create := func(max int) error { return db.CreateTask(bg, newTask("q"), CreateOptions{QueueMax: max}) }
	mustCreate := func(max int) *Task {
		t.Helper()
		task := newTask("q")
		if err := db.CreateTask(bg, task, CreateOptions{QueueMax: max}); err != nil {
			t.Fatal(err)
		}
		return task
	}
	// No limit first: the bound is not measured, then a limit arrives.
	first := mustCreate(0)
	second := mustCreate(0)
	mustCreate(3)
	if err := create(3); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("4th of 3: %v", err)
	}
	// A claim frees a place: the bound is stale high and must be recounted.
	if _, err := db.ClaimTask(bg, first.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	mustCreate(3)
	if err := create(3); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("after refill: %v", err)
	}
	// A requeue adds a pending row outside the committer: 4 pending now.
	if err := db.RequeueTask(bg, first.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if err := create(4); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("requeued task not counted: %v", err)
	}
	mustCreate(5)
	// Failing and deleting pending tasks makes room again.
	if err := db.FailTask(bg, second.ID, "timeout", "x"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteTask(bg, first.ID); err != nil {
		t.Fatal(err)
	}
	mustCreate(5)
	mustCreate(5)
	if err := create(5); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("6th of 5: %v", err)
	}
	counts, _ := db.CountByStatus(bg)
	if counts[StatusPending] != 5 {
		t.Fatalf("pending = %d, want 5", counts[StatusPending])
	}
	// Far below a large limit the bound admits without a count; still exact.
	for i := 0; i < 20; i++ {
		mustCreate(1000)
	}
	counts, _ = db.CountByStatus(bg)
	if counts[StatusPending] != 25 {
		t.Fatalf("pending = %d, want 25", counts[StatusPending])
	}
}

func TestHasReadyAccount(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	if ok, err := db.HasReadyAccount(bg); err != nil || ok {
		t.Fatalf("empty: %v %v", ok, err)
	}
	a := newAccount(t, db, "acc")
	if ok, _ := db.HasReadyAccount(bg); ok {
		t.Fatal("a pending account counted as ready")
	}
	if _, err := db.SetAccountStatus(bg, a.ID, "ready", "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := db.HasReadyAccount(bg); !ok {
		t.Fatal("a ready account not seen")
	}
	if _, err := db.SetAccountStatus(bg, a.ID, "disabled", "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := db.HasReadyAccount(bg); ok {
		t.Fatal("a disabled account counted as ready")
	}
}

// TestQueueBoundCountsARequeueWaitingForTheWriter: a requeue that waits for
// the writer while a batch's open transaction recounts the pending tasks
// is still counted once it commits, so the next create over the limit is
// refused. (When the requeue counted itself before taking the writer, the
// recount saw its count but not its row, and the bound stayed one short.)
func TestQueueBoundCountsARequeueWaitingForTheWriter(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	acc := newAccount(t, db, "acc")
	a := newTask("a")
	if err := db.CreateTask(bg, a, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ClaimTask(bg, a.ID, acc.ID); err != nil {
		t.Fatal(err)
	}
	const limit = 2
	b := db.beginBatch() // holds the writer, as while the batch gathers
	requeued := make(chan error, 1)
	go func() { requeued <- db.RequeueTask(bg, a.ID, "workspace gone") }()
	time.Sleep(50 * time.Millisecond) // the requeue now waits for the writer
	req := batchOf(db, &createRequest{tasks: []*Task{newTask("in batch")}, opts: CreateOptions{QueueMax: limit}})[0]
	b.add(req) // recounts
	b.commit()
	if err := <-req.done; err != nil {
		t.Fatal(err)
	}
	if err := <-requeued; err != nil {
		t.Fatal(err)
	}
	err := db.CreateTask(bg, newTask("over"), CreateOptions{QueueMax: limit})
	if !errors.Is(err, ErrQueueFull) {
		var n int
		db.reader.QueryRow(`SELECT count(*) FROM tasks WHERE status = 'pending'`).Scan(&n)
		t.Errorf("a create over QueueMax=%d: %v, want ErrQueueFull (%d pending now)", limit, err, n)
	}
}
