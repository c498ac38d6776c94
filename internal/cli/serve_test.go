package cli

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gooni/internal/config"
	"gooni/internal/secrets"
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
