package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"gooni/internal/testutil"
	"os"
	"sync"
	"testing"
	"time"
)

func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func inviteEvent(action string) AuditOf[*Invite] {
	return func(i *Invite) *AuditEvent {
		return &AuditEvent{Actor: "admin:abc", Source: "127.0.0.1", Action: action, Target: fmt.Sprintf("invite:%d", i.ID),
			Outcome: "success", CorrelationID: "c"}
	}
}

// TestInviteLifecycle: an invite signs people in until its uses are spent,
// it expires or it is revoked, and says which; each sign-in is one session
// and one audit row, in the same commit; a token that fails changes nothing.
func TestInviteLifecycle(t *testing.T) {
	clock := testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	opts := testOptions(t)
	opts.Now = clock.Now
	db, dir := openTest(t, opts)

	inv := &Invite{Label: "friends", Uses: 2, ExpiresAt: clock.Now().Add(72 * time.Hour)}
	if err := db.CreateInviteAudited(bg, inv, hashOf("tok-a"), inviteEvent("invite.create")); err != nil {
		t.Fatal(err)
	}
	if inv.ID == 0 || inv.UsesLeft != 2 || !inv.CreatedAt.Equal(clock.Now()) || inv.State(clock.Now()) != InviteActive {
		t.Fatalf("created %+v", inv)
	}
	// The token itself is never stored: only its hash.
	raw, err := os.ReadFile(dir + "/gooni.db")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("tok-a")) {
		t.Fatal("the invite token is in the database file")
	}

	use := func(token, session string) (*Invite, error) {
		i, s, err := db.UseInvite(bg, hashOf(token), hashOf(session), clock.Now().Add(time.Hour), inviteEvent("invite.use"))
		if err == nil && (s == nil || s.Kind != "user" || !s.ExpiresAt.Equal(clock.Now().Add(time.Hour))) {
			t.Fatalf("session %+v", s)
		}
		return i, err
	}
	reason := func(err error) string {
		var ie *InviteError
		if !errors.As(err, &ie) {
			t.Fatalf("err %v, want an InviteError", err)
		}
		return ie.Reason
	}
	auditRows := func() int {
		var n int
		db.reader.QueryRow(`SELECT count(*) FROM audit_events`).Scan(&n)
		return n
	}
	sessions := func() int {
		var n int
		db.reader.QueryRow(`SELECT count(*) FROM sessions`).Scan(&n)
		return n
	}

	got, err := use("tok-a", "s1")
	if err != nil || got.UsesLeft != 1 || !got.LastUsedAt.Equal(clock.Now()) {
		t.Fatalf("first use: %+v %v", got, err)
	}
	if _, err := db.GetSession(bg, "user", hashOf("s1")); err != nil {
		t.Fatalf("the first use made no session: %v", err)
	}
	if _, err := use("tok-a", "s2"); err != nil {
		t.Fatal(err)
	}
	rows, sess := auditRows(), sessions()
	if _, err := use("tok-a", "s3"); reason(err) != InviteUsedUp {
		t.Fatalf("third use of a 2-use invite: %v", err)
	}
	if _, err := use("no-such-token", "s4"); reason(err) != InviteUnknown {
		t.Fatalf("unknown token: %v", err)
	}
	if auditRows() != rows || sessions() != sess {
		t.Fatal("a refused token wrote a row or a session")
	}

	// Expiry: usable until the instant it expires, not at it.
	short := &Invite{Uses: 5, ExpiresAt: clock.Now().Add(time.Minute)}
	if err := db.CreateInviteAudited(bg, short, hashOf("tok-b"), nil); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute - time.Millisecond)
	if _, err := use("tok-b", "s5"); err != nil {
		t.Fatalf("a millisecond before expiry: %v", err)
	}
	clock.Advance(time.Millisecond)
	if _, err := use("tok-b", "s6"); reason(err) != InviteExpired {
		t.Fatalf("at expiry: %v", err)
	}

	// Revoke: at once, twice is fine, and the sessions it issued stay.
	live := &Invite{Uses: 5, ExpiresAt: clock.Now().Add(time.Hour)}
	if err := db.CreateInviteAudited(bg, live, hashOf("tok-c"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := use("tok-c", "s7"); err != nil {
		t.Fatal(err)
	}
	r, was, err := db.RevokeInviteAudited(bg, live.ID, inviteEvent("invite.revoke"))
	if err != nil || !was || r.RevokedAt.IsZero() || r.State(clock.Now()) != InviteRevoked {
		t.Fatalf("revoke: %+v %v %v", r, was, err)
	}
	clock.Advance(time.Second)
	r2, was, err := db.RevokeInviteAudited(bg, live.ID, inviteEvent("invite.revoke"))
	if err != nil || was || !r2.RevokedAt.Equal(r.RevokedAt) {
		t.Fatalf("second revoke: %+v %v %v", r2, was, err)
	}
	if _, err := use("tok-c", "s8"); reason(err) != InviteRevoked {
		t.Fatalf("revoked token: %v", err)
	}
	if s, err := db.GetSession(bg, "user", hashOf("s7")); err != nil || !s.RevokedAt.IsZero() {
		t.Fatalf("the session a revoked invite issued: %+v %v", s, err)
	}
	if _, _, err := db.RevokeInviteAudited(bg, 9999, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}

	list, err := db.ListInvites(bg, 100)
	if err != nil || len(list) != 3 || list[0].ID != live.ID || list[2].ID != inv.ID {
		t.Fatalf("list newest first: %+v %v", list, err)
	}
	if list, _ := db.ListInvites(bg, 1); len(list) != 1 {
		t.Fatalf("limit 1: %d", len(list))
	}
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK {
		t.Fatalf("VerifyAudit %+v %v", v, err)
	}
	if err := db.CreateInviteAudited(bg, &Invite{Uses: 0, ExpiresAt: clock.Now()}, hashOf("x"), nil); err == nil {
		t.Fatal("an invite of 0 uses was stored")
	}
	if err := db.CreateInviteAudited(bg, &Invite{Uses: 1001, ExpiresAt: clock.Now()}, hashOf("x"), nil); err == nil {
		t.Fatal("an invite of 1001 uses was stored")
	}
}

// TestInviteLastUseRace: 20 people open a 3-use link at once; exactly 3 get in.
func TestInviteLastUseRace(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	if err := db.CreateInviteAudited(bg, &Invite{Uses: 3, ExpiresAt: time.Now().Add(time.Hour)}, hashOf("race"), nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, usedUp := 0, 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := db.UseInvite(bg, hashOf("race"), hashOf(fmt.Sprint("session-", i)), time.Now().Add(time.Hour), nil)
			mu.Lock()
			defer mu.Unlock()
			var ie *InviteError
			switch {
			case err == nil:
				won++
			case errors.As(err, &ie) && ie.Reason == InviteUsedUp:
				usedUp++
			default:
				t.Errorf("use %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if won != 3 || usedUp != 17 {
		t.Fatalf("%d got in and %d were told used up; want 3 and 17", won, usedUp)
	}
}

// TestInviteUseFailsClosed: when its audit row cannot be written, the use
// is not taken and no session exists.
func TestInviteUseFailsClosed(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	inv := &Invite{Uses: 1, ExpiresAt: time.Now().Add(time.Hour)}
	if err := db.CreateInviteAudited(bg, inv, hashOf("tok"), nil); err != nil {
		t.Fatal(err)
	}
	mustExec(t, rawDB(t, db.path), `CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_events
		BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END`)
	if _, _, err := db.UseInvite(bg, hashOf("tok"), hashOf("s"), time.Now().Add(time.Hour), inviteEvent("invite.use")); !errors.Is(err, ErrAuditWrite) {
		t.Fatalf("err %v, want ErrAuditWrite", err)
	}
	if got, _ := db.GetInvite(bg, inv.ID); got.UsesLeft != 1 {
		t.Fatalf("uses left %d after a failed sign-in", got.UsesLeft)
	}
	if _, err := db.GetSession(bg, "user", hashOf("s")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a session exists after a failed sign-in: %v", err)
	}
	if err := db.CreateInviteAudited(bg, &Invite{Uses: 1, ExpiresAt: time.Now().Add(time.Hour)}, hashOf("tok2"), inviteEvent("invite.create")); !errors.Is(err, ErrAuditWrite) {
		t.Fatalf("create: %v", err)
	}
	if list, _ := db.ListInvites(bg, 10); len(list) != 1 {
		t.Fatalf("an unaudited invite was stored: %d invites", len(list))
	}
}

// TestCredentialUpdates: a PATCH of single credentials keeps the ones not
// named or given empty, replaces the ones given, removes the ones nulled,
// and still holds at most 16 entries.
func TestCredentialUpdates(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	a := &Account{Name: "gpu", Workspace: "gpu-one"}
	if err := db.CreateAccount(bg, a, map[string]string{"token_id": "tid", "token_secret": "tsec", "proxy_key": "pk"}); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	cases := []struct {
		name    string
		updates map[string]*string
		want    map[string]string
	}{
		{"empty keeps all", map[string]*string{}, map[string]string{"token_id": "tid", "token_secret": "tsec", "proxy_key": "pk"}},
		{"blank keeps one", map[string]*string{"token_secret": str(""), "proxy_key": str("pk2")}, map[string]string{"token_id": "tid", "token_secret": "tsec", "proxy_key": "pk2"}},
		{"new entry", map[string]*string{"proxy_secret": str("ps")}, map[string]string{"token_id": "tid", "token_secret": "tsec", "proxy_key": "pk2", "proxy_secret": "ps"}},
		{"null removes", map[string]*string{"token_id": nil, "nothing_here": nil}, map[string]string{"token_secret": "tsec", "proxy_key": "pk2", "proxy_secret": "ps"}},
	}
	for _, c := range cases {
		if _, err := db.UpdateAccount(bg, a.ID, AccountPatch{CredentialUpdates: c.updates}); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := db.AccountCredentials(bg, a.ID)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: %v %v, want %v", c.name, got, err, c.want)
		}
	}
	many := map[string]*string{}
	for i := range 14 {
		many[fmt.Sprintf("extra_%d", i)] = str("v")
	}
	if _, err := db.UpdateAccount(bg, a.ID, AccountPatch{CredentialUpdates: many}); !errors.Is(err, ErrTooManyCredentials) {
		t.Fatalf("17 entries: %v", err)
	}
	if got, _ := db.AccountCredentials(bg, a.ID); len(got) != 3 {
		t.Fatalf("a refused merge changed the set: %v", got)
	}
	// Removing every entry leaves no credentials at all.
	all := map[string]*string{"token_secret": nil, "proxy_key": nil, "proxy_secret": nil}
	acc, err := db.UpdateAccount(bg, a.ID, AccountPatch{CredentialUpdates: all})
	if err != nil || acc.HasCredentials {
		t.Fatalf("after removing all: %+v %v", acc, err)
	}
}
