package store

import (
	"context"
	"database/sql"
	"errors"
)

// MaxCredentials is how many entries an account's credentials may hold.
const MaxCredentials = 16

// ErrTooManyCredentials means a merge would leave more than MaxCredentials entries.
var ErrTooManyCredentials = errors.New("store: more than 16 credential entries")

// mergeCredentialsTx applies AccountPatch.CredentialUpdates to the stored
// set of account id inside tx: open, merge, seal again. A merge that leaves
// the set as it was writes nothing.
func (db *DB) mergeCredentialsTx(ctx context.Context, tx *sql.Tx, id int64, updates map[string]*string) error {
	var tok []byte
	if err := tx.QueryRowContext(ctx, `SELECT credentials FROM accounts WHERE id = ?`, id).Scan(&tok); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		return err
	}
	creds, err := db.open(tok)
	if err != nil {
		return err
	}
	defer clear(creds)
	changed := false
	for k, v := range updates {
		switch {
		case v == nil:
			if _, ok := creds[k]; ok {
				delete(creds, k)
				changed = true
			}
		case *v != "" && creds[k] != *v:
			creds[k] = *v
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if len(creds) > MaxCredentials {
		return ErrTooManyCredentials
	}
	sealed, err := db.seal(creds)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE accounts SET credentials = ? WHERE id = ?`, sealed, id)
	return err
}
