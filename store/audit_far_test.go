package store

import (
	"crypto/hmac"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gooni/internal/testutil"
)

// TestAuditRowCopiedFarAwayIsReordered: an intact row copied over another
// more than misplacedWindow rows away is still named rows_reordered, not
// edited: verify finds where the row belongs through the row its prev_mac
// names, not only by trying the ids near it.
func TestAuditRowCopiedFarAwayIsReordered(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	opts := testOptions(t)
	db, err := Open(dir, testutil.Schema(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	// The first event alone (it places the anchor), the rest in one audited
	// transaction (a second, not one fsync per event) whose last event moves
	// the anchor as any append does.
	n := misplacedWindow + 30
	event := func(i int) *AuditEvent {
		return &AuditEvent{Actor: "admin:ab12", Source: "127.0.0.1", Action: "account.update",
			Target: fmt.Sprintf("account:%d", i), Outcome: "success", CorrelationID: fmt.Sprintf("c%d", i)}
	}
	if err := db.AppendAudit(bg, event(1)); err != nil {
		t.Fatal(err)
	}
	err = db.auditedTx(bg, func(tx *sql.Tx) (*AuditEvent, error) {
		for i := 2; i < n; i++ {
			if _, err := db.appendAuditTx(bg, tx, event(i)); err != nil {
				return nil, err
			}
		}
		return event(n), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != n {
		t.Fatalf("before the copy: %+v %v", v, err)
	}
	db.Close()

	far := n - 5 // row 5, intact, copied over row n-5: 1049 places from its own
	_, v := reopenTampered(t, dir, opts, func(raw *sql.DB) {
		mustExec(t, raw, `UPDATE audit_events SET (ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac) =
			(SELECT ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac FROM audit_events WHERE id = 5)
			WHERE id = ?`, far)
	})
	if v.OK || v.FirstBadID != int64(far) || v.Reason != AuditRowsReordered {
		t.Fatalf("row 5 copied over row %d: %+v, want first bad %d, reason %s", far, v, far, AuditRowsReordered)
	}
}

// TestRotateAuditKeyReSealsTheAnchor: when RotateAuditKey returns, the
// anchor file is sealed with the new key (the retired key is only for a
// crash between the two), and it names the head as it was.
func TestRotateAuditKeyReSealsTheAnchor(t *testing.T) {
	db, dir := openTest(t, testOptions(t))
	appendEvents(t, db, 3)
	newKey := []byte(strings.Repeat("r", 40))
	if err := db.RotateAuditKey(bg, newKey); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, AnchorFile))
	if err != nil {
		t.Fatal(err)
	}
	var a anchorJSON
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	p := headPos{count: a.Count, lastID: a.LastID}
	mac, err1 := hex.DecodeString(a.MAC)
	p.lastMAC, err = hex.DecodeString(a.LastMAC)
	if err != nil || err1 != nil {
		t.Fatalf("anchor %s: %v %v", b, err, err1)
	}
	if p.count != 3 || p.lastID != 3 {
		t.Fatalf("anchor after the rotation names count %d, last id %d; want 3, 3", p.count, p.lastID)
	}
	if !hmac.Equal(mac, headSealWith(newKey, sealAnchor, p)) {
		if hmac.Equal(mac, headSealWith(testAuditKey, sealAnchor, p)) {
			t.Fatal("the anchor is still sealed with the retired key after the rotation returned")
		}
		t.Fatalf("the anchor's seal is neither key's: %s", a.MAC)
	}
}
