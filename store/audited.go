package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// AuditOf builds, inside a store write's transaction, the audit event that
// write appends, from the row it wrote (for the target and the details); nil,
// or a nil result, appends nothing. The change and its audit row commit
// together or not at all (FR-023: an admin action that cannot be audited does
// not happen); a failed append makes the write return ErrAuditWrite (or
// ErrAuditKey), and the event's ID and Timestamp are set once it committed.
type AuditOf[T any] func(T) *AuditEvent

func (ev AuditOf[T]) of(v T) *AuditEvent {
	if ev == nil {
		return nil
	}
	return ev(v)
}

// CreateAccountAudited is CreateAccount with its audit event in the same transaction.
func (db *DB) CreateAccountAudited(ctx context.Context, a *Account, creds map[string]string, ev AuditOf[*Account]) error {
	tok, err := db.seal(creds)
	if err != nil {
		return err
	}
	defer db.accounts.changed()
	return db.auditedTx(ctx, func(tx *sql.Tx) (*AuditEvent, error) {
		if err := db.createAccountTx(ctx, tx, a, tok); err != nil {
			return nil, err
		}
		return ev.of(a), nil
	})
}

// UpdateAccountAudited applies the patch and, when status is not empty, sets
// the status and its reason (an admin's Disable or Enable), with the audit
// event, in one transaction; it returns the account as committed.
func (db *DB) UpdateAccountAudited(ctx context.Context, id int64, p AccountPatch, status, reason string, ev AuditOf[*Account]) (*Account, error) {
	if status != "" && !accountStatuses[status] {
		return nil, fmt.Errorf("store: unknown account status %q", status)
	}
	var tok []byte
	if p.Credentials != nil {
		var err error
		if tok, err = db.seal(p.Credentials); err != nil {
			return nil, err
		}
	}
	patched := p.Name != nil || p.Capacity != nil || p.BaseURL != nil || p.Credentials != nil || p.CredentialUpdates != nil || p.Driver != nil
	return db.auditedAccountWrite(ctx, id, ev, func(tx *sql.Tx) error {
		if patched || status == "" {
			if err := db.updateAccountTx(ctx, tx, id, p, tok); err != nil {
				return err
			}
		}
		if status != "" {
			res, err := tx.ExecContext(ctx, `UPDATE accounts SET status = ?, status_reason = ?, updated_at = ? WHERE id = ?`,
				status, reason, db.nowMS(), id)
			return one(res, err, notFound)
		}
		return nil
	})
}

// auditedAccountWrite runs change, reads account id back and appends the
// event ev builds from it, all in one transaction; it returns the account as
// it now is (ErrNotFound when there is none).
func (db *DB) auditedAccountWrite(ctx context.Context, id int64, ev AuditOf[*Account], change func(tx *sql.Tx) error) (*Account, error) {
	defer db.accounts.changed()
	var out *Account
	err := db.auditedTx(ctx, func(tx *sql.Tx) (*AuditEvent, error) {
		if err := change(tx); err != nil {
			return nil, err
		}
		var err error
		if out, err = db.getAccount(ctx, tx, `SELECT `+accountColumns+` FROM accounts WHERE id = ?`, id); err != nil {
			return nil, err
		}
		return ev.of(out), nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetHealthAudited records a health check's verdict and appends its audit
// event in one transaction (fail closed: without the row nothing changes).
// The verdict is about the settings of configRev: if an edit changed the
// target, driver or credentials during the check, nothing of it is kept
// (the account stays pending until a check of the new settings). Otherwise
// models, when not nil, become what the account serves, and status and
// reason are set unless the account is disabled (an admin's Disable during
// the check wins), with last_health_check_at = checkedAt. Status "" changes
// nothing but still appends the event. It returns the account as it now is.
func (db *DB) SetHealthAudited(ctx context.Context, id, configRev int64, models []string, status, reason string, checkedAt time.Time, ev AuditOf[*Account]) (*Account, error) {
	if status != "" && !accountStatuses[status] {
		return nil, fmt.Errorf("store: unknown account status %q", status)
	}
	return db.auditedAccountWrite(ctx, id, ev, func(tx *sql.Tx) error {
		if models != nil {
			mj, _ := json.Marshal(models)
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET models = ? WHERE id = ? AND config_rev = ?`, string(mj), id, configRev); err != nil {
				return err
			}
		}
		if status != "" {
			_, err := tx.ExecContext(ctx, `UPDATE accounts SET status = ?, status_reason = ?,
				last_health_check_at = ?, updated_at = ? WHERE id = ? AND config_rev = ? AND status <> ?`,
				status, reason, ms(checkedAt), db.nowMS(), id, configRev, AccountDisabled)
			return err
		}
		return nil
	})
}

// RemoveAccountAudited fails the account's unfinished tasks (its processing
// ones and the pending ones bound to it) with code and message, deletes the
// account and appends the audit event, in one transaction. It returns the
// tasks it failed as they were before (so the caller can cancel the
// processing ones remotely, after the commit); ErrNotFound when there is no
// such account. Done tasks and their media stay, without an account id.
func (db *DB) RemoveAccountAudited(ctx context.Context, id int64, code, message string, ev AuditOf[*Account]) ([]*Task, error) {
	var failed []*Task
	defer db.accounts.changed()
	err := db.auditedTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) (*AuditEvent, error) {
		failed = nil
		acc, err := db.getAccount(ctx, tx, `SELECT `+accountColumns+` FROM accounts WHERE id = ?`, id)
		if err != nil {
			return nil, err
		}
		tasks, err := queryRows(ctx, tx, scanTask, `SELECT `+taskColumns+` FROM tasks
			WHERE account_id = ? AND status IN ('pending', 'processing') ORDER BY id`, id)
		if err != nil {
			return nil, err
		}
		now := db.nowMS()
		for _, t := range tasks {
			if err := failTask(ctx, tx, q, t.ID, code, message, now); err != nil {
				return nil, err
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM accounts WHERE id = ?`, id)
		if err := one(res, err, notFound); err != nil {
			return nil, err
		}
		failed = tasks
		return ev.of(acc), nil
	})
	if err != nil {
		return nil, err
	}
	db.finished.dropAll() // finished tasks of the account lost their account_id
	ids := make([]string, len(failed))
	for i, t := range failed {
		ids[i] = t.ID
	}
	if len(ids) > 0 {
		db.taskChanged(ids...)
	}
	return failed, nil
}

// StartDeployAudited marks the account's deploy running from at (output
// cleared) with the audit event, in one transaction, and returns the account
// as that transaction left it (deploy_status running); ErrNotFound when there
// is no such account.
func (db *DB) StartDeployAudited(ctx context.Context, id int64, at time.Time, ev AuditOf[*Account]) (*Account, error) {
	defer db.accounts.changed()
	var acc *Account
	err := db.auditedTx(ctx, func(tx *sql.Tx) (*AuditEvent, error) {
		res, err := tx.ExecContext(ctx, setDeploySQL, DeployRunning, "", ms(at), db.nowMS(), id)
		if err := one(res, err, notFound); err != nil {
			return nil, err
		}
		if acc, err = db.getAccount(ctx, tx, `SELECT `+accountColumns+` FROM accounts WHERE id = ?`, id); err != nil {
			return nil, err
		}
		return ev.of(acc), nil
	})
	if err != nil {
		return nil, err
	}
	return acc, nil
}

// CreateSessionAudited is CreateSession with its audit event (an admin
// login) in the same transaction.
func (db *DB) CreateSessionAudited(ctx context.Context, kind string, tokenHash []byte, expires time.Time, ev AuditOf[*Session]) (*Session, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	if len(tokenHash) == 0 {
		return nil, errors.New("store: empty session token hash")
	}
	var s *Session
	err := db.auditedTx(ctx, func(tx *sql.Tx) (*AuditEvent, error) {
		var err error
		if s, err = db.createSessionTx(ctx, tx, kind, tokenHash, expires); err != nil {
			return nil, err
		}
		return ev.of(s), nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}
