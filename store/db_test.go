package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gooni/internal/testutil"
)

func TestOpenFileModes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(dir string)
	}{
		{"new dir", func(string) {}},
		{"existing loose dir and file", func(dir string) {
			os.MkdirAll(dir, 0o755)
			os.Chmod(dir, 0o755)
			os.WriteFile(filepath.Join(dir, FileName), nil, 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			tc.prepare(dir)
			db, err := Open(dir, testutil.Schema(t), testOptions(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.CreateTask(bg, &Task{Type: "image", Model: "flux", Mode: "t2i", Prompt: "x"}, CreateOptions{QueueMax: 0}); err != nil {
				t.Fatal(err)
			}
			if db.Path() != filepath.Join(dir, FileName) {
				t.Fatalf("Path = %q", db.Path())
			}
			st, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o700 {
				t.Errorf("data dir mode %v, want 0700", st.Mode().Perm())
			}
			for _, name := range []string{FileName, FileName + "-wal", FileName + "-shm"} {
				st, err := os.Stat(filepath.Join(dir, name))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if st.Mode().Perm() != 0o600 {
					t.Errorf("%s mode %v, want 0600", name, st.Mode().Perm())
				}
			}
		})
	}
}

func TestOpenPragmas(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	for _, tc := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"synchronous", "2"},
		{"busy_timeout", "5000"},
	} {
		var got string
		if err := db.writer.QueryRow("PRAGMA " + tc.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("writer %s = %s, want %s", tc.pragma, got, tc.want)
		}
	}
	var qo int
	if err := db.reader.QueryRow("PRAGMA query_only").Scan(&qo); err != nil || qo != 1 {
		t.Errorf("reader query_only = %d (%v), want 1", qo, err)
	}
	if _, err := db.reader.Exec("DELETE FROM tasks"); err == nil {
		t.Error("read pool accepted a write")
	}
}

func TestMigrations(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	base := testutil.Schema(t)
	db, err := Open(dir, base, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	task := &Task{Type: "image", Model: "flux", Mode: "t2i", Prompt: "kept"}
	if err := db.CreateTask(bg, task, CreateOptions{QueueMax: 0}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	steps, _ := parseMigrations(base)
	next := len(steps) + 1
	withStep := base + "\n-- migrate: " + strconv.Itoa(next) + "\nCREATE TABLE extra (id INTEGER PRIMARY KEY);\n"
	db, err = Open(dir, withStep, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetTask(bg, task.ID); err != nil {
		t.Fatalf("task lost over migration: %v", err)
	}
	var v int
	db.writer.QueryRow("PRAGMA user_version").Scan(&v)
	if v != next {
		t.Fatalf("user_version = %d, want %d", v, next)
	}
	if _, err := db.writer.Exec("INSERT INTO extra (id) VALUES (1)"); err != nil {
		t.Fatalf("new step not applied: %v", err)
	}
	db.Close()

	before, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, base, testOptions(t))
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("older binary: err = %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{"version " + strconv.Itoa(next) + " is newer than this binary (" + strconv.Itoa(next-1) + ")", "restore a backup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	after, _ := os.ReadFile(filepath.Join(dir, FileName))
	if !bytes.Equal(before, after) {
		t.Error("refused open changed the database file")
	}

	// A failing step leaves the file at the previous version.
	broken := withStep + "\n-- migrate: " + strconv.Itoa(next+1) + "\nCREATE TABLE ok2 (id INTEGER);\nTHIS IS NOT SQL;\n"
	if _, err := Open(dir, broken, testOptions(t)); err == nil {
		t.Fatal("broken step applied")
	}
	db, err = Open(dir, withStep, testOptions(t))
	if err != nil {
		t.Fatalf("reopen after failed migration: %v", err)
	}
	defer db.Close()
	db.writer.QueryRow("PRAGMA user_version").Scan(&v)
	if v != next {
		t.Fatalf("user_version after failed step = %d, want %d", v, next)
	}
	if _, err := db.writer.Exec("INSERT INTO ok2 (id) VALUES (1)"); err == nil {
		t.Fatal("half of a failed step was kept")
	}
}

func TestParseMigrations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		schema string
		steps  int
		ok     bool
	}{
		{"two steps", "-- comment\n-- migrate: 1\nCREATE TABLE a(x);\n--  migrate: 2 \nCREATE TABLE b(x);\n", 2, true},
		{"no marker", "CREATE TABLE a(x);", 0, false},
		{"empty", "", 0, false},
		{"sql before marker", "CREATE TABLE a(x);\n-- migrate: 1\n", 0, false},
		{"gap", "-- migrate: 1\nSELECT 1;\n-- migrate: 3\nSELECT 1;\n", 0, false},
		{"starts at 2", "-- migrate: 2\nSELECT 1;\n", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := parseMigrations(tc.schema)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if len(steps) != tc.steps {
				t.Fatalf("steps = %d, want %d", len(steps), tc.steps)
			}
		})
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	opts := testOptions(t)
	db, err := Open(dir, testutil.Schema(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	task := &Task{Type: "video", Model: "anisora", Mode: "i2v", Prompt: "p"}
	task.InputPath, task.InputType, task.InputBytes = "media/i.input.png", "image/png", 3
	if err := db.CreateTask(bg, task, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	acc := &Account{Name: "a", Workspace: "ws-a"}
	if err := db.CreateAccount(bg, acc, map[string]string{"token_id": "t"}); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendAudit(bg, &AuditEvent{Actor: "admin:x", Action: "account.create", Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := db.CreateTask(bg, &Task{Prompt: "late"}, CreateOptions{QueueMax: 0}); !errors.Is(err, ErrClosed) {
		t.Fatalf("CreateTask after Close: %v, want ErrClosed", err)
	}

	db, err = Open(dir, testutil.Schema(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := db.GetTask(bg, task.ID); err != nil || got.InputPath != "media/i.input.png" || got.InputBytes != 3 {
		t.Fatalf("input image after reopen: %+v %v", got, err)
	}
	if creds, err := db.AccountCredentials(bg, acc.ID); err != nil || creds["token_id"] != "t" {
		t.Fatalf("credentials after reopen: %v", err)
	}
	if v, err := db.VerifyAudit(bg); err != nil || !v.OK || v.Checked != 1 {
		t.Fatalf("audit after reopen: %+v %v", v, err)
	}
}

func TestPingAndBackup(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	if err := db.Ping(bg); err != nil {
		t.Fatal(err)
	}
	task := &Task{Type: "image", Model: "flux", Mode: "t2i", Prompt: "backed up"}
	if err := db.CreateTask(bg, task, CreateOptions{QueueMax: 0}); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(bg, dest); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v, want 0600", st.Mode().Perm())
	}
	if err := db.Backup(bg, dest); err == nil {
		t.Error("backup overwrote an existing file")
	}

	// The backup is a complete database: open it as a data dir of its own.
	restored := filepath.Join(t.TempDir(), "restored")
	os.MkdirAll(restored, 0o700)
	b, _ := os.ReadFile(dest)
	os.WriteFile(filepath.Join(restored, FileName), b, 0o600)
	db2, err := Open(restored, testutil.Schema(t), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	got, err := db2.GetTask(bg, task.ID)
	if err != nil || got.Prompt != "backed up" {
		t.Fatalf("restored task: %+v %v", got, err)
	}
}
