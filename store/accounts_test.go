package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gooni/internal/testutil"
)

func TestAccountsCRUD(t *testing.T) {
	db, clock := openClocked(t, time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))

	a := &Account{Name: "main", Workspace: "my-ws", BaseURL: "http://127.0.0.1:9100"}
	if err := db.CreateAccount(bg, a, map[string]string{"proxy_key": "k", "proxy_secret": "s"}); err != nil {
		t.Fatal(err)
	}
	if a.ID == 0 || a.Status != "pending" || a.Capacity != 1 || !a.HasCredentials || !a.CreatedAt.Equal(clock.Now()) {
		t.Fatalf("created %+v", a)
	}
	b := &Account{Name: "bare", Workspace: "bare-ws", Capacity: 3}
	if err := db.CreateAccount(bg, b, nil); err != nil {
		t.Fatal(err)
	}
	if b.HasCredentials {
		t.Fatal("no credentials but HasCredentials")
	}
	if err := db.CreateAccount(bg, &Account{Name: "main", Workspace: "other"}, nil); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate name: %v", err)
	}

	got, err := db.GetAccount(bg, a.ID)
	if err != nil || got.Name != "main" || got.Workspace != "my-ws" || got.BaseURL != a.BaseURL || !got.HasCredentials {
		t.Fatalf("GetAccount: %+v %v", got, err)
	}
	if byName, err := db.GetAccountByName(bg, "bare"); err != nil || byName.ID != b.ID || byName.Capacity != 3 {
		t.Fatalf("GetAccountByName: %+v %v", byName, err)
	}
	for _, fn := range []func() error{
		func() error { _, err := db.GetAccount(bg, 999); return err },
		func() error { _, err := db.GetAccountByName(bg, "nope"); return err },
		func() error { _, err := db.UpdateAccount(bg, 999, AccountPatch{}); return err },
		func() error { _, err := db.SetAccountStatus(bg, 999, "ready", "", time.Time{}); return err },
		func() error { return db.SetDeploy(bg, 999, "running", "", time.Time{}) },
		func() error { _, err := db.AccountCredentials(bg, 999); return err },
		func() error { return db.DeleteAccount(bg, 999) },
	} {
		if err := fn(); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown account: %v, want ErrNotFound", err)
		}
	}
	list, _ := db.ListAccounts(bg)
	if len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Fatalf("ListAccounts = %+v", list)
	}

	clock.Advance(time.Minute)
	name, capacity, base := "renamed", 4, ""
	up, err := db.UpdateAccount(bg, a.ID, AccountPatch{Name: &name, Capacity: &capacity, BaseURL: &base})
	if err != nil || up.Name != "renamed" || up.Capacity != 4 || up.BaseURL != "" || !up.HasCredentials || !up.UpdatedAt.Equal(clock.Now()) {
		t.Fatalf("UpdateAccount: %+v %v", up, err)
	}
	if creds, _ := db.AccountCredentials(bg, a.ID); creds["proxy_key"] != "k" {
		t.Fatal("nil Credentials patch changed credentials")
	}
	if _, err := db.UpdateAccount(bg, b.ID, AccountPatch{Name: &name}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("rename onto taken name: %v", err)
	}
	up, _ = db.UpdateAccount(bg, a.ID, AccountPatch{Credentials: map[string]string{"token_id": "new"}})
	if creds, _ := db.AccountCredentials(bg, a.ID); len(creds) != 1 || creds["token_id"] != "new" || !up.HasCredentials {
		t.Fatalf("credentials not replaced")
	}
	up, _ = db.UpdateAccount(bg, a.ID, AccountPatch{Credentials: map[string]string{}})
	if creds, err := db.AccountCredentials(bg, a.ID); err != nil || len(creds) != 0 || up.HasCredentials {
		t.Fatalf("empty credentials patch did not clear: %v %v", creds, up.HasCredentials)
	}

	checked := clock.Now().Add(time.Second)
	st, err := db.SetAccountStatus(bg, b.ID, "ready", "", checked)
	if err != nil || st.Status != "ready" || !st.LastHealthCheckAt.Equal(checked) {
		t.Fatalf("SetAccountStatus: %+v %v", st, err)
	}
	st, _ = db.SetAccountStatus(bg, b.ID, "disabled", "by admin", time.Time{})
	if st.Status != "disabled" || st.StatusReason != "by admin" || !st.LastHealthCheckAt.Equal(checked) {
		t.Fatalf("zero checkedAt should keep the last check: %+v", st)
	}
	if _, err := db.SetAccountStatus(bg, b.ID, "broken", "", time.Time{}); err == nil {
		t.Fatal("unknown status accepted")
	}

	deployed := clock.Now()
	if err := db.SetDeploy(bg, b.ID, "running", "", deployed); err != nil {
		t.Fatal(err)
	}
	long := "é" + strings.Repeat("x", MaxDeployOutput) + "END"
	if err := db.SetDeploy(bg, b.ID, "failed", long, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, _ = db.GetAccount(bg, b.ID)
	if got.DeployStatus != "failed" || len(got.DeployOutput) > MaxDeployOutput || !strings.HasSuffix(got.DeployOutput, "END") || !got.LastDeployAt.Equal(deployed) {
		t.Fatalf("deploy: status %q len %d last %v", got.DeployStatus, len(got.DeployOutput), got.LastDeployAt)
	}
	if err := db.SetDeploy(bg, b.ID, "exploded", "", time.Time{}); err == nil {
		t.Fatal("unknown deploy status accepted")
	}

	if err := db.DeleteAccount(bg, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetAccount(bg, b.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted account: %v", err)
	}
}

func TestCredentialsNeverPlaintextOnDisk(t *testing.T) {
	db, dir := openTest(t, testOptions(t))
	const secret = "tok-secret-value-6f1c2d"
	a := &Account{Name: "sealed", Workspace: "ws-sealed"}
	if err := db.CreateAccount(bg, a, map[string]string{"token_secret": secret}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdateAccount(bg, a.ID, AccountPatch{Credentials: map[string]string{"token_secret": secret, "token_id": "id"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{FileName, FileName + "-wal"} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("%s holds a credential value in plaintext", name)
		}
	}
	creds, err := db.AccountCredentials(bg, a.ID)
	if err != nil || creds["token_secret"] != secret {
		t.Fatal("sealed credentials did not open")
	}
}

func TestAccountKeys(t *testing.T) {
	oldKey, newKey := newFernetKey(t), newFernetKey(t)
	dir := filepath.Join(t.TempDir(), "data")
	open := func(keys ...string) *DB {
		t.Helper()
		db, err := Open(dir, testutil.Schema(t), Options{AccountKeys: keys, AuditKey: testAuditKey})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}

	db := open(oldKey)
	for _, name := range []string{"one", "two"} {
		if err := db.CreateAccount(bg, &Account{Name: name, Workspace: "ws-" + name}, map[string]string{"k": name}); err != nil {
			t.Fatal(err)
		}
	}
	db.CreateAccount(bg, &Account{Name: "none", Workspace: "ws-none"}, nil)
	db.Close()

	// Without keys: accounts without credentials work, credentials are refused clearly.
	db = open()
	if err := db.CreateAccount(bg, &Account{Name: "x", Workspace: "ws-x"}, map[string]string{"k": "v"}); !errors.Is(err, ErrNoAccountKey) {
		t.Fatalf("create with credentials and no key: %v", err)
	}
	if err := db.CreateAccount(bg, &Account{Name: "y", Workspace: "ws-y"}, nil); err != nil {
		t.Fatalf("create without credentials and no key: %v", err)
	}
	if _, err := db.AccountCredentials(bg, 1); !errors.Is(err, ErrNoAccountKey) {
		t.Fatalf("open with no key: %v", err)
	}
	db.Close()

	// A wrong key cannot open them, and the error carries no secret.
	db = open(newKey)
	_, err := db.AccountCredentials(bg, 1)
	if err == nil || strings.Contains(err.Error(), "one") {
		t.Fatalf("wrong key: %v", err)
	}
	db.Close()

	// Rotation: newest first, old still opens; reseal moves everything to the new key.
	db = open(newKey, oldKey)
	if creds, err := db.AccountCredentials(bg, 2); err != nil || creds["k"] != "two" {
		t.Fatalf("old key during rotation: %v", err)
	}
	if n, err := db.ResealCredentials(bg); err != nil || n != 2 {
		t.Fatalf("ResealCredentials = %d %v, want 2", n, err)
	}
	db.Close()
	db = open(newKey)
	defer db.Close()
	for id, want := range map[int64]string{1: "one", 2: "two"} {
		if creds, err := db.AccountCredentials(bg, id); err != nil || creds["k"] != want {
			t.Fatalf("account %d after reseal: %v", id, err)
		}
	}
	if creds, err := db.AccountCredentials(bg, 3); err != nil || len(creds) != 0 {
		t.Fatalf("account without credentials: %v %v", creds, err)
	}

	if _, err := Open(dir, testutil.Schema(t), Options{AccountKeys: []string{"not-a-key"}}); err == nil || strings.Contains(err.Error(), "not-a-key") {
		t.Fatalf("bad key: %v", err)
	}
}

// TestSetAccountStatusUnless: automatic status changes never overwrite an
// admin's Disable.
func TestSetAccountStatusUnless(t *testing.T) {
	ctx := bg
	db, _ := openTest(t, testOptions(t))
	a := &Account{Name: "w", Workspace: "w-one", Capacity: 1, Status: "pending"}
	if err := db.CreateAccount(ctx, a, nil); err != nil {
		t.Fatal(err)
	}
	got, changed, err := db.SetAccountStatusUnless(ctx, a.ID, 0, "ready", "", time.Now(), "disabled")
	if err != nil || !changed || got.Status != "ready" {
		t.Fatalf("pending -> ready: %+v %v %v", got, changed, err)
	}
	if _, err := db.SetAccountStatus(ctx, a.ID, "disabled", "by an admin", time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, changed, err = db.SetAccountStatusUnless(ctx, a.ID, 0, "failed", "dead", time.Time{}, "disabled", "failed")
	if err != nil || changed || got.Status != "disabled" || got.StatusReason != "by an admin" {
		t.Fatalf("disabled stayed? %+v %v %v", got, changed, err)
	}
	if _, _, err := db.SetAccountStatusUnless(ctx, 999, 0, "ready", "", time.Time{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown account: %v", err)
	}
	// A failure of settings an edit has since replaced changes nothing.
	if _, err := db.SetAccountStatus(ctx, a.ID, "ready", "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	old := a.ConfigRev
	moved := "http://127.0.0.1:9"
	edited, err := db.UpdateAccount(ctx, a.ID, AccountPatch{BaseURL: &moved})
	if err != nil || edited.ConfigRev == old {
		t.Fatalf("edit: %+v %v", edited, err)
	}
	if _, err := db.SetAccountStatus(ctx, a.ID, "ready", "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, changed, err = db.SetAccountStatusUnless(ctx, a.ID, old, "failed", "the old target died", time.Time{}, "disabled", "failed")
	if err != nil || changed || got.Status != "ready" {
		t.Fatalf("a failure of the replaced settings: %+v %v %v, want ready, unchanged", got, changed, err)
	}
	got, changed, err = db.SetAccountStatusUnless(ctx, a.ID, edited.ConfigRev, "failed", "the new target died", time.Time{}, "disabled", "failed")
	if err != nil || !changed || got.Status != "failed" {
		t.Fatalf("a failure of the current settings: %+v %v %v, want failed", got, changed, err)
	}
}
