package store

import (
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"gooni/internal/testutil"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// savedHead is the head row and anchor file as they were after 4 events:
// what a backup taken then holds.
type savedHead struct {
	lastID, count int64
	lastMAC, mac  []byte
	anchor        []byte
}

// TestVerifyAuditReasons does each tampering on a real database file (the
// append-only triggers dropped, as someone holding the file but not the
// audit key could) or on the anchor file, and checks what VerifyAudit says.
// Before anchoring, the wiped table, the replayed head and the missing
// anchor all verified as ok.
func TestVerifyAuditReasons(t *testing.T) {
	type tamper func(t *testing.T, raw *sql.DB, dir string, old savedHead)
	exec := func(q string) tamper {
		return func(t *testing.T, raw *sql.DB, dir string, old savedHead) { t.Helper(); mustExec(t, raw, q) }
	}
	putOldHead := func(t *testing.T, raw *sql.DB, old savedHead) {
		mustExec(t, raw, `UPDATE audit_head SET last_id = ?, last_mac = ?, mac = ?, event_count = ?`, old.lastID, old.lastMAC, old.mac, old.count)
	}
	writeAnchor := func(t *testing.T, dir string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, AnchorFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		tamper  tamper
		ok      bool
		reason  string
		wantBad int64
	}{
		{"untouched", func(*testing.T, *sql.DB, string, savedHead) {}, true, "", 0},
		{"edited row", exec("UPDATE audit_events SET outcome = 'success' WHERE id = 3"), false, AuditRowEdited, 3},
		{"mac recomputed without the key", exec("UPDATE audit_events SET outcome = 'success', mac = zeroblob(32) WHERE id = 6"), false, AuditRowEdited, 6},
		{"removed middle row", exec("DELETE FROM audit_events WHERE id = 3"), false, AuditRowRemoved, 3},
		{"removed tail", exec("DELETE FROM audit_events WHERE id >= 5"), false, AuditTailRemoved, 5},
		{"swapped neighbours", exec(`
			CREATE TEMP TABLE s AS SELECT * FROM audit_events WHERE id IN (4, 5);
			UPDATE audit_events SET (ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac) =
				(SELECT ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac FROM s WHERE s.id = 9 - audit_events.id)
				WHERE id IN (4, 5);`), false, AuditRowsReordered, 4},
		{"swapped rows", exec(`
			CREATE TEMP TABLE s AS SELECT * FROM audit_events WHERE id IN (2, 4);
			UPDATE audit_events SET (ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac) =
				(SELECT ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac FROM s WHERE s.id = 6 - audit_events.id)
				WHERE id IN (2, 4);`), false, AuditRowsReordered, 2},
		{"wiped table", exec("DELETE FROM audit_events; DELETE FROM audit_head"), false, AuditTableWiped, 1},
		{"tail removed and an older head put back", func(t *testing.T, raw *sql.DB, dir string, old savedHead) {
			mustExec(t, raw, "DELETE FROM audit_events WHERE id > 4")
			putOldHead(t, raw, old)
		}, false, AuditHeadReplayed, 5},
		{"older head put back over all rows", func(t *testing.T, raw *sql.DB, dir string, old savedHead) {
			putOldHead(t, raw, old)
		}, false, AuditRowsBeyondHead, 5},
		{"head seal invalid", exec("UPDATE audit_head SET event_count = event_count + 1"), false, AuditHeadInvalid, 6},
		{"head removed", exec("DELETE FROM audit_head"), false, AuditHeadMissing, 6},
		{"anchor removed", func(t *testing.T, raw *sql.DB, dir string, old savedHead) {
			if err := os.Remove(filepath.Join(dir, AnchorFile)); err != nil {
				t.Fatal(err)
			}
		}, false, AuditAnchorMissing, 0},
		{"anchor count edited", func(t *testing.T, raw *sql.DB, dir string, old savedHead) {
			b, _ := os.ReadFile(filepath.Join(dir, AnchorFile))
			writeAnchor(t, dir, []byte(strings.Replace(string(b), `"count":6`, `"count":4`, 1)))
		}, false, AuditAnchorInvalid, 0},
		{"anchor not JSON", func(t *testing.T, raw *sql.DB, dir string, old savedHead) {
			writeAnchor(t, dir, []byte("gone"))
		}, false, AuditAnchorInvalid, 0},
		{"anchor of another chain", func(t *testing.T, raw *sql.DB, dir string, old savedHead) {
			p := headPos{count: 6, lastID: 6, lastMAC: make([]byte, 32)}
			b, _ := json.Marshal(anchorJSON{Version: 1, Count: 6, LastID: 6, LastMAC: strings.Repeat("00", 32),
				MAC: hex.EncodeToString(headSealWith(testAuditKey, sealAnchor, p))})
			writeAnchor(t, dir, b)
		}, false, AuditAnchorMismatch, 6},
		// A crash between a commit and the anchor's rename leaves the
		// database ahead of the anchor: that is healthy.
		{"anchor behind the database", func(t *testing.T, raw *sql.DB, dir string, old savedHead) {
			writeAnchor(t, dir, old.anchor)
		}, true, "", 0},
		// The documented limit: both files replaced with older copies.
		{"database and anchor both rolled back", func(t *testing.T, raw *sql.DB, dir string, old savedHead) {
			mustExec(t, raw, "DELETE FROM audit_events WHERE id > 4")
			putOldHead(t, raw, old)
			writeAnchor(t, dir, old.anchor)
		}, true, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			opts := testOptions(t)
			db, err := Open(dir, testutil.Schema(t), opts)
			if err != nil {
				t.Fatal(err)
			}
			appendEvents(t, db, 4)
			var old savedHead
			db.reader.QueryRow(`SELECT last_id, last_mac, mac, event_count FROM audit_head`).Scan(&old.lastID, &old.lastMAC, &old.mac, &old.count)
			old.anchor, _ = os.ReadFile(filepath.Join(dir, AnchorFile))
			if old.count != 4 || len(old.anchor) == 0 {
				t.Fatalf("after 4 events: head count %d, anchor %q", old.count, old.anchor)
			}
			appendEvents2(t, db) // ids 5 and 6
			db.Close()

			db, v := reopenTampered(t, dir, opts, func(raw *sql.DB) { tc.tamper(t, raw, dir, old) })
			if v.OK != tc.ok || v.Reason != tc.reason || v.FirstBadID != tc.wantBad {
				t.Fatalf("VerifyAudit = %+v, want ok %v reason %q first bad %d", v, tc.ok, tc.reason, tc.wantBad)
			}
			// Appending afterwards neither heals a break nor breaks a healthy chain.
			appendEvents2(t, db)
			v2, err := db.VerifyAudit(bg)
			if err != nil || v2.OK != tc.ok {
				t.Fatalf("after two more events: %+v %v, want ok %v", v2, err, tc.ok)
			}
			if tc.ok {
				// The anchor caught up with the head.
				a, st, _ := db.readAnchor()
				h, _ := readHead(bg, db.reader)
				if st != anchorValid || a.count != h.count.Int64 || a.lastID != h.lastID {
					t.Fatalf("anchor %+v (%v), head count %d id %d", a, st, h.count.Int64, h.lastID)
				}
			}
		})
	}
}

// TestAuditAnchorFollowsEveryAppend: the anchor is 0600, holds the head after
// every append, and concurrent appends never leave an older anchor in place.
func TestAuditAnchorFollowsEveryAppend(t *testing.T) {
	db, dir := openTest(t, testOptions(t))
	if _, st, _ := db.readAnchor(); st != anchorAbsent {
		t.Fatalf("a new database has an anchor (%v)", st)
	}
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK {
		t.Fatalf("empty chain without anchor: %+v %v", v, err)
	}
	appendEvents(t, db, 3)
	st, err := os.Stat(filepath.Join(dir, AnchorFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("anchor file: %v %v", st, err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.AppendAudit(bg, &AuditEvent{Actor: "a", Action: "x", Outcome: "success"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	a, ast, err := db.readAnchor()
	h, _ := readHead(bg, db.reader)
	if err != nil || ast != anchorValid || a.count != 43 || h.count.Int64 != 43 || a.lastID != h.lastID {
		t.Fatalf("anchor %+v (%v, %v), head count %d id %d", a, ast, err, h.count.Int64, h.lastID)
	}
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 43 {
		t.Fatalf("VerifyAudit = %+v %v", v, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, AnchorFile+".*"))
	if len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}
}

// TestAuditAnchorKeptAsEvidence: once the database is behind the anchor or
// the anchor is gone, later appends do not rewrite it to match.
func TestAuditAnchorKeptAsEvidence(t *testing.T) {
	db, dir := openTest(t, testOptions(t))
	appendEvents(t, db, 3)
	before, _ := os.ReadFile(filepath.Join(dir, AnchorFile))
	raw := rawDB(t, filepath.Join(dir, FileName))
	mustExec(t, raw, "DROP TRIGGER audit_events_no_delete")
	mustExec(t, raw, "DELETE FROM audit_events; DELETE FROM audit_head")
	appendEvents2(t, db)
	after, _ := os.ReadFile(filepath.Join(dir, AnchorFile))
	if string(before) != string(after) {
		t.Fatalf("anchor rewritten after a wipe:\n%s\n%s", before, after)
	}
	if v, _ := db.VerifyAudit(bg); v.OK || v.Reason != AuditHeadReplayed {
		t.Fatalf("wiped then appended: %+v", v)
	}
}

// schemaUpTo is the real schema cut before step n.
func schemaUpTo(t *testing.T, n int) string {
	s := testutil.Schema(t)
	i := strings.Index(s, "-- migrate: "+strconv.Itoa(n))
	if i < 0 {
		t.Fatalf("no step %d", n)
	}
	return s[:i]
}

// oldChain writes, as a binary before anchoring did, a database at schema
// step 2 with n audit rows and a head sealed the old way (seal = nil: valid).
func oldChain(t *testing.T, dir string, n int, seal []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	raw := rawDB(t, filepath.Join(dir, FileName))
	for _, step := range strings.Split(schemaUpTo(t, 3), "-- migrate: ")[1:] {
		mustExec(t, raw, step[strings.Index(step, "\n"):])
	}
	mustExec(t, raw, "PRAGMA user_version = 2")
	prev := genesisMAC
	for id := int64(1); id <= int64(n); id++ {
		mac := rowMACWith(testAuditKey, prev, id, 1000*id, "admin:cli", "local", "secret.rotate", "api_key", "success", "c", []byte("{}"))
		mustExec(t, raw, `INSERT INTO audit_events (id, ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac)
			VALUES (?, ?, 'admin:cli', 'local', 'secret.rotate', 'api_key', 'success', 'c', '{}', ?, ?)`, id, 1000*id, prev, mac)
		prev = mac
	}
	if seal == nil {
		seal = sealMACWith(testAuditKey, sealHeadV1, int64(n), prev)
	}
	mustExec(t, raw, `INSERT INTO audit_head (id, last_id, last_mac, mac) VALUES (1, ?, ?, ?)`, n, prev, seal)
	raw.Close()
}

// TestAuditHeadUpgrade: a head written before anchoring is given its count
// and the new seal on Open when its old seal is valid, and the first anchor
// is written; a head whose old seal is wrong is left for VerifyAudit.
func TestAuditHeadUpgrade(t *testing.T) {
	t.Run("valid old head", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		oldChain(t, dir, 3, nil)
		db, err := Open(dir, testutil.Schema(t), testOptions(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		h, _ := readHead(bg, db.reader)
		a, st, _ := db.readAnchor()
		if !h.count.Valid || h.count.Int64 != 3 || st != anchorValid || a.count != 3 || a.lastID != 3 {
			t.Fatalf("head count %v, anchor %+v (%v)", h.count, a, st)
		}
		if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 3 {
			t.Fatalf("VerifyAudit = %+v %v", v, err)
		}
		appendEvents2(t, db)
		if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 5 {
			t.Fatalf("after appends: %+v %v", v, err)
		}
	})
	t.Run("forged old head", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		oldChain(t, dir, 3, make([]byte, 32))
		db, err := Open(dir, testutil.Schema(t), testOptions(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if h, _ := readHead(bg, db.reader); h.count.Valid {
			t.Fatalf("a forged head was upgraded: %+v", h)
		}
		if _, st, _ := db.readAnchor(); st != anchorAbsent {
			t.Fatalf("an anchor was written for a forged head (%v)", st)
		}
		if v, _ := db.VerifyAudit(bg); v.OK || v.Reason != AuditHeadInvalid || v.FirstBadID != 3 {
			t.Fatalf("VerifyAudit = %+v", v)
		}
	})
}

// TestReanchor: after a backup is restored (its head behind the anchor) or
// the anchor is lost, Reanchor records what the anchor said and anchors the
// chain again; a chain whose rows are broken is refused and left as it is.
func TestReanchor(t *testing.T) {
	db, dir := openTest(t, testOptions(t))
	appendEvents(t, db, 2)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(bg, backup); err != nil {
		t.Fatal(err)
	}
	appendEvents2(t, db)
	db.Close()
	b, _ := os.ReadFile(backup)
	os.Remove(filepath.Join(dir, FileName+"-wal"))
	os.Remove(filepath.Join(dir, FileName+"-shm"))
	if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir, testutil.Schema(t), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, _ := db.VerifyAudit(bg); v.OK || v.Reason != AuditHeadReplayed {
		t.Fatalf("restored backup: %+v", v)
	}
	e := &AuditEvent{Actor: "admin:cli", Source: "local", Action: "audit.reanchor", Target: AnchorFile, Outcome: "success"}
	if v, err := db.Reanchor(bg, e); err != nil || v.Reason != AuditHeadReplayed {
		t.Fatalf("Reanchor = %+v %v", v, err)
	}
	if e.ID != 3 || e.Details["previous_anchor"] != int64(4) || e.Details["verdict"] != AuditHeadReplayed {
		t.Fatalf("event %+v", e)
	}
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 3 {
		t.Fatalf("after Reanchor: %+v %v", v, err)
	}

	raw := rawDB(t, filepath.Join(dir, FileName))
	mustExec(t, raw, "DROP TRIGGER audit_events_no_update")
	mustExec(t, raw, "UPDATE audit_events SET outcome = 'x' WHERE id = 1")
	before, _ := os.ReadFile(filepath.Join(dir, AnchorFile))
	if _, err := db.Reanchor(bg, &AuditEvent{Actor: "admin:cli", Action: "audit.reanchor", Outcome: "success"}); err == nil {
		t.Fatal("a broken chain was re-anchored")
	}
	after, _ := os.ReadFile(filepath.Join(dir, AnchorFile))
	if n := len(mustList(t, db)); n != 3 || string(before) != string(after) {
		t.Fatalf("refused Reanchor changed something: %d rows, anchor %s -> %s", n, before, after)
	}
}

func mustList(t *testing.T, db *DB) []*AuditEvent {
	t.Helper()
	items, _, err := db.ListAudit(bg, AuditFilter{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// BenchmarkAppendAudit: one audit append, its transaction, the anchor's temp
// file, fsync and rename.
func BenchmarkAppendAudit(b *testing.B) {
	db, _ := openTest(b, testOptions(b))
	for b.Loop() {
		if err := db.AppendAudit(bg, &AuditEvent{Actor: "anonymous", Source: "203.0.113.9", Action: "security.cors_blocked",
			Target: "origin", Outcome: "denied", CorrelationID: "c", Details: map[string]any{"origin": "https://evil.example"}}); err != nil {
			b.Fatal(err)
		}
	}
}
