package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// accountState is what the dispatcher and the submit path read of the
// accounts table, as one comparable string.
func accountState(t *testing.T, db *DB) string {
	t.Helper()
	list, err := db.ListAccounts(bg)
	if err != nil {
		t.Fatal(err)
	}
	s := ""
	for _, a := range list {
		s += fmt.Sprintf("%d %s %s %s cap=%d models=%v deploy=%s %q rev=%d creds=%v|", a.ID, a.Name, a.Status, a.StatusReason,
			a.Capacity, a.Models, a.DeployStatus, a.DeployOutput, a.ConfigRev, a.HasCredentials)
	}
	ready, err := db.HasReadyAccountFor(bg, "flux")
	if err != nil {
		t.Fatal(err)
	}
	any, err := db.HasReadyAccount(bg)
	if err != nil {
		t.Fatal(err)
	}
	return s + fmt.Sprintf(" flux=%v ready=%v", ready, any)
}

// uncachedState is accountState read straight from the table.
func uncachedState(t *testing.T, db *DB) string {
	t.Helper()
	db.accounts.changed()
	return accountState(t, db)
}

// Every write to the accounts table is seen by the next read of the
// in-memory copy: each case warms the copy, writes through one method of
// DB, and compares the copy with the table.
func TestAccountReadsSeeEveryWrite(t *testing.T) {
	db, _ := openClocked(t, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	keep := &Account{Name: "keep", Workspace: "w0"}
	if err := db.CreateAccount(bg, keep, nil); err != nil {
		t.Fatal(err)
	}
	var a *Account
	str := func(s string) *string { return &s }
	audit := func(a *Account) *AuditEvent { return &AuditEvent{Action: "account.test", Outcome: "success"} }
	for _, c := range []struct {
		name  string
		write func() error
	}{
		{"CreateAccount", func() error { a = &Account{Name: "a", Workspace: "w"}; return db.CreateAccount(bg, a, nil) }},
		{"SetAccountModels", func() error { return db.SetAccountModels(bg, a.ID, a.ConfigRev, []string{"flux", "pony"}) }},
		{"SetAccountStatus ready", func() error { _, err := db.SetAccountStatus(bg, a.ID, AccountReady, "", time.Time{}); return err }},
		{"SetAccountStatusUnless failed", func() error {
			_, _, err := db.SetAccountStatusUnless(bg, a.ID, 0, AccountFailed, "down", time.Time{}, AccountDisabled)
			return err
		}},
		{"SetHealthAudited ready, models", func() error {
			_, err := db.SetHealthAudited(bg, a.ID, a.ConfigRev, []string{"flux"}, AccountReady, "", time.Now(), audit)
			return err
		}},
		{"UpdateAccount name, capacity", func() error {
			two := 2
			_, err := db.UpdateAccount(bg, a.ID, AccountPatch{Name: str("renamed"), Capacity: &two})
			return err
		}},
		{"UpdateAccount credentials", func() error {
			_, err := db.UpdateAccount(bg, a.ID, AccountPatch{Credentials: map[string]string{"token": "t"}})
			return err
		}},
		{"UpdateAccountAudited disable", func() error {
			_, err := db.UpdateAccountAudited(bg, a.ID, AccountPatch{}, AccountDisabled, "by admin", audit)
			return err
		}},
		{"UpdateAccountAudited enable", func() error {
			_, err := db.UpdateAccountAudited(bg, a.ID, AccountPatch{}, AccountReady, "", audit)
			return err
		}},
		{"StartDeployAudited", func() error { _, err := db.StartDeployAudited(bg, a.ID, time.Now(), audit); return err }},
		{"SetDeploy", func() error { return db.SetDeploy(bg, a.ID, DeploySucceeded, "deployed", time.Now()) }},
		{"UpdateAccount base URL (models dropped)", func() error {
			_, err := db.UpdateAccount(bg, a.ID, AccountPatch{BaseURL: str("http://127.0.0.1:9")})
			return err
		}},
		{"CreateAccountAudited", func() error {
			a = &Account{Name: "b", Workspace: "w", Status: AccountReady}
			return db.CreateAccountAudited(bg, a, nil, audit)
		}},
		{"DeleteAccount", func() error { return db.DeleteAccount(bg, a.ID) }},
		{"RemoveAccountAudited", func() error { _, err := db.RemoveAccountAudited(bg, keep.ID, "gone", "removed", audit); return err }},
	} {
		before := accountState(t, db) // warms the copy
		if err := c.write(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := accountState(t, db)
		if want := uncachedState(t, db); got != want {
			t.Errorf("%s: read %s\ntable is %s", c.name, got, want)
		}
		if got == before {
			t.Errorf("%s changed nothing the reads show: %s", c.name, got)
		}
	}
}

// A caller that changes what ListAccounts gave it changes nobody else's.
func TestListAccountsGivesCopies(t *testing.T) {
	db, _ := openClocked(t, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	a := &Account{Name: "a", Workspace: "w", Status: AccountReady}
	if err := db.CreateAccount(bg, a, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.SetAccountModels(bg, a.ID, a.ConfigRev, []string{"flux"}); err != nil {
		t.Fatal(err)
	}
	list, _ := db.ListAccounts(bg)
	list[0].Status = AccountDisabled
	list[0].Models[0] = "pony"
	again, _ := db.ListAccounts(bg)
	if again[0].Status != AccountReady || !slices.Equal(again[0].Models, []string{"flux"}) {
		t.Fatalf("a caller's change leaked: %+v", again[0])
	}
	if ok, _ := db.HasReadyAccountFor(bg, "flux"); !ok {
		t.Fatal("flux not served after a caller changed its copy")
	}
}

// Reads racing writes never keep a stale copy: after the last write has
// returned, every read sees it (run with -race).
func TestAccountReadsRacingWrites(t *testing.T) {
	db, _ := openClocked(t, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	a := &Account{Name: "a", Workspace: "w"}
	if err := db.CreateAccount(bg, a, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.SetAccountModels(bg, a.ID, a.ConfigRev, []string{"flux"}); err != nil {
		t.Fatal(err)
	}
	stop := readConcurrently(t, 4, func() error {
		_, err := db.HasReadyAccountFor(bg, "flux")
		return err
	})
	for i := range 200 {
		status := AccountReady
		if i%2 == 1 {
			status = AccountFailed
		}
		if _, err := db.SetAccountStatus(bg, a.ID, status, "", time.Time{}); err != nil {
			t.Fatal(err)
		}
		ok, err := db.HasReadyAccountFor(bg, "flux")
		if err != nil || ok != (status == AccountReady) {
			t.Fatalf("write %d (%s): HasReadyAccountFor = %v, %v", i, status, ok, err)
		}
	}
	stop()
}

// The copy is what spares the submit path its reads: after a write the
// table is read once, then served from memory again, and a read that
// started before a write never replaces the copy a later read made.
func TestAccountRowsReadOnceAfterEachWrite(t *testing.T) {
	var c accountRows
	reads := 0
	read := func(context.Context) ([]*Account, error) {
		reads++
		return []*Account{{ID: int64(reads)}}, nil
	}
	get := func() int64 {
		t.Helper()
		rows, err := c.get(bg, read)
		if err != nil {
			t.Fatal(err)
		}
		return rows[0].ID
	}
	if get() != 1 || get() != 1 || reads != 1 {
		t.Fatalf("before any write: %d reads, want 1", reads)
	}
	c.changed()
	if get() != 2 || get() != 2 || reads != 2 {
		t.Fatalf("after a write: %d reads, want 2", reads)
	}

	// A slow read (of a stale copy) takes gen; a write and a fresh read
	// pass it; then it ends.
	c.changed()
	started, finish := make(chan struct{}), make(chan struct{})
	slow := make(chan int64)
	go func() {
		rows, _ := c.get(bg, func(context.Context) ([]*Account, error) {
			close(started)
			<-finish
			return []*Account{{ID: -1}}, nil // the table as it was before the write
		})
		slow <- rows[0].ID
	}()
	<-started
	c.changed()
	if got := get(); got != 3 {
		t.Fatalf("read after the write = %d, want 3", got)
	}
	close(finish)
	if got := <-slow; got != -1 {
		t.Fatalf("the slow read returned %d, want its own rows", got)
	}
	if got := get(); got != 3 || reads != 3 {
		t.Fatalf("after the slow read ended: got %d with %d reads, want the later copy (3) and no new read", got, reads)
	}
}
