package store

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// AuditEvent is one security or admin event (contract section 9).
type AuditEvent struct {
	ID                                                    int64
	Timestamp                                             time.Time
	Actor, Source, Action, Target, Outcome, CorrelationID string
	Details                                               map[string]any
}

// AuditFilter selects events for ListAudit; zero fields do not filter.
type AuditFilter struct {
	Action, Outcome string
	Since           time.Time
	Cursor          int64 // the previous page's next; 0 = newest
	Limit           int   // 1..500, 0 = 100
}

// AuditVerdict is the result of walking the HMAC chain.
type AuditVerdict struct {
	OK         bool
	Checked    int   // rows whose link verified
	FirstBadID int64 // 0 = none
}

// ErrAuditKey means the audit HMAC key is missing or too short to be trusted.
var ErrAuditKey = errors.New("store: audit key must be at least 32 bytes")

// genesisMAC is the predecessor of row 1.
var genesisMAC = make([]byte, sha256.Size)

func (db *DB) checkAuditKey() error {
	if len(db.auditKey) < 32 {
		return ErrAuditKey
	}
	return nil
}

func writeField(h interface{ Write([]byte) (int, error) }, b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// rowMAC binds a row to its predecessor: HMAC(key, prev_mac || canonical row),
// where every field is length-prefixed so no two rows encode alike.
func (db *DB) rowMAC(prev []byte, id, ts int64, actor, source, action, target, outcome, corr string, details []byte) []byte {
	return rowMACWith(db.auditKey, prev, id, ts, actor, source, action, target, outcome, corr, details)
}

func rowMACWith(key, prev []byte, id, ts int64, actor, source, action, target, outcome, corr string, details []byte) []byte {
	h := hmac.New(sha256.New, key)
	writeField(h, []byte("gooni-audit-v1"))
	writeField(h, prev)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(id))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(ts))
	h.Write(n[:])
	for _, f := range []string{actor, source, action, target, outcome, corr} {
		writeField(h, []byte(f))
	}
	writeField(h, details)
	return h.Sum(nil)
}

// sealMAC authenticates a chain position (the head, or a checkpoint) so it
// cannot be rewritten by someone without the key.
func (db *DB) sealMAC(label string, id int64, mac []byte) []byte {
	return sealMACWith(db.auditKey, label, id, mac)
}

func sealMACWith(key []byte, label string, id int64, mac []byte) []byte {
	h := hmac.New(sha256.New, key)
	writeField(h, []byte(label))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(id))
	h.Write(n[:])
	writeField(h, mac)
	return h.Sum(nil)
}

type auditHead struct {
	present bool
	lastID  int64
	lastMAC []byte
	mac     []byte
}

func readHead(ctx context.Context, q rowQuerier) (auditHead, error) {
	var h auditHead
	err := q.QueryRowContext(ctx, `SELECT last_id, last_mac, mac FROM audit_head WHERE id = 1`).Scan(&h.lastID, &h.lastMAC, &h.mac)
	if errors.Is(err, sql.ErrNoRows) {
		return h, nil
	}
	h.present = err == nil
	return h, err
}

func (db *DB) headValid(h auditHead) bool {
	return h.present && hmac.Equal(h.mac, db.sealMAC("head", h.lastID, h.lastMAC))
}

// AppendAudit assigns ID and computes mac = HMAC-SHA256(key, prev_mac || canonical(row incl. id)).
// It chains onto the sealed head, so rows removed from the end stay visible as a gap.
func (db *DB) AppendAudit(ctx context.Context, e *AuditEvent) error {
	if err := db.checkAuditKey(); err != nil {
		return err
	}
	details := []byte("{}")
	if len(e.Details) > 0 {
		var err error
		// encoding/json sorts map keys, which makes the bytes canonical.
		if details, err = json.Marshal(e.Details); err != nil {
			return fmt.Errorf("store: audit details: %w", err)
		}
	}
	ts := e.Timestamp
	if ts.IsZero() {
		ts = db.now()
	}
	ts = ts.UTC().Truncate(time.Millisecond)

	var id int64
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		head, err := readHead(ctx, tx)
		if err != nil {
			return err
		}
		var lastID int64
		var lastMAC []byte
		err = tx.QueryRowContext(ctx, `SELECT id, mac FROM audit_events ORDER BY id DESC LIMIT 1`).Scan(&lastID, &lastMAC)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		prevID, prev, keepHead := int64(0), genesisMAC, true
		switch {
		case db.headValid(head):
			prevID, prev = head.lastID, head.lastMAC
		case !head.present && lastID == 0:
			// No row and no head: a new database starts at genesis. A retention
			// checkpoint without a head means the head went with the rows after
			// the checkpoint (pruning keeps the head; the store never removes
			// it): append after the checkpoint, but never re-seal a head, so
			// VerifyAudit keeps reporting the break.
			if cp, ok, err := db.latestCheckpoint(ctx, tx, 1<<62); err != nil {
				return err
			} else if ok {
				prevID, prev, keepHead = cp.uptoID, cp.rowMAC, false
			}
		default:
			// The head was removed or forged: keep appending (audit must not stop)
			// but never re-seal a head, so VerifyAudit keeps reporting the break.
			prevID, prev, keepHead = lastID, lastMAC, false
		}
		id = max(prevID, lastID) + 1
		mac := db.rowMAC(prev, id, ts.UnixMilli(), e.Actor, e.Source, e.Action, e.Target, e.Outcome, e.CorrelationID, details)
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_events (id, ts, actor, source, action, target, outcome,
			correlation_id, details, prev_mac, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, ts.UnixMilli(), e.Actor, e.Source, e.Action, e.Target, e.Outcome, e.CorrelationID, string(details), prev, mac)
		if err != nil {
			return err
		}
		if keepHead {
			_, err = tx.ExecContext(ctx, `INSERT INTO audit_head (id, last_id, last_mac, mac) VALUES (1, ?, ?, ?)
				ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, last_mac = excluded.last_mac, mac = excluded.mac`,
				id, mac, db.sealMAC("head", id, mac))
		}
		return err
	})
	if err != nil {
		if strings.Contains(err.Error(), "append-only") {
			return fmt.Errorf("%w: %v", ErrAppendOnly, err)
		}
		return fmt.Errorf("store: append audit: %w", err)
	}
	e.ID, e.Timestamp = id, ts
	return nil
}

type checkpoint struct {
	uptoID int64
	rowMAC []byte
}

// latestCheckpoint returns the newest validly sealed checkpoint with upto_id < below.
func (db *DB) latestCheckpoint(ctx context.Context, tx *sql.Tx, below int64) (checkpoint, bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT upto_id, row_mac, mac FROM audit_checkpoints WHERE kind = 'retention' AND upto_id < ? ORDER BY upto_id DESC`, below)
	if err != nil {
		return checkpoint{}, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var cp checkpoint
		var mac []byte
		if err := rows.Scan(&cp.uptoID, &cp.rowMAC, &mac); err != nil {
			return checkpoint{}, false, err
		}
		// A retention checkpoint is sealed with the key in force when it was
		// written, which may since have been rotated out.
		for _, key := range append([][]byte{db.auditKey}, db.retiredAuditKeys...) {
			if hmac.Equal(mac, sealMACWith(key, "checkpoint", cp.uptoID, cp.rowMAC)) {
				return cp, true, nil
			}
		}
	}
	return checkpoint{}, false, rows.Err()
}

// VerifyAudit walks the chain oldest first in one snapshot and recomputes every
// link; FirstBadID names the first edited, missing or misplaced row.
func (db *DB) VerifyAudit(ctx context.Context) (AuditVerdict, error) {
	if err := db.checkAuditKey(); err != nil {
		return AuditVerdict{}, err
	}
	tx, err := db.reader.BeginTx(ctx, nil)
	if err != nil {
		return AuditVerdict{}, err
	}
	defer tx.Rollback()

	var v AuditVerdict
	bad := func(id int64) (AuditVerdict, error) {
		v.FirstBadID = id
		return v, nil
	}

	var firstID int64
	err = tx.QueryRowContext(ctx, `SELECT id FROM audit_events ORDER BY id LIMIT 1`).Scan(&firstID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return v, err
	}
	prevID, prev := int64(0), genesisMAC
	if firstID != 1 {
		// Leading rows (or all of them) are gone: fine only where a sealed
		// retention checkpoint says so.
		below := firstID
		if firstID == 0 {
			below = 1 << 62
		}
		cp, ok, err := db.latestCheckpoint(ctx, tx, below)
		if err != nil {
			return v, err
		}
		if ok {
			prevID, prev = cp.uptoID, cp.rowMAC
		}
	}

	// Key rotations split the chain into segments, each MAC'd under the key
	// in force then; a rotation checkpoint is sealed with the key that follows it.
	segs, err := db.rotations(ctx, tx)
	if err != nil {
		return v, err
	}
	keys := append(append([][]byte{}, db.retiredAuditKeys...), db.auditKey)
	if len(keys) < len(segs)+1 {
		return v, fmt.Errorf("store: the audit chain had %d key rotations but only %d retired audit keys are known; restore secrets/audit_key.retired", len(segs), len(db.retiredAuditKeys))
	}
	keys = keys[len(keys)-len(segs)-1:]
	for i, cp := range segs {
		if !hmac.Equal(cp.mac, sealMACWith(keys[i+1], "rotation", cp.uptoID, cp.rowMAC)) {
			return bad(cp.uptoID + 1)
		}
	}
	seg := 0
	rows, err := tx.QueryContext(ctx, `SELECT id, ts, actor, source, action, target, outcome, correlation_id,
		details, prev_mac, mac FROM audit_events ORDER BY id`)
	if err != nil {
		return v, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, ts int64
		var actor, source, action, target, outcome, corr, details string
		var prevMAC, mac []byte
		if err := rows.Scan(&id, &ts, &actor, &source, &action, &target, &outcome, &corr, &details, &prevMAC, &mac); err != nil {
			return v, err
		}
		if id != prevID+1 {
			return bad(prevID + 1)
		}
		for seg < len(segs) && id > segs[seg].uptoID {
			if segs[seg].uptoID == prevID && !hmac.Equal(segs[seg].rowMAC, prev) {
				return bad(id)
			}
			seg++
		}
		want := rowMACWith(keys[seg], prev, id, ts, actor, source, action, target, outcome, corr, []byte(details))
		if !bytes.Equal(prevMAC, prev) || !hmac.Equal(mac, want) {
			return bad(id)
		}
		v.Checked++
		prevID, prev = id, mac
	}
	if err := rows.Err(); err != nil {
		return v, err
	}
	rows.Close()

	head, err := readHead(ctx, tx)
	if err != nil {
		return v, err
	}
	switch {
	case !head.present:
		if v.Checked > 0 {
			// Rows exist but the sealed head is gone.
			return bad(prevID)
		}
		if prevID > 0 {
			// A retention checkpoint proves rows existed, and pruning keeps the
			// head: every row after the checkpoint went with it.
			return bad(prevID + 1)
		}
	case !db.headValid(head):
		return bad(max(head.lastID, 1))
	case head.lastID > prevID:
		// Rows named by the head were removed from the end.
		return bad(prevID + 1)
	case head.lastID < prevID:
		// Rows beyond the sealed head: appended without the key, or head rolled back.
		return bad(head.lastID + 1)
	case !hmac.Equal(head.lastMAC, prev):
		return bad(prevID)
	}
	v.OK = true
	return v, nil
}

// AuditRetention is the minimum age of audit rows that may be removed (the
// triggers refuse younger ones too).
const AuditRetention = 90 * 24 * time.Hour

// PruneAudit removes the audit events older than before, which must be at
// least AuditRetention ago, and seals a retention checkpoint at the newest
// removed row so the rest of the chain still verifies. It returns how many
// rows went.
func (db *DB) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	if err := db.checkAuditKey(); err != nil {
		return 0, err
	}
	if before.After(db.now().Add(-AuditRetention)) {
		return 0, fmt.Errorf("store: audit events are kept at least %v", AuditRetention)
	}
	var n int64
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var upto int64
		var mac []byte
		err := tx.QueryRowContext(ctx, `SELECT id, mac FROM audit_events WHERE ts < ? ORDER BY id DESC LIMIT 1`,
			before.UnixMilli()).Scan(&upto, &mac)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (upto_id, row_mac, mac, created_at, kind)
			VALUES (?, ?, ?, ?, 'retention')`, upto, mac, db.sealMAC("checkpoint", upto, mac), db.now().UnixMilli()); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE id <= ?`, upto)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune audit: %w", err)
	}
	return int(n), nil
}

type rotation struct {
	uptoID      int64
	rowMAC, mac []byte
}

func (db *DB) rotations(ctx context.Context, tx *sql.Tx) ([]rotation, error) {
	rows, err := tx.QueryContext(ctx, `SELECT upto_id, row_mac, mac FROM audit_checkpoints WHERE kind = 'rotation' ORDER BY upto_id, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rotation
	for rows.Next() {
		var r rotation
		if err := rows.Scan(&r.uptoID, &r.rowMAC, &r.mac); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RotateAuditKey moves the chain to newKey: the chain must verify under the
// current key; a rotation checkpoint sealed with newKey records where the old
// key's segment ends, and the head is re-sealed with newKey. The old key must
// be kept (Options.RetiredAuditKeys) to verify the rows it covers.
func (db *DB) RotateAuditKey(ctx context.Context, newKey []byte) error {
	if err := db.checkAuditKey(); err != nil {
		return err
	}
	if len(newKey) < 32 {
		return ErrAuditKey
	}
	v, err := db.VerifyAudit(ctx)
	if err != nil {
		return err
	}
	if !v.OK {
		return fmt.Errorf("store: the audit chain is broken at event %d; investigate before rotating its key", v.FirstBadID)
	}
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		head, err := readHead(ctx, tx)
		if err != nil {
			return err
		}
		lastID, lastMAC := int64(0), genesisMAC
		if head.present {
			lastID, lastMAC = head.lastID, head.lastMAC
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_checkpoints (upto_id, row_mac, mac, created_at, kind)
			VALUES (?, ?, ?, ?, 'rotation')`, lastID, lastMAC, sealMACWith(newKey, "rotation", lastID, lastMAC), db.now().UnixMilli()); err != nil {
			return err
		}
		if head.present {
			_, err = tx.ExecContext(ctx, `UPDATE audit_head SET mac = ? WHERE id = 1`, sealMACWith(newKey, "head", lastID, lastMAC))
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: rotate audit key: %w", err)
	}
	db.retiredAuditKeys = append(db.retiredAuditKeys, db.auditKey)
	db.auditKey = append([]byte(nil), newKey...)
	return nil
}

// ListAudit returns events newest first; next is the cursor of the following page (0 = no more).
func (db *DB) ListAudit(ctx context.Context, f AuditFilter) (items []*AuditEvent, next int64, err error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 500)
	var where []string
	var args []any
	if f.Cursor > 0 {
		where, args = append(where, "id < ?"), append(args, f.Cursor)
	}
	if f.Action != "" {
		where, args = append(where, "action = ?"), append(args, f.Action)
	}
	if f.Outcome != "" {
		where, args = append(where, "outcome = ?"), append(args, f.Outcome)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "ts >= ?"), append(args, f.Since.UnixMilli())
	}
	q := `SELECT id, ts, actor, source, action, target, outcome, correlation_id, details FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit+1)

	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var e AuditEvent
		var ts int64
		var details string
		if err := rows.Scan(&e.ID, &ts, &e.Actor, &e.Source, &e.Action, &e.Target, &e.Outcome, &e.CorrelationID, &details); err != nil {
			return nil, 0, err
		}
		e.Timestamp = time.UnixMilli(ts).UTC()
		e.Details = map[string]any{}
		if err := json.Unmarshal([]byte(details), &e.Details); err != nil {
			return nil, 0, fmt.Errorf("store: audit row %d details: %w", e.ID, err)
		}
		items = append(items, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if len(items) > limit {
		items = items[:limit]
		next = items[limit-1].ID
	}
	return items, next, nil
}
