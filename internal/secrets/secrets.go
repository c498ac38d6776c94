// Package secrets loads the appliance's secrets from the environment, from
// *_FILE paths, or from files under DATA_DIR/secrets/, generating those files
// on first start. It fails closed: a secret file that exists but cannot be
// read or parsed stops the server; it is never silently replaced.
package secrets

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fernet/fernet-go"

	"gooni/internal/config"
)

// Names of the secrets, also their file names under secrets/.
const (
	APIKey      = "api_key"
	AdminKey    = "admin_key"
	SessionKeys = "session_keys"
	AccountKey  = "account_key"
	AuditKey    = "audit_key"
)

// Set is every secret the server needs, with where each came from.
type Set struct {
	APIKey          string
	AdminKey        string
	SessionHashKey  []byte
	SessionBlockKey []byte
	AccountKeys     []string // Fernet keys, newest first
	AuditKey        []byte
	// PreviousAPIKeys are API keys rotated out less than the grace period
	// (GG_API_KEY_GRACE, default 24h) ago; the server accepts them too.
	PreviousAPIKeys []string
	// RetiredAuditKeys are audit keys rotated out, oldest first, for verifying
	// the chain segments sealed under them.
	RetiredAuditKeys [][]byte
	// Generated names the secrets written for the first time on this start.
	Generated map[string]bool
	// Sources says where each secret came from: an environment variable name or a file path.
	Sources map[string]string
}

// Values lists every secret value, for redaction and leak scans.
func (s *Set) Values() []string {
	v := []string{s.APIKey, s.AdminKey, string(s.SessionHashKey), string(s.SessionBlockKey),
		base64.StdEncoding.EncodeToString(s.SessionHashKey), base64.StdEncoding.EncodeToString(s.SessionBlockKey),
		string(s.AuditKey)}
	v = append(v, s.AccountKeys...)
	v = append(v, s.PreviousAPIKeys...)
	for _, k := range s.RetiredAuditKeys {
		v = append(v, string(k))
	}
	out := v[:0]
	for _, x := range v {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

type spec struct {
	name     string
	source   func(config.Secrets) config.SecretSource // where the environment may give it
	generate func() (string, error)
	parse    func(s *Set, raw string) error
}

var specs = []spec{
	{APIKey, func(c config.Secrets) config.SecretSource { return c.APIKey }, randomToken, func(s *Set, raw string) error {
		k, err := parseToken(raw)
		s.APIKey = k
		return err
	}},
	{AdminKey, func(c config.Secrets) config.SecretSource { return c.AdminKey }, randomToken, func(s *Set, raw string) error {
		k, err := parseToken(raw)
		s.AdminKey = k
		return err
	}},
	{SessionKeys, func(c config.Secrets) config.SecretSource { return c.SessionKeys }, generateSessionKeys, parseSessionKeys},
	{AccountKey, func(c config.Secrets) config.SecretSource { return c.AccountKey }, generateFernet, parseFernet},
	{AuditKey, func(c config.Secrets) config.SecretSource { return c.AuditKey }, randomToken, func(s *Set, raw string) error {
		k, err := parseKeyMaterial(raw)
		s.AuditKey = []byte(k)
		return err
	}},
}

// Dir is where generated secrets live.
func Dir(dataDir string) string { return filepath.Join(dataDir, "secrets") }

// Load reads every secret from where src says, generating what is not given.
func Load(dataDir string, src config.Secrets) (*Set, error) {
	return load(dataDir, src, true)
}

// LoadExisting reads every secret like Load but never generates one: a
// missing secret file is an error. Offline commands use it so that a wrong
// GG_DATA_DIR cannot mint a fresh set of secrets.
func LoadExisting(dataDir string, src config.Secrets) (*Set, error) {
	return load(dataDir, src, false)
}

func load(dataDir string, src config.Secrets, generate bool) (*Set, error) {
	s := &Set{Generated: map[string]bool{}, Sources: map[string]string{}}
	dir := Dir(dataDir)
	fresh := map[string]string{}
	for _, sp := range specs {
		raw, source, generated, err := read(sp, dir, sp.source(src))
		if err != nil {
			return nil, err
		}
		if generated && !generate {
			return nil, fmt.Errorf("secret file %s does not exist (is GG_DATA_DIR the server's data directory?)", source)
		}
		if err := sp.parse(s, raw); err != nil {
			return nil, fmt.Errorf("secret %s from %s: %w", sp.name, source, err)
		}
		s.Sources[sp.name] = source
		if generated {
			s.Generated[sp.name] = true
			fresh[sp.name] = raw
		}
	}
	grace := src.APIKeyGrace
	prev, err := readStamped(dir, APIKeyPrevious)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, p := range prev {
		if now.Sub(p.at) < grace {
			s.PreviousAPIKeys = append(s.PreviousAPIKeys, p.value)
		}
	}
	retired, err := readStamped(dir, AuditKeyRetired)
	if err != nil {
		return nil, err
	}
	for _, r := range retired {
		s.RetiredAuditKeys = append(s.RetiredAuditKeys, []byte(r.value))
	}
	// Generated secrets are written only once every secret has loaded, so a
	// start that fails leaves the secrets directory as it found it.
	for _, sp := range specs {
		if v, ok := fresh[sp.name]; ok {
			if err := WriteFile(dir, sp.name, v); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

func read(sp spec, dir string, in config.SecretSource) (raw, source string, generated bool, err error) {
	switch {
	case in.Value != "" && in.File != "":
		return "", "", false, fmt.Errorf("both %s and %s are set; set only one", in.ValueVar, in.FileVar)
	case in.Value != "":
		return in.Value, "environment " + in.ValueVar, false, nil
	case in.File != "":
		b, err := os.ReadFile(in.File)
		if err != nil {
			return "", "", false, fmt.Errorf("cannot read %s (%s): %w", in.FileVar, in.File, pathErr(err))
		}
		return string(b), in.File, false, nil
	}
	path := filepath.Join(dir, sp.name)
	b, err := os.ReadFile(path)
	if err == nil {
		return string(b), path, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", "", false, fmt.Errorf("cannot read secret file %s: %w; refusing to start rather than replace it", path, pathErr(err))
	}
	v, err := sp.generate()
	if err != nil {
		return "", "", false, err
	}
	return v, path, true, nil
}

// WriteFile creates dir (0700) and writes name with mode 0600, refusing to
// overwrite an existing file.
func WriteFile(dir, name, value string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create secrets dir %s: %w", dir, pathErr(err))
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("secure secrets dir %s: %w", dir, pathErr(err))
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create secret file %s: %w", path, pathErr(err))
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return fmt.Errorf("write secret file %s: %w", path, pathErr(err))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync secret file %s: %w", path, pathErr(err))
	}
	return f.Close()
}

// ReplaceFile atomically replaces dir/name with value (mode 0600), for rotation.
func ReplaceFile(dir, name, value string) error {
	tmp := name + ".new"
	_ = os.Remove(filepath.Join(dir, tmp))
	if err := WriteFile(dir, tmp, value); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, tmp), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("replace secret file %s: %w", name, pathErr(err))
	}
	return nil
}

// pathErr keeps only the operation's class so no file content can leak.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// RandomToken returns 32 random bytes, base64url without padding (43 chars).
func RandomToken() (string, error) { return randomToken() }

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func parseToken(raw string) (string, error) {
	k := strings.TrimSpace(raw)
	if len(k) < 16 {
		return "", errors.New("must be at least 16 characters")
	}
	if strings.ContainsAny(k, " \t\r\n") {
		return "", errors.New("must be one line without spaces")
	}
	return k, nil
}

func parseKeyMaterial(raw string) (string, error) {
	k := strings.TrimSpace(raw)
	if len(k) < 32 {
		return "", errors.New("must be at least 32 characters")
	}
	return k, nil
}

// GenerateSessionKeys returns a fresh session_keys file body.
func GenerateSessionKeys() (string, error) { return generateSessionKeys() }

func generateSessionKeys() (string, error) {
	h := make([]byte, 64)
	b := make([]byte, 32)
	if _, err := rand.Read(h); err != nil {
		return "", err
	}
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(h) + "\n" + base64.StdEncoding.EncodeToString(b) + "\n", nil
}

// The session_keys file holds two base64 lines: the MAC key (32 or 64 bytes)
// and the AES key (16, 24 or 32 bytes) of securecookie.
func parseSessionKeys(s *Set, raw string) error {
	lines := strings.Fields(raw)
	if len(lines) != 2 {
		return errors.New("must hold two base64 lines: hash key, block key")
	}
	h, err := base64.StdEncoding.DecodeString(lines[0])
	if err != nil || (len(h) != 32 && len(h) != 64) {
		return errors.New("hash key must be base64 of 32 or 64 bytes")
	}
	b, err := base64.StdEncoding.DecodeString(lines[1])
	if err != nil || (len(b) != 16 && len(b) != 24 && len(b) != 32) {
		return errors.New("block key must be base64 of 16, 24 or 32 bytes")
	}
	s.SessionHashKey, s.SessionBlockKey = h, b
	return nil
}

// GenerateFernet returns a new Fernet key in its base64 form.
func GenerateFernet() (string, error) { return generateFernet() }

func generateFernet() (string, error) {
	var k fernet.Key
	if err := k.Generate(); err != nil {
		return "", err
	}
	return k.Encode(), nil
}

func parseFernet(s *Set, raw string) error {
	parts := strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ' ' })
	if len(parts) == 0 {
		return errors.New("no Fernet key given")
	}
	if _, err := fernet.DecodeKeys(parts...); err != nil {
		return errors.New("not a list of Fernet keys (base64url of 32 bytes each)")
	}
	s.AccountKeys = parts
	return nil
}
