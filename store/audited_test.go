package store

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"
)

// adminState is everything an admin write may change.
type adminState struct {
	Accounts []*Account
	Tasks    []*Task
	Sessions int
	Audit    int
}

func snapshot(t *testing.T, db *DB) adminState {
	t.Helper()
	var s adminState
	var err error
	if s.Accounts, err = db.ListAccounts(bg); err != nil {
		t.Fatal(err)
	}
	if s.Tasks, err = db.queryTasks(bg, db.reader, `SELECT `+taskColumns+` FROM tasks ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	db.reader.QueryRow(`SELECT count(*) FROM sessions`).Scan(&s.Sessions)
	db.reader.QueryRow(`SELECT count(*) FROM audit_events`).Scan(&s.Audit)
	return s
}

// TestAuditedWritesFailClosed: when the audit row cannot be appended (the
// database refuses it, or there is no audit key) each admin write returns the
// audit error and changes nothing; when it can, the change and its row commit
// together.
func TestAuditedWritesFailClosed(t *testing.T) {
	event := func(action string) func(target string) *AuditEvent {
		return func(target string) *AuditEvent {
			return &AuditEvent{Actor: "admin:abc", Source: "127.0.0.1", Action: action, Target: target, Outcome: "success", CorrelationID: "c"}
		}
	}
	acc := func(action string) AuditOf[*Account] {
		return func(a *Account) *AuditEvent { return event(action)(a.Name) }
	}
	writes := []struct {
		name   string
		action string
		do     func(db *DB, a *Account) error
	}{
		{"create account", "account.create", func(db *DB, _ *Account) error {
			return db.CreateAccountAudited(bg, &Account{Name: "new", Workspace: "gpu-new"}, map[string]string{"token_id": "t"}, acc("account.create"))
		}},
		{"patch account", "account.update", func(db *DB, a *Account) error {
			n := "renamed"
			_, err := db.UpdateAccountAudited(bg, a.ID, AccountPatch{Name: &n, Credentials: map[string]string{}}, "", "", acc("account.update"))
			return err
		}},
		{"disable account", "account.update", func(db *DB, a *Account) error {
			_, err := db.UpdateAccountAudited(bg, a.ID, AccountPatch{}, AccountDisabled, "disabled by an admin", acc("account.update"))
			return err
		}},
		{"delete account", "account.delete", func(db *DB, a *Account) error {
			_, err := db.RemoveAccountAudited(bg, a.ID, "worker_removed", "deleted", acc("account.delete"))
			return err
		}},
		{"start deploy", "account.deploy", func(db *DB, a *Account) error {
			_, err := db.StartDeployAudited(bg, a.ID, time.Now(), acc("account.deploy"))
			return err
		}},
		{"admin login", "admin.login", func(db *DB, _ *Account) error {
			_, err := db.CreateSessionAudited(bg, "admin", []byte("0123456789abcdef"), time.Now().Add(time.Hour),
				func(*Session) *AuditEvent { return event("admin.login")("admin_session") })
			return err
		}},
	}
	setup := func(t *testing.T, opts Options) (*DB, *Account, *Task) {
		db, _ := openTest(t, opts)
		a := &Account{Name: "gpu", Workspace: "gpu-one", Status: AccountReady}
		if err := db.CreateAccount(bg, a, map[string]string{"token_id": "t"}); err != nil {
			t.Fatal(err)
		}
		task := &Task{Type: "image", Model: "flux", Mode: "t2i", Prompt: "p"}
		if err := db.CreateTask(bg, task, CreateOptions{QueueMax: 0}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ClaimTask(bg, task.ID, a.ID); err != nil {
			t.Fatal(err)
		}
		return db, a, task
	}
	for _, w := range writes {
		t.Run(w.name+" refused by the database", func(t *testing.T) {
			db, a, _ := setup(t, testOptions(t))
			mustExec(t, rawDB(t, db.path), `CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_events
				BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END`)
			before := snapshot(t, db)
			if err := w.do(db, a); !errors.Is(err, ErrAuditWrite) {
				t.Fatalf("err = %v, want ErrAuditWrite", err)
			}
			if after := snapshot(t, db); !reflect.DeepEqual(before, after) {
				t.Errorf("changed:\nbefore %+v\nafter  %+v", before, after)
			}
		})
		t.Run(w.name+" without an audit key", func(t *testing.T) {
			opts := testOptions(t)
			opts.AuditKey = nil
			db, a, _ := setup(t, opts)
			before := snapshot(t, db)
			if err := w.do(db, a); !errors.Is(err, ErrAuditKey) {
				t.Fatalf("err = %v, want ErrAuditKey", err)
			}
			if after := snapshot(t, db); !reflect.DeepEqual(before, after) {
				t.Errorf("changed:\nbefore %+v\nafter  %+v", before, after)
			}
		})
		t.Run(w.name+" audited", func(t *testing.T) {
			db, a, _ := setup(t, testOptions(t))
			before := snapshot(t, db)
			if err := w.do(db, a); err != nil {
				t.Fatal(err)
			}
			after := snapshot(t, db)
			if reflect.DeepEqual(before, after) || after.Audit != before.Audit+1 {
				t.Fatalf("no change or no single audit row: %d -> %d rows", before.Audit, after.Audit)
			}
			items, _, _ := db.ListAudit(bg, AuditFilter{Limit: 1})
			if items[0].Action != w.action {
				t.Errorf("audit row %+v, want %s", items[0], w.action)
			}
			if v, err := db.VerifyAudit(bg); err != nil || !v.OK {
				t.Errorf("VerifyAudit = %+v %v", v, err)
			}
		})
	}
}

// TestRemoveAccountAudited: the account's unfinished tasks fail in the same
// commit as the delete, listeners hear of each, and done tasks stay.
func TestRemoveAccountAudited(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	a := &Account{Name: "gpu", Workspace: "gpu-one", Status: AccountReady}
	if err := db.CreateAccount(bg, a, nil); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 3; i++ {
		task := &Task{Type: "image", Model: "flux", Mode: "t2i", Prompt: "p"}
		if err := db.CreateTask(bg, task, CreateOptions{QueueMax: 0}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ClaimTask(bg, task.ID, a.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.StartTask(bg, task.ID, a.ID); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, task.ID)
	}
	if err := db.CompleteTask(bg, ids[2], "media/x.png", "image/png", "", ""); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	heard := map[string]bool{}
	stop := db.ListenTasks(func(id string) { mu.Lock(); heard[id] = true; mu.Unlock() })
	defer stop()
	var ev *AuditEvent
	failed, err := db.RemoveAccountAudited(bg, a.ID, "worker_removed", "gone", func(acc *Account) *AuditEvent {
		ev = &AuditEvent{Actor: "admin:x", Action: "account.delete", Target: acc.Name, Outcome: "success"}
		return ev
	})
	if err != nil || len(failed) != 2 || failed[0].Status != StatusProcessing {
		t.Fatalf("RemoveAccountAudited = %d tasks %v", len(failed), err)
	}
	if ev.ID == 0 || ev.Target != "gpu" {
		t.Errorf("event %+v", ev)
	}
	for i, id := range ids {
		got, err := db.GetTask(bg, id)
		want := StatusFailed
		if i == 2 {
			want = StatusDone
		}
		if err != nil || got.Status != want || (i < 2 && got.ErrorCode != "worker_removed") {
			t.Errorf("task %d: %+v %v", i, got, err)
		}
	}
	mu.Lock()
	if !heard[ids[0]] || !heard[ids[1]] {
		t.Errorf("listeners heard %v", heard)
	}
	mu.Unlock()
	if _, err := db.RemoveAccountAudited(bg, a.ID, "worker_removed", "gone", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
}
