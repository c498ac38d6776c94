package store

import (
	"errors"
	"testing"
)

// finish creates a task and takes it to done on account a.
func finish(t *testing.T, db *DB, a *Account, prompt string) *Task {
	t.Helper()
	task := newTask(prompt)
	if err := db.CreateTasks(bg, []*Task{task}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ClaimTask(bg, task.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.StartTask(bg, task.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.CompleteTask(bg, task.ID, task.ID+".png", "image/png", "", ""); err != nil {
		t.Fatal(err)
	}
	return task
}

// GetTask keeps finished rows in memory; every change a commit makes to
// such a row must still be what the next read returns: a delete (the
// cached row must not outlive it) and an account's removal (ON DELETE SET
// NULL empties account_id without naming the tasks).
func TestFinishedTaskReadsFollowEveryChange(t *testing.T) {
	for _, remove := range []struct {
		name string
		do   func(db *DB, a *Account) error
	}{
		{"DeleteAccount", func(db *DB, a *Account) error { return db.DeleteAccount(bg, a.ID) }},
		{"RemoveAccountAudited", func(db *DB, a *Account) error {
			_, err := db.RemoveAccountAudited(bg, a.ID, "worker_removed", "gone", func(acc *Account) *AuditEvent {
				return &AuditEvent{Source: "admin", Action: "account.delete", Target: acc.Name, Outcome: "ok"}
			})
			return err
		}},
	} {
		t.Run(remove.name, func(t *testing.T) {
			db, _ := openTest(t, testOptions(t))
			a := newAccount(t, db, "a")
			done := finish(t, db, a, "kept")
			failed := newTask("failed")
			if err := db.CreateTasks(bg, []*Task{failed}, CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ClaimTask(bg, failed.ID, a.ID); err != nil {
				t.Fatal(err)
			}
			if err := db.FailTask(bg, failed.ID, "worker_error", "boom"); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{done.ID, failed.ID} {
				for range 2 { // the second read is the cached one
					got, err := db.GetTask(bg, id)
					if err != nil || got.AccountID != a.ID {
						t.Fatalf("task %s before the account's removal: account %v (%v), want %d", id, got, err, a.ID)
					}
					got.Prompt = "changed by a caller" // a caller's copy is its own
				}
			}
			if got, _ := db.GetTask(bg, done.ID); got.Prompt != "kept" || got.Status != StatusDone {
				t.Fatalf("a caller's edit reached the next read: %+v", got)
			}
			if err := remove.do(db, a); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{done.ID, failed.ID} {
				got, err := db.GetTask(bg, id)
				if err != nil || got.AccountID != 0 {
					t.Fatalf("task %s after its account was removed: %+v (%v), want account_id 0 as in the row", id, got, err)
				}
			}
			if err := db.DeleteTask(bg, done.ID); err != nil {
				t.Fatal(err)
			}
			if got, err := db.GetTask(bg, done.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a deleted finished task was still read: %+v (%v), want ErrNotFound", got, err)
			}
		})
	}
}

// A read that started before a change must not put the old row back after
// the change dropped it; the interleaving is forced here, one step at a
// time, and then raced for real.
func TestFinishedTaskCacheIgnoresReadsOlderThanADrop(t *testing.T) {
	c := newFinishedTasks()
	row := &Task{ID: "t1", Status: StatusDone}
	gen := c.generation() // a read starts
	c.drop("t1")          // a delete commits and drops the id
	c.put(gen, row)       // the read, which saw the row, ends
	if _, ok := c.get("t1"); ok {
		t.Fatal("a row read before the delete was cached after it")
	}
	gen = c.generation()
	c.dropAll()
	c.put(gen, row)
	if _, ok := c.get("t1"); ok {
		t.Fatal("a row read before an account's removal was cached after it")
	}
	c.put(c.generation(), &Task{ID: "p", Status: StatusPending})
	c.put(c.generation(), &Task{ID: "r", Status: StatusProcessing})
	if _, ok := c.get("p"); ok {
		t.Fatal("a pending task was cached")
	}
	if _, ok := c.get("r"); ok {
		t.Fatal("a processing task was cached")
	}

	db, _ := openTest(t, testOptions(t))
	a := newAccount(t, db, "a")
	for i := range 30 {
		task := finish(t, db, a, "raced")
		stop := readConcurrently(t, 4, func() error {
			db.GetTask(bg, task.ID) // found or, once deleted, not: both are right
			return nil
		})
		err := db.DeleteTask(bg, task.ID)
		stop()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := db.GetTask(bg, task.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("round %d: a task deleted while it was read is still read: %+v (%v)", i, got, err)
		}
	}
}
