package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Invite is a sign-in link (CONTRACT section 16). Only a hash of its token
// is stored; the token lives in the link an admin hands out.
type Invite struct {
	ID    int64
	Label string
	// Uses is how many sign-ins it allowed when made; UsesLeft how many remain.
	Uses, UsesLeft int
	CreatedAt      time.Time
	ExpiresAt      time.Time
	RevokedAt      time.Time // zero = not revoked
	LastUsedAt     time.Time // zero = never used
}

// Why an invite token does not sign anyone in.
const (
	InviteUnknown = "unknown" // no invite has this token
	InviteExpired = "expired" // past its expires_at
	InviteRevoked = "revoked" // an admin revoked it
	InviteUsedUp  = "used_up" // every use is spent
	InviteActive  = "active"  // it still signs people in (State only)
)

// State is InviteActive, or the reason the invite no longer signs anyone
// in at now (revoked first, then used up, then expired).
func (i *Invite) State(now time.Time) string {
	switch {
	case !i.RevokedAt.IsZero():
		return InviteRevoked
	case i.UsesLeft <= 0:
		return InviteUsedUp
	case !now.Before(i.ExpiresAt):
		return InviteExpired
	}
	return InviteActive
}

// InviteError says why a token signed nobody in; Invite is the invite it
// names (nil for InviteUnknown).
type InviteError struct {
	Reason string
	Invite *Invite
}

func (e *InviteError) Error() string { return "store: invite not usable: " + e.Reason }

// MaxInviteUses bounds Invite.Uses (CONTRACT section 16: 1-1000).
const MaxInviteUses = 1000

const inviteColumns = `id, label, uses, uses_left, created_at, expires_at, revoked_at, last_used_at`

func scanInvite(r rowScanner) (*Invite, error) {
	var i Invite
	var created, expires, revoked, used sql.NullInt64
	if err := r.Scan(&i.ID, &i.Label, &i.Uses, &i.UsesLeft, &created, &expires, &revoked, &used); err != nil {
		return nil, err
	}
	i.CreatedAt, i.ExpiresAt, i.RevokedAt, i.LastUsedAt = fromMS(created), fromMS(expires), fromMS(revoked), fromMS(used)
	return &i, nil
}

// CreateInviteAudited stores inv under tokenHash (sha256 of the token) with
// the audit event ev builds, in one transaction (an admin action that cannot
// be audited does not happen). inv.Uses must be 1..MaxInviteUses and
// inv.ExpiresAt set; ID, UsesLeft and CreatedAt are filled in.
func (db *DB) CreateInviteAudited(ctx context.Context, inv *Invite, tokenHash []byte, ev AuditOf[*Invite]) error {
	if len(tokenHash) == 0 {
		return errors.New("store: empty invite token hash")
	}
	if inv.Uses < 1 || inv.Uses > MaxInviteUses {
		return fmt.Errorf("store: invite uses %d outside 1..%d", inv.Uses, MaxInviteUses)
	}
	if inv.ExpiresAt.IsZero() {
		return errors.New("store: invite without an expiry")
	}
	return db.auditedTx(ctx, func(tx *sql.Tx) (*AuditEvent, error) {
		now := db.now().UTC().Truncate(time.Millisecond)
		res, err := tx.ExecContext(ctx, `INSERT INTO invites (token_hash, label, uses, uses_left, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?)`, tokenHash, inv.Label, inv.Uses, inv.Uses, now.UnixMilli(), inv.ExpiresAt.UnixMilli())
		if err != nil {
			if isUniqueViolation(err) {
				return nil, ErrDuplicate
			}
			return nil, err
		}
		if inv.ID, err = res.LastInsertId(); err != nil {
			return nil, err
		}
		inv.UsesLeft, inv.CreatedAt = inv.Uses, now
		inv.ExpiresAt = time.UnixMilli(inv.ExpiresAt.UnixMilli()).UTC()
		return ev.of(inv), nil
	})
}

// ListInvites returns at most limit invites (1..1000), newest first.
func (db *DB) ListInvites(ctx context.Context, limit int) ([]*Invite, error) {
	limit = min(max(limit, 1), 1000)
	return queryRows(ctx, db.reader, scanInvite, `SELECT `+inviteColumns+` FROM invites ORDER BY id DESC LIMIT ?`, limit)
}

// GetInvite returns one invite; ErrNotFound when there is none.
func (db *DB) GetInvite(ctx context.Context, id int64) (*Invite, error) {
	i, err := scanInvite(db.reader.QueryRowContext(ctx, `SELECT `+inviteColumns+` FROM invites WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return i, err
}

// RevokeInviteAudited stops an invite at once, with the audit event ev
// builds, in one transaction. Revoking twice keeps the first time and still
// appends the event (the request is on record); wasLive says whether this
// call revoked it. ErrNotFound when there is no such invite. Sessions the
// invite issued are left alone.
func (db *DB) RevokeInviteAudited(ctx context.Context, id int64, ev AuditOf[*Invite]) (inv *Invite, wasLive bool, err error) {
	err = db.auditedTx(ctx, func(tx *sql.Tx) (*AuditEvent, error) {
		res, err := tx.ExecContext(ctx, `UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, db.nowMS(), id)
		if err != nil {
			return nil, err
		}
		n, _ := res.RowsAffected()
		wasLive = n == 1
		inv, err = scanInvite(tx.QueryRowContext(ctx, `SELECT `+inviteColumns+` FROM invites WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		return ev.of(inv), nil
	})
	if err != nil {
		return nil, false, err
	}
	return inv, wasLive, nil
}

// UseInvite signs someone in with an invite token, in one transaction: it
// takes one use of the invite whose token hashes to tokenHash (if it is
// live: not revoked, not expired, a use left), creates a user session under
// sessionHash that expires at sessionExpires, and appends the audit event
// ev builds. Two people racing for the last use cannot both win. A token
// that signs nobody in is an *InviteError saying why, and changes nothing.
func (db *DB) UseInvite(ctx context.Context, tokenHash, sessionHash []byte, sessionExpires time.Time, ev AuditOf[*Invite]) (*Invite, *Session, error) {
	if len(tokenHash) == 0 || len(sessionHash) == 0 {
		return nil, nil, errors.New("store: empty invite or session token hash")
	}
	var inv *Invite
	var sess *Session
	err := db.auditedTx(ctx, func(tx *sql.Tx) (*AuditEvent, error) {
		now := db.nowMS()
		var err error
		inv, err = scanInvite(tx.QueryRowContext(ctx, `UPDATE invites SET uses_left = uses_left - 1, last_used_at = ?
			WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ? AND uses_left > 0
			RETURNING `+inviteColumns, now, tokenHash, now))
		if errors.Is(err, sql.ErrNoRows) {
			// Not usable: find out why, for the person and the audit row.
			old, err := scanInvite(tx.QueryRowContext(ctx, `SELECT `+inviteColumns+` FROM invites WHERE token_hash = ?`, tokenHash))
			if errors.Is(err, sql.ErrNoRows) {
				return nil, &InviteError{Reason: InviteUnknown}
			}
			if err != nil {
				return nil, err
			}
			return nil, &InviteError{Reason: old.State(time.UnixMilli(now)), Invite: old}
		}
		if err != nil {
			return nil, err
		}
		if sess, err = db.createSessionTx(ctx, tx, "user", sessionHash, sessionExpires); err != nil {
			return nil, err
		}
		return ev.of(inv), nil
	})
	if err != nil {
		return nil, nil, err
	}
	return inv, sess, nil
}
