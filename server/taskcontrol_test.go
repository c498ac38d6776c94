package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gooni/internal/catalog"
	"gooni/internal/dispatch"
	"gooni/internal/testutil"
	"gooni/internal/workspace"
	"gooni/store"
)

func seedOf(t *testing.T, v TaskView) int64 {
	t.Helper()
	var p struct {
		Seed *int64 `json:"seed"`
	}
	if err := json.Unmarshal(v.Params, &p); err != nil || p.Seed == nil {
		t.Fatalf("params without a seed: %s", v.Params)
	}
	return *p.Seed
}

func (e *liveEnv) result(id string) []byte {
	e.t.Helper()
	w := e.do(req{method: "GET", path: "/results/" + id, header: e.key()})
	if w.Code != 200 {
		e.t.Fatalf("result of %s: %d %s", id, w.Code, w.Body.String())
	}
	return w.Body.Bytes()
}

// TestSeedResolvedAndReproducible: -1 (or no seed) becomes a real seed,
// stored and shown before the task runs; sending that seed again gives the
// same image from the workspace, another seed another image (pixels are
// compared: the stored PNG also names its own task in its gooni chunk).
func TestSeedResolvedAndReproducible(t *testing.T) {
	e := newLiveEnv(t, workspace.SimConfig{Duration: 100 * time.Millisecond})
	const body = `{"model":"flux","mode":"t2i","prompt":"a red fox in snow","params":{"width":256,"height":256,"steps":4%s}}`
	omitted := e.submit(fmt.Sprintf(body, ""))
	random := e.submit(fmt.Sprintf(body, `,"seed":-1`))
	s1, s2 := seedOf(t, e.status(omitted)), seedOf(t, e.status(random))
	for _, s := range []int64{s1, s2} {
		if s < 0 || s > 2147483647 {
			t.Fatalf("resolved seed %d outside [0, 2147483647]", s)
		}
	}
	if s1 == s2 {
		t.Errorf("two random seeds are both %d", s1)
	}
	if v := e.waitTerminal(omitted); v.Status != "done" || seedOf(t, v) != s1 {
		t.Fatalf("done view: %+v", v)
	}
	again := e.submit(fmt.Sprintf(body, fmt.Sprintf(`,"seed":%d`, s1)))
	other := e.submit(fmt.Sprintf(body, fmt.Sprintf(`,"seed":%d`, (s1+1)%2147483648)))
	for _, id := range []string{again, other} {
		if v := e.waitTerminal(id); v.Status != "done" {
			t.Fatalf("%s: %+v", id, v)
		}
	}
	first := pixels(t, e.result(omitted))
	if !bytes.Equal(first, pixels(t, e.result(again))) {
		t.Error("the same seed gave another image")
	}
	if bytes.Equal(first, pixels(t, e.result(other))) {
		t.Error("another seed gave the same image")
	}
}

// TestBatchParamsWithoutSeed: a model without a seed param gets its params untouched.
func TestBatchParamsWithoutSeed(t *testing.T) {
	v := &catalog.Validated{Params: map[string]any{"steps": int64(4)}, ParamsJSON: []byte(`{"steps":4}`)}
	out, err := batchParams(v, 3)
	if err != nil || len(out) != 3 {
		t.Fatal(out, err)
	}
	for _, p := range out {
		if string(p) != `{"steps":4}` {
			t.Errorf("params %s", p)
		}
	}
}

// TestBatchCountAndSeeds: count tasks commit together with consecutive
// seeds (wrapping past 2147483647), or none when they do not all fit.
func TestBatchCountAndSeeds(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.QueueMax = 4 })
	e.readyAccount()
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	w := e.do(req{method: "POST", path: "/generate", header: key,
		body: `{"model":"flux","mode":"t2i","prompt":"batch","count":3,"params":{"seed":2147483646}}`})
	if w.Code != 202 {
		t.Fatalf("batch: %d %s", w.Code, w.Body.String())
	}
	var a generateAccepted
	json.Unmarshal(w.Body.Bytes(), &a)
	if len(a.TaskIDs) != 3 || a.TaskID != a.TaskIDs[0] {
		t.Fatalf("answer %s", w.Body.String())
	}
	want := []int64{2147483646, 2147483647, 0}
	for i, id := range a.TaskIDs {
		if a.Tasks[i].TaskID != id || a.Tasks[i].Status != "pending" || a.Tasks[i].ResultURL != "/results/"+id {
			t.Errorf("tasks[%d] = %+v", i, a.Tasks[i])
		}
		v, err := e.srv.taskView(httptest.NewRequest("GET", "/", nil), id)
		if err != nil {
			t.Fatal(err)
		}
		if got := seedOf(t, *v); got != want[i] {
			t.Errorf("task %d seed %d, want %d", i, got, want[i])
		}
	}
	// Three more do not fit in a queue of 4 holding 3: none is created.
	w = e.do(req{method: "POST", path: "/generate", header: key, body: `{"model":"flux","mode":"t2i","prompt":"too many","count":2}`})
	if errCode(t, w) != "queue_full" {
		t.Fatalf("over the queue: %d %s", w.Code, w.Body.String())
	}
	if c, _ := e.db.CountByStatus(context.Background()); c["pending"] != 3 {
		t.Fatalf("%d pending after a refused batch, want 3", c["pending"])
	}
}

// TestBatchImageInputs: each task of an i2v batch has its own input file,
// served by GET /inputs/{id}, and deleting one task keeps the others'.
func TestBatchImageInputs(t *testing.T) {
	e := newEnv(t)
	e.readyAccount()
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	var buf bytes.Buffer
	png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 8, 8)))
	pngBytes := buf.Bytes()
	img := "data:image/png;base64," + b64(pngBytes)
	w := e.do(req{method: "POST", path: "/generate", header: key,
		body: `{"model":"anisora","mode":"i2v","prompt":"move","count":2,"image":"` + img + `"}`})
	if w.Code != 202 {
		t.Fatalf("i2v batch: %d %s", w.Code, w.Body.String())
	}
	var a generateAccepted
	json.Unmarshal(w.Body.Bytes(), &a)
	for _, id := range a.TaskIDs {
		w := e.do(req{method: "GET", path: "/inputs/" + id, header: key})
		if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), pngBytes) {
			t.Fatalf("input of %s: %d", id, w.Code)
		}
	}
	if p1, p2 := filepath.Join(e.dataDir, "media", a.TaskIDs[0]+".input.png"), filepath.Join(e.dataDir, "media", a.TaskIDs[1]+".input.png"); p1 == p2 {
		t.Fatal("one path")
	} else if _, err := os.Stat(p2); err != nil {
		t.Fatal(err)
	}
}

// TestIdempotencyAcrossRestart: the key is in SQLite, so after the store is
// reopened the same key and body replay the first answer and create
// nothing; another body is idempotency_conflict.
func TestIdempotencyAcrossRestart(t *testing.T) {
	e := newEnv(t)
	e.readyAccount()
	h := map[string]string{"X-API-Key": e.sec.APIKey, "Idempotency-Key": "retry-7f3a"}
	body := `{"model":"flux","mode":"t2i","prompt":"idempotent","count":2}`
	first := e.do(req{method: "POST", path: "/generate", header: h, body: body})
	if first.Code != 202 || first.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %v %s", first.Code, first.Header(), first.Body.String())
	}
	// Restart: close the store, open the same file, build a new server on it.
	e.db.Close()
	db, err := store.Open(e.dataDir, testutil.Schema(t), store.Options{AccountKeys: e.sec.AccountKeys, AuditKey: e.sec.AuditKey, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := e.srv.cfg
	cfg.DB, cfg.Audit, cfg.Metrics = db, nil, nil
	e.srv = New(cfg)
	e.h, e.db = e.srv.Handler(), db

	again := e.do(req{method: "POST", path: "/generate", header: h, body: body})
	if again.Code != 202 || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %v", again.Code, again.Header())
	}
	if strings.TrimSpace(again.Body.String()) != strings.TrimSpace(first.Body.String()) {
		t.Errorf("replayed answer differs:\n%s\n%s", again.Body.String(), first.Body.String())
	}
	if c, _ := db.CountByStatus(context.Background()); c["pending"] != 2 {
		t.Errorf("%d pending tasks, want the first batch's 2", c["pending"])
	}
	other := e.do(req{method: "POST", path: "/generate", header: h, body: `{"model":"flux","mode":"t2i","prompt":"something else"}`})
	if other.Code != 422 || errCode(t, other) != "idempotency_conflict" {
		t.Fatalf("other body: %d %s", other.Code, other.Body.String())
	}
	// 24 h later the key is free again.
	e.clock.Advance(store.IdempotencyTTL + time.Minute)
	later := e.do(req{method: "POST", path: "/generate", header: h, body: `{"model":"flux","mode":"t2i","prompt":"something else"}`})
	if later.Code != 202 || later.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("after 24 h: %d %v", later.Code, later.Header())
	}
}

// TestIdempotencyConcurrentRetries: retries racing each other create one
// batch, and every one of them answers its ids.
func TestIdempotencyConcurrentRetries(t *testing.T) {
	e := newEnv(t)
	e.readyAccount()
	h := map[string]string{"X-API-Key": e.sec.APIKey, "Idempotency-Key": "race"}
	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hr := httptest.NewRequest("POST", "/generate", strings.NewReader(`{"model":"flux","mode":"t2i","prompt":"race"}`))
			for k, v := range h {
				hr.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, hr)
			var a generateAccepted
			json.Unmarshal(w.Body.Bytes(), &a)
			ids[i] = fmt.Sprint(w.Code, " ", a.TaskID)
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] || !strings.HasPrefix(id, "202 ") {
			t.Fatalf("answers differ: %v", ids)
		}
	}
	if c, _ := e.db.CountByStatus(context.Background()); c["pending"] != 1 {
		t.Fatalf("%d tasks from one key", c["pending"])
	}
}

// TestCancelPendingAndProcessing: a pending task fails canceled at once; a
// processing one too, and its workspace is told to drop it.
func TestCancelPendingAndProcessing(t *testing.T) {
	e := newLiveEnv(t, workspace.SimConfig{Duration: time.Minute, Capacity: 1})
	running := e.submit(`{"model":"flux","mode":"t2i","prompt":"long"}`)
	testutil.WaitFor(t, 10*time.Second, "the task processing", func() bool { return e.status(running).Status == "processing" })
	queued := e.submit(`{"model":"flux","mode":"t2i","prompt":"queued"}`)
	if v := e.status(queued); v.Status != "pending" {
		t.Fatalf("second task %s, want pending behind a full workspace", v.Status)
	}
	for _, id := range []string{queued, running} {
		w := e.do(req{method: "POST", path: "/tasks/" + id + "/cancel", header: e.key()})
		var v TaskView
		json.Unmarshal(w.Body.Bytes(), &v)
		if w.Code != 200 || v.Status != "failed" || v.Error == nil || v.Error.Code != "canceled" {
			t.Fatalf("cancel %s: %d %s", id, w.Code, w.Body.String())
		}
		if w := e.do(req{method: "POST", path: "/tasks/" + id + "/cancel", header: e.key()}); errCode(t, w) != "task_finished" {
			t.Errorf("second cancel: %d %s", w.Code, w.Body.String())
		}
	}
	// The workspace forgot the task (DELETE /tasks/{id} reached it).
	testutil.WaitFor(t, 10*time.Second, "the workspace to drop the task", func() bool {
		resp, err := http.Get(e.sim.URL + "/tasks/" + running)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNotFound
	})
	if !strings.Contains(e.logs.String(), `"msg":"task canceled"`) {
		t.Error("no log line for the cancel")
	}
}

// TestLateDoneAfterCancel: the workspace reports done, the cancel commits
// while the dispatcher downloads the result; the task stays canceled and no
// media file of it is kept (dispatch finish: CompleteTask conflicts, the
// copied files are removed).
func TestLateDoneAfterCancel(t *testing.T) {
	e := newEnv(t)
	e.clock.FollowReal()
	sim, err := workspace.NewSim(workspace.SimConfig{Duration: 100 * time.Millisecond, Capacity: 2})
	if err != nil {
		t.Fatal(err)
	}
	var canceled, previewSeen atomic.Bool
	var resultExisted, deleted atomic.Bool
	inner := sim.Handler()
	var srvRef atomic.Pointer[testEnv]
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/tasks/")
		switch {
		case r.Method == http.MethodDelete:
			// This workspace takes the cancel but has finished already: the
			// result stays on offer, as a late "done" would be.
			deleted.Store(true)
			w.WriteHeader(http.StatusNoContent)
			return
		case strings.HasSuffix(r.URL.Path, "/result") && !canceled.Load():
			id = strings.TrimSuffix(id, "/result")
			// The task is done on the workspace: the user cancels it now.
			env := srvRef.Load()
			cw := env.do(req{method: "POST", path: "/tasks/" + id + "/cancel", header: map[string]string{"X-API-Key": env.sec.APIKey}})
			if cw.Code != 200 {
				t.Errorf("cancel during the download: %d %s", cw.Code, cw.Body.String())
			}
			canceled.Store(true)
		case strings.HasSuffix(r.URL.Path, "/preview"):
			id = strings.TrimSuffix(id, "/preview")
			matches, _ := filepath.Glob(filepath.Join(e.dataDir, "media", id+".*"))
			resultExisted.Store(len(matches) > 0)
			defer previewSeen.Store(true)
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	d := dispatch.New(dispatch.Config{DB: e.db, DataDir: e.dataDir, WorkspaceURL: "https://{workspace}.invalid",
		Logger: e.srv.log, Now: e.clock.Now, Audit: e.srv.auditLog, PollInterval: 20 * time.Millisecond, ReapInterval: 50 * time.Millisecond})
	cfg := e.srv.cfg
	cfg.Dispatcher, cfg.Audit = d, e.srv.auditLog
	e.srv = New(cfg)
	e.h = e.srv.Handler()
	srvRef.Store(e)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { d.Run(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	acc := &store.Account{Name: "sim", Workspace: "sim", BaseURL: hs.URL, Capacity: 2, Status: "pending"}
	if err := e.db.CreateAccount(context.Background(), acc, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if a, err := d.HealthCheck(context.Background(), acc.ID); err != nil || a.Status != "ready" {
		t.Fatalf("health check: %v %+v", err, a)
	}
	w := e.do(req{method: "POST", path: "/generate", header: map[string]string{"X-API-Key": e.sec.APIKey}, body: `{"model":"flux","mode":"t2i","prompt":"late"}`})
	var a generateAccepted
	json.Unmarshal(w.Body.Bytes(), &a)
	testutil.WaitFor(t, 15*time.Second, "the dispatcher to fetch the preview after the cancel", previewSeen.Load)
	if !resultExisted.Load() {
		t.Fatal("the result was not copied before the preview: the race was not exercised")
	}
	testutil.WaitFor(t, 10*time.Second, "the copied media to be removed", func() bool {
		m, _ := filepath.Glob(filepath.Join(e.dataDir, "media", a.TaskID+".*"))
		return len(m) == 0
	})
	testutil.WaitFor(t, 10*time.Second, "the workspace asked to drop the canceled task", deleted.Load)
	got, err := e.db.GetTask(context.Background(), a.TaskID)
	if err != nil || got.Status != "failed" || got.ErrorCode != "canceled" || got.ResultPath != "" {
		t.Fatalf("after the late done: %+v %v", got, err)
	}
}

// TestListTasksAPI: every filter through GET /tasks and /gallery, and
// paging that lists each task exactly once.
func TestListTasksAPI(t *testing.T) {
	e := newEnv(t)
	acc := e.readyAccount()
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	var all []*store.Task
	for _, st := range []string{"pending", "processing", "done", "failed", "done", "failed", "pending"} {
		all = append(all, e.task(st, acc.ID))
	}
	w := e.do(req{method: "POST", path: "/generate", header: key, body: `{"model":"anisora","mode":"t2v","prompt":"A Paper boat"}`})
	var a generateAccepted
	json.Unmarshal(w.Body.Bytes(), &a)
	list := func(path string) []TaskView {
		t.Helper()
		var out []TaskView
		for {
			w := e.do(req{method: "GET", path: path, header: key})
			if w.Code != 200 {
				t.Fatalf("%s: %d %s", path, w.Code, w.Body.String())
			}
			var p struct {
				Items      []TaskView `json:"items"`
				NextCursor *string    `json:"next_cursor"`
			}
			json.Unmarshal(w.Body.Bytes(), &p)
			out = append(out, p.Items...)
			if p.NextCursor == nil {
				return out
			}
			base, _, _ := strings.Cut(path, "&cursor=")
			path = base + "&cursor=" + *p.NextCursor
		}
	}
	ids := func(vs []TaskView) string {
		var s []string
		for _, v := range vs {
			s = append(s, v.TaskID)
		}
		return strings.Join(s, ",")
	}
	everything := list("/tasks?limit=3")
	if len(everything) != 8 || everything[0].TaskID != a.TaskID || everything[7].TaskID != all[0].ID {
		t.Fatalf("all tasks newest first: %s", ids(everything))
	}
	for i := 1; i < len(everything); i++ {
		if everything[i].TaskID >= everything[i-1].TaskID {
			t.Fatalf("not newest first at %d", i)
		}
	}
	want := func(ok func(*store.Task) bool) string {
		var s []string
		for i := len(all) - 1; i >= 0; i-- {
			if ok(all[i]) {
				s = append(s, all[i].ID)
			}
		}
		return strings.Join(s, ",")
	}
	for _, c := range []struct{ path, want string }{
		{"/tasks?status=failed&limit=1", want(func(t *store.Task) bool { return t.ID == all[3].ID || t.ID == all[5].ID })},
		{"/tasks?status=pending,processing&limit=2", a.TaskID + "," + want(func(t *store.Task) bool { return t.ID == all[0].ID || t.ID == all[1].ID || t.ID == all[6].ID })},
		{"/tasks?model=anisora", a.TaskID},
		{"/tasks?model=flux&status=done", want(func(t *store.Task) bool { return t.ID == all[2].ID || t.ID == all[4].ID })},
		{"/tasks?type=video", a.TaskID},
		{"/tasks?q=paper+BOAT", a.TaskID},
		{"/tasks?q=lighthouse&status=failed&limit=1", want(func(t *store.Task) bool { return t.ID == all[3].ID || t.ID == all[5].ID })},
		{"/gallery?q=lighthouse&limit=1", want(func(t *store.Task) bool { return t.ID == all[2].ID || t.ID == all[4].ID })},
		{"/gallery?type=video", ""},
	} {
		if got := ids(list(c.path)); got != c.want {
			t.Errorf("%s: %s, want %s", c.path, got, c.want)
		}
	}
}

// sseEvent is one event of a text/event-stream.
type sseEvent struct{ name, data string }

// readEvents parses events from r into a channel until r ends.
func readEvents(r io.Reader) <-chan sseEvent {
	out := make(chan sseEvent, 64)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(r)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					out <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return out
}

// TestGlobalEvents: GET /events carries every changed task view, to every
// open stream; limits and the credential recheck apply as for one task.
func TestGlobalEvents(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.StreamAuthCheck = 50 * time.Millisecond })
	e.readyAccount()
	hs := httptest.NewServer(e.h)
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func(h map[string]string, cookie *http.Cookie) *http.Response {
		t.Helper()
		r, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/events", nil)
		for k, v := range h {
			r.Header.Set(k, v)
		}
		if cookie != nil {
			r.AddCookie(cookie)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	var streams []<-chan sseEvent
	for range 3 {
		resp := open(key, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("GET /events: %d %v", resp.StatusCode, resp.Header)
		}
		streams = append(streams, readEvents(resp.Body))
	}
	// await reads stream i until it carries task id with status want.
	await := func(i int, id, want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev, ok := <-streams[i]:
				if !ok {
					t.Fatalf("stream %d ended", i)
				}
				var v TaskView
				if ev.name != "task" || json.Unmarshal([]byte(ev.data), &v) != nil {
					t.Fatalf("stream %d: event %+v", i, ev)
				}
				if v.TaskID == id && v.Status == want {
					return
				}
			case <-timeout:
				t.Fatalf("stream %d never carried task %s as %s", i, id, want)
			}
		}
	}
	// Every stream hears the new task, then its cancel: one change, one
	// event each (changes that land together may arrive as one view).
	id := e.task("pending", 0).ID
	for i := range streams {
		await(i, id, "pending")
	}
	if w := e.do(req{method: "POST", path: "/tasks/" + id + "/cancel", header: key}); w.Code != 200 {
		t.Fatal(w.Body.String())
	}
	for i := range streams {
		await(i, id, "failed")
	}
	// 8 streams per key: the 3 open + 5 more, then 429.
	for range 5 {
		if resp := open(key, nil); resp.StatusCode != 200 {
			t.Fatalf("stream within the limit: %d", resp.StatusCode)
		}
	}
	if resp := open(key, nil); resp.StatusCode != 429 {
		t.Fatalf("9th stream of one key: %d, want 429", resp.StatusCode)
	}
	// A revoked session ends its stream with an error event.
	cookie := e.userSession()
	resp := open(nil, cookie)
	evs := readEvents(resp.Body)
	if w := e.do(req{method: "DELETE", path: "/auth/session", cookies: []*http.Cookie{cookie}}); w.Code != 204 {
		t.Fatal(w.Code)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatal("stream ended without an error event")
			}
			if ev.name == "error" && strings.Contains(ev.data, "session_expired") {
				return
			}
		case <-deadline:
			t.Fatal("the stream of a revoked session is still open")
		}
	}
}

// TestGlobalEventsPing: a quiet stream still gets a comment line, so
// proxies keep it open (the interval is 15 s; shortened here).
func TestGlobalEventsPing(t *testing.T) {
	old := allEventsPing
	allEventsPing = 30 * time.Millisecond
	t.Cleanup(func() { allEventsPing = old })
	if eventsPing > 15*time.Second {
		t.Fatalf("the ping interval is %v, over the contract's 15 s", eventsPing)
	}
	e := newEnv(t)
	hs := httptest.NewServer(e.h)
	t.Cleanup(hs.Close)
	r, _ := http.NewRequest("GET", hs.URL+"/events", nil)
	r.Header.Set("X-API-Key", e.sec.APIKey)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() == ": ping" {
			return
		}
	}
	t.Fatalf("the stream ended without a ping: %v", sc.Err())
}

// TestBroadcasterLoadsOncePerChange: one read per change, whatever the
// number of streams; a stream that falls too far behind is closed.
func TestBroadcasterLoadsOncePerChange(t *testing.T) {
	var loads atomic.Int64
	release := make(chan struct{})
	b := newEventHub(func(id string) ([]byte, bool, error) {
		<-release
		loads.Add(1)
		return []byte(id), false, nil
	}, time.Hour)
	subs := make([]*allSub, 4)
	for i := range subs {
		subs[i], _ = b.subscribeAll()
	}
	b.notify("a")
	b.notify("a") // coalesced with the first while it waits
	close(release)
	for _, s := range subs {
		if got := string(<-s.c); got != "a" {
			t.Fatalf("got %q", got)
		}
	}
	if n := loads.Load(); n > 2 {
		t.Errorf("%d loads for one task changed twice with 4 streams", n)
	}
	// A stream nobody reads: past allBuffer events it is closed, not grown.
	gate := make(chan struct{})
	var slowLoads atomic.Int64
	b2 := newEventHub(func(id string) ([]byte, bool, error) {
		<-gate
		slowLoads.Add(1)
		return []byte(id), false, nil
	}, time.Hour)
	slow, _ := b2.subscribeAll()
	const sent = allBuffer + 10
	for i := range sent {
		b2.notify(fmt.Sprint(i))
	}
	close(gate)
	testutil.WaitFor(t, 10*time.Second, "every change loaded", func() bool { return slowLoads.Load() == sent })
	n := 0
	for range slow.c {
		n++
	}
	if n != allBuffer {
		t.Errorf("a stream that read nothing got %d events, want %d then closed", n, allBuffer)
	}
}

// TestETA: pending and processing views carry eta_seconds from recent run
// times of the same model and mode and the queue ahead; null without a basis.
func TestETA(t *testing.T) {
	e := newEnv(t)
	acc := e.readyAccount()
	ctx := context.Background()
	base := e.clock.Now().Add(-time.Hour)
	err := e.db.SeedTasks(ctx, 4, func(i int) store.Task {
		c := base.Add(time.Duration(i) * time.Minute)
		return store.Task{ID: store.IDAt(c), Type: "image", Model: "flux", Mode: "t2i", Prompt: "past", Status: "done", Progress: 100,
			CreatedAt: c, StartedAt: c, CompletedAt: c.Add(time.Duration(8+i) * time.Second)} // 8..11 s: mean 9.5 s
	})
	if err != nil {
		t.Fatal(err)
	}
	running := e.task("processing", acc.ID) // flux t2i, started now
	first, second := e.task("pending", 0), e.task("pending", 0)
	pony := &store.Task{Type: "image", Model: "pony", Mode: "t2i", Prompt: "no basis"}
	if err := e.db.CreateTask(ctx, pony, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(4 * time.Second)
	eta := func(id string) string {
		v, err := e.srv.taskView(httptest.NewRequest("GET", "/", nil), id)
		if err != nil {
			t.Fatal(err)
		}
		return string(v.EtaSeconds)
	}
	// processing: 9.5 - 4 = 5.5 -> 6; first pending: 9.5 + 5.5 (running) = 15;
	// second: 9.5 + (5.5 + 9.5) = 24.5 -> 25; capacity 1.
	for id, want := range map[string]string{running.ID: "6", first.ID: "15", second.ID: "25", pony.ID: "null"} {
		if got := eta(id); got != want {
			t.Errorf("eta of %s = %s, want %s", id, got, want)
		}
	}
	w := e.do(req{method: "GET", path: "/status/" + e.task("done", acc.ID).ID, header: map[string]string{"X-API-Key": e.sec.APIKey}})
	if strings.Contains(w.Body.String(), "eta_seconds") {
		t.Errorf("a done view has eta_seconds: %s", w.Body.String())
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
