package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fernet/fernet-go"

	"gooni/internal/testutil"
)

func newFernetKey(t testing.TB) string {
	t.Helper()
	var k fernet.Key
	if err := k.Generate(); err != nil {
		t.Fatal(err)
	}
	return k.Encode()
}

var testAuditKey = []byte("0123456789abcdef0123456789abcdef")

func testOptions(t testing.TB) Options {
	return Options{AccountKeys: []string{newFernetKey(t)}, AuditKey: testAuditKey}
}

// openTest opens a fresh database under t.TempDir() and closes it at cleanup.
func openTest(t testing.TB, opts Options) (*DB, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	db, err := Open(dir, testutil.Schema(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dir
}

// openClocked is openTest with testOptions and a settable clock stopped at start.
func openClocked(t testing.TB, start time.Time) (*DB, *testutil.Clock) {
	t.Helper()
	clock := testutil.NewClock(start)
	opts := testOptions(t)
	opts.Now = clock.Now
	db, _ := openTest(t, opts)
	return db, clock
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

// readConcurrently runs read in n goroutines over and over until the
// returned stop is called (or the test ends); stop waits for them. An error
// from read fails the test and ends that goroutine.
func readConcurrently(t testing.TB, n int, read func() error) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := read(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}
