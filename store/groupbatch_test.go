package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestGatherWaitsForSiblingsOnlyWhenExpected: the committer takes what is
// waiting, and waits (until the linger's deadline) only while fewer
// requests than expected are in hand. Each case drives gather with its own
// channels: the deadline fires only when the case closes it.
func TestGatherWaitsForSiblingsOnlyWhenExpected(t *testing.T) {
	req := func(id string) *createRequest { return &createRequest{tasks: []*Task{{ID: id}}} }
	ids := func(b []*createRequest) []string {
		var out []string
		for _, r := range b {
			out = append(out, r.tasks[0].ID)
		}
		return out
	}
	cases := []struct {
		name   string
		expect int
		queued int // requests already waiting on the channel
		later  int // requests sent once gather is waiting
		expire bool
		close  bool
		want   int
		linger bool // whether gather must start the linger
	}{
		{name: "a lone caller never waits", expect: 1, want: 1},
		{name: "what is waiting is taken without a wait", expect: 1, queued: 3, want: 4},
		{name: "enough in hand: no wait", expect: 3, queued: 2, want: 3, linger: false},
		{name: "waits for the expected siblings", expect: 4, later: 3, want: 4, linger: true},
		{name: "the deadline ends the wait", expect: 5, later: 1, expire: true, want: 2, linger: true},
		{name: "closing ends the wait", expect: 5, close: true, want: 1, linger: true},
		{name: "never more than a batch", expect: 10 * maxCreateBatch, queued: maxCreateBatch + 5, want: maxCreateBatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Queued requests sit in the channel's buffer, which they fill,
			// so a later send completes only when gather has taken it.
			creates := make(chan *createRequest, c.queued)
			for i := 0; i < c.queued; i++ {
				creates <- req(fmt.Sprintf("q%d", i))
			}
			closing := make(chan struct{})
			deadline := make(chan time.Time)
			waiting := make(chan struct{})
			lingered := false
			linger := func() <-chan time.Time {
				lingered = true
				close(waiting)
				return deadline
			}
			first := req("first")
			got := make(chan []*createRequest, 1)
			var added []*createRequest // gather's goroutine only, read after got
			add := func(r *createRequest) { added = append(added, r) }
			go func() { got <- gather([]*createRequest{first}, creates, c.expect, linger, closing, add) }()
			if c.linger {
				select {
				case <-waiting:
				case b := <-got:
					t.Fatalf("gather returned %v without waiting for siblings", ids(b))
				}
				for i := 0; i < c.later; i++ {
					select {
					case creates <- req(fmt.Sprintf("l%d", i)):
					case b := <-got:
						t.Fatalf("gather returned %v before its siblings came", ids(b))
					}
				}
				switch {
				case c.expire:
					close(deadline)
				case c.close:
					close(closing)
				}
			}
			b := <-got
			if len(b) != c.want {
				t.Fatalf("batch %v: %d requests, want %d", ids(b), len(b), c.want)
			}
			if lingered != c.linger {
				t.Errorf("lingered = %v, want %v", lingered, c.linger)
			}
			if b[0] != first {
				t.Errorf("the batch does not start with its first request: %v", ids(b))
			}
			// Each request it took went to add as it came, the first
			// (the caller's) excepted.
			if strings.Join(ids(added), ",") != strings.Join(ids(b[1:]), ",") {
				t.Errorf("added %v, want %v", ids(added), ids(b[1:]))
			}
			if left := len(creates); left != c.queued+c.later+1-len(b) {
				t.Errorf("%d requests left waiting, want %d", left, c.queued+c.later+1-len(b))
			}
		})
	}
}

// TestLingerIsBoundedByTheLastCommit: the wait for siblings is never
// longer than the last COMMIT took, nor than maxLinger.
func TestLingerIsBoundedByTheLastCommit(t *testing.T) {
	for _, c := range []struct{ last, want time.Duration }{
		{0, minLinger},
		{300 * time.Microsecond, 300 * time.Microsecond},
		{time.Second, maxLinger},
	} {
		if got := lingerFor(c.last); got != c.want {
			t.Errorf("lingerFor(%s) = %s, want %s", c.last, got, c.want)
		}
	}
}

// TestGroupCommitDuplicateFailsAlone: in a batch, a request whose id is
// taken fails alone, wherever it sits, and every other request of the
// batch commits (counted once in the queue).
func TestGroupCommitDuplicateFailsAlone(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	if err := db.CreateTask(bg, &Task{ID: "taken", Prompt: "first"}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var batch []*createRequest
	for i := 0; i < 42; i++ {
		task := newTask("batch")
		if i == 34 {
			task.ID = "taken"
		}
		db.prepareTask(task)
		batch = append(batch, &createRequest{ctx: bg, tasks: []*Task{task}, opts: CreateOptions{QueueMax: 1000}, done: make(chan error, 1)})
	}
	db.commitBatch(batch)
	for i, req := range batch {
		err := <-req.done
		if i == 34 {
			if !errors.Is(err, ErrDuplicate) {
				t.Errorf("the duplicate: %v, want ErrDuplicate", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		if _, err := db.GetTask(bg, req.tasks[0].ID); err != nil {
			t.Errorf("request %d not committed: %v", i, err)
		}
	}
	if got, _ := db.GetTask(bg, "taken"); got.Prompt != "first" {
		t.Errorf("the duplicate overwrote the first task: %q", got.Prompt)
	}
	if got, want := db.QueueLength(), len(batch); got != want {
		t.Errorf("queue length %d, want %d", got, want)
	}
	var n int
	db.reader.QueryRowContext(context.Background(), `SELECT count(*) FROM tasks WHERE status = 'pending'`).Scan(&n)
	if n != len(batch) {
		t.Errorf("%d pending rows, want %d", n, len(batch))
	}
}

// commitBatch writes and answers a batch that is already whole, as the
// committer does with a batch whose requests came together.
func (db *DB) commitBatch(batch []*createRequest) {
	b := db.beginBatch()
	for _, req := range batch {
		b.add(req)
	}
	b.commit()
}

// batchOf builds one group-commit batch of requests (not yet committed),
// each with its own context, tasks and options, as CreateTasks would.
func batchOf(db *DB, reqs ...*createRequest) []*createRequest {
	for _, req := range reqs {
		if req.ctx == nil {
			req.ctx = bg
		}
		for _, t := range req.tasks {
			db.prepareTask(t)
		}
		req.done = make(chan error, 1)
	}
	return reqs
}

// TestGroupCommitBatchKeepsEachRequestsRules: every request of a batch
// keeps its own rules, checked as it is added to the open transaction: a
// queue limit only some requests have, a request of several tasks, a
// caller that gave up, an Idempotency-Key, input images over the quota.
func TestGroupCommitBatchKeepsEachRequestsRules(t *testing.T) {
	one := func(opts CreateOptions) *createRequest {
		return &createRequest{tasks: []*Task{newTask("b")}, opts: opts}
	}
	committed := func(t *testing.T, db *DB, req *createRequest) bool {
		t.Helper()
		n := 0
		for _, task := range req.tasks {
			if _, err := db.GetTask(bg, task.ID); err == nil {
				n++
			}
		}
		if n != 0 && n != len(req.tasks) {
			t.Fatalf("%d of a request's %d tasks committed", n, len(req.tasks))
		}
		return n > 0
	}
	// answers checks that request i of batch got want[i] and has its rows
	// committed exactly when that answer is nil.
	answers := func(t *testing.T, db *DB, batch []*createRequest, what string, want ...error) {
		t.Helper()
		for i, w := range want {
			if err := <-batch[i].done; !errors.Is(err, w) {
				t.Errorf("%s %d: %v, want %v", what, i, err, w)
			}
			if got := committed(t, db, batch[i]); got != (w == nil) {
				t.Errorf("%s %d committed: %v", what, i, got)
			}
		}
	}

	t.Run("each request is held to its own queue limit", func(t *testing.T) {
		db, _ := openTest(t, testOptions(t))
		for range 2 {
			if err := db.CreateTask(bg, newTask("earlier"), CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		// 2 pending; three one-task requests, two of them allowing 3 pending.
		batch := batchOf(db, one(CreateOptions{QueueMax: 3}), one(CreateOptions{QueueMax: 100}), one(CreateOptions{QueueMax: 3}))
		db.commitBatch(batch)
		answers(t, db, batch, "request", nil, nil, ErrQueueFull)
		if got := db.QueueLength(); got != 4 {
			t.Errorf("queue length %d, want 4", got)
		}
	})

	t.Run("requests of several tasks commit every task", func(t *testing.T) {
		db, _ := openTest(t, testOptions(t))
		var reqs []*createRequest
		for range 3 {
			reqs = append(reqs, &createRequest{tasks: []*Task{newTask("x"), newTask("y")}, opts: CreateOptions{QueueMax: 1000}})
		}
		batch := batchOf(db, reqs...)
		db.commitBatch(batch)
		for i, req := range batch {
			if err := <-req.done; err != nil || !committed(t, db, req) {
				t.Errorf("request %d of two tasks: %v, committed %v", i, err, committed(t, db, req))
			}
		}
	})

	t.Run("a caller that gave up gets its error and no rows", func(t *testing.T) {
		db, _ := openTest(t, testOptions(t))
		gone, cancel := context.WithCancel(bg)
		cancel()
		batch := batchOf(db, one(CreateOptions{}), one(CreateOptions{}), one(CreateOptions{}), one(CreateOptions{}))
		batch[1].ctx, batch[2].ctx = gone, gone
		db.commitBatch(batch)
		for i, req := range batch {
			err := <-req.done
			if i == 1 || i == 2 {
				if !errors.Is(err, context.Canceled) || committed(t, db, req) {
					t.Errorf("canceled request %d: %v, committed %v; want context.Canceled and no row", i, err, committed(t, db, req))
				}
				continue
			}
			if err != nil || !committed(t, db, req) {
				t.Errorf("request %d: %v, committed %v", i, err, committed(t, db, req))
			}
		}
	})

	t.Run("an idempotency key commits with its task", func(t *testing.T) {
		db, _ := openTest(t, testOptions(t))
		key := func(k string) CreateOptions {
			return CreateOptions{Idempotency: &IdempotencyRecord{Key: k, BodyHash: []byte(k), Response: []byte(`{"k":"` + k + `"}`)}}
		}
		batch := batchOf(db, one(key("k1")), one(key("k2")), one(key("k3")))
		db.commitBatch(batch)
		for i, k := range []string{"k1", "k2", "k3"} {
			if err := <-batch[i].done; err != nil || !committed(t, db, batch[i]) {
				t.Fatalf("request %d: %v", i, err)
			}
			rec, err := db.IdempotentAnswer(bg, k)
			if err != nil || string(rec.Response) != `{"k":"`+k+`"}` {
				t.Errorf("key %s after its batch: %+v (%v), want its stored answer", k, rec, err)
			}
		}
	})

	t.Run("input images are held to the quota", func(t *testing.T) {
		db, _ := openTest(t, testOptions(t))
		img := func() *createRequest {
			req := one(CreateOptions{InputQuota: 1000})
			task := req.tasks[0]
			task.InputPath, task.InputType, task.InputBytes = "media/x.input.png", "image/png", 400
			return req
		}
		batch := batchOf(db, img(), img(), img())
		db.commitBatch(batch)
		answers(t, db, batch, "image of 400 bytes under a quota of 1000", nil, nil, ErrInputQuota)
	})
}

// TestSiblingsExpectTheLargestRecentBatch: after a batch of 9 the committer
// keeps expecting 9 although the next batches are smaller (two halves of
// the same clients must not settle into alternating batches), until that
// batch is siblingWindow batches old; with no batch of several in the
// window a lone caller does not wait, nor after siblingIdle without a
// request.
func TestSiblingsExpectTheLargestRecentBatch(t *testing.T) {
	var s siblings
	if got := s.expect(); got != 1 {
		t.Fatalf("before any batch: expect %d, want 1", got)
	}
	s.observe(9)
	for i := 1; i < siblingWindow; i++ {
		s.observe(5)
		if got := s.expect(); got != 9 {
			t.Fatalf("%d batches after a batch of 9: expect %d, want 9", i, got)
		}
	}
	s.observe(1)
	if got := s.expect(); got != 5 {
		t.Fatalf("the 9 left the window: expect %d, want 5", got)
	}
	for range siblingWindow {
		s.observe(1)
	}
	if got := s.expect(); got != 1 {
		t.Fatalf("only lone callers in the window: expect %d, want 1", got)
	}

	// An idle committer forgets a burst at once; a short pause does not.
	s.observe(9)
	s.idle(siblingIdle / 2)
	if got := s.expect(); got != 9 {
		t.Fatalf("after a short pause: expect %d, want 9", got)
	}
	s.idle(siblingIdle + time.Millisecond)
	if got := s.expect(); got != 1 {
		t.Fatalf("after %s idle: expect %d, want 1", siblingIdle, got)
	}
}
