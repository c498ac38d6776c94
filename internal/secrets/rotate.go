package secrets

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gooni/internal/config"
)

// Side files of rotation under secrets/, each line "<unix seconds> <key>".
const (
	APIKeyPrevious  = "api_key.previous"
	AuditKeyRetired = "audit_key.retired"
)

// RotateNames maps the command-line names of rotatable secrets to their file names.
var RotateNames = map[string]string{
	"api-key":      APIKey,
	"admin-key":    AdminKey,
	"session-keys": SessionKeys,
	"account-key":  AccountKey,
	"audit-key":    AuditKey,
}

// Rotation describes one completed secret rotation. Old and New hold secret
// values for the caller's follow-up work (re-sealing, revocation); never print them.
type Rotation struct {
	Name string // command-line name, e.g. "api-key"
	Path string // the replaced secret file
	// SidePath is api_key.previous or audit_key.retired when the old value was kept there.
	SidePath string
	Old, New string // raw file bodies before and after (account-key: New is "new,old...")
	At       time.Time
	// GraceUntil is when the old API key stops working (api-key only).
	GraceUntil time.Time

	dir              string
	file, side       string
	sideBefore       []byte
	sideBeforeExists bool
}

// Rotate replaces the secret name (a RotateNames key) under dataDir/secrets
// with a new random value, atomically and with mode 0600. It refuses a
// secret that comes from the environment or a *_FILE: whoever manages that
// variable rotates it.
func Rotate(dataDir, name string, now time.Time, src config.Secrets) (*Rotation, error) {
	file, ok := RotateNames[name]
	if !ok {
		return nil, fmt.Errorf("unknown secret %q (want api-key, admin-key, session-keys, account-key or audit-key)", name)
	}
	var sp spec
	for _, x := range specs {
		if x.name == file {
			sp = x
		}
	}
	in := sp.source(src)
	for _, v := range []struct{ name, value string }{{in.ValueVar, in.Value}, {in.FileVar, in.File}} {
		if v.value != "" {
			return nil, fmt.Errorf("%s is provided by %s; rotate it where that variable is managed, then restart", name, v.name)
		}
	}
	dir := Dir(dataDir)
	path := filepath.Join(dir, file)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read secret file %s: %w", path, pathErr(err))
	}
	old := string(b)
	if err := sp.parse(&Set{}, old); err != nil {
		return nil, fmt.Errorf("secret %s from %s: %w; refusing to rotate a secret that does not load", file, path, err)
	}
	r := &Rotation{Name: name, Path: path, Old: old, At: now, dir: dir, file: file}

	switch file {
	case APIKey:
		grace := src.APIKeyGrace
		prev, perr := readStamped(dir, APIKeyPrevious)
		if perr != nil {
			return nil, perr
		}
		// Keys already past their grace are dropped rather than kept on disk.
		var lines []string
		for _, p := range prev {
			if now.Sub(p.at) < grace {
				lines = append(lines, stampedLine(p.at, p.value))
			}
		}
		lines = append(lines, stampedLine(now, strings.TrimSpace(old)))
		if err := r.replaceSide(APIKeyPrevious, strings.Join(lines, "")); err != nil {
			return nil, err
		}
		r.GraceUntil = now.Add(grace)
		r.New, err = randomToken()
	case AdminKey:
		r.New, err = randomToken()
	case SessionKeys:
		r.New, err = generateSessionKeys()
	case AccountKey:
		var k string
		if k, err = generateFernet(); err == nil {
			s := &Set{}
			_ = parseFernet(s, old) // parsed above
			r.New = strings.Join(append([]string{k}, s.AccountKeys...), ",") + "\n"
		}
	case AuditKey:
		k := strings.TrimSpace(old)
		if strings.ContainsAny(k, "\r\n") {
			return nil, fmt.Errorf("secret file %s holds several lines; fix it by hand before rotating", path)
		}
		retired, rerr := readStamped(dir, AuditKeyRetired)
		if rerr != nil {
			return nil, rerr
		}
		var lines []string
		for _, p := range retired {
			lines = append(lines, stampedLine(p.at, p.value))
		}
		lines = append(lines, stampedLine(now, k))
		if err := r.replaceSide(AuditKeyRetired, strings.Join(lines, "")); err != nil {
			return nil, err
		}
		r.New, err = randomToken()
	}
	if err != nil {
		r.restoreSide()
		return nil, err
	}
	if err := ReplaceFile(dir, file, r.New); err != nil {
		r.restoreSide()
		return nil, err
	}
	return r, nil
}

// Revert puts the old secret (and the side file as it was) back, for a
// caller whose follow-up step failed before anything depended on the new value.
func (r *Rotation) Revert() error {
	if err := ReplaceFile(r.dir, r.file, r.Old); err != nil {
		return err
	}
	return r.restoreSide()
}

func (r *Rotation) replaceSide(name, body string) error {
	path := filepath.Join(r.dir, name)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		r.sideBefore, r.sideBeforeExists = b, true
	case errors.Is(err, fs.ErrNotExist):
	default:
		return fmt.Errorf("cannot read %s: %w", path, pathErr(err))
	}
	if err := ReplaceFile(r.dir, name, body); err != nil {
		return err
	}
	r.side, r.SidePath = name, path
	return nil
}

func (r *Rotation) restoreSide() error {
	if r.side == "" {
		return nil
	}
	if r.sideBeforeExists {
		return ReplaceFile(r.dir, r.side, string(r.sideBefore))
	}
	if err := os.Remove(filepath.Join(r.dir, r.side)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", r.side, pathErr(err))
	}
	return nil
}

// DropOldAccountKeys rewrites secrets/account_key with only its newest key,
// once every credential has been re-sealed under it.
func DropOldAccountKeys(dataDir string) error {
	dir := Dir(dataDir)
	path := filepath.Join(dir, AccountKey)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read secret file %s: %w", path, pathErr(err))
	}
	s := &Set{}
	if err := parseFernet(s, string(b)); err != nil {
		return fmt.Errorf("secret %s from %s: %w", AccountKey, path, err)
	}
	if len(s.AccountKeys) == 1 {
		return nil
	}
	return ReplaceFile(dir, AccountKey, s.AccountKeys[0]+"\n")
}

type stamped struct {
	at    time.Time
	value string
}

func stampedLine(at time.Time, value string) string {
	return strconv.FormatInt(at.Unix(), 10) + " " + value + "\n"
}

// readStamped parses a side file of "<unix seconds> <key>" lines; a missing
// file is empty, a malformed one is an error that names the line, not its content.
func readStamped(dir, name string) ([]stamped, error) {
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read secret file %s: %w", path, pathErr(err))
	}
	var out []stamped
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		ts, key, ok := strings.Cut(line, " ")
		sec, err := strconv.ParseInt(ts, 10, 64)
		key = strings.TrimSpace(key)
		if !ok || err != nil || key == "" {
			return nil, fmt.Errorf("secret file %s line %d: want \"<unix seconds> <key>\"", path, i+1)
		}
		out = append(out, stamped{time.Unix(sec, 0), key})
	}
	return out, nil
}
