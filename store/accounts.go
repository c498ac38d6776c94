package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fernet/fernet-go"
)

// Account statuses (CONTRACT section 6).
const (
	AccountPending  = "pending"
	AccountReady    = "ready"
	AccountFailed   = "failed"
	AccountDisabled = "disabled"
)

// Workspace drivers (CONTRACT section 14).
const (
	DriverGooni   = "gooni"   // Workspace API v1 (section 8): the Modal app, workspace-sim
	DriverComfyUI = "comfyui" // a ComfyUI server
)

// Deploy statuses; "" means never deployed.
const (
	DeployRunning   = "running"
	DeploySucceeded = "succeeded"
	DeployFailed    = "failed"
)

// Account is a worker account: a GPU workspace Gooni dispatches to.
type Account struct {
	ID                       int64
	Name, Workspace, BaseURL string // BaseURL "" = derive from GG_WORKSPACE_URL
	Capacity                 int
	Status                   string // pending|ready|failed|disabled
	StatusReason             string
	LastHealthCheckAt        time.Time
	DeployStatus             string // "" | running | succeeded | failed
	DeployOutput             string // redacted, last 64 KiB
	LastDeployAt             time.Time
	HasCredentials           bool
	CreatedAt, UpdatedAt     time.Time
	Driver                   string   // DriverGooni | DriverComfyUI
	Models                   []string // catalog model ids the last successful health check found served
	// ConfigRev changes whenever the account's target, driver or
	// credentials do: a driver built for one revision is stale after it.
	ConfigRev int64
}

// Serves reports whether the account's last health check found model served.
func (a *Account) Serves(model string) bool {
	for _, m := range a.Models {
		if m == model {
			return true
		}
	}
	return false
}

// AccountPatch changes only the fields that are set.
type AccountPatch struct {
	Name        *string
	Capacity    *int
	Credentials map[string]string // nil = keep; empty = remove
	BaseURL     *string
	Driver      *string
	// CredentialUpdates changes single credentials, merged into the stored
	// set inside the write's transaction: a non-empty value sets that
	// entry, nil removes it, "" keeps the stored one; names not listed are
	// kept. Ignored when Credentials is set. More than MaxCredentials
	// entries after the merge is ErrTooManyCredentials.
	CredentialUpdates map[string]*string
	// IfConfigRev, when not 0, makes the update ErrConflict unless the
	// account's target, driver and credentials are still those of that
	// config_rev (a write based on settings an admin may since have edited).
	IfConfigRev int64
}

// MaxDeployOutput is how much deploy output is kept (the tail).
const MaxDeployOutput = 64 << 10

// ErrNoAccountKey means credentials were given but no Fernet key is configured.
var ErrNoAccountKey = errors.New("store: no account key configured (GG_ACCOUNT_KEY): cannot seal or open worker credentials")

// errCredentialsUnreadable never includes the token or key material.
var errCredentialsUnreadable = errors.New("store: stored credentials cannot be opened with the configured account keys")

const accountColumns = `id, name, workspace, base_url, capacity, status, status_reason, last_health_check_at,
	deploy_status, deploy_output, last_deploy_at, credentials IS NOT NULL, created_at, updated_at,
	driver, models, config_rev`

func scanAccount(r rowScanner) (*Account, error) {
	var a Account
	var checked, deployed, created, updated sql.NullInt64
	var models string
	err := r.Scan(&a.ID, &a.Name, &a.Workspace, &a.BaseURL, &a.Capacity, &a.Status, &a.StatusReason, &checked,
		&a.DeployStatus, &a.DeployOutput, &deployed, &a.HasCredentials, &created, &updated,
		&a.Driver, &models, &a.ConfigRev)
	if err != nil {
		return nil, err
	}
	if json.Unmarshal([]byte(models), &a.Models) != nil {
		a.Models = nil // a hand-edited row: serves nothing until the next health check
	}
	a.LastHealthCheckAt, a.LastDeployAt = fromMS(checked), fromMS(deployed)
	a.CreatedAt, a.UpdatedAt = fromMS(created), fromMS(updated)
	return &a, nil
}

// seal turns credentials into a Fernet token; nil for an empty map (no credentials).
func (db *DB) seal(creds map[string]string) ([]byte, error) {
	if len(creds) == 0 {
		return nil, nil
	}
	if len(db.accountKeys) == 0 {
		return nil, ErrNoAccountKey
	}
	plain, err := json.Marshal(creds)
	if err != nil {
		return nil, err
	}
	tok, err := fernet.EncryptAndSign(plain, db.accountKeys[0])
	clear(plain)
	if err != nil {
		return nil, errors.New("store: sealing credentials failed")
	}
	return tok, nil
}

func (db *DB) open(tok []byte) (map[string]string, error) {
	if len(tok) == 0 {
		return map[string]string{}, nil
	}
	if len(db.accountKeys) == 0 {
		return nil, ErrNoAccountKey
	}
	plain := fernet.VerifyAndDecrypt(tok, 0, db.accountKeys)
	if plain == nil {
		return nil, errCredentialsUnreadable
	}
	creds := map[string]string{}
	err := json.Unmarshal(plain, &creds)
	clear(plain)
	if err != nil {
		return nil, errCredentialsUnreadable
	}
	return creds, nil
}

// CreateAccount seals creds and inserts the account; ErrDuplicate when the name is taken.
// Empty Status means pending, zero Capacity means 1.
func (db *DB) CreateAccount(ctx context.Context, a *Account, creds map[string]string) error {
	return db.CreateAccountAudited(ctx, a, creds, nil)
}

// createAccountTx inserts a (credentials already sealed as tok) inside tx.
func (db *DB) createAccountTx(ctx context.Context, tx *sql.Tx, a *Account, tok []byte) error {
	if a.Status == "" {
		a.Status = AccountPending
	}
	if a.Capacity == 0 {
		a.Capacity = 1
	}
	if a.Driver == "" {
		a.Driver = DriverGooni
	}
	now := db.now().UTC().Truncate(time.Millisecond)
	res, err := tx.ExecContext(ctx, `INSERT INTO accounts (name, workspace, base_url, capacity, status,
		status_reason, credentials, created_at, updated_at, driver) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.Name, a.Workspace, a.BaseURL, a.Capacity, a.Status, a.StatusReason, tok, now.UnixMilli(), now.UnixMilli(), a.Driver)
	if err != nil {
		if isUniqueViolation(err) {
			return ErrDuplicate
		}
		return err
	}
	if a.ID, err = res.LastInsertId(); err != nil {
		return err
	}
	a.HasCredentials = tok != nil
	a.CreatedAt, a.UpdatedAt = now, now
	a.Models, a.ConfigRev = nil, 1
	a.DeployStatus, a.DeployOutput = "", ""
	a.LastHealthCheckAt, a.LastDeployAt = time.Time{}, time.Time{}
	return nil
}

// GetAccount returns one account; ErrNotFound when there is none.
func (db *DB) GetAccount(ctx context.Context, id int64) (*Account, error) {
	return db.getAccount(ctx, db.reader, `SELECT `+accountColumns+` FROM accounts WHERE id = ?`, id)
}

// GetAccountByName returns one account by its unique name; ErrNotFound when there is none.
func (db *DB) GetAccountByName(ctx context.Context, name string) (*Account, error) {
	return db.getAccount(ctx, db.reader, `SELECT `+accountColumns+` FROM accounts WHERE name = ?`, name)
}

type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (db *DB) getAccount(ctx context.Context, q rowQuerier, query string, arg any) (*Account, error) {
	a, err := scanAccount(q.QueryRowContext(ctx, query, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return a, err
}

// ListAccounts returns every account by id.
// They come from memory unless the table changed since the last read
// (accountRows); each call gets its own copies.
func (db *DB) ListAccounts(ctx context.Context) ([]*Account, error) {
	rows, err := db.accountRows(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Account, len(rows))
	for i, a := range rows {
		out[i] = a.clone()
	}
	return out, nil
}

// accountRows is every account by id, shared with other callers: read only.
func (db *DB) accountRows(ctx context.Context) ([]*Account, error) {
	return db.accounts.get(ctx, func(ctx context.Context) ([]*Account, error) {
		return queryRows(ctx, stmtQuerier{db.stmtListAccounts}, scanAccount, "")
	})
}

// UpdateAccount applies the patch in one transaction and returns the new state.
func (db *DB) UpdateAccount(ctx context.Context, id int64, p AccountPatch) (*Account, error) {
	return db.UpdateAccountAudited(ctx, id, p, "", "", nil)
}

// ReasonSettingsChanged is the status_reason of an account whose target,
// driver or credentials an update changed: it is pending until its next
// health check (unless disabled, which it stays).
const ReasonSettingsChanged = "settings changed; waiting for a health check"

// updateAccountTx applies p (credentials already sealed as tok) inside tx.
func (db *DB) updateAccountTx(ctx context.Context, tx *sql.Tx, id int64, p AccountPatch, tok []byte) error {
	a, err := db.getAccount(ctx, tx, `SELECT `+accountColumns+` FROM accounts WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if p.IfConfigRev != 0 && a.ConfigRev != p.IfConfigRev {
		return ErrConflict
	}
	if p.Name != nil {
		a.Name = *p.Name
	}
	if p.Capacity != nil {
		a.Capacity = *p.Capacity
	}
	rev := a.ConfigRev
	retarget := (p.BaseURL != nil && *p.BaseURL != a.BaseURL) || (p.Driver != nil && *p.Driver != a.Driver)
	if retarget || p.Credentials != nil || p.CredentialUpdates != nil {
		rev++
	}
	if p.BaseURL != nil {
		a.BaseURL = *p.BaseURL
	}
	if p.Driver != nil {
		a.Driver = *p.Driver
	}
	models := a.Models
	if retarget {
		// Another target: what the old one served says nothing of it.
		models = nil
	}
	status, reason := a.Status, a.StatusReason
	if rev != a.ConfigRev && a.Status != AccountDisabled {
		// Another target or credentials: no task goes to it, and no answer
		// calls it ready, until a health check of these settings says so.
		status, reason = AccountPending, ReasonSettingsChanged
	}
	mj, _ := json.Marshal(nonNil(models))
	now := db.nowMS()
	_, err = tx.ExecContext(ctx, `UPDATE accounts SET name = ?, capacity = ?, base_url = ?, driver = ?, models = ?,
		config_rev = ?, status = ?, status_reason = ?, updated_at = ? WHERE id = ?`,
		a.Name, a.Capacity, a.BaseURL, a.Driver, string(mj), rev, status, reason, now, id)
	if err != nil {
		if isUniqueViolation(err) {
			return ErrDuplicate
		}
		return err
	}
	if p.Credentials != nil {
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET credentials = ? WHERE id = ?`, tok, id); err != nil {
			return err
		}
	} else if p.CredentialUpdates != nil {
		return db.mergeCredentialsTx(ctx, tx, id, p.CredentialUpdates)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SetAccountModels records the catalog models a successful health check
// found the account able to serve (CONTRACT section 14), unless its config
// revision moved on meanwhile (the check was of the old target).
func (db *DB) SetAccountModels(ctx context.Context, id, configRev int64, models []string) error {
	mj, _ := json.Marshal(nonNil(models))
	defer db.accounts.changed()
	_, err := db.writer.ExecContext(ctx, `UPDATE accounts SET models = ? WHERE id = ? AND config_rev = ?`, string(mj), id, configRev)
	return err
}

var accountStatuses = map[string]bool{AccountPending: true, AccountReady: true, AccountFailed: true, AccountDisabled: true}

// SetAccountStatus sets status and reason; checkedAt zero keeps the last health-check time.
func (db *DB) SetAccountStatus(ctx context.Context, id int64, status, reason string, checkedAt time.Time) (*Account, error) {
	if !accountStatuses[status] {
		return nil, fmt.Errorf("store: unknown account status %q", status)
	}
	defer db.accounts.changed()
	a, err := scanAccount(db.writer.QueryRowContext(ctx, `UPDATE accounts SET status = ?, status_reason = ?,
		last_health_check_at = coalesce(?, last_health_check_at), updated_at = ?
		WHERE id = ? RETURNING `+accountColumns, status, reason, ms(checkedAt), db.nowMS(), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return a, err
}

// SetAccountStatusUnless is SetAccountStatus for automatic changes (a
// workspace the dispatcher found down): it changes nothing while the
// account is in one of the unless statuses, so an admin's Disable made
// meanwhile is never overwritten, nor when an edit has replaced the settings of configRev
// (the ones the failing call used; 0: whatever they are), so a failure of
// the old target does not fail the new one. It returns the account as it
// now is and whether it changed.
func (db *DB) SetAccountStatusUnless(ctx context.Context, id, configRev int64, status, reason string, checkedAt time.Time, unless ...string) (*Account, bool, error) {
	if !accountStatuses[status] {
		return nil, false, fmt.Errorf("store: unknown account status %q", status)
	}
	defer db.accounts.changed()
	q := `UPDATE accounts SET status = ?, status_reason = ?,
		last_health_check_at = coalesce(?, last_health_check_at), updated_at = ? WHERE id = ?`
	args := []any{status, reason, ms(checkedAt), db.nowMS(), id}
	if configRev != 0 {
		q += ` AND config_rev = ?`
		args = append(args, configRev)
	}
	for _, u := range unless {
		q += ` AND status <> ?`
		args = append(args, u)
	}
	a, err := scanAccount(db.writer.QueryRowContext(ctx, q+` RETURNING `+accountColumns, args...))
	if errors.Is(err, sql.ErrNoRows) {
		a, err = db.GetAccount(ctx, id)
		return a, false, err
	}
	if err != nil {
		return nil, false, err
	}
	return a, true, nil
}

var deployStatuses = map[string]bool{"": true, DeployRunning: true, DeploySucceeded: true, DeployFailed: true}

// SetDeploy records a deploy's state and (already redacted) output, keeping the
// last MaxDeployOutput bytes; at zero keeps the last deploy time.
func (db *DB) SetDeploy(ctx context.Context, id int64, status, output string, at time.Time) error {
	if !deployStatuses[status] {
		return fmt.Errorf("store: unknown deploy status %q", status)
	}
	if len(output) > MaxDeployOutput {
		cut := len(output) - MaxDeployOutput
		// Start the kept tail on a character boundary.
		for cut < len(output) && output[cut]&0xC0 == 0x80 {
			cut++
		}
		output = output[cut:]
	}
	defer db.accounts.changed()
	res, err := db.writer.ExecContext(ctx, setDeploySQL, status, output, ms(at), db.nowMS(), id)
	return one(res, err, notFound)
}

const setDeploySQL = `UPDATE accounts SET deploy_status = ?, deploy_output = ?,
	last_deploy_at = coalesce(?, last_deploy_at), updated_at = ? WHERE id = ?`

// AccountCredentials opens the Fernet seal; an account without credentials gives an empty map.
func (db *DB) AccountCredentials(ctx context.Context, id int64) (map[string]string, error) {
	var tok []byte
	err := db.reader.QueryRowContext(ctx, `SELECT credentials FROM accounts WHERE id = ?`, id).Scan(&tok)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return db.open(tok)
}

// stmtQuerier runs a prepared statement where queryRows expects a query
// (the query text is the statement's own).
type stmtQuerier struct{ *sql.Stmt }

func (q stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return q.Stmt.QueryContext(ctx, args...)
}

// DeleteAccount removes the account; its tasks keep no account id, so a
// pending task it held goes back to the queue (RemoveAccountAudited is the
// path that fails them instead).
func (db *DB) DeleteAccount(ctx context.Context, id int64) error {
	var requeued []string
	defer db.accounts.changed()
	err := db.writeTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) error {
		held, err := queryRows(ctx, tx, scanTask, `SELECT `+taskColumns+` FROM tasks
			WHERE account_id = ? AND status IN ('pending', 'processing')`, id)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM accounts WHERE id = ?`, id)
		if err := one(res, err, notFound); err != nil {
			return err
		}
		for _, t := range held {
			t.AccountID = 0 // ON DELETE SET NULL
			q.addTask(t)
			if t.Status == StatusPending {
				requeued = append(requeued, t.ID)
			}
		}
		return nil
	})
	if err == nil {
		db.finished.dropAll() // finished tasks of the account lost their account_id
	}
	if err == nil && len(requeued) > 0 {
		db.taskChanged(requeued...)
	}
	return err
}

// ResealCredentials re-seals every account's credentials under AccountKeys[0]
// (after a key rotation) in one transaction and returns how many it re-sealed.
func (db *DB) ResealCredentials(ctx context.Context) (int, error) {
	if len(db.accountKeys) == 0 {
		return 0, ErrNoAccountKey
	}
	n := 0
	defer db.accounts.changed()
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, credentials FROM accounts WHERE credentials IS NOT NULL ORDER BY id`)
		if err != nil {
			return err
		}
		type sealed struct {
			id  int64
			tok []byte
		}
		var all []sealed
		for rows.Next() {
			var s sealed
			if err := rows.Scan(&s.id, &s.tok); err != nil {
				rows.Close()
				return err
			}
			all = append(all, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, s := range all {
			creds, err := db.open(s.tok)
			if err != nil {
				return fmt.Errorf("account %d: %w", s.id, err)
			}
			tok, err := db.seal(creds)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET credentials = ? WHERE id = ?`, tok, s.id); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// HasReadyAccount reports whether any worker account is ready: the submit
// path's no_workers check (from memory, see ListAccounts).
func (db *DB) HasReadyAccount(ctx context.Context) (bool, error) {
	rows, err := db.accountRows(ctx)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(rows, func(a *Account) bool { return a.Status == AccountReady }), nil
}

// HasReadyAccountFor reports whether a ready account serves model
// (CONTRACT section 14: POST /generate for a model nobody ready serves is
// no_workers), from memory (see ListAccounts).
func (db *DB) HasReadyAccountFor(ctx context.Context, model string) (bool, error) {
	rows, err := db.accountRows(ctx)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(rows, func(a *Account) bool { return a.Status == AccountReady && a.Serves(model) }), nil
}
