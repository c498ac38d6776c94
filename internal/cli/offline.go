package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"gooni/internal/audit"
	"gooni/internal/config"
	"gooni/internal/secrets"
	"gooni/store"
)

// cliActor is the audit actor of offline commands: whoever can run them owns
// the data directory, which is admin power.
const cliActor = "admin:cli"

// timeNow is the clock of the offline commands (tests pass their own).
var timeNow = time.Now

// offline is an opened, optionally locked data directory for a maintenance command.
type offline struct {
	dir     config.DataDir
	secrets config.Secrets
	schema  string
	unlock  func()
}

// openOffline checks that GG_DATA_DIR is an existing installation and, when
// exclusive, locks it (a running server holds the lock).
func openOffline(getenv func(string) string, a Assets, exclusive bool) (*offline, error) {
	cfg, err := config.LoadOffline(getenv)
	if err != nil {
		return nil, err
	}
	dir := cfg.DataDir
	if _, err := os.Stat(dir.DB()); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s; set GG_DATA_DIR to the server's data directory", dir.DB())
		}
		return nil, fmt.Errorf("database %s: %w", dir.DB(), err)
	}
	o := &offline{dir: dir, secrets: cfg.Secrets, schema: a.Schema, unlock: func() {}}
	if exclusive {
		if o.unlock, err = dir.Lock(); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// loadSecrets reads the installation's secrets; it never generates one, so a
// wrong GG_DATA_DIR fails instead of minting a fresh set.
func (o *offline) loadSecrets() (*secrets.Set, error) {
	sec, err := secrets.LoadExisting(o.dir.Path(), o.secrets)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return sec, nil
}

// openStore opens the database with the given account keys and the current
// secrets for everything else.
func (o *offline) openStore(sec *secrets.Set, accountKeys []string) (*store.DB, error) {
	db, err := store.Open(o.dir.Path(), o.schema, store.Options{AccountKeys: accountKeys, AuditKey: sec.AuditKey, RetiredAuditKeys: sec.RetiredAuditKeys})
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return db, nil
}

// auditOffline records what an offline command did, as admin:cli from local.
func auditOffline(ctx context.Context, db *store.DB, action, target, outcome string, details map[string]any) error {
	w := audit.NewWriter(db, slog.New(slog.DiscardHandler), nil)
	return w.Record(audit.WithActor(ctx, audit.Actor{Name: cliActor, Source: "local"}), action, target, outcome, details)
}
