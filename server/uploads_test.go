package server

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gooni/internal/testutil"
)

// bigPNG is a real PNG of noise, about n bytes (incompressible pixels).
func bigPNG(t testing.TB, side int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	x := uint32(2463534242)
	for i := range img.Pix {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		img.Pix[i] = byte(x)
	}
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func i2vBody(img []byte) string {
	return `{"model":"anisora","mode":"i2v","prompt":"the sea","image":"data:image/png;base64,` +
		base64.StdEncoding.EncodeToString(img) + `"}`
}

// TestLargeUploadsAreBounded (issue 11 point 2): 96 concurrent 14 MB bodies
// drove RSS to 4.8 GB because every body was read and decoded at once. At
// most MaxUploads bodies over 1 MiB are read at a time; the others wait up
// to UploadWait, then answer 503 server_busy with Retry-After; small bodies
// never wait. Inputs tried: one 1.5 MiB i2v body held half-sent, a second
// one meanwhile, a small t2v body meanwhile, then the second again.
func TestLargeUploadsAreBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxUploads = 1; c.UploadWait = 300 * time.Millisecond })
	e.readyAccount()
	ts := httptest.NewServer(e.h)
	defer ts.Close()
	body := i2vBody(bigPNG(t, 620)) // ~1.5 MiB of PNG, ~2 MiB of JSON
	if len(body) <= largeBody {
		t.Fatalf("test body of %d bytes is not large", len(body))
	}
	post := func(b io.Reader, n int) (int, string, http.Header) {
		req, _ := http.NewRequest("POST", ts.URL+"/generate", b)
		req.ContentLength = int64(n)
		req.Header.Set("X-API-Key", e.sec.APIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out), resp.Header
	}
	// The first upload takes the only slot and sends half its body.
	pr, pw := io.Pipe()
	first := make(chan int, 1)
	go func() {
		code, _, _ := post(pr, len(body))
		first <- code
	}()
	pw.Write([]byte(body[:len(body)/2]))
	testutil.WaitFor(t, 5*time.Second, "the first upload to hold the slot", func() bool { return e.srv.uploads.inFlight.Load() == 1 })

	code, out, h := post(strings.NewReader(body), len(body))
	if code != 503 || !strings.Contains(out, `"server_busy"`) || h.Get("Retry-After") == "" {
		t.Fatalf("second large upload while the slot is held: %d %s (Retry-After %q), want 503 server_busy", code, out, h.Get("Retry-After"))
	}
	small := `{"model":"anisora","mode":"t2v","prompt":"small"}`
	if code, out, _ := post(strings.NewReader(small), len(small)); code != 202 {
		t.Fatalf("a small body waited for the large one: %d %s", code, out)
	}
	pw.Write([]byte(body[len(body)/2:]))
	pw.Close()
	if c := <-first; c != 202 {
		t.Fatalf("the first upload: %d", c)
	}
	if code, out, _ := post(strings.NewReader(body), len(body)); code != 202 {
		t.Fatalf("a large upload once the slot is free: %d %s", code, out)
	}
}

// TestLargeDecodesAreBounded: a small body can hold a picture that decodes
// to hundreds of MiB (16 parallel 174 KB bodies of a 4096x4096 16-bit PNG
// drove RSS to 2.46 GB). Decoding an image whose pixels take more than
// largeDecode takes an upload slot like a large body. Inputs tried: a
// 1100x1100 16-bit RGBA PNG of one colour (a few KiB, 9.7 MB decoded) while
// the only slot is held, a 40x40 PNG meanwhile, the big one once the slot is
// free.
func TestLargeDecodesAreBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxUploads = 1; c.UploadWait = 200 * time.Millisecond })
	e.readyAccount()
	flat := image.NewRGBA64(image.Rect(0, 0, 1100, 1100))
	for i := range flat.Pix {
		flat.Pix[i] = 0x7f
	}
	var b bytes.Buffer
	if err := png.Encode(&b, flat); err != nil {
		t.Fatal(err)
	}
	bomb := i2vBody(b.Bytes())
	if len(bomb) > largeBody/10 {
		t.Fatalf("the test's bomb is %d bytes, want a small body", len(bomb))
	}
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	if !e.srv.uploads.acquire(context.Background()) {
		t.Fatal("could not take the only upload slot")
	}
	w := e.do(req{method: "POST", path: "/generate", header: key, body: bomb})
	if w.Code != 503 || errCode(t, w) != "server_busy" || w.Header().Get("Retry-After") == "" {
		t.Fatalf("a large decode while the slot is held: %d %s, want 503 server_busy with Retry-After", w.Code, w.Body.String())
	}
	if w := e.do(req{method: "POST", path: "/generate", header: key, body: i2vBody(bigPNG(t, 40))}); w.Code != 202 {
		t.Fatalf("a small image waited for the slot: %d %s", w.Code, w.Body.String())
	}
	e.srv.uploads.release()
	if w := e.do(req{method: "POST", path: "/generate", header: key, body: bomb}); w.Code != 202 {
		t.Fatalf("the large decode once the slot is free: %d %s", w.Code, w.Body.String())
	}
	if n := e.srv.uploads.inFlight.Load(); n != 0 {
		t.Fatalf("%d upload slots still held after the requests ended", n)
	}
}

// TestInputImagesAreFiles (issue 11 point 3, CONTRACT section 12): an i2v
// image is kept as media/<id>.input.<ext>, not in SQLite; GET /inputs/{id}
// serves the exact bytes with their type; a task without one is
// input_not_found; GG_INPUT_QUOTA refuses with queue_full; deleting the task
// from the gallery deletes the file. Inputs tried: a 40x40 PNG, a t2v task,
// a quota of one image.
func TestInputImagesAreFiles(t *testing.T) {
	img := bigPNG(t, 40)
	e := newEnv(t, func(c *Config) { c.InputQuota = int64(len(img)) + 10 })
	acc := e.readyAccount()
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	w := e.do(req{method: "POST", path: "/generate", header: key, body: i2vBody(img)})
	if w.Code != 202 {
		t.Fatalf("generate: %d %s", w.Code, w.Body.String())
	}
	var acc202 struct {
		TaskID string `json:"task_id"`
	}
	json.Unmarshal(w.Body.Bytes(), &acc202)
	id := acc202.TaskID
	file := filepath.Join(e.dataDir, "media", id+".input.png")
	if b, err := os.ReadFile(file); err != nil || !bytes.Equal(b, img) {
		t.Fatalf("input file %s: %v (%d bytes, want %d)", file, err, len(b), len(img))
	}
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(e.dataDir, "gooni.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var blobs int
	if err := raw.QueryRow(`SELECT count(*) FROM task_inputs`).Scan(&blobs); err != nil || blobs != 0 {
		t.Fatalf("%d image blobs in SQLite (%v)", blobs, err)
	}
	w = e.do(req{method: "GET", path: "/inputs/" + id, header: key})
	if w.Code != 200 || w.Header().Get("Content-Type") != "image/png" || !bytes.Equal(w.Body.Bytes(), img) {
		t.Fatalf("GET /inputs: %d %q (%d bytes)", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
	}
	w = e.do(req{method: "POST", path: "/generate", header: key, body: i2vBody(img)})
	if w.Code != 503 || errCode(t, w) != "queue_full" {
		t.Fatalf("second image over the quota: %d %s, want 503 queue_full", w.Code, w.Body.String())
	}
	if n := countFiles(t, filepath.Join(e.dataDir, "media"), ".input."); n != 1 {
		t.Fatalf("%d input files after a refused upload, want 1", n)
	}
	t2v := e.do(req{method: "POST", path: "/generate", header: key, body: `{"model":"anisora","mode":"t2v","prompt":"x"}`})
	var other struct {
		TaskID string `json:"task_id"`
	}
	json.Unmarshal(t2v.Body.Bytes(), &other)
	if w := e.do(req{method: "GET", path: "/inputs/" + other.TaskID, header: key}); w.Code != 404 || errCode(t, w) != "input_not_found" {
		t.Fatalf("input of a t2v task: %d %s", w.Code, w.Body.String())
	}
	// Once done and deleted from the gallery, the input goes with it.
	e.finish(id, acc.ID)
	if w := e.do(req{method: "DELETE", path: "/gallery/" + id, header: key}); w.Code != 204 {
		t.Fatalf("delete: %d %s", w.Code, w.Body.String())
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("input file outlived its task: %v", err)
	}
}

// TestDamagedImageRefusedAndNotKept (issue 11 point 12): only the header of
// an i2v image was decoded, so a PNG header followed by garbage reached the
// GPU. The image is decoded whole; what does not decode is
// validation_failed, and nothing of it stays in media/. Input tried: a real
// PNG whose IDAT bytes were overwritten (CRC fixed up).
func TestDamagedImageRefusedAndNotKept(t *testing.T) {
	e := newEnv(t)
	e.readyAccount()
	img := bigPNG(t, 32)
	i := bytes.Index(img, []byte("IDAT"))
	for k := i + 40; k < len(img)-20; k++ {
		img[k] = 0xAA
	}
	w := e.do(req{method: "POST", path: "/generate", header: map[string]string{"X-API-Key": e.sec.APIKey}, body: i2vBody(img)})
	if w.Code != 400 || errCode(t, w) != "validation_failed" || !strings.Contains(w.Body.String(), "damaged png") {
		t.Fatalf("damaged PNG: %d %s", w.Code, w.Body.String())
	}
	if n := countFiles(t, filepath.Join(e.dataDir, "media"), ""); n != 0 {
		t.Fatalf("%d files left in media/ by a refused upload", n)
	}
}

func countFiles(t testing.TB, dir, substr string) int {
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, en := range entries {
		if strings.Contains(en.Name(), substr) {
			n++
		}
	}
	return n
}

// finish claims and completes a task with a tiny PNG result.
func (e *testEnv) finish(id string, accountID int64) {
	e.t.Helper()
	ctx := e.t.Context()
	if _, err := e.db.ClaimTask(ctx, id, accountID); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.db.StartTask(ctx, id, accountID); err != nil {
		e.t.Fatal(err)
	}
	res, prev := "media/"+id+".png", "media/"+id+".preview.png"
	for _, p := range []string{res, prev} {
		if err := os.WriteFile(filepath.Join(e.dataDir, p), pngBytes, 0o600); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.db.CompleteTask(ctx, id, res, "image/png", prev, "image/png"); err != nil {
		e.t.Fatal(err)
	}
}
