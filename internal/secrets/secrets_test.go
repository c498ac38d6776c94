package secrets

import (
	"gooni/internal/config"

	"os"
	"path/filepath"
	"strings"
	"testing"
)

// envOf resolves the secret inputs the way the server does, from variables m.
func envOf(m map[string]string) config.Secrets {
	o, err := config.LoadOffline(func(k string) string { return m[k] })
	if err != nil {
		panic(err)
	}
	return o.Secrets
}

func TestGenerateOnFirstStartWithPrivateModes(t *testing.T) {
	dir := t.TempDir()
	s, err := Load(dir, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{APIKey, AdminKey, SessionKeys, AccountKey, AuditKey} {
		if !s.Generated[name] {
			t.Errorf("%s not reported as generated", name)
		}
		fi, err := os.Stat(filepath.Join(dir, "secrets", name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("secrets dir mode %v, want 0700", fi.Mode().Perm())
	}
	// A second start reads the same values and generates nothing.
	s2, err := Load(dir, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(s2.Generated) != 0 {
		t.Errorf("second start generated %v", s2.Generated)
	}
	if s2.APIKey != s.APIKey || s2.AdminKey != s.AdminKey || string(s2.AuditKey) != string(s.AuditKey) ||
		s2.AccountKeys[0] != s.AccountKeys[0] || string(s2.SessionHashKey) != string(s.SessionHashKey) {
		t.Error("second start read different secrets")
	}
	if s.APIKey == s.AdminKey {
		t.Error("api and admin keys are equal")
	}
}

func TestEnvironmentWinsAndIsNeverWritten(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "admin")
	os.WriteFile(keyFile, []byte("admin-key-from-a-file-0123456789\n"), 0o600)
	s, err := Load(dir, envOf(map[string]string{
		"GG_API_KEY":        "api-key-from-the-environment-123",
		"GG_ADMIN_KEY_FILE": keyFile,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if s.APIKey != "api-key-from-the-environment-123" {
		t.Error("environment API key not used")
	}
	if s.AdminKey != "admin-key-from-a-file-0123456789" {
		t.Error("admin key file not used (or not trimmed)")
	}
	if _, err := os.Stat(filepath.Join(dir, "secrets", APIKey)); !os.IsNotExist(err) {
		t.Error("an environment secret was written to disk")
	}
	if s.Sources[APIKey] != "environment GG_API_KEY" {
		t.Errorf("source %q", s.Sources[APIKey])
	}
}

func TestFailClosed(t *testing.T) {
	cases := []struct {
		name  string
		setup func(dir string) map[string]string
		want  string
	}{
		{"unparseable session keys file", func(dir string) map[string]string {
			os.MkdirAll(filepath.Join(dir, "secrets"), 0o700)
			os.WriteFile(filepath.Join(dir, "secrets", SessionKeys), []byte("garbage"), 0o600)
			return nil
		}, "session_keys"},
		{"unreadable api key file", func(dir string) map[string]string {
			os.MkdirAll(filepath.Join(dir, "secrets", APIKey), 0o700) // a directory cannot be read as a file
			return nil
		}, "api_key"},
		{"bad fernet key in environment", func(dir string) map[string]string {
			return map[string]string{"GG_ACCOUNT_KEY": "not-a-fernet-key"}
		}, "account_key"},
		{"short audit key", func(dir string) map[string]string {
			return map[string]string{"GG_AUDIT_KEY": "short"}
		}, "audit_key"},
		{"missing *_FILE", func(dir string) map[string]string {
			return map[string]string{"GG_API_KEY_FILE": filepath.Join(dir, "nope")}
		}, "GG_API_KEY_FILE"},
		{"both value and file", func(dir string) map[string]string {
			return map[string]string{"GG_API_KEY": "x", "GG_API_KEY_FILE": "y"}
		}, "set only one"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			env := c.setup(dir)
			before, _ := os.ReadFile(filepath.Join(dir, "secrets", SessionKeys))
			_, err := Load(dir, envOf(env))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want mention of %q", err, c.want)
			}
			after, _ := os.ReadFile(filepath.Join(dir, "secrets", SessionKeys))
			if string(before) != string(after) {
				t.Error("a broken secret file was replaced")
			}
			for _, v := range env {
				if len(v) > 3 && strings.Contains(err.Error(), v) && !strings.Contains(v, "/") {
					t.Errorf("error leaks the value %q", v)
				}
			}
		})
	}
}

func TestReplaceFileKeepsMode(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFile(dir, "k", "one"); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dir, "k", "two"); err == nil {
		t.Fatal("WriteFile overwrote an existing secret")
	}
	if err := ReplaceFile(dir, "k", "three"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "k"))
	fi, _ := os.Stat(filepath.Join(dir, "k"))
	if string(b) != "three" || fi.Mode().Perm() != 0o600 {
		t.Errorf("got %q mode %v", b, fi.Mode().Perm())
	}
}
