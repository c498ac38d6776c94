package comfyui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"gooni/internal/workspace"
	"gooni/store"
)

const testClientID = "gooni-account-1"

// stepClock paces the sim: each Step lets the running prompt take one step.
// Step blocks until the sim is waiting, so it is a signal, not a sleep.
type stepClock struct{ ch chan time.Time }

func newStepClock() *stepClock { return &stepClock{ch: make(chan time.Time)} }

func (c *stepClock) After(time.Duration) <-chan time.Time { return c.ch }

func (c *stepClock) Step(t *testing.T) {
	t.Helper()
	select {
	case c.ch <- time.Time{}:
	case <-time.After(10 * time.Second):
		t.Fatal("the sim did not take a step within 10s")
	}
}

// startSim runs a Sim behind a real loopback listener; wrap may put a proxy in front.
func startSim(t *testing.T, cfg SimConfig, wrap func(http.Handler) http.Handler) (*Sim, string) {
	t.Helper()
	sim, err := NewSim(cfg)
	if err != nil {
		t.Fatalf("NewSim: %v", err)
	}
	h := sim.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	return sim, srv.URL
}

func startDriver(t *testing.T, base string, h hooks, edit func(*Config)) *Driver {
	t.Helper()
	cfg := Config{BaseURL: base, ClientID: testClientID}
	if edit != nil {
		edit(&cfg)
	}
	d, err := newDriver(cfg, h)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitSocket(t *testing.T, d *Driver) {
	t.Helper()
	waitFor(t, "the driver's socket", d.tr.isUp)
}

// waitStatus polls Status until the task reaches want; any other final state fails the test.
func waitStatus(t *testing.T, d *Driver, id, want string) *workspace.TaskState {
	t.Helper()
	var last *workspace.TaskState
	var lastErr error
	waitFor(t, "status "+want, func() bool {
		st, err := d.Status(t.Context(), id)
		last, lastErr = st, err
		if err != nil {
			return false
		}
		if st.Status != want && (st.Status == workspace.StatusDone || st.Status == workspace.StatusFailed) {
			t.Fatalf("task ended %s (%s), want %s", st.Status, st.Error, want)
		}
		return st.Status == want
	})
	if lastErr != nil {
		t.Fatalf("Status: %v", lastErr)
	}
	return last
}

func pngBytes(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var modelType = map[string]string{"anisora": "video", "phr00t": "video", "pony": "image", "flux": "image"}

func taskFor(t *testing.T, model, mode string) *workspace.TaskRequest {
	t.Helper()
	params := map[string]any{"width": 512, "height": 512, "steps": 4, "guidance": 2, "seed": 7}
	if modelType[model] == "video" {
		params = map[string]any{"width": 320, "height": 192, "num_frames": 17, "fps": 8, "steps": 4, "guidance": 1, "seed": 7}
	}
	b, _ := json.Marshal(params)
	req := &workspace.TaskRequest{TaskID: store.NewID(), Type: modelType[model], Model: model, Mode: mode,
		Prompt: "a lighthouse in a storm", Params: b}
	if model != "flux" {
		req.NegativePrompt = "blurry"
	}
	if mode == "i2v" {
		req.Image, req.ImageType = pngBytes(t), "image/png"
	}
	return req
}

func mustPromptID(t *testing.T, id string) string {
	t.Helper()
	pid, err := PromptID(id)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func readMedia(t *testing.T, get func(context.Context, string) (*workspace.Media, error), id string) ([]byte, string) {
	t.Helper()
	m, err := get(t.Context(), id)
	if err != nil {
		t.Fatalf("media: %v", err)
	}
	defer m.Body.Close()
	b, err := io.ReadAll(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, m.ContentType
}

func isStatus(err error, code int) bool {
	var se *workspace.StatusError
	return errors.As(err, &se) && se.Code == code
}
