package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Session is a user or admin session; only a hash of its token is stored.
type Session struct {
	ID                   int64
	Kind                 string // "user" | "admin"
	CreatedAt, ExpiresAt time.Time
	RevokedAt            time.Time // zero = live
}

func checkKind(kind string) error {
	if kind != "user" && kind != "admin" {
		return fmt.Errorf("store: unknown session kind %q", kind)
	}
	return nil
}

// CreateSession stores a new session; tokenHash is sha256 of the random token,
// the token itself is never stored.
func (db *DB) CreateSession(ctx context.Context, kind string, tokenHash []byte, expires time.Time) (*Session, error) {
	return db.CreateSessionAudited(ctx, kind, tokenHash, expires, nil)
}

func (db *DB) createSessionTx(ctx context.Context, tx *sql.Tx, kind string, tokenHash []byte, expires time.Time) (*Session, error) {
	now := db.now().UTC().Truncate(time.Millisecond)
	res, err := tx.ExecContext(ctx, `INSERT INTO sessions (kind, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		kind, tokenHash, now.UnixMilli(), expires.UnixMilli())
	if err != nil {
		if isUniqueViolation(err) {
			return nil, ErrDuplicate
		}
		return nil, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return nil, err
	}
	return &Session{ID: id, Kind: kind, CreatedAt: now, ExpiresAt: time.UnixMilli(expires.UnixMilli()).UTC()}, nil
}

// GetSession returns the session even when expired or revoked (the caller decides);
// ErrNotFound when unknown.
func (db *DB) GetSession(ctx context.Context, kind string, tokenHash []byte) (*Session, error) {
	var s Session
	var created, expires, revoked sql.NullInt64
	err := db.reader.QueryRowContext(ctx, `SELECT id, kind, created_at, expires_at, revoked_at FROM sessions
		WHERE kind = ? AND token_hash = ?`, kind, tokenHash).Scan(&s.ID, &s.Kind, &created, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	s.CreatedAt, s.ExpiresAt, s.RevokedAt = fromMS(created), fromMS(expires), fromMS(revoked)
	return &s, nil
}

// RevokeSession marks one session revoked; revoking twice is not an error, an unknown one is ErrNotFound.
func (db *DB) RevokeSession(ctx context.Context, kind string, tokenHash []byte) error {
	res, err := db.writer.ExecContext(ctx, `UPDATE sessions SET revoked_at = coalesce(revoked_at, ?)
		WHERE kind = ? AND token_hash = ?`, db.nowMS(), kind, tokenHash)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// RevokeLiveSession revokes one session if it is live (not revoked, not
// expired) and reports whether it was; a session already ended, or unknown,
// is (false, nil), so a replayed logout can be told from a real one.
func (db *DB) RevokeLiveSession(ctx context.Context, kind string, tokenHash []byte) (bool, error) {
	now := db.nowMS()
	res, err := db.writer.ExecContext(ctx, `UPDATE sessions SET revoked_at = ?
		WHERE kind = ? AND token_hash = ? AND revoked_at IS NULL AND expires_at > ?`, now, kind, tokenHash, now)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// RevokeAllSessions revokes every live session of kind ("" = all kinds), for key
// compromise; it returns how many were live.
func (db *DB) RevokeAllSessions(ctx context.Context, kind string) (int, error) {
	var res sql.Result
	var err error
	if kind == "" {
		res, err = db.writer.ExecContext(ctx, `UPDATE sessions SET revoked_at = ? WHERE revoked_at IS NULL`, db.nowMS())
	} else {
		if err := checkKind(kind); err != nil {
			return 0, err
		}
		res, err = db.writer.ExecContext(ctx, `UPDATE sessions SET revoked_at = ? WHERE revoked_at IS NULL AND kind = ?`, db.nowMS(), kind)
	}
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// PurgeExpiredSessions deletes sessions that expired before the given time.
func (db *DB) PurgeExpiredSessions(ctx context.Context, before time.Time) (int, error) {
	res, err := db.writer.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < ?`, before.UnixMilli())
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
