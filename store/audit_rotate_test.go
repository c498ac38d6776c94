package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"gooni/internal/testutil"
)

// TestRotateAuditKey: after a rotation the whole chain still verifies (old
// rows under the retired key, new rows under the new one), also after a
// reopen; without the retired key verification refuses, and tampering with a
// row of either segment is still caught.
func TestRotateAuditKey(t *testing.T) {
	ctx := context.Background()
	db, dir := openTest(t, testOptions(t))
	appendN := func(db *DB, n int) {
		for i := 0; i < n; i++ {
			if err := db.AppendAudit(ctx, &AuditEvent{Actor: "admin:x", Source: "127.0.0.1", Action: "account.update", Target: "account:1", Outcome: "success", CorrelationID: "c"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(db, 3)
	newKey := []byte(strings.Repeat("n", 40))
	if err := db.RotateAuditKey(ctx, []byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
	if err := db.RotateAuditKey(ctx, newKey); err != nil {
		t.Fatal(err)
	}
	appendN(db, 2)
	if v, err := db.VerifyAudit(ctx); err != nil || !v.OK || v.Checked != 5 {
		t.Fatalf("after rotation: %+v %v", v, err)
	}
	db.Close()

	reopen := func(opts Options) *DB {
		db, err := Open(dir, testutil.Schema(t), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	opts := testOptions(t)
	opts.AuditKey, opts.RetiredAuditKeys = newKey, [][]byte{testAuditKey}
	db2 := reopen(opts)
	if v, err := db2.VerifyAudit(ctx); err != nil || !v.OK || v.Checked != 5 {
		t.Fatalf("reopened: %+v %v", v, err)
	}
	appendN(db2, 1)
	if v, _ := db2.VerifyAudit(ctx); !v.OK || v.Checked != 6 {
		t.Fatalf("append after reopen: %+v", v)
	}
	db2.Close()

	// Without the retired key the old segment cannot be checked: an error, not a false OK.
	opts.RetiredAuditKeys = nil
	db3 := reopen(opts)
	if v, err := db3.VerifyAudit(ctx); err == nil || v.OK {
		t.Fatalf("verified without the retired key: %+v %v", v, err)
	}
	db3.Close()

	// Tampering in the old segment is caught under the retired key.
	raw := rawDB(t, dir+"/gooni.db")
	triggers := []string{}
	rows, _ := raw.Query(`SELECT name FROM sqlite_master WHERE type = 'trigger'`)
	for rows.Next() {
		var n string
		rows.Scan(&n)
		triggers = append(triggers, n)
	}
	rows.Close()
	for _, n := range triggers {
		mustExec(t, raw, `DROP TRIGGER `+n)
	}
	mustExec(t, raw, `UPDATE audit_events SET outcome = 'failure' WHERE id = 2`)
	raw.Close()
	opts.RetiredAuditKeys = [][]byte{testAuditKey}
	db4 := reopen(opts)
	if v, err := db4.VerifyAudit(ctx); err != nil || v.OK || v.FirstBadID != 2 {
		t.Fatalf("tampered old row: %+v %v", v, err)
	}
}

// TestPruneAudit: only rows older than the retention period go, a sealed
// checkpoint keeps the rest verifiable (also after a key rotation), and
// appends continue the chain.
func TestPruneAudit(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t, testOptions(t))
	now := time.Now()
	add := func(ts time.Time) {
		if err := db.AppendAudit(ctx, &AuditEvent{Timestamp: ts, Actor: "system", Source: "local", Action: "account.health_check", Target: "account:1", Outcome: "success", CorrelationID: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		add(now.Add(-200 * 24 * time.Hour))
	}
	add(now.Add(-time.Hour))
	if _, err := db.PruneAudit(ctx, now.Add(-30*24*time.Hour)); err == nil {
		t.Fatal("pruned inside the retention period")
	}
	n, err := db.PruneAudit(ctx, now.Add(-100*24*time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	if v, err := db.VerifyAudit(ctx); err != nil || !v.OK || v.Checked != 1 {
		t.Fatalf("after prune: %+v %v", v, err)
	}
	if err := db.RotateAuditKey(ctx, []byte(strings.Repeat("r", 40))); err != nil {
		t.Fatal(err)
	}
	add(now)
	if v, err := db.VerifyAudit(ctx); err != nil || !v.OK || v.Checked != 2 {
		t.Fatalf("after rotation: %+v %v", v, err)
	}
	items, _, _ := db.ListAudit(ctx, AuditFilter{Limit: 10})
	if len(items) != 2 || items[1].ID != 4 {
		t.Fatalf("remaining rows: %d", len(items))
	}
}
