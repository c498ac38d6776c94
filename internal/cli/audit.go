package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"gooni/internal/audit"
	"gooni/store"
)

const auditUsage = `usage: gooni audit reanchor

Rewrites DATA_DIR/audit.anchor from the audit head of $GG_DATA_DIR (default
./data), with the server stopped. Run it after restoring a database backup
(whose head is behind the anchor) or when the anchor file was lost. The audit
rows and head must verify; the command records an audit.reanchor event saying
what the anchor held before. See SECURITY.md, "Audit log".
`

// runAudit implements `gooni audit reanchor`.
func runAudit(args []string, a Assets, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, auditUsage)
		return 0
	}
	if len(args) != 1 || args[0] != "reanchor" {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	v, count, err := reanchor(a, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "gooni audit reanchor: %v\n", err)
		return 1
	}
	was := "the chain verified"
	if v.Reason != "" {
		was = "verification said " + v.Reason
	}
	fmt.Fprintf(stdout, "audit anchor rewritten at event %d (before: %s)\n", count, was)
	return 0
}

func reanchor(a Assets, getenv func(string) string) (v store.AuditVerdict, id int64, err error) {
	ctx := context.Background()
	o, err := openOffline(getenv, a, true)
	if err != nil {
		return v, 0, err
	}
	defer o.unlock()
	sec, err := o.loadSecrets()
	if err != nil {
		return v, 0, err
	}
	db, err := o.openStore(sec, sec.AccountKeys)
	if err != nil {
		return v, 0, err
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close database: %w", cerr)
		}
	}()
	w := audit.NewWriter(db, slog.New(slog.DiscardHandler), timeNow)
	e := w.Event(audit.WithActor(ctx, audit.Actor{Name: cliActor, Source: "local"}), "audit.reanchor", store.AnchorFile, "success", nil)
	if v, err = db.Reanchor(ctx, e); err != nil {
		return v, 0, err
	}
	return v, e.ID, nil
}
