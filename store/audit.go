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
	// DetailsText holds a stored details value that is not a JSON object (a
	// row written by hand or damaged); ListAudit then leaves Details nil.
	DetailsText string
}

// AuditFilter selects events for ListAudit; zero fields do not filter.
type AuditFilter struct {
	Action, Outcome string
	Since           time.Time
	Cursor          int64 // the previous page's next; 0 = newest
	Limit           int   // 1..500, 0 = 100
}

// AuditVerdict is the result of walking the HMAC chain and comparing its
// head with the anchor.
type AuditVerdict struct {
	OK         bool
	Checked    int    // rows whose link verified
	FirstBadID int64  // the first edited, missing or misplaced event; 0 = none or not one row
	Reason     string // one of the Audit* reason codes when !OK
}

// Reasons VerifyAudit gives for a chain that does not verify (snake_case, as
// GET /admin/logs/verify answers them; SECURITY.md "Audit log" explains each).
const (
	AuditRowEdited         = "row_edited"         // a row's content or MAC does not match its link
	AuditRowRemoved        = "row_removed"        // an id is missing before the newest row
	AuditRowsReordered     = "rows_reordered"     // an intact row sits at another row's place
	AuditTailRemoved       = "tail_removed"       // the head names rows past the newest one left
	AuditRowsBeyondHead    = "rows_beyond_head"   // rows after the sealed head
	AuditHeadMissing       = "head_missing"       // rows but no head
	AuditHeadInvalid       = "head_invalid"       // the head's seal is not the audit key's
	AuditHeadMismatch      = "head_mismatch"      // the head's link is not the newest row's
	AuditCheckpointInvalid = "checkpoint_invalid" // a key-rotation checkpoint's seal is wrong
	AuditTableWiped        = "table_wiped"        // no rows and no head, but the anchor counts events
	AuditHeadReplayed      = "head_replayed"      // the head counts fewer events than the anchor
	AuditAnchorMissing     = "anchor_missing"     // events exist but DATA_DIR/audit.anchor does not
	AuditAnchorInvalid     = "anchor_invalid"     // the anchor cannot be read or its seal is wrong
	AuditAnchorMismatch    = "anchor_mismatch"    // the anchored link is not in the chain
)

// ErrAuditKey means the audit HMAC key is missing or too short to be trusted.
var ErrAuditKey = errors.New("store: audit key must be at least 32 bytes")

// ErrAuditWrite means an audit event could not be appended; the write it
// belonged to was rolled back with it.
var ErrAuditWrite = errors.New("store: audit event not written")

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
	count   sql.NullInt64 // NULL: written by a binary older than anchoring
}

func (h auditHead) pos() headPos {
	return headPos{count: h.count.Int64, lastID: h.lastID, lastMAC: h.lastMAC}
}

func readHead(ctx context.Context, q rowQuerier) (auditHead, error) {
	var h auditHead
	err := q.QueryRowContext(ctx, `SELECT last_id, last_mac, mac, event_count FROM audit_head WHERE id = 1`).Scan(&h.lastID, &h.lastMAC, &h.mac, &h.count)
	if errors.Is(err, sql.ErrNoRows) {
		return h, nil
	}
	h.present = err == nil
	return h, err
}

func (db *DB) headValid(h auditHead) bool {
	return h.present && h.count.Valid && hmac.Equal(h.mac, headSealWith(db.auditKey, sealHeadV2, h.pos()))
}

// AppendAudit assigns ID and computes mac = HMAC-SHA256(key, prev_mac || canonical(row incl. id)).
// It chains onto the sealed head, so rows removed from the end stay visible
// as a gap, and rewrites DATA_DIR/audit.anchor after the commit.
func (db *DB) AppendAudit(ctx context.Context, e *AuditEvent) error {
	return db.auditedTx(ctx, func(*sql.Tx) (*AuditEvent, error) { return e, nil })
}

// appended is what one append did to the head.
type appended struct {
	sealed      bool    // the head was valid (or the chain empty) and is re-sealed
	emptyBefore bool    // no head and no rows before this event
	prev, next  headPos // the head before and after
}

// appendAuditTx appends e inside tx (the caller's transaction) and moves the head.
func (db *DB) appendAuditTx(ctx context.Context, tx *sql.Tx, e *AuditEvent) (appended, error) {
	var res appended
	if err := db.checkAuditKey(); err != nil {
		return res, err
	}
	details := []byte("{}")
	if len(e.Details) > 0 {
		var err error
		// encoding/json sorts map keys, which makes the bytes canonical.
		if details, err = json.Marshal(e.Details); err != nil {
			return res, fmt.Errorf("store: audit details: %w", err)
		}
	}
	ts := e.Timestamp
	if ts.IsZero() {
		ts = db.now()
	}
	ts = ts.UTC().Truncate(time.Millisecond)

	head, err := readHead(ctx, tx)
	if err != nil {
		return res, err
	}
	var lastID int64
	var lastMAC []byte
	err = tx.QueryRowContext(ctx, `SELECT id, mac FROM audit_events ORDER BY id DESC LIMIT 1`).Scan(&lastID, &lastMAC)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return res, err
	}
	prevID, prev := int64(0), genesisMAC
	switch {
	case db.headValid(head):
		res.sealed, res.prev = true, head.pos()
		prevID, prev = head.lastID, head.lastMAC
	case !head.present && lastID == 0:
		// No row and no head: a new database starts at genesis. A retention
		// checkpoint without a head means the head went with the rows after
		// the checkpoint (pruning keeps the head; the store never removes it):
		// append after the checkpoint, but never re-seal a head, so
		// VerifyAudit keeps reporting the break.
		if cp, ok, err := db.latestCheckpoint(ctx, tx, 1<<62); err != nil {
			return res, err
		} else if ok {
			prevID, prev = cp.uptoID, cp.rowMAC
		} else {
			res.sealed, res.emptyBefore = true, true
			res.prev = headPos{lastID: prevID, lastMAC: prev}
		}
	default:
		// The head was removed or forged: keep appending (audit must not stop)
		// but never re-seal a head, so VerifyAudit keeps reporting the break.
		prevID, prev = lastID, lastMAC
	}
	id := max(prevID, lastID) + 1
	mac := db.rowMAC(prev, id, ts.UnixMilli(), e.Actor, e.Source, e.Action, e.Target, e.Outcome, e.CorrelationID, details)
	_, err = tx.ExecContext(ctx, `INSERT INTO audit_events (id, ts, actor, source, action, target, outcome,
		correlation_id, details, prev_mac, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		id, ts.UnixMilli(), e.Actor, e.Source, e.Action, e.Target, e.Outcome, e.CorrelationID, string(details), prev, mac)
	if err != nil {
		return res, err
	}
	if res.sealed {
		res.next = headPos{count: res.prev.count + 1, lastID: id, lastMAC: mac}
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_head (id, last_id, last_mac, mac, event_count) VALUES (1, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, last_mac = excluded.last_mac, mac = excluded.mac,
			event_count = excluded.event_count`,
			id, mac, headSealWith(db.auditKey, sealHeadV2, res.next), res.next.count)
		if err != nil {
			return res, err
		}
	}
	e.ID, e.Timestamp = id, ts
	return res, nil
}

// mayMoveAnchor decides, inside the append's transaction, whether the anchor
// may move to the new head. It keeps the evidence of tampering: it never
// moves an anchor that is ahead of the database, unreadable, or whose link is
// no longer in the chain, and it creates a missing anchor only for the first
// event of a new chain (after that, only `gooni audit reanchor` does, on an
// admin's decision).
func (db *DB) mayMoveAnchor(ctx context.Context, tx *sql.Tx, a appended) (bool, error) {
	if !a.sealed {
		return false, nil
	}
	cur, st, err := db.readAnchor()
	if err != nil {
		return false, nil // unreadable: leave it as evidence; VerifyAudit reports it
	}
	switch {
	case st == anchorAbsent:
		return a.emptyBefore, nil
	case st == anchorValid && cur.count <= a.prev.count:
		return db.anchoredLinkInChain(ctx, tx, cur)
	}
	return false, nil
}

// auditedTx runs fn in one write transaction and appends the event it
// returns (none when nil) in the same transaction, so a change and its audit
// row commit together or not at all (FR-023). After the commit the anchor is
// brought up to the new head (anchorAt), outside the transaction so that its
// fsync never holds the writer.
func (db *DB) auditedTx(ctx context.Context, fn func(tx *sql.Tx) (*AuditEvent, error)) error {
	return db.auditedTasksTx(ctx, func(tx *sql.Tx, _ *queueEdits) (*AuditEvent, error) { return fn(tx) })
}

// auditedTasksTx is auditedTx for a write that also moves tasks in the
// queue (see writeTasksTx).
func (db *DB) auditedTasksTx(ctx context.Context, fn func(tx *sql.Tx, q *queueEdits) (*AuditEvent, error)) error {
	var move *headPos
	err := db.writeTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) error {
		move = nil
		e, err := fn(tx, q)
		if err != nil || e == nil {
			return err
		}
		a, err := db.appendAuditTx(ctx, tx, e)
		if err != nil {
			return auditErr(err)
		}
		ok, err := db.mayMoveAnchor(ctx, tx, a)
		if ok {
			move = &a.next
		}
		return err
	})
	if err != nil {
		return err
	}
	if move != nil {
		db.anchorAt(*move)
	}
	return nil
}

// auditErr names a failed append; the action it belonged to did not happen.
func auditErr(err error) error {
	if errors.Is(err, ErrAuditKey) {
		return err
	}
	if strings.Contains(err.Error(), "append-only") {
		return fmt.Errorf("%w: %w", ErrAppendOnly, err)
	}
	return fmt.Errorf("%w: %w", ErrAuditWrite, err)
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

// VerifyAudit walks the chain oldest first in one snapshot and recomputes
// every link, checks the sealed head, and compares the head with the anchor
// (DATA_DIR/audit.anchor): the database may be ahead of the anchor (a crash
// between a commit and the anchor's rename), never behind it, and the
// anchored link must still be in the chain. FirstBadID names the first
// edited, missing or misplaced event; Reason says what is wrong.
func (db *DB) VerifyAudit(ctx context.Context) (AuditVerdict, error) {
	if err := db.checkAuditKey(); err != nil {
		return AuditVerdict{}, err
	}
	// The anchor is read before the snapshot starts: anything it holds was
	// committed before, so a healthy snapshot is never behind it.
	anchor, anchorSt, err := db.readAnchor()
	if err != nil {
		return AuditVerdict{}, err
	}
	tx, err := db.reader.BeginTx(ctx, nil)
	if err != nil {
		return AuditVerdict{}, err
	}
	defer tx.Rollback()

	var v AuditVerdict
	bad := func(id int64, reason string) (AuditVerdict, error) {
		v.FirstBadID, v.Reason = id, reason
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
			return bad(cp.uptoID+1, AuditCheckpointInvalid)
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
		var r storedRow
		if err := rows.Scan(&r.id, &r.ts, &r.actor, &r.source, &r.action, &r.target, &r.outcome, &r.corr, &r.details, &r.prevMAC, &r.mac); err != nil {
			return v, err
		}
		if r.id != prevID+1 {
			return bad(prevID+1, AuditRowRemoved)
		}
		for seg < len(segs) && r.id > segs[seg].uptoID {
			if segs[seg].uptoID == prevID && !hmac.Equal(segs[seg].rowMAC, prev) {
				return bad(r.id, AuditRowEdited)
			}
			seg++
		}
		if !bytes.Equal(r.prevMAC, prev) || !hmac.Equal(r.mac, r.macWith(keys[seg], r.prevMAC, r.id)) {
			rows.Close()
			reason := AuditRowEdited
			if moved, err := db.misplaced(ctx, tx, keys[seg], r); err != nil {
				return v, err
			} else if moved {
				reason = AuditRowsReordered
			}
			return bad(r.id, reason)
		}
		v.Checked++
		prevID, prev = r.id, r.mac
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
			return bad(prevID, AuditHeadMissing)
		}
		if prevID > 0 {
			// A retention checkpoint proves rows existed, and pruning keeps the
			// head: every row after the checkpoint went with it.
			return bad(prevID+1, AuditTableWiped)
		}
	case !db.headValid(head):
		return bad(max(head.lastID, 1), AuditHeadInvalid)
	case head.lastID > prevID:
		// Rows named by the head were removed from the end.
		return bad(prevID+1, AuditTailRemoved)
	case head.lastID < prevID:
		// Rows beyond the sealed head: appended without the key, or head rolled back.
		return bad(head.lastID+1, AuditRowsBeyondHead)
	case !hmac.Equal(head.lastMAC, prev):
		return bad(prevID, AuditHeadMismatch)
	}

	// The head against the anchor.
	switch anchorSt {
	case anchorAbsent:
		if head.present || v.Checked > 0 {
			return bad(0, AuditAnchorMissing)
		}
	case anchorInvalid:
		return bad(0, AuditAnchorInvalid)
	case anchorValid:
		switch {
		case !head.present:
			if anchor.count > 0 {
				// Every row and the head are gone.
				return bad(prevID+1, AuditTableWiped)
			}
		case head.count.Int64 < anchor.count:
			// An older head (a backup's) was put back over a shortened chain.
			return bad(head.lastID+1, AuditHeadReplayed)
		default:
			ok, err := db.anchoredLinkInChain(ctx, tx, anchor)
			if err != nil {
				return v, err
			}
			if !ok {
				return bad(anchor.lastID, AuditAnchorMismatch)
			}
		}
	}
	v.OK = true
	return v, nil
}

// storedRow is one audit_events row as stored.
type storedRow struct {
	id, ts                                                int64
	actor, source, action, target, outcome, corr, details string
	prevMAC, mac                                          []byte
}

// macWith is the row's MAC had it been written at id after prev under key.
func (r storedRow) macWith(key, prev []byte, id int64) []byte {
	return rowMACWith(key, prev, id, r.ts, r.actor, r.source, r.action, r.target, r.outcome, r.corr, []byte(r.details))
}

// misplacedWindow is how far from its place misplaced looks for a row's own.
const misplacedWindow = 1024

// misplaced reports whether a row that does not fit its place is an intact
// row of another place: its MAC is right, after its stored prev_mac, for
// another id near its own, or for the id after the row whose MAC its
// prev_mac is. It runs only on a row that failed, and costs at most ~2,000
// HMACs.
func (db *DB) misplaced(ctx context.Context, tx *sql.Tx, key []byte, r storedRow) (bool, error) {
	fits := func(id int64) bool { return id > 0 && id != r.id && hmac.Equal(r.mac, r.macWith(key, r.prevMAC, id)) }
	for id := r.id - misplacedWindow; id <= r.id+misplacedWindow; id++ {
		if fits(id) {
			return true, nil
		}
	}
	var j int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM audit_events WHERE mac = ? LIMIT 1`, r.prevMAC).Scan(&j)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil && fits(j+1), err
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
	db.anchorMu.Lock()
	defer db.anchorMu.Unlock()
	var staged *anchorWrite
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
		if !head.present {
			return nil
		}
		if _, err = tx.ExecContext(ctx, `UPDATE audit_head SET mac = ? WHERE id = 1`, headSealWith(newKey, sealHeadV2, head.pos())); err != nil {
			return err
		}
		// The anchor is re-sealed with the new key too; until it is in place
		// (a crash), the old key's seal still verifies as a retired key's.
		staged, err = db.stageAnchor(head.pos(), newKey)
		return err
	})
	if err != nil {
		staged.discard()
		return fmt.Errorf("store: rotate audit key: %w", err)
	}
	db.retiredAuditKeys = append(db.retiredAuditKeys, db.auditKey)
	db.auditKey = append([]byte(nil), newKey...)
	if staged.place() == nil && staged != nil {
		db.anchored = staged.count
	}
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
		if err := json.Unmarshal([]byte(details), &e.Details); err != nil || e.Details == nil {
			// One bad row must not take every page that holds it down: it is
			// shown as text (VerifyAudit still judges the row by its MAC).
			e.Details, e.DetailsText = nil, details
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
