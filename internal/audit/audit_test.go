package audit

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gooni/internal/testutil"
	"gooni/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "data"), testutil.Schema(t), store.Options{AuditKey: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func rows(t *testing.T, db *store.DB, action string) []*store.AuditEvent {
	t.Helper()
	items, _, err := db.ListAudit(context.Background(), store.AuditFilter{Action: action, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// TestRepeatedDenialsWriteOneRowPerWindow: a denial a client repeats writes
// one row per (action, client) per minute whatever it varies in the request;
// the rest are counted, and the next window's row says how many.
func TestRepeatedDenialsWriteOneRowPerWindow(t *testing.T) {
	db := openDB(t)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	logs := &testutil.LogBuffer{}
	w := NewWriter(db, slog.New(slog.NewJSONHandler(logs, nil)), clk.Now)
	var mu sync.Mutex
	counted := map[string]int{}
	w.OnSuppressed(func(a string) { mu.Lock(); counted[a]++; mu.Unlock() })
	as := func(ip string) context.Context {
		return WithActor(context.Background(), Actor{Name: "anonymous", Source: ip, CorrelationID: "c"})
	}
	deny := func(ip, origin string) {
		t.Helper()
		if err := w.Record(as(ip), "security.cors_blocked", "origin", "denied", map[string]any{"origin": origin}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		deny("203.0.113.9", fmt.Sprintf("https://evil-%d.example", i))
		// One host's IPv6 /64 is one client.
		deny(fmt.Sprintf("2001:db8:1:2::%x", i+1), "https://x.example")
	}
	got := rows(t, db, "security.cors_blocked")
	if len(got) != 2 || counted["security.cors_blocked"] != 198 {
		t.Fatalf("%d rows, %d counted; want 2 rows, 198 counted", len(got), counted["security.cors_blocked"])
	}
	if got[1].Details["origin"] != "https://evil-0.example" {
		t.Errorf("the row does not keep the first Origin: %v", got[1].Details)
	}
	if n := len(logs.Records("audit event")); n != 2 {
		t.Errorf("%d audit log lines, want 2 (the repeats are counted, not logged)", n)
	}
	// Another action, or another client, is another key.
	if err := w.Record(as("203.0.113.9"), "security.throttled", "POST /auth/session", "denied", nil); err != nil {
		t.Fatal(err)
	}
	deny("203.0.113.10", "https://evil.example")
	deny("2001:db8:1:3::1", "https://evil.example")
	if n := len(rows(t, db, "")); n != 5 {
		t.Fatalf("%d rows, want 5", n)
	}
	// Successes and failures are never folded.
	for i := 0; i < 3; i++ {
		w.Record(as("203.0.113.9"), "session.revoke", "user_session", "success", nil)
		w.Record(as("203.0.113.9"), "admin.login", "admin_session", "failure", nil)
	}
	if n := len(rows(t, db, "session.revoke")) + len(rows(t, db, "admin.login")); n != 6 {
		t.Fatalf("%d success/failure rows, want 6", n)
	}

	clk.Add(59 * time.Second)
	deny("203.0.113.9", "https://late.example")
	if n := len(rows(t, db, "security.cors_blocked")); n != 4 {
		t.Fatalf("inside the window: %d rows, want 4", n)
	}
	clk.Add(time.Second)
	deny("203.0.113.9", "https://next.example")
	got = rows(t, db, "security.cors_blocked")
	if len(got) != 5 || got[0].Details["origin"] != "https://next.example" || got[0].Details["repeats_suppressed"] != float64(100) {
		t.Fatalf("next window: %d rows, newest %v", len(got), got[0].Details)
	}
	if v, err := db.VerifyAudit(context.Background()); err != nil || !v.OK {
		t.Fatalf("VerifyAudit = %+v %v", v, err)
	}
}

// TestRepeatsBounded: the remembered keys never exceed their bound; when
// every key is inside its window, new clients are counted, not written, and
// keys whose window ended make room again.
func TestRepeatsBounded(t *testing.T) {
	r := newRepeats(3)
	t0 := time.Unix(1000, 0)
	for i, want := range []bool{true, true, true, false, false} {
		k := repeatKey{"security.cors_blocked", fmt.Sprintf("198.51.100.%d", i)}
		if got, _ := r.admit(k, t0); got != want {
			t.Errorf("client %d: write %v, want %v", i, got, want)
		}
		if r.lru.Len() > 3 {
			t.Fatalf("%d keys", r.lru.Len())
		}
	}
	// A minute on, the oldest windows have ended: a new client is written.
	if got, _ := r.admit(repeatKey{"security.cors_blocked", "198.51.100.9"}, t0.Add(RepeatWindow)); !got {
		t.Error("no room made by an ended window")
	}
	if r.lru.Len() != 3 {
		t.Errorf("%d keys", r.lru.Len())
	}
}

func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.9":              "203.0.113.9",
		"::ffff:203.0.113.9":       "203.0.113.9",
		"2001:db8:1:2:3:4:5:6":     "2001:db8:1:2::/64",
		"2001:db8:1:2::ffff":       "2001:db8:1:2::/64",
		"fe80::1%eth0":             "fe80::/64",
		"local":                    "local",
		"":                         "",
		string(make([]byte, 1000)): string(make([]byte, 64)),
	} {
		if got := sourceKey(in); got != want {
			t.Errorf("sourceKey(%.20q) = %q, want %q", in, got, want)
		}
	}
}

// TestInTx: the event is built from the row the write produced and the
// actor in ctx, and its log line is written only when logged is called.
func TestInTx(t *testing.T) {
	db := openDB(t)
	logs := &testutil.LogBuffer{}
	w := NewWriter(db, slog.New(slog.NewJSONHandler(logs, nil)), nil)
	ctx := WithActor(context.Background(), Actor{Name: "admin:abc", Source: "127.0.0.1", CorrelationID: "corr"})
	ev, logged := InTx(w, ctx, "account.create", "success", func(a *store.Account) (string, map[string]any) {
		return fmt.Sprintf("account:%d", a.ID), map[string]any{"name": a.Name}
	})
	a := &store.Account{Name: "gpu", Workspace: "gpu-one"}
	if err := db.CreateAccountAudited(context.Background(), a, nil, ev); err != nil {
		t.Fatal(err)
	}
	if n := len(logs.Records("audit event")); n != 0 {
		t.Fatalf("%d log lines before logged()", n)
	}
	logged()
	got := rows(t, db, "account.create")
	lines := logs.Records("audit event")
	if len(got) != 1 || got[0].Target != fmt.Sprintf("account:%d", a.ID) || got[0].Actor != "admin:abc" ||
		got[0].CorrelationID != "corr" || len(lines) != 1 || lines[0]["target"] != got[0].Target {
		t.Fatalf("rows %+v, lines %v", got, lines)
	}
	if ev, logged := InTx[*store.Account](nil, ctx, "x", "success", nil); ev != nil {
		t.Error("a nil writer gave a builder")
	} else {
		logged()
	}
}
