package cli

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gooni/internal/config"
	"gooni/internal/secrets"
	"gooni/internal/testutil"
	"gooni/store"
)

// installation is a stopped data directory with one worker account holding
// credentials, one live user and one live admin session, and an audit row.
type installation struct {
	dir       string
	sec       *secrets.Set
	accountID int64
	creds     map[string]string
	leaks     []string // every secret value seen, before and after
}

var (
	userToken  = []byte("user-session-token-hash-00000001")
	adminToken = []byte("admin-session-token-hash-0000001")
)

func newInstallation(t *testing.T) *installation {
	t.Helper()
	dir := t.TempDir()
	db, sec := openData(t, dir)
	defer db.Close()
	ctx := context.Background()
	creds := map[string]string{"token_id": "ak-rotation-test", "token_secret": "as-very-secret-value-0123"}
	acc := &store.Account{Name: "w1", Workspace: "w-one", Capacity: 1, Status: "pending"}
	if err := db.CreateAccount(ctx, acc, creds); err != nil {
		t.Fatal(err)
	}
	for kind, tok := range map[string][]byte{"user": userToken, "admin": adminToken} {
		if _, err := db.CreateSession(ctx, kind, tok, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.AppendAudit(ctx, &store.AuditEvent{Actor: "anonymous", Source: "127.0.0.1", Action: "session.issue", Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
	in := &installation{dir: dir, sec: sec, accountID: acc.ID, creds: creds}
	in.leaks = append(sec.Values(), creds["token_secret"])
	return in
}

func envFromMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// openData loads (or generates) dir's secrets and opens its database with
// them, as the server does; the caller closes the store.
func openData(t *testing.T, dir string) (*store.DB, *secrets.Set) {
	t.Helper()
	sec, err := secrets.Load(dir, noSecretInputs)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(dir, testutil.Schema(t), store.Options{AccountKeys: sec.AccountKeys, AuditKey: sec.AuditKey})
	if err != nil {
		t.Fatal(err)
	}
	return db, sec
}

// noSecretInputs is an environment that gives no secret (all come from
// files), with every default (the 24h API key grace).
var noSecretInputs = func() config.Secrets {
	o, err := config.LoadOffline(func(string) string { return "" })
	if err != nil {
		panic(err)
	}
	return o.Secrets
}()

// testAssets are the repository's real schema and catalog, as the binary embeds them.
func testAssets(t testing.TB) Assets {
	return Assets{Schema: testutil.Schema(t), Catalog: testutil.Catalog(t), Version: "test"}
}

// env is the environment of a command run against this installation.
func (in *installation) env(extra map[string]string) func(string) string {
	m := map[string]string{"GG_DATA_DIR": in.dir}
	maps.Copy(m, extra)
	return envFromMap(m)
}

// load reads the secrets now on disk and remembers them as values that must not leak.
func (in *installation) load(t *testing.T) *secrets.Set {
	t.Helper()
	s, err := secrets.LoadExisting(in.dir, noSecretInputs)
	if err != nil {
		t.Fatal(err)
	}
	in.leaks = append(in.leaks, s.Values()...)
	return s
}

func (in *installation) open(t *testing.T, accountKeys []string, auditKey []byte) *store.DB {
	t.Helper()
	db, err := store.Open(in.dir, testutil.Schema(t), store.Options{AccountKeys: accountKeys, AuditKey: auditKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func sessionRevoked(t *testing.T, db *store.DB, kind string, tok []byte) bool {
	t.Helper()
	s, err := db.GetSession(context.Background(), kind, tok)
	if err != nil {
		t.Fatal(err)
	}
	return !s.RevokedAt.IsZero()
}

type cmdResult struct {
	code           int
	stdout, stderr string
}

func (in *installation) secrets(t *testing.T, env map[string]string, now time.Time, args ...string) cmdResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := runSecrets(args, testAssets(t), in.env(env), func() time.Time { return now }, &out, &errb)
	return cmdResult{code, out.String(), errb.String()}
}

func (in *installation) sessions(t *testing.T, args ...string) cmdResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := runSessions(args, testAssets(t), in.env(nil), &out, &errb)
	return cmdResult{code, out.String(), errb.String()}
}

// assertNoLeak fails when a secret or credential value shows in command output.
func (in *installation) assertNoLeak(t *testing.T, r cmdResult) {
	t.Helper()
	for _, v := range in.leaks {
		if len(v) >= 8 && (strings.Contains(r.stdout, v) || strings.Contains(r.stderr, v)) {
			t.Errorf("command output contains a secret value")
		}
	}
}

func TestRotateAPIKeyKeepsTheOldKeyForTheGrace(t *testing.T) {
	in := newInstallation(t)
	r := in.secrets(t, nil, time.Now(), "rotate", "api-key")
	after := in.load(t)
	in.assertNoLeak(t, r)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if after.APIKey == in.sec.APIKey {
		t.Fatal("API key unchanged")
	}
	if !slices.Equal(after.PreviousAPIKeys, []string{in.sec.APIKey}) {
		t.Error("the old API key is not accepted during the grace period")
	}
	if !strings.Contains(r.stdout, filepath.Join(in.dir, "secrets", "api_key")) || !strings.Contains(r.stdout, "valid until") {
		t.Errorf("output does not say what was done: %q", r.stdout)
	}

	// A rotation 25 hours ago: its old key is past the default 24h grace.
	in2 := newInstallation(t)
	if r := in2.secrets(t, nil, time.Now().Add(-25*time.Hour), "rotate", "api-key"); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if late := in2.load(t); len(late.PreviousAPIKeys) != 0 {
		t.Error("the old API key is still accepted after the grace period")
	}
	// A longer grace from the environment keeps it.
	s, err := secrets.LoadExisting(in2.dir, config.Secrets{APIKeyGrace: 48 * time.Hour})
	if err != nil || !slices.Equal(s.PreviousAPIKeys, []string{in2.sec.APIKey}) {
		t.Errorf("GG_API_KEY_GRACE=48h does not keep a 25h-old key: %v", err)
	}
}

func TestRotateAdminKeyRevokesAdminSessionsOnly(t *testing.T) {
	in := newInstallation(t)
	r := in.secrets(t, nil, time.Now(), "rotate", "admin-key")
	after := in.load(t)
	in.assertNoLeak(t, r)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if after.AdminKey == in.sec.AdminKey {
		t.Fatal("admin key unchanged")
	}
	db := in.open(t, after.AccountKeys, after.AuditKey)
	if !sessionRevoked(t, db, "admin", adminToken) {
		t.Error("admin session still live")
	}
	if sessionRevoked(t, db, "user", userToken) {
		t.Error("user session revoked by an admin key rotation")
	}
	if !strings.Contains(r.stdout, "revoked 1 admin session") {
		t.Errorf("stdout %q", r.stdout)
	}
	assertAudited(t, db, "secret.rotate", "admin-key")
}

func TestRotateSessionKeysRevokesEverySession(t *testing.T) {
	in := newInstallation(t)
	r := in.secrets(t, nil, time.Now(), "rotate", "session-keys")
	after := in.load(t)
	in.assertNoLeak(t, r)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if bytes.Equal(after.SessionHashKey, in.sec.SessionHashKey) || bytes.Equal(after.SessionBlockKey, in.sec.SessionBlockKey) {
		t.Fatal("session keys unchanged")
	}
	db := in.open(t, after.AccountKeys, after.AuditKey)
	if !sessionRevoked(t, db, "admin", adminToken) || !sessionRevoked(t, db, "user", userToken) {
		t.Error("a session survived the session key rotation")
	}
	assertAudited(t, db, "secret.rotate", "session-keys")
}

func TestRotateAccountKeyResealsEveryCredential(t *testing.T) {
	in := newInstallation(t)
	r := in.secrets(t, nil, time.Now(), "rotate", "account-key")
	after := in.load(t)
	in.assertNoLeak(t, r)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if len(after.AccountKeys) != 1 || after.AccountKeys[0] == in.sec.AccountKeys[0] {
		t.Fatalf("want exactly one new account key, got %d", len(after.AccountKeys))
	}
	ctx := context.Background()
	db := in.open(t, after.AccountKeys, after.AuditKey)
	got, err := db.AccountCredentials(ctx, in.accountID)
	if err != nil {
		t.Fatalf("credentials do not open with only the new key: %v", err)
	}
	if !maps.Equal(got, in.creds) {
		t.Error("credentials changed by re-sealing")
	}
	oldOnly := in.open(t, in.sec.AccountKeys, after.AuditKey)
	if _, err := oldOnly.AccountCredentials(ctx, in.accountID); err == nil {
		t.Error("credentials still open with the old key alone: not re-sealed")
	}
	if !strings.Contains(r.stdout, "re-sealed the credentials of 1 account") {
		t.Errorf("stdout %q", r.stdout)
	}
	assertAudited(t, db, "secret.rotate", "account-key")
}

func TestRotateAuditKey(t *testing.T) {
	in := newInstallation(t)
	keyFile := filepath.Join(in.dir, "secrets", "audit_key")
	before, _ := os.ReadFile(keyFile)
	r := in.secrets(t, nil, time.Now(), "rotate", "audit-key")
	after := in.load(t)
	in.assertNoLeak(t, r)

	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if bytes.Equal(after.AuditKey, in.sec.AuditKey) {
		t.Fatal("audit key unchanged")
	}
	if len(after.RetiredAuditKeys) != 1 || !bytes.Equal(after.RetiredAuditKeys[0], in.sec.AuditKey) {
		t.Error("old audit key not retired")
	}
	// The server opens the store with the new key and the retired one: the whole chain verifies.
	probe, err := store.Open(in.dir, testutil.Schema(t), store.Options{AccountKeys: after.AccountKeys, AuditKey: after.AuditKey, RetiredAuditKeys: after.RetiredAuditKeys})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if v, err := probe.VerifyAudit(context.Background()); err != nil || !v.OK || v.Checked < 2 {
		t.Errorf("chain does not verify after rotation: %+v %v", v, err)
	}
	if now, _ := os.ReadFile(keyFile); bytes.Equal(now, before) {
		t.Error("audit key file unchanged")
	}
}

func TestRotateRefusesWhileTheDataDirIsLocked(t *testing.T) {
	in := newInstallation(t)
	unlock, err := config.DataDir(in.dir).Lock()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(in.dir, "secrets", "api_key"))
	r := in.secrets(t, nil, time.Now(), "rotate", "api-key")
	if r.code != 1 || !strings.Contains(r.stderr, "running") {
		t.Errorf("want a refusal, got exit %d: %q", r.code, r.stderr)
	}
	// Revoking sessions is the compromise path: it works while the server runs.
	if s := in.sessions(t, "revoke", "--all"); s.code != 0 {
		t.Errorf("sessions revoke while locked: exit %d: %q", s.code, s.stderr)
	}
	after, _ := os.ReadFile(filepath.Join(in.dir, "secrets", "api_key"))
	if !bytes.Equal(before, after) {
		t.Error("api key changed while the data dir was locked")
	}
	unlock()
	if r := in.secrets(t, nil, time.Now(), "rotate", "api-key"); r.code != 0 {
		t.Errorf("after unlock: exit %d: %s", r.code, r.stderr)
	}
}

func TestLockDataDirIsExclusive(t *testing.T) {
	dir := t.TempDir()
	unlock, err := config.DataDir(dir).Lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.DataDir(dir).Lock(); err == nil {
		t.Fatal("a second lock succeeded")
	}
	unlock()
	again, err := config.DataDir(dir).Lock()
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
	if fi, err := os.Stat(filepath.Join(dir, config.LockFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v %v", fi, err)
	}
}

func TestRotateRefusesASecretFromTheEnvironment(t *testing.T) {
	in := newInstallation(t)
	envKey := "api-key-given-in-the-environment-0123"
	in.leaks = append(in.leaks, envKey)
	before, _ := os.ReadFile(filepath.Join(in.dir, "secrets", "api_key"))
	r := in.secrets(t, map[string]string{"GG_API_KEY": envKey}, time.Now(), "rotate", "api-key")
	in.assertNoLeak(t, r)
	if r.code != 1 || !strings.Contains(r.stderr, "GG_API_KEY") {
		t.Errorf("want a refusal naming GG_API_KEY, got exit %d: %q", r.code, r.stderr)
	}
	after, _ := os.ReadFile(filepath.Join(in.dir, "secrets", "api_key"))
	if !bytes.Equal(before, after) {
		t.Error("api key file changed")
	}
}

func TestSecretsCommandUsage(t *testing.T) {
	in := newInstallation(t)
	cases := []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"rotate"}, 2},
		{[]string{"rotate", "api_key"}, 2},
		{[]string{"show", "api-key"}, 2},
		{[]string{"--help"}, 0},
	}
	for _, c := range cases {
		if r := in.secrets(t, nil, time.Now(), c.args...); r.code != c.code {
			t.Errorf("%v: exit %d, want %d", c.args, r.code, c.code)
		}
	}
	// A wrong GG_DATA_DIR must not mint a new installation.
	empty := t.TempDir()
	var out, errb bytes.Buffer
	code := runSecrets([]string{"rotate", "api-key"}, testAssets(t), envFromMap(map[string]string{"GG_DATA_DIR": empty}), time.Now, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "no database") {
		t.Errorf("empty data dir: exit %d: %q", code, errb.String())
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Error("rotation in an empty data dir wrote files")
	}
}

func TestSessionsRevoke(t *testing.T) {
	cases := []struct {
		args                []string
		code                int
		userGone, adminGone bool
	}{
		{[]string{"revoke", "--all"}, 0, true, true},
		{[]string{"revoke", "--all", "--kind", "user"}, 0, true, false},
		{[]string{"revoke", "--all", "--kind=admin"}, 0, false, true},
		{[]string{"revoke"}, 2, false, false},
		{[]string{"revoke", "--all", "--kind", "root"}, 2, false, false},
		{[]string{"list"}, 2, false, false},
		{nil, 2, false, false},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			in := newInstallation(t)
			r := in.sessions(t, c.args...)
			in.assertNoLeak(t, r)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d: %s", r.code, c.code, r.stderr)
			}
			db := in.open(t, in.sec.AccountKeys, in.sec.AuditKey)
			if got := sessionRevoked(t, db, "user", userToken); got != c.userGone {
				t.Errorf("user session revoked=%v, want %v", got, c.userGone)
			}
			if got := sessionRevoked(t, db, "admin", adminToken); got != c.adminGone {
				t.Errorf("admin session revoked=%v, want %v", got, c.adminGone)
			}
			if c.code == 0 {
				assertAudited(t, db, "session.revoke", "")
				if !strings.HasPrefix(r.stdout, "revoked ") {
					t.Errorf("stdout %q", r.stdout)
				}
			}
		})
	}
}

func TestRunSecretsReadsGGDataDir(t *testing.T) {
	in := newInstallation(t)
	t.Setenv("GG_DATA_DIR", in.dir)
	for _, v := range []string{"GG_API_KEY", "GG_API_KEY_FILE", "GG_API_KEY_GRACE"} {
		t.Setenv(v, "")
	}
	var out, errb bytes.Buffer
	if code := Main([]string{"secrets", "rotate", "api-key"}, testAssets(t), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if after := in.load(t); after.APIKey == in.sec.APIKey {
		t.Error("runSecrets did not rotate the key in GG_DATA_DIR")
	}
	in.assertNoLeak(t, cmdResult{0, out.String(), errb.String()})
}

// assertAudited checks that the command left a verifiable audit row.
func assertAudited(t *testing.T, db *store.DB, action, target string) {
	t.Helper()
	ctx := context.Background()
	items, _, err := db.ListAudit(ctx, store.AuditFilter{Action: action, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range items {
		if e.Actor == cliActor && (target == "" || e.Target == target) {
			found = true
		}
	}
	if !found {
		t.Errorf("no %s audit row for %q", action, target)
	}
	if v, err := db.VerifyAudit(ctx); err != nil || !v.OK {
		t.Errorf("audit chain broken: %+v %v", v, err)
	}
}

// TestBackupRefusesURIsAndIsPrivate (issue 11 point 14): `gooni backup
// file:plain.db` wrote the real backup to plain.db with the umask's mode
// (0644) while creating an empty "file:plain.db": SQLite read the name as a
// URI. URI forms are refused, and every backup file is 0600 whatever the
// umask. Inputs tried: file:plain.db, FILE:x.db, file:///abs.db?mode=rwc, a
// plain path under umask 000.
func TestBackupRefusesURIsAndIsPrivate(t *testing.T) {
	in := newInstallation(t)
	work := t.TempDir()
	t.Chdir(work)
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	for _, dest := range []string{"file:plain.db", "FILE:x.db", "file://" + filepath.Join(work, "abs.db") + "?mode=rwc"} {
		var out, errb bytes.Buffer
		if code := runBackup([]string{dest}, testAssets(t), in.env(nil), &out, &errb); code == 0 {
			t.Errorf("backup to %q succeeded, want a refusal", dest)
		}
		for _, f := range []string{"plain.db", "x.db", "abs.db", dest} {
			if _, err := os.Stat(filepath.Join(work, f)); err == nil {
				t.Errorf("backup to %q left %s behind", dest, f)
			}
		}
	}
	dest := filepath.Join(work, "good.db")
	var out, errb bytes.Buffer
	if code := runBackup([]string{dest}, testAssets(t), in.env(nil), &out, &errb); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, errb.String())
	}
	st, err := os.Stat(dest)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
}
