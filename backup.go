package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"gooni/internal/secrets"
	"gooni/store"
)

// runBackup copies the live database consistently (VACUUM INTO) to PATH.
func runBackup(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] == "" || args[0][0] == '-' {
		fmt.Fprintln(stderr, "usage: gooni backup PATH   (GG_DATA_DIR selects the data directory; PATH must not exist)")
		return 2
	}
	dataDir := os.Getenv("GG_DATA_DIR")
	if dataDir == "" {
		dataDir = "./data"
	}
	// Never mint secrets here: a wrong GG_DATA_DIR must fail, not look fine.
	sec, err := secrets.LoadExisting(dataDir, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "gooni backup: secrets:", err)
		return 1
	}
	db, err := store.Open(dataDir, schemaSQL, store.Options{AccountKeys: sec.AccountKeys, AuditKey: sec.AuditKey, RetiredAuditKeys: sec.RetiredAuditKeys})
	if err != nil {
		fmt.Fprintln(stderr, "gooni backup: database:", err)
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

// runHealthcheck asks the server on GG_ADDR for /health; the Docker image
// has no shell or curl, so the binary checks itself.
func runHealthcheck(stdout, stderr io.Writer) int {
	addr := os.Getenv("GG_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck: bad GG_ADDR")
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http"
	client := &http.Client{Timeout: 4 * time.Second}
	if os.Getenv("GG_TLS_CERT") != "" {
		scheme = "https"
		// The check runs on the same host against its own certificate name.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	resp, err := client.Get(scheme + "://" + net.JoinHostPort(host, port) + "/health")
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "healthcheck: status", resp.StatusCode)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
