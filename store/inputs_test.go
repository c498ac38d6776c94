package store

import (
	"bytes"
	"database/sql"
	"errors"
	"gooni/internal/testutil"
	"os"
	"path/filepath"
	"testing"
)

// TestInputBlobsMoveToFiles (issue 11 point 3): a database from before
// schema step 3 kept i2v images in SQLite until the task ended (~10 GiB at
// GG_QUEUE_MAX=1000, never shrinking). Opening it moves every blob into
// media/<id>.input.<ext> and empties task_inputs; the task rows name the
// files. Inputs tried: a PNG and a JPEG blob in a database at step 2.
func TestInputBlobsMoveToFiles(t *testing.T) {
	dir := t.TempDir()
	steps, err := parseMigrations(testutil.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	// A database as the previous release left it: steps 1 and 2 only, made
	// with plain SQL (this binary's Open would go on to step 3).
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{steps[0], steps[1], "PRAGMA user_version = 2"} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	png := []byte("\x89PNG\r\n\x1a\nnot really")
	jpg := []byte("\xff\xd8\xff\xe0jpeg bytes")
	for id, img := range map[string][]byte{"t-png": png, "t-jpg": jpg} {
		if _, err := raw.Exec(`INSERT INTO tasks (id, type, model, mode, prompt, status, created_at, updated_at, has_image)
			VALUES (?, 'video', 'anisora', 'i2v', 'p', 'pending', 1, 1, 1)`, id); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Exec(`INSERT INTO task_inputs (task_id, image) VALUES (?, ?)`, id, img); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()

	db, err := Open(dir, testutil.Schema(t), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for id, want := range map[string]struct {
		img  []byte
		path string
	}{"t-png": {png, "media/t-png.input.png"}, "t-jpg": {jpg, "media/t-jpg.input.jpg"}} {
		got, err := db.GetTask(bg, id)
		if err != nil || got.InputPath != want.path || got.InputBytes != int64(len(want.img)) {
			t.Fatalf("%s: %+v %v", id, got, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, want.path))
		if err != nil || !bytes.Equal(b, want.img) {
			t.Fatalf("%s: file %q %v", id, b, err)
		}
		if st, _ := os.Stat(filepath.Join(dir, want.path)); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: file mode %v, want 0600", id, st.Mode().Perm())
		}
	}
	var n int
	if err := db.reader.QueryRow(`SELECT count(*) FROM task_inputs`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("task_inputs still holds %d rows (%v)", n, err)
	}
}

// TestInputQuota (issue 11 point 3): queued input images are bounded by
// GG_INPUT_QUOTA; a batch that would pass it is refused whole (ErrInputQuota),
// and images of finished tasks no longer count. Inputs tried: 3 tasks of
// 400 bytes against a quota of 1000, then a 2-task batch, then one after
// another task failed.
func TestInputQuota(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	quota := CreateOptions{InputQuota: 1000}
	img := func(n int) *Task {
		task := newTask("i")
		task.InputPath, task.InputType, task.InputBytes = "media/x.input.png", "image/png", int64(n)
		return task
	}
	first, second := img(400), img(400)
	for _, task := range []*Task{first, second} {
		if err := db.CreateTask(bg, task, quota); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.CreateTask(bg, img(400), quota); !errors.Is(err, ErrInputQuota) {
		t.Fatalf("third image: %v, want ErrInputQuota", err)
	}
	if err := db.CreateTask(bg, newTask("no image"), quota); err != nil {
		t.Fatalf("a task without an image is not held to the quota: %v", err)
	}
	if err := db.CreateTasks(bg, []*Task{img(100), img(150)}, quota); !errors.Is(err, ErrInputQuota) {
		t.Fatalf("a batch over the quota: %v, want ErrInputQuota for all of it", err)
	}
	if err := db.FailTask(bg, first.ID, "canceled", "x"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateTasks(bg, []*Task{img(100), img(150)}, quota); err != nil {
		t.Fatalf("room freed by a finished task: %v", err)
	}
	// Up to the quota exactly: 400 + 100 + 150 queued, 350 more is 1000.
	if err := db.CreateTask(bg, img(350), quota); err != nil {
		t.Fatalf("an image that fills the quota exactly: %v", err)
	}
	if err := db.CreateTask(bg, img(1), quota); !errors.Is(err, ErrInputQuota) {
		t.Fatalf("one byte past the quota: %v, want ErrInputQuota", err)
	}
	// GG_INPUT_QUOTA lowered below what is already queued (a restart with a
	// smaller setting): a new image waits for room, a task without one does not.
	lowered := CreateOptions{InputQuota: 100}
	if err := db.CreateTask(bg, img(1), lowered); !errors.Is(err, ErrInputQuota) {
		t.Fatalf("an image under a quota already passed: %v, want ErrInputQuota", err)
	}
	if err := db.CreateTask(bg, newTask("still no image"), lowered); err != nil {
		t.Fatalf("a task without an image refused for the image quota: %v", err)
	}
}
