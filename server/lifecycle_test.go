package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	_ "image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gooni/internal/dispatch"
	"gooni/internal/testutil"
	"gooni/internal/workspace"
	"gooni/store"
)

// liveEnv is a server with a real dispatcher and a real simulated workspace
// on a loopback port, on the real clock.
type liveEnv struct {
	*testEnv
	d    *dispatch.Dispatcher
	sim  *httptest.Server
	acct *store.Account
}

func newLiveEnv(t *testing.T, simCfg workspace.SimConfig, mods ...func(*Config)) *liveEnv {
	t.Helper()
	if simCfg.Duration == 0 {
		simCfg.Duration = 300 * time.Millisecond
	}
	if simCfg.Capacity == 0 {
		simCfg.Capacity = 4
	}
	e := newEnv(t, mods...)
	e.clock.FollowReal() // dispatcher, reaper and store must share the real clock
	d, hs := e.wireDispatcher(simCfg, func(c *dispatch.Config) {
		c.TTLImage, c.TTLVideo = time.Minute, time.Minute
		c.PollInterval, c.ReapInterval = 20*time.Millisecond, 50*time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	acc := &store.Account{Name: "sim", Workspace: "sim-one", BaseURL: hs.URL, Capacity: simCfg.Capacity, Status: "pending"}
	if err := e.db.CreateAccount(context.Background(), acc, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	acc, err := d.HealthCheck(context.Background(), acc.ID)
	if err != nil || acc.Status != "ready" {
		t.Fatalf("health check of the sim: %v %+v", err, acc)
	}
	return &liveEnv{testEnv: e, d: d, sim: hs, acct: acc}
}

func (e *liveEnv) key() map[string]string { return map[string]string{"X-API-Key": e.sec.APIKey} }

func (e *liveEnv) submit(body string) string {
	e.t.Helper()
	w := e.do(req{method: "POST", path: "/generate", header: e.key(), body: body})
	if w.Code != 202 {
		e.t.Fatalf("generate: %d %s", w.Code, w.Body.String())
	}
	var a generateAccepted
	json.Unmarshal(w.Body.Bytes(), &a)
	if a.TaskID == "" || a.Status != "pending" || a.StatusURL != "/status/"+a.TaskID || a.ResultURL != "/results/"+a.TaskID || a.PreviewURL != "/preview/"+a.TaskID {
		e.t.Fatalf("accepted body: %s", w.Body.String())
	}
	return a.TaskID
}

func (e *liveEnv) status(id string) TaskView {
	e.t.Helper()
	w := e.do(req{method: "GET", path: "/status/" + id, header: e.key()})
	if w.Code != 200 {
		e.t.Fatalf("status: %d %s", w.Code, w.Body.String())
	}
	var v TaskView
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		e.t.Fatal(err)
	}
	return v
}

// waitTerminal polls /status like a client, checking progress never goes down.
func (e *liveEnv) waitTerminal(id string) TaskView {
	e.t.Helper()
	last := -1
	var v TaskView
	testutil.WaitFor(e.t, 15*time.Second, "task "+id+" terminal", func() bool {
		v = e.status(id)
		if v.Progress < last {
			e.t.Fatalf("progress went down: %d -> %d", last, v.Progress)
		}
		last = v.Progress
		if v.Status != "done" && v.Progress >= 100 {
			e.t.Fatalf("progress 100 while %s", v.Status)
		}
		return v.Status == "done" || v.Status == "failed"
	})
	return v
}

func TestGenerateImageToGallery(t *testing.T) {
	t.Parallel()
	// Long enough that the status read just after the submit cannot find
	// it done on a machine that stalls this test for a moment.
	e := newLiveEnv(t, workspace.SimConfig{Duration: 1500 * time.Millisecond})
	id := e.submit(`{"model":"flux","mode":"t2i","prompt":"a red fox in snow","params":{"width":512,"height":256,"steps":4}}`)
	v := e.status(id)
	if v.Status != "pending" && v.Status != "processing" {
		t.Fatalf("fresh task status %s", v.Status)
	}
	// Result before done is result_not_ready.
	if v.Status == "pending" {
		if w := e.do(req{method: "GET", path: "/results/" + id, header: e.key()}); errCode(t, w) != "result_not_ready" {
			t.Errorf("early result: %s", w.Body.String())
		}
	}
	v = e.waitTerminal(id)
	if v.Status != "done" || v.Progress != 100 || v.CompletedAt == nil || v.StartedAt == nil || v.Error != nil {
		t.Fatalf("final view: %+v", v)
	}
	var params map[string]any
	json.Unmarshal(v.Params, &params)
	if params["width"] != float64(512) || params["guidance"] == nil {
		t.Errorf("params lack given or default values: %s", v.Params)
	}
	w := e.do(req{method: "GET", path: "/results/" + id, header: e.key()})
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "image/") || w.Header().Get("ETag") == "" || w.Header().Get("Accept-Ranges") != "bytes" {
		t.Fatalf("result: %d %v", w.Code, w.Header())
	}
	if _, _, err := image.Decode(bytes.NewReader(w.Body.Bytes())); err != nil {
		t.Fatalf("result does not decode: %v", err)
	}
	full := w.Body.Bytes()
	// Range and download.
	w = e.do(req{method: "GET", path: "/results/" + id, header: map[string]string{"X-API-Key": e.sec.APIKey, "Range": "bytes=0-9"}})
	if w.Code != 206 || !bytes.Equal(w.Body.Bytes(), full[:10]) || w.Header().Get("Content-Range") == "" {
		t.Errorf("range: %d %q", w.Code, w.Header().Get("Content-Range"))
	}
	w = e.do(req{method: "GET", path: "/results/" + id, header: map[string]string{"X-API-Key": e.sec.APIKey, "Range": "bytes=999999999-"}})
	if w.Code != 416 {
		t.Errorf("unsatisfiable range: %d", w.Code)
	}
	etag := e.do(req{method: "GET", path: "/results/" + id, header: e.key()}).Header().Get("ETag")
	if w := e.do(req{method: "GET", path: "/results/" + id, header: map[string]string{"X-API-Key": e.sec.APIKey, "If-None-Match": etag}}); w.Code != 304 {
		t.Errorf("If-None-Match: %d", w.Code)
	}
	w = e.do(req{method: "GET", path: "/results/" + id + "?download=1", header: e.key()})
	if !strings.HasPrefix(w.Header().Get("Content-Disposition"), "attachment") {
		t.Errorf("download disposition %q", w.Header().Get("Content-Disposition"))
	}
	w = e.do(req{method: "GET", path: "/preview/" + id, header: e.key()})
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "image/") {
		t.Fatalf("preview: %d %v", w.Code, w.Header())
	}
	// Gallery lists it; deleting removes row and files.
	w = e.do(req{method: "GET", path: "/gallery", header: e.key()})
	var page galleryPage
	json.Unmarshal(w.Body.Bytes(), &page)
	if len(page.Items) != 1 || page.Items[0].TaskID != id || page.NextCursor != nil {
		t.Fatalf("gallery: %s", w.Body.String())
	}
	task, _ := e.db.GetTask(context.Background(), id)
	files := []string{filepath.Join(e.dataDir, task.ResultPath), filepath.Join(e.dataDir, task.PreviewPath)}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("media file missing before delete: %v", err)
		}
	}
	if w := e.do(req{method: "DELETE", path: "/gallery/" + id, header: e.key()}); w.Code != 204 {
		t.Fatalf("delete: %d %s", w.Code, w.Body.String())
	}
	for _, f := range files {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s still there after delete", f)
		}
	}
	if w := e.do(req{method: "GET", path: "/status/" + id, header: e.key()}); errCode(t, w) != "task_not_found" {
		t.Errorf("status after delete: %s", w.Body.String())
	}
	if w := e.do(req{method: "DELETE", path: "/gallery/" + id, header: e.key()}); errCode(t, w) != "task_not_found" {
		t.Errorf("second delete: %s", w.Body.String())
	}
}

func TestGenerateVideoAndEvents(t *testing.T) {
	t.Parallel()
	// Long enough that the stream opens before the task is done (a done
	// task's stream sends one view and ends) even if this test stalls.
	e := newLiveEnv(t, workspace.SimConfig{Duration: 1500 * time.Millisecond})
	id := e.submit(`{"model":"wan-remix","mode":"t2v","prompt":"waves at dusk"}`)
	// Follow the SSE stream on a real HTTP server until it ends by itself.
	hs := httptest.NewServer(e.h)
	defer hs.Close()
	r, _ := http.NewRequest("GET", hs.URL+"/events/"+id, nil)
	r.Header.Set("X-API-Key", e.sec.APIKey)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(r.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	var views []TaskView
	buf := new(bytes.Buffer)
	buf.ReadFrom(resp.Body) // returns when the server closes the stream after the terminal view
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, "data: ") {
			var v TaskView
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &v); err != nil {
				t.Fatalf("bad event data %q", line)
			}
			views = append(views, v)
		}
	}
	if len(views) < 2 {
		t.Fatalf("only %d events", len(views))
	}
	for i := 1; i < len(views); i++ {
		if views[i].Progress < views[i-1].Progress {
			t.Errorf("event progress went down")
		}
	}
	last := views[len(views)-1]
	if last.Status != "done" || last.Model != "phr00t" || last.Type != "video" {
		t.Fatalf("last event: %+v", last)
	}
	w := e.do(req{method: "GET", path: "/results/" + id, header: e.key()})
	if w.Code != 200 || w.Header().Get("Content-Type") != "video/mp4" || !bytes.Contains(w.Body.Bytes()[:64], []byte("ftyp")) {
		t.Fatalf("video result: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if w := e.do(req{method: "GET", path: "/preview/" + id, header: e.key()}); w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "image/") {
		t.Fatalf("video poster: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
}

func TestNoWorkersCreatesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.do(req{method: "POST", path: "/generate", header: map[string]string{"X-API-Key": e.sec.APIKey}, body: `{"model":"flux","mode":"t2i","prompt":"x"}`})
	if w.Code != 503 || errCode(t, w) != "no_workers" {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
	counts, _ := e.db.CountByStatus(context.Background())
	if n := counts["pending"] + counts["processing"] + counts["done"] + counts["failed"]; n != 0 {
		t.Fatalf("%d tasks created", n)
	}
}

func TestQueueFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.QueueMax = 2 })
	e.readyAccount() // no dispatcher runs: tasks stay pending
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	body := `{"model":"pony","mode":"t2i","prompt":"x"}`
	for i := 0; i < 2; i++ {
		if w := e.do(req{method: "POST", path: "/generate", header: key, body: body}); w.Code != 202 {
			t.Fatalf("%d: %d", i, w.Code)
		}
	}
	if w := e.do(req{method: "POST", path: "/generate", header: key, body: body}); w.Code != 503 || errCode(t, w) != "queue_full" {
		t.Fatalf("third: %d %s", w.Code, w.Body.String())
	}
	// The second task waits behind the first.
	items, _ := e.db.ListPending(context.Background(), 10)
	w := e.do(req{method: "GET", path: "/status/" + items[1].ID, header: key})
	if !strings.Contains(w.Body.String(), `"queue_position":2`) {
		t.Errorf("queue position: %s", w.Body.String())
	}
	if w := e.do(req{method: "GET", path: "/results/" + items[1].ID, header: key}); errCode(t, w) != "result_not_ready" {
		t.Errorf("pending result: %s", w.Body.String())
	}
	if w := e.do(req{method: "DELETE", path: "/gallery/" + items[1].ID, header: key}); errCode(t, w) != "task_not_done" {
		t.Errorf("delete pending: %s", w.Body.String())
	}
}

func TestGenerateValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.readyAccount()
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	cases := []struct{ body, field string }{
		{`{"model":"nope","mode":"t2i","prompt":"x"}`, "model"},
		{`{"model":"flux","mode":"t2v","prompt":"x"}`, "mode"},
		{`{"model":"flux","mode":"t2i","prompt":""}`, "prompt"},
		{`{"model":"flux","mode":"t2i","prompt":"` + strings.Repeat("a", 2001) + `"}`, "prompt"},
		{`{"model":"flux","mode":"t2i","prompt":"x","negative_prompt":"blur"}`, "negative_prompt"},
		{`{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":51}}`, "params.steps"},
		{`{"model":"flux","mode":"t2i","prompt":"x","params":{"width":1000}}`, "params.width"},
		{`{"model":"flux","mode":"t2i","prompt":"x","params":{"bogus":1}}`, "params.bogus"},
		{`{"model":"flux","mode":"t2i","prompt":"x","type":"video"}`, "type"},
		{`{"model":"anisora","mode":"i2v","prompt":"x"}`, "image"},
		{`{"model":"anisora","mode":"i2v","prompt":"x","image":"aGVsbG8="}`, "image"},
		{`{"model":"flux","mode":"t2i","prompt":"x","extra":1}`, "extra"},
	}
	for _, c := range cases {
		w := e.do(req{method: "POST", path: "/generate", header: key, body: c.body})
		if w.Code != 400 || errCode(t, w) != "validation_failed" || !strings.Contains(w.Body.String(), fmt.Sprintf(`"field":%q`, c.field)) {
			t.Errorf("%.80s: %d %s", c.body, w.Code, w.Body.String())
		}
	}
	counts, _ := e.db.CountByStatus(context.Background())
	if counts["pending"] != 0 {
		t.Errorf("%d tasks created by invalid requests", counts["pending"])
	}
}
