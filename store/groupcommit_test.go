package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"modernc.org/sqlite"

	"gooni/internal/testutil"
)

// onCommit installs fn as SQLite's commit hook on the store's one writer
// connection: it runs inside every COMMIT, before the commit is final, and a
// non-zero answer turns the COMMIT into a ROLLBACK.
func onCommit(t *testing.T, db *DB, fn func() int32) {
	t.Helper()
	conn, err := db.writer.Conn(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		h, ok := dc.(sqlite.HookRegisterer)
		if !ok {
			return fmt.Errorf("the driver connection %T has no commit hook", dc)
		}
		h.RegisterCommitHook(fn)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// visible reports whether a task row is committed, read on a connection of
// its own (not the store's), the way another process would see the file.
func visible(t *testing.T, raw *sql.DB, id string) bool {
	var n int
	if err := raw.QueryRow(`SELECT count(*) FROM tasks WHERE id = ?`, id).Scan(&n); err != nil {
		t.Errorf("read task %s: %v", id, err)
	}
	return n == 1
}

// TestGroupCommitAnswersOnlyAfterCommit: CreateTask returns only after the
// COMMIT that holds its row succeeded. The first batch's COMMIT is held in
// the commit hook while the callers wait, then refused (SQLite rolls it
// back): every caller of that batch must hear an error, and every caller
// told nil must find its row committed the instant it returns. A committer
// that answers before COMMIT tells the held batch "created" about rows that
// are then rolled back, and fails here on every run.
func TestGroupCommitAnswersOnlyAfterCommit(t *testing.T) {
	db, dir := openTest(t, testOptions(t))
	raw := rawDB(t, filepath.Join(dir, FileName))
	var armed, released atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	onCommit(t, db, func() int32 {
		if !armed.CompareAndSwap(true, false) {
			return 0
		}
		close(held)
		<-release
		return 1 // refuse this COMMIT
	})
	armed.Store(true)

	const n = 30
	type answer struct {
		id            string
		err           error
		visible       bool // committed when CreateTask returned
		beforeRelease bool // returned while the held COMMIT was not final
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			task := newTask(fmt.Sprintf("held-%d", i))
			err := db.CreateTask(bg, task, CreateOptions{})
			answers[i] = answer{id: task.ID, err: err, visible: visible(t, raw, task.ID), beforeRelease: !released.Load()}
		}()
	}
	<-held // the first batch is inside its COMMIT
	released.Store(true)
	close(release)
	wg.Wait()

	refused := 0
	for i, a := range answers {
		if a.beforeRelease {
			t.Errorf("caller %d returned (err %v) while its batch's COMMIT was held", i, a.err)
		}
		switch {
		case a.err == nil && !a.visible:
			t.Errorf("caller %d was told its task %s was created, but the row is not committed", i, a.id)
		case a.err != nil && a.visible:
			t.Errorf("caller %d was told %v, but its task %s is committed", i, a.err, a.id)
		case a.err != nil:
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no caller heard the refused COMMIT: the hook held no batch, the case proves nothing")
	}
	// The store carries on after a failed COMMIT: the next task commits.
	if err := db.CreateTask(bg, newTask("after"), CreateOptions{}); err != nil {
		t.Fatalf("CreateTask after a refused COMMIT: %v", err)
	}
	t.Logf("%d of %d callers shared the refused batch", refused, n)
}

// TestGroupCommitFailedCommitKeepsTheQueueLimit: a refused COMMIT must not
// leave the committer's pending bound counting rows that were rolled back.
func TestGroupCommitFailedCommitKeepsTheQueueLimit(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	var refuse atomic.Bool
	onCommit(t, db, func() int32 {
		if refuse.Load() {
			return 1
		}
		return 0
	})
	const limit = 3
	refuse.Store(true)
	for i := 0; i < limit; i++ {
		if err := db.CreateTask(bg, newTask("refused"), CreateOptions{QueueMax: limit}); err == nil || errors.Is(err, ErrQueueFull) {
			t.Fatalf("create %d under a refused COMMIT: %v, want a commit error", i, err)
		}
	}
	refuse.Store(false)
	for i := 0; i < limit; i++ {
		if err := db.CreateTask(context.Background(), newTask("kept"), CreateOptions{QueueMax: limit}); err != nil {
			t.Fatalf("create %d after the refusals: %v (rolled-back rows counted against the queue)", i, err)
		}
	}
	if err := db.CreateTask(bg, newTask("over"), CreateOptions{QueueMax: limit}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("create over the limit: %v, want ErrQueueFull", err)
	}
}

// waitingCreates counts the goroutines blocked in CreateTasks handing their
// request to the committer (read from the goroutine dump).
func waitingCreates() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.HasPrefix(g, "goroutine ") && strings.Contains(g, " [select") && strings.Contains(g, "store.(*DB).CreateTasks(") {
			n++
		}
	}
	return n
}

// TestGroupCommitSharesOneCommit: submits that arrive while a COMMIT is in
// progress are written together, in one transaction and one fsync, when it
// ends: 20 callers waiting behind a held COMMIT take exactly one more.
func TestGroupCommitSharesOneCommit(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	noIdleIndexing(db) // its COMMIT would count
	var commits atomic.Int64
	var armed atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	onCommit(t, db, func() int32 {
		commits.Add(1)
		if armed.CompareAndSwap(true, false) {
			close(held)
			<-release
		}
		return 0
	})
	armed.Store(true)
	first := make(chan error, 1)
	go func() { first <- db.CreateTask(bg, newTask("first"), CreateOptions{}) }()
	<-held // the first task's COMMIT is in progress

	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.CreateTask(bg, newTask(fmt.Sprintf("behind-%d", i)), CreateOptions{})
		}()
	}
	if err := testutil.Poll(10*time.Second, func() bool { return waitingCreates() == n }); err != nil {
		close(release)
		t.Fatalf("%d of %d callers waiting for the committer: %v", waitingCreates(), n, err)
	}
	before := commits.Load()
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	if got := commits.Load() - before; got != 1 {
		t.Errorf("%d callers waiting behind a COMMIT took %d more COMMITs, want 1", n, got)
	}
	if counts, _ := db.CountByStatus(bg); counts[StatusPending] != n+1 {
		t.Errorf("pending = %d, want %d", counts[StatusPending], n+1)
	}
}
