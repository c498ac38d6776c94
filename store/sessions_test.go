package store

import (
	"crypto/sha256"
	"errors"
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	db, clock := openClocked(t, time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
	hash := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

	exp := clock.Now().Add(24 * time.Hour)
	s, err := db.CreateSession(bg, "user", hash("u1"), exp)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID == 0 || s.Kind != "user" || !s.ExpiresAt.Equal(exp) || !s.CreatedAt.Equal(clock.Now()) || !s.RevokedAt.IsZero() {
		t.Fatalf("created %+v", s)
	}
	if _, err := db.CreateSession(bg, "admin", hash("a1"), clock.Now().Add(8*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateSession(bg, "user", hash("old"), clock.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		fn   func() error
		want error
	}{
		{"bad kind", func() error { _, err := db.CreateSession(bg, "root", hash("x"), exp); return err }, nil},
		{"same hash twice", func() error { _, err := db.CreateSession(bg, "admin", hash("u1"), exp); return err }, ErrDuplicate},
		{"empty hash", func() error { _, err := db.CreateSession(bg, "user", nil, exp); return err }, nil},
	} {
		err := tc.fn()
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: err = %v, want failure %v", tc.name, err, tc.want)
		}
	}

	for _, tc := range []struct {
		name, kind, token string
		want              error
	}{
		{"user", "user", "u1", nil},
		{"admin", "admin", "a1", nil},
		{"expired is still returned", "user", "old", nil},
		{"user token is not an admin session", "admin", "u1", ErrNotFound},
		{"unknown", "user", "nope", ErrNotFound},
	} {
		got, err := db.GetSession(bg, tc.kind, hash(tc.token))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		if err == nil && got.Kind != tc.kind {
			t.Errorf("%s: kind %q", tc.name, got.Kind)
		}
	}

	clock.Advance(time.Minute)
	if err := db.RevokeSession(bg, "user", hash("u1")); err != nil {
		t.Fatal(err)
	}
	got, _ := db.GetSession(bg, "user", hash("u1"))
	if !got.RevokedAt.Equal(clock.Now()) {
		t.Fatalf("revoked_at = %v", got.RevokedAt)
	}
	clock.Advance(time.Minute)
	if err := db.RevokeSession(bg, "user", hash("u1")); err != nil {
		t.Fatalf("revoke twice: %v", err)
	}
	if again, _ := db.GetSession(bg, "user", hash("u1")); !again.RevokedAt.Equal(got.RevokedAt) {
		t.Fatal("second revoke moved revoked_at")
	}
	if err := db.RevokeSession(bg, "user", hash("nope")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}

	db.CreateSession(bg, "admin", hash("a2"), exp)
	if n, err := db.RevokeAllSessions(bg, "admin"); err != nil || n != 2 {
		t.Fatalf("RevokeAllSessions(admin) = %d %v, want 2", n, err)
	}
	if old, _ := db.GetSession(bg, "user", hash("old")); !old.RevokedAt.IsZero() {
		t.Fatal("revoking admin sessions touched a user session")
	}
	if n, err := db.RevokeAllSessions(bg, ""); err != nil || n != 1 {
		t.Fatalf("RevokeAllSessions(all) = %d %v, want 1", n, err)
	}
	if _, err := db.RevokeAllSessions(bg, "bogus"); err == nil {
		t.Fatal("RevokeAllSessions accepted an unknown kind")
	}

	if n, err := db.PurgeExpiredSessions(bg, clock.Now()); err != nil || n != 1 {
		t.Fatalf("PurgeExpiredSessions = %d %v, want 1", n, err)
	}
	if _, err := db.GetSession(bg, "user", hash("old")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired session survived purge: %v", err)
	}
	if _, err := db.GetSession(bg, "user", hash("u1")); err != nil {
		t.Fatalf("live-expiry session purged: %v", err)
	}
}
