package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"gooni/internal/secrets"
	"gooni/store"
)

const secretsUsage = `usage: gooni secrets rotate api-key|admin-key|session-keys|account-key|audit-key

Rotates one generated secret under $GG_DATA_DIR/secrets (default ./data) while
the server is stopped. Secrets given through the environment or a *_FILE are
rotated where that variable is managed, not here.
`

// runSecrets implements `gooni secrets rotate NAME`.
func runSecrets(args []string, a Assets, getenv func(string) string, now func() time.Time, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "rotate" {
		if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, secretsUsage)
			return 0
		}
		fmt.Fprint(stderr, secretsUsage)
		return 2
	}
	name := args[1]
	if _, ok := secrets.RotateNames[name]; !ok {
		fmt.Fprintf(stderr, "gooni secrets: unknown secret %q\n%s", name, secretsUsage)
		return 2
	}
	if err := rotateSecret(name, a, getenv, now(), stdout); err != nil {
		fmt.Fprintf(stderr, "gooni secrets rotate %s: %v\n", name, err)
		return 1
	}
	return 0
}

func rotateSecret(name string, a Assets, getenv func(string) string, now time.Time, stdout io.Writer) (err error) {
	ctx := context.Background()
	o, err := openOffline(getenv, a, true)
	if err != nil {
		return err
	}
	defer o.unlock()
	sec, err := o.loadSecrets()
	if err != nil {
		return err
	}
	// Refuse env-managed secrets before touching anything else.
	if src := sec.Sources[secrets.RotateNames[name]]; src != filepath.Join(o.dir.Secrets(), secrets.RotateNames[name]) {
		return fmt.Errorf("%s comes from %s; rotate it where that is managed, then restart the server", name, src)
	}
	// Check the database before any file changes, so a broken or too new
	// database stops the rotation rather than half of it.
	db, err := o.openStore(sec, sec.AccountKeys)
	if err != nil {
		return err
	}
	defer func() {
		if db == nil {
			return
		}
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close database: %w", cerr)
		}
	}()
	if name == "audit-key" {
		if v, err := db.VerifyAudit(ctx); err != nil || !v.OK {
			return fmt.Errorf("the audit chain does not verify under the current key (first bad id %d, %v); investigate before rotating; nothing was changed", v.FirstBadID, err)
		}
	}

	r, err := secrets.Rotate(o.dir.Path(), name, now, o.secrets)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rotated %s: new value written to %s\n", name, r.Path)

	// undo puts the old files back when a follow-up step failed while
	// nothing depends on the new value yet.
	undo := func(step error) error {
		if rerr := r.Revert(); rerr != nil {
			return fmt.Errorf("%w; restoring the old value also failed (%v): restore %s from a backup", step, rerr, r.Path)
		}
		fmt.Fprintf(stdout, "restored the previous %s in %s\n", name, r.Path)
		return fmt.Errorf("%w; the old value is back in place", step)
	}

	details := map[string]any{"secret": name}
	switch name {
	case "api-key":
		fmt.Fprintf(stdout, "the previous API key stays valid until %s (GG_API_KEY_GRACE); it is kept in %s\n",
			r.GraceUntil.UTC().Format(time.RFC3339), r.SidePath)
		details["grace_until"] = r.GraceUntil.UTC().Format(time.RFC3339)
	case "admin-key":
		n, err := db.RevokeAllSessions(ctx, "admin")
		if err != nil {
			return undo(fmt.Errorf("revoke admin sessions: %w", err))
		}
		fmt.Fprintf(stdout, "revoked %d admin session(s)\n", n)
		details["sessions_revoked"] = n
	case "session-keys":
		// New keys already make every old cookie unreadable; revoking the
		// rows as well keeps the database telling the truth.
		n, err := db.RevokeAllSessions(ctx, "")
		if err != nil {
			return undo(fmt.Errorf("revoke sessions: %w", err))
		}
		fmt.Fprintf(stdout, "revoked %d session(s)\n", n)
		details["sessions_revoked"] = n
	case "account-key":
		// Reopen with [new, old...] so the old seals open and new ones use the new key.
		if err := db.Close(); err != nil {
			return undo(fmt.Errorf("close database: %w", err))
		}
		ndb, n, err := resealAccounts(ctx, o)
		db = ndb // nil when it could not be opened; the deferred Close allows that
		if err != nil {
			return undo(err)
		}
		if err := secrets.DropOldAccountKeys(o.dir.Path()); err != nil {
			// Both keys are still listed, so every credential opens; a
			// second run finishes the job.
			return fmt.Errorf("credentials are re-sealed but the old key could not be dropped from %s: %w", r.Path, err)
		}
		fmt.Fprintf(stdout, "re-sealed the credentials of %d account(s) under the new key; old key removed from %s\n", n, r.Path)
		details["accounts_resealed"] = n
	case "audit-key":
		if err := db.RotateAuditKey(ctx, []byte(r.New)); err != nil {
			return undo(fmt.Errorf("write the audit checkpoint: %w", err))
		}
		fmt.Fprintf(stdout, "sealed an audit checkpoint; the chain continues under the new key; the old key is kept in %s\n", r.SidePath)
	}
	if err := auditOffline(ctx, db, "secret.rotate", name, "success", details); err != nil {
		fmt.Fprintf(stdout, "warning: the rotation is done but could not be written to the audit log: %v\n", err)
	}
	fmt.Fprintln(stdout, "start the server to use the new value")
	return nil
}

// resealAccounts opens the database with the rotated key list (new first)
// and re-seals every credential under the new key in one transaction.
func resealAccounts(ctx context.Context, o *offline) (*store.DB, int, error) {
	sec, err := o.loadSecrets()
	if err != nil {
		return nil, 0, fmt.Errorf("after rotation: %w", err)
	}
	db, err := o.openStore(sec, sec.AccountKeys)
	if err != nil {
		return nil, 0, err
	}
	n, err := db.ResealCredentials(ctx)
	if err != nil {
		return db, 0, fmt.Errorf("re-seal credentials: %w", err)
	}
	return db, n, nil
}
