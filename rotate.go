package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"gooni/internal/secrets"
	"gooni/store"
)

// lockFileName is held (flock, exclusive) by a serving gooni so that offline
// commands cannot change secrets or sessions under it.
const lockFileName = "gooni.lock"

// errDataDirBusy means another gooni process holds the data directory.
var errDataDirBusy = errors.New("a gooni server (or another gooni command) is running on this data directory; stop it first")

// lockDataDir takes the exclusive lock on DATA_DIR/gooni.lock without
// waiting; the lock dies with the process, so a crash never leaves it stale.
func lockDataDir(dataDir string) (unlock func(), err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(dataDir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s (%s is locked)", errDataDirBusy.Error(), path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// cliActor is the audit actor of offline commands: whoever can run them owns
// the data directory, which is admin power.
const cliActor = "admin:cli"

// offline is an opened, locked data directory for a maintenance command.
type offline struct {
	dataDir string
	getenv  func(string) string
	unlock  func()
}

// openOffline checks that dataDir is an existing installation and, when
// exclusive, locks it (a running server holds the lock).
func openOffline(getenv func(string) string, exclusive bool) (*offline, error) {
	dataDir := getenv("GG_DATA_DIR")
	if dataDir == "" {
		dataDir = "./data"
	}
	dbPath := filepath.Join(dataDir, store.FileName)
	if _, err := os.Stat(dbPath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s; set GG_DATA_DIR to the server's data directory", dbPath)
		}
		return nil, fmt.Errorf("database %s: %w", dbPath, err)
	}
	if !exclusive {
		return &offline{dataDir: dataDir, getenv: getenv, unlock: func() {}}, nil
	}
	unlock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	return &offline{dataDir: dataDir, getenv: getenv, unlock: unlock}, nil
}

// openStore opens the database with the given account keys and the current
// secrets for everything else.
func (o *offline) openStore(sec *secrets.Set, accountKeys []string) (*store.DB, error) {
	db, err := store.Open(o.dataDir, schemaSQL, store.Options{AccountKeys: accountKeys, AuditKey: sec.AuditKey, RetiredAuditKeys: sec.RetiredAuditKeys})
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return db, nil
}

func auditOffline(ctx context.Context, db *store.DB, action, target, outcome string, details map[string]any) error {
	return db.AppendAudit(ctx, &store.AuditEvent{Actor: cliActor, Source: "local", Action: action,
		Target: target, Outcome: outcome, Details: details})
}

// runSecrets implements `gooni secrets rotate NAME`.
func runSecrets(args []string, stdout, stderr io.Writer) int {
	return secretsCommand(args, os.Getenv, time.Now, stdout, stderr)
}

const secretsUsage = `usage: gooni secrets rotate api-key|admin-key|session-keys|account-key|audit-key

Rotates one generated secret under $GG_DATA_DIR/secrets (default ./data) while
the server is stopped. Secrets given through the environment or a *_FILE are
rotated where that variable is managed, not here.
`

func secretsCommand(args []string, getenv func(string) string, now func() time.Time, stdout, stderr io.Writer) int {
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
	if err := rotateSecret(name, getenv, now(), stdout); err != nil {
		fmt.Fprintf(stderr, "gooni secrets rotate %s: %v\n", name, err)
		return 1
	}
	return 0
}

func rotateSecret(name string, getenv func(string) string, now time.Time, stdout io.Writer) (err error) {
	ctx := context.Background()
	o, err := openOffline(getenv, true)
	if err != nil {
		return err
	}
	defer o.unlock()
	sec, err := secrets.LoadExisting(o.dataDir, getenv)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	// Refuse env-managed secrets before touching anything else.
	if src := sec.Sources[secrets.RotateNames[name]]; src != filepath.Join(secrets.Dir(o.dataDir), secrets.RotateNames[name]) {
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

	r, err := secrets.Rotate(o.dataDir, name, now, getenv)
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
		if err := secrets.DropOldAccountKeys(o.dataDir); err != nil {
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
	sec, err := secrets.LoadExisting(o.dataDir, o.getenv)
	if err != nil {
		return nil, 0, fmt.Errorf("secrets after rotation: %w", err)
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

// runSessions implements `gooni sessions revoke --all [--kind user|admin]`.
func runSessions(args []string, stdout, stderr io.Writer) int {
	return sessionsCommand(args, os.Getenv, stdout, stderr)
}

const sessionsUsage = `usage: gooni sessions revoke --all [--kind user|admin]

Revokes every live session (or only user or admin ones) in $GG_DATA_DIR
(default ./data); it works while the server runs and takes effect on the
next request. Everyone signs in again.
`

func sessionsCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "revoke" {
		if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, sessionsUsage)
			return 0
		}
		fmt.Fprint(stderr, sessionsUsage)
		return 2
	}
	fl := flag.NewFlagSet("gooni sessions revoke", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	all := fl.Bool("all", false, "revoke every live session")
	kind := fl.String("kind", "", "only sessions of this kind: user or admin")
	if err := fl.Parse(args[1:]); err != nil || fl.NArg() > 0 || !*all {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, sessionsUsage)
			return 0
		}
		fmt.Fprint(stderr, sessionsUsage)
		return 2
	}
	if *kind != "" && *kind != "user" && *kind != "admin" {
		fmt.Fprintf(stderr, "gooni sessions revoke: --kind must be user or admin\n")
		return 2
	}
	n, err := revokeSessions(*kind, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "gooni sessions revoke: %v\n", err)
		return 1
	}
	what := "session(s)"
	if *kind != "" {
		what = *kind + " " + what
	}
	fmt.Fprintf(stdout, "revoked %d %s\n", n, what)
	return 0
}

func revokeSessions(kind string, getenv func(string) string) (n int, err error) {
	ctx := context.Background()
	// Revocation is one committed write that the server checks on every
	// request, so it works while the server runs: the compromise path.
	o, err := openOffline(getenv, false)
	if err != nil {
		return 0, err
	}
	defer o.unlock()
	sec, err := secrets.LoadExisting(o.dataDir, getenv)
	if err != nil {
		return 0, fmt.Errorf("secrets: %w", err)
	}
	db, err := o.openStore(sec, sec.AccountKeys)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close database: %w", cerr)
		}
	}()
	n, err = db.RevokeAllSessions(ctx, kind)
	if err != nil {
		return 0, fmt.Errorf("revoke sessions: %w", err)
	}
	target := kind
	if target == "" {
		target = "all"
	}
	if err := auditOffline(ctx, db, "session.revoke", target, "success", map[string]any{"revoked": n, "scope": "all"}); err != nil {
		return n, fmt.Errorf("revoked %d session(s) but the audit row failed: %w", n, err)
	}
	return n, nil
}
