package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gooni/internal/config"
	"gooni/store"
)

// TestAuditReanchorAfterRestore: a database restored from a backup is behind
// the audit anchor, so the chain does not verify; `gooni audit reanchor`
// records that and anchors it again. It refuses while the server holds the
// data directory (store.Reanchor's own test covers a chain with edited rows).
func TestAuditReanchorAfterRestore(t *testing.T) {
	in := newInstallation(t)
	sec := in.load(t)
	ctx := context.Background()
	db := in.open(t, sec.AccountKeys, sec.AuditKey)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(ctx, backup); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := db.AppendAudit(ctx, &store.AuditEvent{Actor: "admin:x", Action: "account.update", Outcome: "success"}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	b, _ := os.ReadFile(backup)
	if err := os.WriteFile(filepath.Join(in.dir, store.FileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(in.dir, store.FileName+"-wal"))
	os.Remove(filepath.Join(in.dir, store.FileName+"-shm"))
	probe := in.open(t, sec.AccountKeys, sec.AuditKey)
	if v, _ := probe.VerifyAudit(ctx); v.OK || v.Reason != store.AuditHeadReplayed {
		t.Fatalf("restored backup verifies as %+v", v)
	}
	probe.Close()

	run := func() (int, string, string) {
		var out, errb bytes.Buffer
		code := runAudit([]string{"reanchor"}, testAssets(t), in.env(nil), &out, &errb)
		return code, out.String(), errb.String()
	}
	unlock, err := config.DataDir(in.dir).Lock()
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := run(); code == 0 {
		t.Fatal("reanchor ran while the data directory was locked")
	}
	unlock()
	code, out, errb := run()
	if code != 0 || !strings.Contains(out, "head_replayed") {
		t.Fatalf("reanchor: %d %q %q", code, out, errb)
	}
	db = in.open(t, sec.AccountKeys, sec.AuditKey)
	if v, err := db.VerifyAudit(ctx); err != nil || !v.OK {
		t.Fatalf("after reanchor: %+v %v", v, err)
	}
	items, _, _ := db.ListAudit(ctx, store.AuditFilter{Action: "audit.reanchor"})
	if len(items) != 1 || items[0].Actor != "admin:cli" || items[0].Details["verdict"] != "head_replayed" {
		t.Fatalf("audit.reanchor rows %+v", items)
	}
	db.Close()

	if code := runAudit([]string{"bogus"}, testAssets(t), in.env(nil), &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
		t.Errorf("unknown subcommand: exit %d", code)
	}
}
