package secrets

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fernet/fernet-go"
)

func loadFresh(t *testing.T) (string, *Set) {
	t.Helper()
	dir := t.TempDir()
	s, err := Load(dir, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	return dir, s
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestRotateEachSecretChangesOnlyThatOne(t *testing.T) {
	for name, file := range RotateNames {
		t.Run(name, func(t *testing.T) {
			dir, before := loadFresh(t)
			r, err := Rotate(dir, name, time.Now(), envOf(nil))
			if err != nil {
				t.Fatal(err)
			}
			if r.Path != filepath.Join(dir, "secrets", file) || mode(t, r.Path) != 0o600 {
				t.Errorf("path %s mode %v", r.Path, mode(t, r.Path))
			}
			if r.SidePath != "" && mode(t, r.SidePath) != 0o600 {
				t.Errorf("side file mode %v", mode(t, r.SidePath))
			}
			after, err := Load(dir, envOf(nil))
			if err != nil {
				t.Fatalf("secrets do not load after rotating %s: %v", name, err)
			}
			changed := map[string]bool{
				APIKey:      after.APIKey != before.APIKey,
				AdminKey:    after.AdminKey != before.AdminKey,
				SessionKeys: string(after.SessionHashKey) != string(before.SessionHashKey) && string(after.SessionBlockKey) != string(before.SessionBlockKey),
				AccountKey:  after.AccountKeys[0] != before.AccountKeys[0],
				AuditKey:    string(after.AuditKey) != string(before.AuditKey),
			}
			for f, c := range changed {
				if c != (f == file) {
					t.Errorf("rotating %s: %s changed=%v", name, f, c)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "secrets", file+".new")); !os.IsNotExist(err) {
				t.Error("temporary file left behind")
			}
		})
	}
}

func TestRotatedAPIKeyStaysValidForTheGraceOnly(t *testing.T) {
	cases := []struct {
		name    string
		age     time.Duration
		grace   string
		inGrace bool
	}{
		{"just rotated, default grace", time.Minute, "", true},
		{"23h ago, default grace", 23 * time.Hour, "", true},
		{"25h ago, default grace", 25 * time.Hour, "", false},
		{"2h ago, grace 1h", 2 * time.Hour, "1h", false},
		{"2h ago, grace 72h", 2 * time.Hour, "72h", true},
		{"grace 0", time.Second, "0", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, before := loadFresh(t)
			env := envOf(map[string]string{"GG_API_KEY_GRACE": c.grace})
			r, err := Rotate(dir, "api-key", time.Now().Add(-c.age), env)
			if err != nil {
				t.Fatal(err)
			}
			if r.SidePath != filepath.Join(dir, "secrets", APIKeyPrevious) {
				t.Errorf("side path %q", r.SidePath)
			}
			after, err := Load(dir, env)
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(after.PreviousAPIKeys, before.APIKey); got != c.inGrace {
				t.Errorf("old key accepted=%v, want %v", got, c.inGrace)
			}
			if slices.Contains(after.PreviousAPIKeys, after.APIKey) {
				t.Error("the new key is listed as previous")
			}
			if !slices.Contains(after.Values(), before.APIKey) && c.inGrace {
				t.Error("a previous key is missing from Values (redaction)")
			}
		})
	}
}

func TestSecondAPIKeyRotationKeepsLiveAndDropsExpiredPrevious(t *testing.T) {
	dir, first := loadFresh(t)
	now := time.Now()
	if _, err := Rotate(dir, "api-key", now.Add(-48*time.Hour), envOf(nil)); err != nil {
		t.Fatal(err)
	}
	second, _ := Load(dir, envOf(nil))
	if _, err := Rotate(dir, "api-key", now.Add(-time.Hour), envOf(nil)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "secrets", APIKeyPrevious))
	if strings.Contains(string(b), first.APIKey) {
		t.Error("a key past its grace is still kept on disk")
	}
	third, _ := Load(dir, envOf(nil))
	if !slices.Equal(third.PreviousAPIKeys, []string{second.APIKey}) {
		t.Errorf("previous keys: got %d, want only the second key", len(third.PreviousAPIKeys))
	}
}

func TestAccountKeyRotationKeepsOldKeysUntilDropped(t *testing.T) {
	dir, before := loadFresh(t)
	old := fernet.MustDecodeKeys(before.AccountKeys[0])
	tok, err := fernet.EncryptAndSign([]byte("creds"), old[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(dir, "account-key", time.Now(), envOf(nil)); err != nil {
		t.Fatal(err)
	}
	mid, err := Load(dir, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(mid.AccountKeys) != 2 || mid.AccountKeys[1] != before.AccountKeys[0] {
		t.Fatalf("after rotation want [new, old], got %d keys", len(mid.AccountKeys))
	}
	if fernet.VerifyAndDecrypt(tok, 0, fernet.MustDecodeKeys(mid.AccountKeys...)) == nil {
		t.Error("old seal no longer opens with the rotated key list")
	}
	if err := DropOldAccountKeys(dir); err != nil {
		t.Fatal(err)
	}
	after, err := Load(dir, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(after.AccountKeys, mid.AccountKeys[:1]) {
		t.Error("DropOldAccountKeys did not keep exactly the newest key")
	}
	if mode(t, filepath.Join(dir, "secrets", AccountKey)) != 0o600 {
		t.Error("account key mode")
	}
}

func TestAuditKeyRotationRetiresTheOldKey(t *testing.T) {
	dir, first := loadFresh(t)
	t0 := time.Unix(1_700_000_000, 0)
	if _, err := Rotate(dir, "audit-key", t0, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	second, _ := Load(dir, envOf(nil))
	if _, err := Rotate(dir, "audit-key", t0.Add(time.Hour), envOf(nil)); err != nil {
		t.Fatal(err)
	}
	third, err := Load(dir, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(third.RetiredAuditKeys) != 2 || string(third.RetiredAuditKeys[0]) != string(first.AuditKey) ||
		string(third.RetiredAuditKeys[1]) != string(second.AuditKey) {
		t.Errorf("retired audit keys: got %d, want the two old keys oldest first", len(third.RetiredAuditKeys))
	}
	b, _ := os.ReadFile(filepath.Join(dir, "secrets", AuditKeyRetired))
	if !strings.HasPrefix(string(b), "1700000000 ") {
		t.Error("retired line does not start with the rotation time")
	}
}

func TestRotateRefusesSecretsFromTheEnvironment(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "k")
	os.WriteFile(keyFile, []byte("a-key-from-a-file-0123456789abcdef"), 0o600)
	cases := []struct{ name, variable, value string }{
		{"api-key", "GG_API_KEY", "api-key-from-the-environment-123"},
		{"api-key", "GG_API_KEY_FILE", keyFile},
		{"admin-key", "GG_ADMIN_KEY", "admin-key-from-the-environment-1"},
		{"session-keys", "GG_SESSION_KEYS_FILE", keyFile},
		{"account-key", "GG_ACCOUNT_KEY_FILE", keyFile},
		{"audit-key", "GG_AUDIT_KEY", "audit-key-from-the-environment-0123456789"},
	}
	for _, c := range cases {
		t.Run(c.variable, func(t *testing.T) {
			dir, _ := loadFresh(t)
			file := filepath.Join(dir, "secrets", RotateNames[c.name])
			before, _ := os.ReadFile(file)
			_, err := Rotate(dir, c.name, time.Now(), envOf(map[string]string{c.variable: c.value}))
			if err == nil || !strings.Contains(err.Error(), c.variable) {
				t.Fatalf("want a refusal naming %s, got %v", c.variable, err)
			}
			if strings.Contains(err.Error(), c.value) && !strings.HasPrefix(c.value, "/") {
				t.Error("the error shows the secret value")
			}
			after, _ := os.ReadFile(file)
			if string(before) != string(after) {
				t.Error("the file changed despite the refusal")
			}
		})
	}
}

func TestRotateRefusesUnknownMissingOrBrokenSecrets(t *testing.T) {
	dir, _ := loadFresh(t)
	if _, err := Rotate(dir, "api_key", time.Now(), envOf(nil)); err == nil {
		t.Error("unknown name accepted")
	}
	if _, err := Rotate(t.TempDir(), "admin-key", time.Now(), envOf(nil)); err == nil {
		t.Error("rotation without an existing secret file accepted")
	}
	os.WriteFile(filepath.Join(dir, "secrets", SessionKeys), []byte("garbage"), 0o600)
	if _, err := Rotate(dir, "session-keys", time.Now(), envOf(nil)); err == nil {
		t.Error("a broken secret file was rotated over")
	}
	if _, err := Rotate(dir, "bogus", time.Now(), envOf(nil)); err == nil {
		t.Error("bogus name accepted")
	}
}

func TestRevertRestoresTheOldSecretAndSideFile(t *testing.T) {
	for _, name := range []string{"api-key", "audit-key", "account-key"} {
		t.Run(name, func(t *testing.T) {
			dir, before := loadFresh(t)
			r, err := Rotate(dir, name, time.Now(), envOf(nil))
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Revert(); err != nil {
				t.Fatal(err)
			}
			after, err := Load(dir, envOf(nil))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(before.Values(), after.Values()) {
				t.Error("revert did not restore the secrets exactly")
			}
			for _, side := range []string{APIKeyPrevious, AuditKeyRetired} {
				if _, err := os.Stat(filepath.Join(dir, "secrets", side)); !os.IsNotExist(err) {
					t.Errorf("%s left behind", side)
				}
			}
		})
	}
}

func TestLoadFailsClosedOnBrokenSideFiles(t *testing.T) {
	cases := []struct {
		name string
		file string
		body string
		env  map[string]string
		want string
	}{
		{"malformed previous", APIKeyPrevious, "not-a-time somekey\n", nil, APIKeyPrevious},
		{"previous without key", APIKeyPrevious, "1700000000\n", nil, "line 1"},
		{"malformed retired", AuditKeyRetired, "x\n", nil, AuditKeyRetired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := loadFresh(t)
			if c.file != "" {
				os.WriteFile(filepath.Join(dir, "secrets", c.file), []byte(c.body), 0o600)
			}
			_, err := Load(dir, envOf(c.env))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want error naming %q, got %v", c.want, err)
			}
		})
	}
}

func TestLoadExistingNeverGenerates(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadExisting(dir, envOf(nil)); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("want a missing-file error, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "secrets")); !os.IsNotExist(err) {
		t.Error("LoadExisting wrote secrets")
	}
	if _, err := Load(dir, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadExisting(dir, envOf(nil)); err != nil {
		t.Errorf("LoadExisting after Load: %v", err)
	}
}
