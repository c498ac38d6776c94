package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fernet/fernet-go"
)

var (
	schemaOnce sync.Once
	schemaText string
)

// testSchema is the repository's real schema.sql.
func testSchema(t testing.TB) string {
	t.Helper()
	schemaOnce.Do(func() {
		b, err := os.ReadFile("../schema.sql")
		if err != nil {
			panic(err)
		}
		schemaText = string(b)
	})
	return schemaText
}

func newFernetKey(t testing.TB) string {
	t.Helper()
	var k fernet.Key
	if err := k.Generate(); err != nil {
		t.Fatal(err)
	}
	return k.Encode()
}

var testAuditKey = []byte("0123456789abcdef0123456789abcdef")

// fakeClock is a settable clock for tests that care about time.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testOptions(t testing.TB) Options {
	return Options{AccountKeys: []string{newFernetKey(t)}, AuditKey: testAuditKey}
}

// openTest opens a fresh database under t.TempDir() and closes it at cleanup.
func openTest(t testing.TB, opts Options) (*DB, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	db, err := Open(dir, testSchema(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dir
}

// rawDB opens the file behind the store's back, as an attacker with the file could.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	t.Cleanup(func() { raw.Close() })
	return raw
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

var bg = context.Background()
