// Package testutil holds the helpers every test package shares: the
// repository's real schema and catalog, a log capture buffer, a settable
// clock, wait-for, a free loopback address, and a builder and launcher of the
// gooni binary. Only _test.go files import it; it imports the standard
// library only, so any package's internal tests can use it.
package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Root is the repository root (where go.mod is).
func Root(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// repoRoot is Root without a testing.TB (for TestMain).
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("testutil: cannot locate the repository")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..")), nil
}

// ReadRepoFile returns a file of the repository, by path relative to its root.
func ReadRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Root(t), rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return b
}

// Schema is the repository's real schema.sql, as the binary embeds it.
func Schema(t testing.TB) string { return string(ReadRepoFile(t, "schema.sql")) }

// Catalog is the repository's real inference_settings.json.
func Catalog(t testing.TB) []byte { return ReadRepoFile(t, "inference_settings.json") }

// LogBuffer captures a process's or logger's output; safe for concurrent writes.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p; it never fails.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Records returns the JSON log lines (slog's JSON handler) whose msg is msg.
func (b *LogBuffer) Records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(b.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// WaitFor polls cond until it holds, failing the test after timeout. It polls
// at once, then every 5 ms doubling to 50 ms, so a quick condition is seen
// quickly and a slow one (an HTTP round trip) is not hammered.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Poll is WaitFor for code without a testing.TB (TestMain, goroutines): it
// returns an error when cond did not hold within timeout.
func Poll(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	pause := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %s", timeout)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
	return nil
}

// FreeAddr returns a loopback host:port that was free a moment ago (another
// process can take it before it is bound: callers that bind it later retry).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free loopback port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ClosedURL is an http:// URL on loopback where nothing listens (a port that
// was just free), for "the workspace cannot be reached" cases.
func ClosedURL(t testing.TB) string { return "http://" + FreeAddr(t) }

// Clock is a settable time source for code that takes a Now func; safe for
// concurrent use. The zero Clock reads the zero time until Set.
type Clock struct {
	mu   sync.Mutex
	t    time.Time
	real bool
}

// NewClock returns a Clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's current time (the real time after FollowReal).
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real {
		return time.Now()
	}
	return c.t
}

// Advance moves the clock forward by d (backward when d < 0).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set stops the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t, c.real = t, false
	c.mu.Unlock()
}

// FollowReal makes Now return the real time from now on, for tests that
// start background work (a dispatcher) on a clock they set up as stopped.
func (c *Clock) FollowReal() {
	c.mu.Lock()
	c.real = true
	c.mu.Unlock()
}

// NeedTool returns the path of the command name, skipping the test when it is
// not installed, or failing it when the environment says every tool must be
// there (GG_REQUIRE_TOOLS=1 or CI set, as .ci/run does). why says what the
// tool checks.
func NeedTool(t testing.TB, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("GG_REQUIRE_TOOLS") == "1" || os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (%s); GG_REQUIRE_TOOLS=1 makes a missing tool a failure", name, why)
	}
	t.Skipf("%s is not installed: %s not checked; set GG_REQUIRE_TOOLS=1 to make this a failure", name, why)
	return ""
}

// ReportCPU adds cpu-ns/op to a benchmark: the process's CPU time (user and
// system, from getrusage) per iteration. Unlike ns/op it does not grow when
// other processes take the machine's cores; in-process it counts the client
// and the server alike, and the GC's work. Call stop when the loop ends.
func ReportCPU(b *testing.B) (stop func()) {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}
