package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gooni/internal/config"
	"gooni/internal/secrets"
	"gooni/internal/testutil"
	"gooni/store"
)

// TestRefusesToOrphanTheAuditChain: a lost audit key is not silently
// replaced while the database holds events chained under it, on this start
// or the next.
func TestRefusesToOrphanTheAuditChain(t *testing.T) {
	dir := t.TempDir()
	db, _ := openData(t, dir)
	if err := db.AppendAudit(context.Background(), &store.AuditEvent{Actor: "admin:x", Source: "127.0.0.1", Action: "admin.login", Target: "admin_session", Outcome: "success", CorrelationID: "c"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	keyFile := filepath.Join(dir, "secrets", secrets.AuditKey)
	os.Remove(keyFile)
	cfg, err := config.Load(nil, func(k string) string {
		return map[string]string{"GG_DATA_DIR": dir, "GG_ADDR": "127.0.0.1:0"}[k]
	}, usage, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	for i := 0; i < 2; i++ {
		err := serve(cfg, testAssets(t), log)
		if err == nil || !strings.Contains(err.Error(), "audit key") {
			t.Fatalf("start %d: %v", i+1, err)
		}
		if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
			t.Fatalf("start %d left a new audit key behind", i+1)
		}
	}
}

// TestOneServerPerDataDir: a second server on the same data dir refuses.
func TestOneServerPerDataDir(t *testing.T) {
	dir := t.TempDir()
	unlock, err := config.DataDir(dir).Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	cfg, _ := config.Load(nil, func(k string) string {
		return map[string]string{"GG_DATA_DIR": dir, "GG_ADDR": "127.0.0.1:0"}[k]
	}, usage, io.Discard)
	if err := serve(cfg, testAssets(t), slog.New(slog.NewJSONHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "running") {
		t.Fatalf("second server: %v", err)
	}
}

// TestMaintenancePurgesExpiredSessions (issue 11 point 5): expired sessions
// were never purged, so a loop of POST /auth/session left every row
// forever. The server purges them at once and then on every beat (hourly;
// 20 ms here). Input tried: 50 expired sessions and one live one, then
// another expired one after the first pass.
func TestMaintenancePurgesExpiredSessions(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(dir, testutil.Schema(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	past, future := time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	for i := 0; i < 50; i++ {
		if _, err := db.CreateSession(ctx, "user", []byte(fmt.Sprintf("expired-token-hash-%020d", i)), past); err != nil {
			t.Fatal(err)
		}
	}
	live := []byte("live-token-hash-000000000000000000")
	if _, err := db.CreateSession(ctx, "user", live, future); err != nil {
		t.Fatal(err)
	}
	old := maintenanceEvery
	maintenanceEvery = 20 * time.Millisecond
	defer func() { maintenanceEvery = old }()
	mctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { maintain(mctx, db, 0, slog.New(slog.DiscardHandler)); close(done) }()
	defer func() { stop(); <-done }()
	gone := func(tok []byte) bool {
		_, err := db.GetSession(ctx, "user", tok)
		return errors.Is(err, store.ErrNotFound)
	}
	testutil.WaitFor(t, 5*time.Second, "expired sessions purged", func() bool { return gone([]byte(fmt.Sprintf("expired-token-hash-%020d", 49))) })
	if gone(live) {
		t.Fatal("a live session was purged")
	}
	late := []byte("expired-later-hash-00000000000000000")
	if _, err := db.CreateSession(ctx, "user", late, past); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "a later expired session purged on a later beat", func() bool { return gone(late) })
}
