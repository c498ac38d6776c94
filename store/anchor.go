package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// AnchorFile is the sealed copy of the audit head kept in the data directory
// beside the database (CONTRACT section 19).
const AnchorFile = "audit.anchor"

// Seal labels: each sealed thing has its own, so one can never stand in for another.
const (
	sealHeadV1 = "head"    // heads written before anchoring: last_id | last_mac
	sealHeadV2 = "head-v2" // count | last_id | last_mac
	sealAnchor = "anchor-v1"
)

// maxAnchorSize bounds what is read of the anchor file; a real one is ~250 bytes.
const maxAnchorSize = 4096

// headPos is a position of the chain as the head (and the anchor) record it.
type headPos struct {
	count   int64 // events ever appended
	lastID  int64
	lastMAC []byte
}

// headSealWith seals a chain position: HMAC(key, label | count | last_id | last_mac).
func headSealWith(key []byte, label string, p headPos) []byte {
	h := hmac.New(sha256.New, key)
	writeField(h, []byte(label))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(p.count))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(p.lastID))
	h.Write(n[:])
	writeField(h, p.lastMAC)
	return h.Sum(nil)
}

// anchorJSON is the file's shape; MACs are hex.
type anchorJSON struct {
	Version int    `json:"version"`
	Count   int64  `json:"count"`
	LastID  int64  `json:"last_id"`
	LastMAC string `json:"last_mac"`
	MAC     string `json:"mac"`
}

type anchorState int

const (
	anchorAbsent anchorState = iota
	anchorInvalid
	anchorValid
)

func (db *DB) anchorPath() string { return filepath.Join(filepath.Dir(db.path), AnchorFile) }

// knownAuditKeys is the current key, then the retired ones newest first.
func (db *DB) knownAuditKeys() [][]byte {
	keys := [][]byte{db.auditKey}
	for i := len(db.retiredAuditKeys) - 1; i >= 0; i-- {
		keys = append(keys, db.retiredAuditKeys[i])
	}
	return keys
}

// readAnchor reads and checks DATA_DIR/audit.anchor. A file that cannot be
// parsed, or whose seal no known audit key made, is anchorInvalid; err is set
// only when the file exists but cannot be read.
func (db *DB) readAnchor() (headPos, anchorState, error) {
	f, err := os.Open(db.anchorPath())
	if errors.Is(err, fs.ErrNotExist) {
		return headPos{}, anchorAbsent, nil
	}
	if err != nil {
		return headPos{}, anchorInvalid, fmt.Errorf("store: read %s: %w", AnchorFile, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAnchorSize+1))
	if err != nil {
		return headPos{}, anchorInvalid, fmt.Errorf("store: read %s: %w", AnchorFile, err)
	}
	var a anchorJSON
	if len(b) > maxAnchorSize || json.Unmarshal(b, &a) != nil || a.Version != 1 || a.Count < 0 || a.LastID < 0 {
		return headPos{}, anchorInvalid, nil
	}
	p := headPos{count: a.Count, lastID: a.LastID}
	mac, err1 := hex.DecodeString(a.MAC)
	p.lastMAC, err = hex.DecodeString(a.LastMAC)
	if err != nil || err1 != nil {
		return headPos{}, anchorInvalid, nil
	}
	// Sealed with the key in force when it was written, which a rotation may
	// have retired since (a crash between a rotation and the anchor's re-seal).
	for _, key := range db.knownAuditKeys() {
		if hmac.Equal(mac, headSealWith(key, sealAnchor, p)) {
			return p, anchorValid, nil
		}
	}
	return headPos{}, anchorInvalid, nil
}

// anchorWrite is an anchor file written and synced but not yet in place.
type anchorWrite struct {
	db    *DB
	tmp   string
	count int64
}

// stageAnchor writes p, sealed with key, to a temp file beside the anchor
// and fsyncs it; place renames it over the anchor.
func (db *DB) stageAnchor(p headPos, key []byte) (*anchorWrite, error) {
	b, err := json.Marshal(anchorJSON{Version: 1, Count: p.count, LastID: p.lastID,
		LastMAC: hex.EncodeToString(p.lastMAC), MAC: hex.EncodeToString(headSealWith(key, sealAnchor, p))})
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(db.path), AnchorFile+".*.tmp") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("store: write %s: %w", AnchorFile, err)
	}
	w := &anchorWrite{db: db, tmp: f.Name(), count: p.count}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		w.discard()
		return nil, fmt.Errorf("store: write %s: %w", AnchorFile, err)
	}
	return w, nil
}

// place renames the staged file over the anchor. It runs after the commit
// of the head it holds, so the anchor never gets ahead of the database; a
// crash (or a failed rename) leaves the database ahead of the anchor, which
// verification accepts while the anchored link is in the chain. The caller
// holds anchorMu.
func (w *anchorWrite) place() error {
	if w == nil {
		return nil
	}
	if err := os.Rename(w.tmp, w.db.anchorPath()); err != nil {
		w.discard()
		return err
	}
	return nil
}

func (w *anchorWrite) discard() {
	if w != nil {
		os.Remove(w.tmp)
	}
}

// anchorAt brings DATA_DIR/audit.anchor up to the newest committed head this
// process may anchor, p at least. Appends waiting here share one write (temp
// file, fsync, rename): whoever holds anchorMu writes the newest head known,
// and the others find their head covered. Only committed heads are written,
// in increasing count, so an older anchor never replaces a newer one. A
// failed write leaves the database ahead of the anchor (which verifies); the
// next append tries again.
func (db *DB) anchorAt(p headPos) {
	db.headMu.Lock()
	if p.count > db.latest.count {
		db.latest = p
	}
	db.headMu.Unlock()

	db.anchorMu.Lock()
	defer db.anchorMu.Unlock()
	db.headMu.Lock()
	want := db.latest
	db.headMu.Unlock()
	if want.count <= db.anchored {
		return
	}
	w, err := db.stageAnchor(want, db.auditKey)
	if err != nil {
		return
	}
	if w.place() == nil {
		db.anchored = want.count
	}
}

// removeStaleAnchorTemps deletes temp files a crash left behind (older than
// a minute, so a write of another process in flight is left alone).
func (db *DB) removeStaleAnchorTemps() {
	dir := filepath.Dir(db.path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, AnchorFile+".") || !strings.HasSuffix(name, ".tmp") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
			os.Remove(filepath.Join(dir, name))
		}
	}
}

// anchoredLinkInChain reports whether the chain still holds the link the
// anchor a names: row a.lastID with mac a.lastMAC, or, when retention has
// removed that row, a sealed retention checkpoint at or past it.
func (db *DB) anchoredLinkInChain(ctx context.Context, tx *sql.Tx, a headPos) (bool, error) {
	if a.lastID == 0 {
		return a.count == 0, nil
	}
	var mac []byte
	err := tx.QueryRowContext(ctx, `SELECT mac FROM audit_events WHERE id = ?`, a.lastID).Scan(&mac)
	if err == nil {
		return hmac.Equal(mac, a.lastMAC), nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	var first sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT min(id) FROM audit_events`).Scan(&first); err != nil {
		return false, err
	}
	if first.Valid && first.Int64 < a.lastID {
		return false, nil // removed from the middle
	}
	cp, ok, err := db.latestCheckpoint(ctx, tx, 1<<62)
	if err != nil || !ok {
		return false, err
	}
	return cp.uptoID >= a.lastID, nil
}

// upgradeAuditHead gives a head written by an older binary (no count) its
// count (= last_id: ids were never reused) and the current seal, when its old
// seal is valid; one whose seal is not valid is left for VerifyAudit to
// report. When no anchor exists yet (the first start after the upgrade) it is
// written first, so a crash in between leaves an anchor equal to the head
// the next Open upgrades again.
func (db *DB) upgradeAuditHead(ctx context.Context) error {
	if db.checkAuditKey() != nil {
		return nil // nothing can be checked or sealed; appends refuse anyway
	}
	h, err := readHead(ctx, db.writer)
	if err != nil || !h.present || h.count.Valid {
		return err
	}
	pos := headPos{count: h.lastID, lastID: h.lastID, lastMAC: h.lastMAC}
	if !hmac.Equal(h.mac, sealMACWith(db.auditKey, sealHeadV1, h.lastID, h.lastMAC)) {
		return nil
	}
	if _, st, err := db.readAnchor(); err != nil {
		return err
	} else if st == anchorAbsent {
		w, err := db.stageAnchor(pos, db.auditKey)
		if err != nil {
			return err
		}
		if err := w.place(); err != nil {
			return fmt.Errorf("store: write %s: %w", AnchorFile, err)
		}
	}
	_, err = db.writer.ExecContext(ctx, `UPDATE audit_head SET event_count = ?, mac = ? WHERE id = 1 AND event_count IS NULL`,
		pos.count, headSealWith(db.auditKey, sealHeadV2, pos))
	if err != nil {
		return fmt.Errorf("store: upgrade audit head: %w", err)
	}
	return nil
}

// reanchorable are the verdicts Reanchor accepts: the rows and the head are
// sound, only the anchor disagrees (a restored backup is behind it, or it was lost).
var reanchorable = map[string]bool{
	"": true, AuditAnchorMissing: true, AuditAnchorInvalid: true, AuditAnchorMismatch: true,
	AuditHeadReplayed: true, AuditTableWiped: true,
}

// Reanchor is the admin's way out after restoring a backup (its head is
// behind the anchor) or losing the anchor: the rows and head must verify, then
// e is appended with what the anchor said (details "previous_anchor":
// "missing", "invalid" or its event count, and "verdict": the reason the
// chain did not verify, if any) and the anchor is rewritten from the new
// head. It refuses a chain whose rows or head are broken: that is evidence.
// It returns the verdict found before.
func (db *DB) Reanchor(ctx context.Context, e *AuditEvent) (AuditVerdict, error) {
	v, err := db.VerifyAudit(ctx)
	if err != nil {
		return v, err
	}
	if !reanchorable[v.Reason] {
		return v, fmt.Errorf("store: the audit chain itself is broken (%s at event %d); it is not re-anchored", v.Reason, v.FirstBadID)
	}
	prev, st, err := db.readAnchor()
	if err != nil {
		return v, err
	}
	details := map[string]any{}
	for k, val := range e.Details {
		details[k] = val
	}
	switch st {
	case anchorAbsent:
		details["previous_anchor"] = "missing"
	case anchorInvalid:
		details["previous_anchor"] = "invalid"
	default:
		details["previous_anchor"] = prev.count
	}
	if v.Reason != "" {
		details["verdict"] = v.Reason
	}
	e.Details = details

	db.anchorMu.Lock()
	defer db.anchorMu.Unlock()
	var staged *anchorWrite
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		a, err := db.appendAuditTx(ctx, tx, e)
		if err != nil {
			return auditErr(err)
		}
		if !a.sealed {
			return errors.New("store: the audit head is not sealed; it is not re-anchored")
		}
		staged, err = db.stageAnchor(a.next, db.auditKey)
		return err
	})
	if err != nil {
		staged.discard()
		return v, err
	}
	if err := staged.place(); err != nil {
		return v, fmt.Errorf("store: write %s: %w", AnchorFile, err)
	}
	db.anchored = staged.count
	return v, nil
}
