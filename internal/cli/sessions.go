package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

const sessionsUsage = `usage: gooni sessions revoke --all [--kind user|admin]

Revokes every live session (or only user or admin ones) in $GG_DATA_DIR
(default ./data); it works while the server runs and takes effect on the
next request. Everyone signs in again.
`

// runSessions implements `gooni sessions revoke --all [--kind user|admin]`.
func runSessions(args []string, a Assets, getenv func(string) string, stdout, stderr io.Writer) int {
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
	n, err := revokeSessions(*kind, a, getenv)
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

func revokeSessions(kind string, a Assets, getenv func(string) string) (n int, err error) {
	ctx := context.Background()
	// Revocation is one committed write that the server checks on every
	// request, so it works while the server runs: the compromise path.
	o, err := openOffline(getenv, a, false)
	if err != nil {
		return 0, err
	}
	defer o.unlock()
	sec, err := o.loadSecrets()
	if err != nil {
		return 0, err
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
