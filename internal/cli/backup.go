package cli

import (
	"context"
	"fmt"
	"io"
)

// runBackup copies the live database consistently (VACUUM INTO) to PATH.
func runBackup(args []string, a Assets, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] == "" || args[0][0] == '-' {
		fmt.Fprintln(stderr, "usage: gooni backup PATH   (GG_DATA_DIR selects the data directory; PATH must not exist)")
		return 2
	}
	o, err := openOffline(getenv, a, false)
	if err != nil {
		fmt.Fprintln(stderr, "gooni backup:", err)
		return 1
	}
	defer o.unlock()
	// Never mint secrets here: a wrong GG_DATA_DIR must fail, not look fine.
	sec, err := o.loadSecrets()
	if err != nil {
		fmt.Fprintln(stderr, "gooni backup:", err)
		return 1
	}
	db, err := o.openStore(sec, sec.AccountKeys)
	if err != nil {
		fmt.Fprintln(stderr, "gooni backup:", err)
		return 1
	}
	defer db.Close()
	if err := db.Backup(context.Background(), args[0]); err != nil {
		fmt.Fprintln(stderr, "gooni backup:", err)
		return 1
	}
	fmt.Fprintf(stdout, "backed up %s to %s\n", db.Path(), args[0])
	return 0
}
