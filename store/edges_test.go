package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gooni/internal/testutil"
)

// The edges below are where scripts/mutation.sh found behaviour no test
// pinned: an empty chain, a chain pruned to nothing, a prune past a key
// rotation, the exact page, the shortest key, the last try of a task.

// TestVerifyAuditEmptyChain: a database with no audit row and no head verifies.
func TestVerifyAuditEmptyChain(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 0 || v.FirstBadID != 0 {
		t.Fatalf("VerifyAudit of an empty chain = %+v %v, want OK", v, err)
	}
}

// TestPruneEverythingThenAppend: when retention removes every row, the chain
// still verifies (it starts after the sealed checkpoint), and the next row
// continues the numbering and the chain.
func TestPruneEverythingThenAppend(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	old := time.Now().Add(-200 * 24 * time.Hour)
	for i := 0; i < 3; i++ {
		if err := db.AppendAudit(bg, &AuditEvent{Timestamp: old, Actor: "a", Action: "old", Outcome: "success"}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := db.PruneAudit(bg, time.Now().Add(-100*24*time.Hour)); err != nil || n != 3 {
		t.Fatalf("PruneAudit = %d %v, want 3", n, err)
	}
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 0 {
		t.Fatalf("VerifyAudit with every row pruned = %+v %v, want OK", v, err)
	}
	e := &AuditEvent{Actor: "a", Action: "new", Outcome: "success"}
	if err := db.AppendAudit(bg, e); err != nil || e.ID != 4 {
		t.Fatalf("append after the prune: id %d %v, want 4", e.ID, err)
	}
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 1 {
		t.Fatalf("VerifyAudit after the append = %+v %v", v, err)
	}
}

// TestPrunePastAKeyRotation: retention may remove rows on both sides of a
// key rotation; the rest verifies, and the rotation boundary it no longer
// holds rows for is not checked against a row that is gone.
func TestPrunePastAKeyRotation(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	add := func(ts time.Time) {
		t.Helper()
		if err := db.AppendAudit(bg, &AuditEvent{Timestamp: ts, Actor: "a", Action: "x", Outcome: "success"}); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-200 * 24 * time.Hour)
	add(old)
	add(old)
	add(old)
	if err := db.RotateAuditKey(bg, []byte(strings.Repeat("r", 40))); err != nil {
		t.Fatal(err)
	}
	add(old.Add(time.Hour)) // 4, 5: after the rotation, still old
	add(old.Add(time.Hour))
	add(time.Now()) // 6
	if n, err := db.PruneAudit(bg, time.Now().Add(-100*24*time.Hour)); err != nil || n != 5 {
		t.Fatalf("PruneAudit = %d %v, want 5", n, err)
	}
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 1 {
		t.Fatalf("VerifyAudit after pruning past the rotation = %+v %v, want OK with 1 row", v, err)
	}
}

// TestRotateAuditKeyLength: a new audit key of 32 bytes is the shortest taken.
func TestRotateAuditKeyLength(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	if err := db.RotateAuditKey(bg, []byte(strings.Repeat("k", 31))); !errors.Is(err, ErrAuditKey) {
		t.Fatalf("31-byte key: %v, want ErrAuditKey", err)
	}
	if err := db.RotateAuditKey(bg, []byte(strings.Repeat("k", 32))); err != nil {
		t.Fatalf("32-byte key: %v", err)
	}
}

// TestListAuditExactLastPage: a page that ends exactly at the oldest row has
// no next cursor; one that stops a row short has one.
func TestListAuditExactLastPage(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	appendEvents(t, db, 5)
	if items, next, err := db.ListAudit(bg, AuditFilter{Limit: 5}); err != nil || len(items) != 5 || next != 0 {
		t.Fatalf("Limit 5 of 5 rows: %d items, next %d, %v; want 5 and no next", len(items), next, err)
	}
	if items, next, err := db.ListAudit(bg, AuditFilter{Limit: 2, Cursor: 3}); err != nil || len(items) != 2 || next != 0 {
		t.Fatalf("the last 2 rows: %d items, next %d, %v; want 2 and no next", len(items), next, err)
	}
	if items, next, err := db.ListAudit(bg, AuditFilter{Limit: 4}); err != nil || len(items) != 4 || next != 2 {
		t.Fatalf("Limit 4 of 5 rows: %d items, next %d, %v; want 4 and next 2", len(items), next, err)
	}
}

// TestRequeueOrFail: a try ends back in the queue while tries remain, and as
// dispatch_failed on the last one (attempts == maxAttempts), with every
// try's reason; accountID 0 matches any account, another account is a
// conflict, and each retry row names the account the try ran on.
func TestRequeueOrFail(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	a1, a2 := newAccount(t, db, "a1"), newAccount(t, db, "a2")
	task := newTask("tries")
	if err := db.CreateTask(bg, task, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var described []string
	describe := func(attempts int, reasons []string) string {
		described = reasons
		return fmt.Sprintf("no worker ran the task after %d tries", attempts)
	}
	claim := func(acc *Account) {
		t.Helper()
		if _, err := db.ClaimTask(bg, task.ID, acc.ID); err != nil {
			t.Fatal(err)
		}
	}

	claim(a1) // try 1
	if _, _, err := db.RequeueOrFail(bg, task.ID, a2.ID, "not mine", 3, describe); !errors.Is(err, ErrConflict) {
		t.Fatalf("RequeueOrFail from another account: %v, want ErrConflict", err)
	}
	if out, got, err := db.RequeueOrFail(bg, task.ID, a1.ID, "refused", 3, describe); err != nil || out != Requeued || got.Attempts != 1 {
		t.Fatalf("try 1 of 3: %v %v, want Requeued", out, err)
	}
	claim(a2) // try 2
	if out, _, err := db.RequeueOrFail(bg, task.ID, 0, "lost", 3, describe); err != nil || out != Requeued {
		t.Fatalf("try 2 of 3 (any account): %v %v, want Requeued", out, err)
	}
	if _, _, err := db.RequeueOrFail(bg, task.ID, 0, "lost", 3, describe); !errors.Is(err, ErrConflict) {
		t.Fatalf("RequeueOrFail of a pending task: %v, want ErrConflict", err)
	}
	claim(a1) // try 3: the last
	out, _, err := db.RequeueOrFail(bg, task.ID, a1.ID, "timed out", 3, describe)
	if err != nil || out != Failed {
		t.Fatalf("try 3 of 3: %v %v, want Failed", out, err)
	}
	got, _ := db.GetTask(bg, task.ID)
	if got.Status != StatusFailed || got.ErrorCode != "dispatch_failed" || got.ErrorMessage != "no worker ran the task after 3 tries" {
		t.Fatalf("after the last try: %s %s %q", got.Status, got.ErrorCode, got.ErrorMessage)
	}
	if strings.Join(described, "|") != "refused|lost|timed out" {
		t.Errorf("describe got reasons %q", described)
	}
	if _, _, err := db.RequeueOrFail(bg, "nosuch", 0, "x", 3, describe); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown task: %v, want ErrNotFound", err)
	}
	rows, err := db.reader.Query(`SELECT account_id FROM task_retries WHERE task_id = ? ORDER BY id`, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var accounts []int64
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		accounts = append(accounts, id)
	}
	if !slices.Equal(accounts, []int64{a1.ID, a2.ID}) {
		t.Errorf("retry rows name accounts %v, want %v", accounts, []int64{a1.ID, a2.ID})
	}
}

// TestListenersHearCommittedTasksOnly: listeners are told about the tasks a
// batch created, not about the requests that failed in it, and about each
// committed claim, completion, requeue and failure; a refused transition
// (ErrConflict) tells nobody.
func TestListenersHearCommittedTasksOnly(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	if err := db.CreateTask(bg, &Task{ID: "taken", Prompt: "first"}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var heard []string
	defer db.ListenTasks(func(id string) { mu.Lock(); heard = append(heard, id); mu.Unlock() })()
	mk := func(task *Task) *createRequest {
		db.prepareTask(task)
		return &createRequest{ctx: bg, tasks: []*Task{task}, done: make(chan error, 1)}
	}
	// heard checks, after each step, every task id heard so far: a change is
	// heard once it committed, a refused one never.
	heardNow := func(step, want string) {
		t.Helper()
		mu.Lock()
		got := strings.Join(heard, ",")
		mu.Unlock()
		if got != want {
			t.Fatalf("after %s, listeners heard %s, want %s", step, got, want)
		}
	}
	conflict := func(step string, err error) {
		t.Helper()
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("%s: %v, want ErrConflict", step, err)
		}
	}
	must := func(step string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	db.commitBatch([]*createRequest{mk(&Task{ID: "good-1", Prompt: "a"}), mk(&Task{ID: "taken", Prompt: "dup"}), mk(&Task{ID: "good-2", Prompt: "b"})})
	heardNow("a batch with a duplicate", "good-1,good-2")
	acc := newAccount(t, db, "w")
	_, err := db.ClaimTask(bg, "good-1", acc.ID)
	must("claim", err)
	_, err = db.StartTask(bg, "good-1", acc.ID)
	must("start", err)
	heardNow("claim and start", "good-1,good-2,good-1,good-1")
	must("progress 30", db.SetProgress(bg, "good-1", 30))
	heardNow("progress 30", "good-1,good-2,good-1,good-1,good-1")
	must("progress 20 (kept at 30)", db.SetProgress(bg, "good-1", 20))
	heardNow("a progress that changes nothing", "good-1,good-2,good-1,good-1,good-1")
	must("complete", db.CompleteTask(bg, "good-1", "media/a.png", "image/png", "media/a.preview.png", "image/png"))
	conflict("completing a pending task", db.CompleteTask(bg, "good-2", "media/b.png", "image/png", "", ""))
	heardNow("complete", "good-1,good-2,good-1,good-1,good-1,good-1")
	_, err = db.ClaimTask(bg, "good-2", acc.ID)
	must("claim good-2", err)
	must("requeue", db.RequeueTask(bg, "good-2", "lost"))
	heardNow("claim and requeue", "good-1,good-2,good-1,good-1,good-1,good-1,good-2,good-2")
	conflict("requeueing a pending task", db.RequeueTask(bg, "good-2", "lost again"))
	heardNow("a refused requeue", "good-1,good-2,good-1,good-1,good-1,good-1,good-2,good-2")
	must("fail", db.FailTask(bg, "good-2", "worker_error", "x"))
	conflict("failing a done task", db.FailTask(bg, "good-1", "worker_error", "x"))
	// created x2, claimed, started, progress, done, claimed, requeued, failed
	heardNow("fail", "good-1,good-2,good-1,good-1,good-1,good-1,good-2,good-2,good-2")
}

// TestVerifyAuditAfterPruneFindsAWipedTail: after a retention prune, someone
// with the file deletes every row written since and the sealed head. A
// retention checkpoint proves rows existed and a head is never removed by
// the store, so this is tampering: VerifyAudit reports the first missing row,
// and a later append does not paper over it.
func TestVerifyAuditAfterPruneFindsAWipedTail(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(t)
	db, err := Open(dir, testutil.Schema(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-200 * 24 * time.Hour)
	for i := 0; i < 3; i++ {
		if err := db.AppendAudit(bg, &AuditEvent{Timestamp: old, Actor: "a", Action: "old", Outcome: "success"}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := db.PruneAudit(bg, time.Now().Add(-100*24*time.Hour)); err != nil || n != 3 {
		t.Fatalf("PruneAudit = %d %v", n, err)
	}
	appendEvents2(t, db) // rows 4 and 5
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 2 {
		t.Fatalf("before tampering: %+v %v", v, err)
	}
	db.Close()

	raw := rawDB(t, filepath.Join(dir, FileName))
	mustExec(t, raw, "DROP TRIGGER audit_events_no_delete")
	mustExec(t, raw, "DELETE FROM audit_events")
	mustExec(t, raw, "DELETE FROM audit_head")
	raw.Close()

	db, err = Open(dir, testutil.Schema(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.VerifyAudit(bg); err != nil || v.OK || v.FirstBadID != 4 {
		t.Fatalf("rows 4-5 and the head deleted: VerifyAudit = %+v %v, want not OK, first bad 4", v, err)
	}
	appendEvents2(t, db)
	if v, _ := db.VerifyAudit(bg); v.OK {
		t.Fatalf("a later append healed the chain: %+v", v)
	}
}
