package store

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gooni/internal/testutil"
)

func appendEvents(t *testing.T, db *DB, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		e := &AuditEvent{
			Actor: "admin:ab12", Source: "127.0.0.1", Action: []string{"admin.login", "account.create", "account.delete"}[i%3],
			Target: fmt.Sprintf("account:%d", i), Outcome: []string{"success", "failure"}[i%2], CorrelationID: fmt.Sprintf("c%d", i),
			Details: map[string]any{"z": i, "a": "first", "nested": map[string]any{"y": true, "b": nil}},
		}
		if err := db.AppendAudit(bg, e); err != nil {
			t.Fatal(err)
		}
		if e.ID != int64(i) {
			t.Fatalf("event %d got id %d", i, e.ID)
		}
	}
}

func TestAuditAppendAndList(t *testing.T) {
	db, clock := openClocked(t, time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))

	for i := 0; i < 10; i++ {
		e := &AuditEvent{Actor: "anonymous", Source: "10.0.0.1", Action: []string{"session.issue", "security.throttled"}[i%2],
			Outcome: []string{"success", "denied"}[i%2], Target: "t", CorrelationID: fmt.Sprint("corr-", i), Details: map[string]any{"n": i}}
		if err := db.AppendAudit(bg, e); err != nil {
			t.Fatal(err)
		}
		if !e.Timestamp.Equal(clock.Now()) {
			t.Fatalf("timestamp %v", e.Timestamp)
		}
		clock.Advance(time.Minute)
	}
	explicit := &AuditEvent{Timestamp: clock.Now().Add(time.Hour), Actor: "api_key", Action: "security.cors_blocked", Outcome: "denied"}
	if err := db.AppendAudit(bg, explicit); err != nil {
		t.Fatal(err)
	}

	all, next, err := db.ListAudit(bg, AuditFilter{})
	if err != nil || len(all) != 11 || next != 0 {
		t.Fatalf("ListAudit = %d items, next %d, %v", len(all), next, err)
	}
	if all[0].ID != 11 || all[10].ID != 1 || !all[0].Timestamp.Equal(explicit.Timestamp) {
		t.Fatalf("not newest first: %d..%d", all[0].ID, all[10].ID)
	}
	first := all[10]
	if first.Actor != "anonymous" || first.Source != "10.0.0.1" || first.Action != "session.issue" || first.Target != "t" ||
		first.Outcome != "success" || first.CorrelationID != "corr-0" || first.Details["n"] != float64(0) {
		t.Fatalf("fields not kept: %+v", first)
	}
	if all[0].Details == nil {
		t.Fatal("nil details should read back as an empty object")
	}

	ids := func(items []*AuditEvent) string {
		var s []string
		for _, e := range items {
			s = append(s, fmt.Sprint(e.ID))
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		name  string
		f     AuditFilter
		want  string
		wantN int64
	}{
		{"action", AuditFilter{Action: "security.throttled"}, "10,8,6,4,2", 0},
		{"outcome", AuditFilter{Outcome: "success"}, "9,7,5,3,1", 0},
		{"action and outcome", AuditFilter{Action: "session.issue", Outcome: "denied"}, "", 0},
		{"since", AuditFilter{Since: time.Date(2025, 6, 1, 0, 8, 0, 0, time.UTC)}, "11,10,9", 0},
		{"limit", AuditFilter{Limit: 3}, "11,10,9", 9},
		{"cursor", AuditFilter{Limit: 3, Cursor: 9}, "8,7,6", 6},
		{"last page", AuditFilter{Limit: 3, Cursor: 3}, "2,1", 0},
		{"filtered page", AuditFilter{Action: "security.throttled", Limit: 2, Cursor: 8}, "6,4", 4},
		{"limit over 500 is 500", AuditFilter{Limit: 10000}, "11,10,9,8,7,6,5,4,3,2,1", 0},
	} {
		items, next, err := db.ListAudit(bg, tc.f)
		if err != nil || ids(items) != tc.want || next != tc.wantN {
			t.Errorf("%s: got %s next %d (%v), want %s next %d", tc.name, ids(items), next, err, tc.want, tc.wantN)
		}
	}

	// 501 rows: the limit is capped at 500 and the next page holds the rest.
	for i := 0; i < 490; i++ {
		db.AppendAudit(bg, &AuditEvent{Actor: "a", Action: "x", Outcome: "success"})
	}
	items, next, _ := db.ListAudit(bg, AuditFilter{Limit: 1000})
	if len(items) != 500 || next != 2 {
		t.Fatalf("cap: %d items next %d", len(items), next)
	}
	if items, _, _ := db.ListAudit(bg, AuditFilter{}); len(items) != 100 {
		t.Fatalf("default limit: %d", len(items))
	}
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 501 || v.FirstBadID != 0 {
		t.Fatalf("VerifyAudit = %+v %v", v, err)
	}
}

func TestAuditNeedsKey(t *testing.T) {
	db, _ := openTest(t, Options{AuditKey: []byte("short")})
	if err := db.AppendAudit(bg, &AuditEvent{Actor: "a", Action: "x", Outcome: "success"}); !errors.Is(err, ErrAuditKey) {
		t.Fatalf("AppendAudit with short key: %v", err)
	}
	if _, err := db.VerifyAudit(bg); !errors.Is(err, ErrAuditKey) {
		t.Fatalf("VerifyAudit with short key: %v", err)
	}
}

func TestAuditTriggers(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	appendEvents(t, db, 2)
	old := &AuditEvent{Timestamp: time.Now().Add(-91 * 24 * time.Hour), Actor: "a", Action: "old", Outcome: "success"}
	if err := db.AppendAudit(bg, old); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, sql string
		refused   bool
	}{
		{"update fresh row", "UPDATE audit_events SET outcome = 'success' WHERE id = 1", true},
		{"update old row", "UPDATE audit_events SET outcome = 'failure' WHERE id = 3", true},
		{"delete fresh row", "DELETE FROM audit_events WHERE id = 2", true},
		{"delete row past retention", "DELETE FROM audit_events WHERE id = 3", false},
	} {
		_, err := db.writer.Exec(tc.sql)
		if tc.refused != (err != nil) {
			t.Errorf("%s: err = %v, refused want %v", tc.name, err, tc.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v does not say append-only", tc.name, err)
		}
	}
}

func TestVerifyAuditDetectsTampering(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tamper  string // SQL run after the triggers are dropped; rows 1..6 exist
		wantBad int64
	}{
		{"edited content", "UPDATE audit_events SET outcome = 'success' WHERE id = 3", 3},
		{"edited details", `UPDATE audit_events SET details = '{"a":"first"}' WHERE id = 4`, 4},
		{"edited timestamp", "UPDATE audit_events SET ts = ts + 1 WHERE id = 2", 2},
		{"edited actor", "UPDATE audit_events SET actor = (SELECT actor FROM audit_events WHERE id = 1) || 'x' WHERE id = 5", 5},
		// Every field of a row is under its MAC: each one edited alone is found.
		{"edited target", "UPDATE audit_events SET target = 'account:999' WHERE id = 4", 4},
		{"edited source", "UPDATE audit_events SET source = '203.0.113.9' WHERE id = 3", 3},
		{"edited action", "UPDATE audit_events SET action = 'session.issue' WHERE id = 2", 2},
		{"edited correlation id", "UPDATE audit_events SET correlation_id = 'forged' WHERE id = 5", 5},
		{"edited outcome", "UPDATE audit_events SET outcome = 'denied' WHERE id = 6", 6},
		{"target moved between rows", `UPDATE audit_events SET target = (SELECT target FROM audit_events WHERE id = 2) WHERE id = 1`, 1},
		{"edited id", "UPDATE audit_events SET id = 60 WHERE id = 6", 6},
		{"deleted middle row", "DELETE FROM audit_events WHERE id = 3", 3},
		{"deleted first row", "DELETE FROM audit_events WHERE id = 1", 1},
		{"deleted newest row", "DELETE FROM audit_events WHERE id = 6", 6},
		{"deleted two newest rows", "DELETE FROM audit_events WHERE id >= 5", 5},
		{"swapped rows", `
			CREATE TEMP TABLE s AS SELECT * FROM audit_events WHERE id IN (2, 4);
			UPDATE audit_events SET (ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac) =
				(SELECT ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac FROM s WHERE s.id = 6 - audit_events.id)
				WHERE id IN (2, 4);`, 2},
		{"mac recomputed without key", "UPDATE audit_events SET outcome = 'success', mac = zeroblob(32) WHERE id = 6", 6},
		{"forged head", "UPDATE audit_head SET last_id = 5, last_mac = (SELECT mac FROM audit_events WHERE id = 5); DELETE FROM audit_events WHERE id = 6", 5},
		{"head removed", "DELETE FROM audit_head", 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			opts := testOptions(t)
			db, err := Open(dir, testutil.Schema(t), opts)
			if err != nil {
				t.Fatal(err)
			}
			appendEvents(t, db, 6)
			if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 6 {
				t.Fatalf("before tampering: %+v %v", v, err)
			}
			db.Close()

			db, v := reopenTampered(t, dir, opts, func(raw *sql.DB) { mustExec(t, raw, tc.tamper) })
			if v.OK || v.FirstBadID != tc.wantBad {
				t.Fatalf("VerifyAudit = %+v, want first bad %d", v, tc.wantBad)
			}
			// Appending afterwards must not paper over the damage.
			appendEvents2(t, db)
			if v2, _ := db.VerifyAudit(bg); v2.OK {
				t.Fatalf("a later append healed the chain: %+v", v2)
			}
		})
	}
}

func appendEvents2(t *testing.T, db *DB) {
	t.Helper()
	for i := 0; i < 2; i++ {
		if err := db.AppendAudit(bg, &AuditEvent{Actor: "a", Action: "after", Outcome: "success"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyAuditWrongKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	db, err := Open(dir, testutil.Schema(t), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, db, 3)
	db.Close()
	other := Options{AuditKey: []byte(strings.Repeat("k", 32))}
	db, err = Open(dir, testutil.Schema(t), other)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, _ := db.VerifyAudit(bg); v.OK || v.FirstBadID != 1 {
		t.Fatalf("wrong key verified: %+v", v)
	}
}

func TestVerifyAuditCheckpoint(t *testing.T) {
	db, dir := openTest(t, testOptions(t))
	old := time.Now().Add(-100 * 24 * time.Hour)
	for i := 0; i < 3; i++ {
		if err := db.AppendAudit(bg, &AuditEvent{Timestamp: old, Actor: "a", Action: "old", Outcome: "success"}); err != nil {
			t.Fatal(err)
		}
	}
	appendEvents2(t, db)
	// A retention pass: seal a checkpoint at row 2, then remove rows 1..2.
	var mac2 []byte
	db.reader.QueryRow("SELECT mac FROM audit_events WHERE id = 2").Scan(&mac2)
	raw := rawDB(t, filepath.Join(dir, FileName))
	mustExec(t, raw, "DELETE FROM audit_events WHERE id <= 2")
	if v, _ := db.VerifyAudit(bg); v.OK || v.FirstBadID != 1 {
		t.Fatalf("aged-out rows without checkpoint: %+v", v)
	}
	mustExec(t, raw, "INSERT INTO audit_checkpoints (upto_id, row_mac, mac, created_at) VALUES (2, ?, ?, 0)", mac2, db.sealMAC("checkpoint", 2, mac2))
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 3 {
		t.Fatalf("with checkpoint: %+v %v", v, err)
	}
	// A checkpoint not sealed with the key does not count.
	mustExec(t, raw, "DELETE FROM audit_events WHERE id = 3")
	mustExec(t, raw, "INSERT INTO audit_checkpoints (upto_id, row_mac, mac, created_at) VALUES (3, zeroblob(32), zeroblob(32), 0)")
	if v, _ := db.VerifyAudit(bg); v.OK || v.FirstBadID != 3 {
		t.Fatalf("forged checkpoint accepted: %+v", v)
	}
}

// reopenTampered runs tamper on the closed database in dir with the audit
// log's append-only triggers dropped, then reopens it (closed with the
// test) and verifies the chain.
func reopenTampered(t *testing.T, dir string, opts Options, tamper func(raw *sql.DB)) (*DB, AuditVerdict) {
	t.Helper()
	raw := rawDB(t, filepath.Join(dir, FileName))
	mustExec(t, raw, "DROP TRIGGER audit_events_no_update")
	mustExec(t, raw, "DROP TRIGGER audit_events_no_delete")
	tamper(raw)
	raw.Close()
	db, err := Open(dir, testutil.Schema(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	v, err := db.VerifyAudit(bg)
	if err != nil {
		t.Fatal(err)
	}
	return db, v
}
