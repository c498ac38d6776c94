package workspace

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"gooni/internal/mp4"
	"gooni/internal/testutil"
)

// startSim runs a Sim on a real loopback listener and returns a client for it.
func startSim(t *testing.T, cfg SimConfig) (*Sim, *Client, *testutil.Clock) {
	t.Helper()
	clock := testutil.NewClock(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	cfg.Now = clock.Now
	sim, err := NewSim(cfg)
	if err != nil {
		t.Fatalf("NewSim: %v", err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	c, err := NewClient(srv.URL, cfg.RequireKey, cfg.RequireSecret)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return sim, c, clock
}

func imageTask(id string) *TaskRequest {
	return &TaskRequest{
		TaskID: id, Type: "image", Model: "flux", Mode: "t2i",
		Prompt: "a red fox in the snow, watercolour", Params: json.RawMessage(`{"width":1600,"height":900,"seed":7}`),
	}
}

func videoTask(id string) *TaskRequest {
	return &TaskRequest{
		TaskID: id, Type: "video", Model: "anisora", Mode: "t2v",
		Prompt: "waves at dusk", NegativePrompt: "blur", Params: json.RawMessage(`{"width":832,"height":480}`),
	}
}

func statusCode(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	var be *BusyError
	if errors.As(err, &be) {
		return be.Status
	}
	return 0
}

func TestSimHealth(t *testing.T) {
	_, c, _ := startSim(t, SimConfig{Capacity: 3})
	h, err := c.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.Capacity != 3 || h.Running != 0 || strings.Join(h.Models, ",") != "anisora,phr00t,pony,flux" {
		t.Fatalf("health = %+v", h)
	}
}

func TestSimSubmitIsIdempotentAndProgresses(t *testing.T) {
	_, c, clock := startSim(t, SimConfig{Duration: 10 * time.Second})
	ctx := context.Background()

	first, err := c.Submit(ctx, imageTask("task-1"))
	if err != nil {
		t.Fatal(err)
	}
	if first.TaskID != "task-1" || first.Status != StatusPending {
		t.Fatalf("submit = %+v", first)
	}
	clock.Advance(3 * time.Second)
	again, err := c.Submit(ctx, imageTask("task-1"))
	if err != nil {
		t.Fatal(err)
	}
	if *again != *first {
		t.Fatalf("resubmit answered %+v, first answer was %+v", again, first)
	}
	if h, _ := c.Health(ctx); h.Running != 1 {
		t.Fatalf("running = %d after a resubmit, want 1 (no twin)", h.Running)
	}
	if _, err := c.Result(ctx, "task-1"); statusCode(err) != http.StatusConflict {
		t.Fatalf("result before done: err = %v, want 409", err)
	}
	if _, err := c.Preview(ctx, "task-1"); statusCode(err) != http.StatusConflict {
		t.Fatalf("preview before done: err = %v, want 409", err)
	}

	seen := map[string]bool{}
	last := -1
	for i := 0; i < 12; i++ {
		st, err := c.Status(ctx, "task-1")
		if err != nil {
			t.Fatal(err)
		}
		if st.Progress < last {
			t.Fatalf("progress went down: %d after %d", st.Progress, last)
		}
		last = st.Progress
		seen[st.Status] = true
		clock.Advance(time.Second)
	}
	if !seen[StatusProcessing] || !seen[StatusDone] || last != 100 {
		t.Fatalf("statuses seen %v, last progress %d", seen, last)
	}
	if h, _ := c.Health(ctx); h.Running != 0 {
		t.Fatalf("running = %d after done", h.Running)
	}

	// A fresh task runs at once (the simulator refuses rather than queues
	// past its capacity), at progress 0.
	if _, err := c.Submit(ctx, imageTask("task-2")); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status(ctx, "task-2"); st.Status != StatusProcessing || st.Progress != 0 {
		t.Fatalf("fresh task = %+v", st)
	}
}

func finish(t *testing.T, c *Client, clock *testutil.Clock, req *TaskRequest) {
	t.Helper()
	if _, err := c.Submit(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	st, err := c.Status(context.Background(), req.TaskID)
	if err != nil || st.Status != StatusDone {
		t.Fatalf("status = %+v, %v; want done", st, err)
	}
}

// fetch reads a finished task's result (or preview) and its Content-Type.
func fetch(t *testing.T, c *Client, id string, preview bool) ([]byte, string) {
	t.Helper()
	get := c.Result
	if preview {
		get = c.Preview
	}
	resp, err := get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, resp.ContentType
}

func TestSimImageMedia(t *testing.T) {
	_, c, clock := startSim(t, SimConfig{})
	finish(t, c, clock, imageTask("img-1"))

	body, ctype := fetch(t, c, "img-1", false)
	if ctype != "image/png" {
		t.Fatalf("result Content-Type = %q", ctype)
	}
	img, format, err := image.Decode(bytes.NewReader(body))
	if err != nil || format != "png" {
		t.Fatalf("result does not decode as PNG: %v (%s)", err, format)
	}
	if b := img.Bounds(); b.Dx() != 1600 || b.Dy() != 900 {
		t.Fatalf("result is %v, want the requested 1600x900", b)
	}
	again, _ := fetch(t, c, "img-1", false)
	if !bytes.Equal(again, body) {
		t.Fatal("result changed between fetches")
	}

	pbody, ptype := fetch(t, c, "img-1", true)
	if !strings.HasPrefix(ptype, "image/") {
		t.Fatalf("preview Content-Type = %q", ptype)
	}
	prev, _, err := image.Decode(bytes.NewReader(pbody))
	if err != nil {
		t.Fatalf("preview does not decode: %v", err)
	}
	if b := prev.Bounds(); b.Dx() > 512 || b.Dy() > 512 || b.Dx() < 256 {
		t.Fatalf("preview is %v, want longest side 512", b)
	}

	// Another prompt gives another picture.
	other := imageTask("img-2")
	other.Prompt = "a blue whale"
	finish(t, c, clock, other)
	obody, _ := fetch(t, c, "img-2", false)
	if bytes.Equal(obody, body) {
		t.Fatal("two prompts drew the same image")
	}
}

func TestSimVideoMedia(t *testing.T) {
	_, c, clock := startSim(t, SimConfig{})
	finish(t, c, clock, videoTask("vid-1"))

	body, ctype := fetch(t, c, "vid-1", false)
	if ctype != "video/mp4" {
		t.Fatalf("result Content-Type = %q", ctype)
	}
	if len(body) < 12 || string(body[4:8]) != "ftyp" {
		t.Fatal("result does not start with an ftyp box")
	}
	if !bytes.Contains(body, []byte("avc1")) {
		t.Fatal("result has no avc1 (H.264) sample entry")
	}
	// +faststart: the moov box comes before the media data.
	if m, d := bytes.Index(body, []byte("moov")), bytes.Index(body, []byte("mdat")); m < 0 || d < 0 || m > d {
		t.Fatalf("moov at %d, mdat at %d: not faststart", m, d)
	}
	// The requested size, and the catalog's 81 frames at 16 fps when the
	// request names none; a still background keeps it small.
	in, err := mp4.Probe(body)
	if err != nil {
		t.Fatal(err)
	}
	if in.Width != 832 || in.Height != 480 || len(in.SampleSizes) != 81 || in.FPS() != 16 {
		t.Fatalf("video is %dx%d, %d frames at %v fps; want 832x480, 81 at 16", in.Width, in.Height, len(in.SampleSizes), in.FPS())
	}
	if len(body) > 4<<20 {
		t.Fatalf("video is %d bytes, want < 4 MB", len(body))
	}

	pbody, _ := fetch(t, c, "vid-1", true)
	poster, _, err := image.Decode(bytes.NewReader(pbody))
	if err != nil {
		t.Fatalf("poster does not decode: %v", err)
	}
	if b := poster.Bounds(); b.Dx() != 832 || b.Dy() != 480 {
		t.Fatalf("poster is %v, want the video's 832x480", b)
	}
}

// TestSimSameRequestSameMedia: CONTRACT section 12, through the simulator:
// two tasks with the same request get the same bytes, another seed other bytes.
func TestSimSameRequestSameMedia(t *testing.T) {
	_, c, clock := startSim(t, SimConfig{Capacity: 8})
	params := func(seed int) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"width":320,"height":240,"num_frames":9,"fps":8,"seed":%d}`, seed))
	}
	for _, typ := range []string{"image", "video"} {
		var bodies [][]byte
		for i, seed := range []int{42, 42, 43} {
			req := videoTask(fmt.Sprintf("%s-%d", typ, i))
			if typ == "image" {
				req = imageTask(req.TaskID)
			}
			req.Params = params(seed)
			finish(t, c, clock, req)
			body, _ := fetch(t, c, req.TaskID, false)
			bodies = append(bodies, body)
		}
		if !bytes.Equal(bodies[0], bodies[1]) {
			t.Errorf("%s: two tasks with seed 42 got different bytes", typ)
		}
		if bytes.Equal(bodies[0], bodies[2]) {
			t.Errorf("%s: seeds 42 and 43 got the same bytes", typ)
		}
	}
}

func TestSimServesRanges(t *testing.T) {
	sim, c, clock := startSim(t, SimConfig{})
	finish(t, c, clock, videoTask("vid-r"))
	req := httptest.NewRequest(http.MethodGet, "/tasks/vid-r/result", nil)
	req.Header.Set("Range", "bytes=0-7")
	rec := httptest.NewRecorder()
	sim.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusPartialContent || rec.Body.Len() != 8 {
		t.Fatalf("range request: %d, %d bytes", rec.Code, rec.Body.Len())
	}
}

func TestSimCancel(t *testing.T) {
	_, c, _ := startSim(t, SimConfig{Capacity: 1})
	ctx := context.Background()
	if _, err := c.Submit(ctx, imageTask("c-1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Cancel(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx, "c-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status after cancel: %v, want ErrNotFound", err)
	}
	if err := c.Cancel(ctx, "c-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second cancel: %v, want ErrNotFound", err)
	}
	// The slot is free again.
	if _, err := c.Submit(ctx, imageTask("c-2")); err != nil {
		t.Fatalf("submit after cancel: %v", err)
	}
}

func TestSimCapacity(t *testing.T) {
	_, c, clock := startSim(t, SimConfig{Capacity: 1})
	ctx := context.Background()
	if _, err := c.Submit(ctx, imageTask("a")); err != nil {
		t.Fatal(err)
	}
	_, err := c.Submit(ctx, imageTask("b"))
	if code := statusCode(err); code != http.StatusTooManyRequests && code != http.StatusServiceUnavailable {
		t.Fatalf("over capacity: err = %v, want 429/503", err)
	}
	// Busy is backpressure (CONTRACT section 14), with the simulator's Retry-After.
	var be *BusyError
	if !errors.As(err, &be) || be.RetryAfter != time.Second {
		t.Fatalf("over capacity: %v, want a BusyError with Retry-After 1s", err)
	}
	raw, _ := json.Marshal(imageTask("b"))
	resp, rerr := http.Post(c.BaseURL+"/tasks", "application/json", bytes.NewReader(raw))
	if rerr != nil {
		t.Fatal(rerr)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !json.Valid(body) {
		t.Fatalf("over-capacity answer %d %q %q, want 429 with Retry-After 1 and a JSON body", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if _, err := c.Submit(ctx, imageTask("a")); err != nil {
		t.Fatalf("resubmit of an accepted task at capacity: %v", err)
	}
	clock.Advance(time.Hour)
	if _, err := c.Submit(ctx, imageTask("b")); err != nil {
		t.Fatalf("submit after the slot freed: %v", err)
	}
}

func TestSimRejectsBadSubmissions(t *testing.T) {
	sim, _, _ := startSim(t, SimConfig{})
	tests := []struct {
		name string
		body string
		want int
	}{
		{"not json", `nope`, 400},
		{"bad id", `{"task_id":"../x","type":"image"}`, 400},
		{"bad type", `{"task_id":"x1","type":"audio"}`, 400},
		{"params not object", `{"task_id":"x1","type":"image","params":[1]}`, 400},
		{"too large", `{"task_id":"x1","type":"image","image":"` + strings.Repeat("A", 16<<20) + `"}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			sim.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/tasks", strings.NewReader(tt.body)))
			if rec.Code != tt.want || !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("status %d body %q, want %d with JSON", rec.Code, rec.Body.String(), tt.want)
			}
		})
	}
}

func TestSimRequireKey(t *testing.T) {
	const key, secret = "proxy-key-1", "proxy-secret-1"
	_, good, _ := startSim(t, SimConfig{RequireKey: key, RequireSecret: secret})
	ctx := context.Background()
	tests := []struct {
		name        string
		key, secret string
		wantOK      bool
	}{
		{"no headers", "", "", false},
		{"key only", key, "", false},
		{"wrong secret", key, "proxy-secret-2", false},
		{"wrong key", "proxy-key-2", secret, false},
		{"swapped", secret, key, false},
		{"matching", key, secret, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{BaseURL: good.BaseURL, Key: tt.key, Secret: tt.secret}
			_, herr := c.Health(ctx)
			_, serr := c.Status(ctx, "any-task")
			if tt.wantOK {
				if herr != nil {
					t.Fatalf("health with matching headers: %v", herr)
				}
				if !errors.Is(serr, ErrNotFound) {
					t.Fatalf("status of unknown task with matching headers: %v", serr)
				}
				return
			}
			for _, err := range []error{herr, serr} {
				if statusCode(err) != http.StatusUnauthorized {
					t.Fatalf("err = %v, want 401", err)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), key) {
					t.Fatal("error text carries a credential")
				}
			}
		})
	}
}

func TestSimFaults(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		fault string
		check func(t *testing.T, c *Client, clock *testutil.Clock)
	}{
		{FaultRefuse, func(t *testing.T, c *Client, clock *testutil.Clock) {
			if _, err := c.Submit(ctx, imageTask("f-1")); statusCode(err) != http.StatusServiceUnavailable {
				t.Fatalf("submit: %v, want 503", err)
			}
			if _, err := c.Status(ctx, "f-1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("status of a refused task: %v, want ErrNotFound", err)
			}
		}},
		{FaultDrop, func(t *testing.T, c *Client, clock *testutil.Clock) {
			if st, err := c.Submit(ctx, imageTask("f-1")); err != nil || st.Status != StatusPending {
				t.Fatalf("submit: %+v, %v; want accepted", st, err)
			}
			if _, err := c.Status(ctx, "f-1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("status: %v, want ErrNotFound", err)
			}
			if h, _ := c.Health(ctx); h.Running != 0 {
				t.Fatalf("a dropped task still occupies capacity: running %d", h.Running)
			}
		}},
		{FaultHang, func(t *testing.T, c *Client, clock *testutil.Clock) {
			for _, call := range []func(ctx context.Context) error{
				func(ctx context.Context) error { _, err := c.Submit(ctx, imageTask("f-1")); return err },
				func(ctx context.Context) error { _, err := c.Status(ctx, "f-1"); return err },
			} {
				cctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
				err := call(cctx)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("hung call: %v, want deadline exceeded", err)
				}
			}
			if _, err := c.Health(ctx); err != nil {
				t.Fatalf("health under hang: %v", err)
			}
		}},
		{FaultCorrupt, func(t *testing.T, c *Client, clock *testutil.Clock) {
			for _, req := range []*TaskRequest{imageTask("f-1"), videoTask("f-2")} {
				finish(t, c, clock, req)
				body, ctype := fetch(t, c, req.TaskID, false)
				want := map[string]string{"image": "image/png", "video": "video/mp4"}[req.Type]
				if ctype != want {
					t.Fatalf("corrupt %s: Content-Type %q, want %q", req.Type, ctype, want)
				}
				if _, _, err := image.Decode(bytes.NewReader(body)); err == nil {
					t.Fatal("corrupt result decodes as an image")
				}
				if len(body) >= 8 && string(body[4:8]) == "ftyp" {
					t.Fatal("corrupt result looks like an MP4")
				}
			}
		}},
		{FaultError, func(t *testing.T, c *Client, clock *testutil.Clock) {
			if _, err := c.Submit(ctx, imageTask("f-1")); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Hour)
			st, err := c.Status(ctx, "f-1")
			if err != nil || st.Status != StatusFailed || st.Error == "" {
				t.Fatalf("status = %+v, %v; want failed with a message", st, err)
			}
			if _, err := c.Result(ctx, "f-1"); statusCode(err) != http.StatusConflict {
				t.Fatalf("result of a failed task: %v, want 409", err)
			}
		}},
		{Fault5xx, func(t *testing.T, c *Client, clock *testutil.Clock) {
			if _, err := c.Health(ctx); statusCode(err) != 500 {
				t.Fatalf("health: %v, want 500", err)
			}
			if _, err := c.Submit(ctx, imageTask("f-1")); statusCode(err) != 500 {
				t.Fatalf("submit: %v, want 500", err)
			}
			if _, err := c.Status(ctx, "f-1"); statusCode(err) != 500 {
				t.Fatalf("status: %v, want 500", err)
			}
			if err := c.Cancel(ctx, "f-1"); statusCode(err) != 500 {
				t.Fatalf("cancel: %v, want 500", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fault, func(t *testing.T) {
			_, c, clock := startSim(t, SimConfig{Fault: tt.fault})
			tt.check(t, c, clock)
		})
	}
}

func TestSimFaultRateIsPerTaskAndStable(t *testing.T) {
	_, c, clock := startSim(t, SimConfig{Fault: FaultRefuse, FaultRate: 0.5, Capacity: 1000})
	ctx := context.Background()
	refused := 0
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("rate-%d", i)
		_, err1 := c.Submit(ctx, imageTask(id))
		clock.Advance(time.Hour)
		_, err2 := c.Submit(ctx, imageTask(id))
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("task %s met two fates: %v then %v", id, err1, err2)
		}
		if err1 != nil {
			refused++
		}
	}
	if refused < 60 || refused > 140 {
		t.Fatalf("fault rate 0.5 refused %d of 200", refused)
	}
}

// TestSimServeReleasesHungCallsOnShutdown: a call the hang fault holds is
// released when Serve's context ends (the connection is dropped with no
// answer), and Serve returns promptly, well inside its 5 s shutdown grace,
// which a held call would use up. The context ends only once the handler is
// known to hold the call: the submit is sent with Expect: 100-continue, and
// the server sends "100 Continue" only when the handler starts reading the
// body, so the call is never one refused at the door instead.
func TestSimServeReleasesHungCallsOnShutdown(t *testing.T) {
	sim, err := NewSim(SimConfig{Fault: FaultHang})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- sim.Serve(ctx, ln) }()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	body, _ := json.Marshal(imageTask("stuck"))
	fmt.Fprintf(conn, "POST /tasks HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
	rd := bufio.NewReader(conn)
	status, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100") {
		t.Fatalf("the handler did not ask for the body: %q %v", status, err)
	}
	if blank, err := rd.ReadString('\n'); err != nil || blank != "\r\n" {
		t.Fatalf("after 100 Continue: %q %v", blank, err)
	}
	if _, err := conn.Write(body); err != nil {
		t.Fatal(err)
	}
	cancel() // the handler is running: it holds the call

	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return within 3 s of its context ending: the hung call was not released")
	}
	answer, err := io.ReadAll(rd)
	if len(answer) > 0 {
		t.Fatalf("a hung call got an answer: %q", answer)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the hung call was not released by shutdown")
	}
}

func TestNewSimValidates(t *testing.T) {
	bad := []SimConfig{
		{Fault: "explode"},
		{FaultRate: 1.5},
		{FaultRate: -0.1},
		{Duration: -time.Second},
		{Capacity: -1},
		{RequireKey: "k"},
		{RequireSecret: "s"},
	}
	for _, cfg := range bad {
		if _, err := NewSim(cfg); err == nil {
			t.Errorf("NewSim(%+v) accepted", cfg)
		}
	}
	s, err := NewSim(SimConfig{Fault: FaultDrop})
	if err != nil {
		t.Fatal(err)
	}
	got := s.Config()
	if got.Addr != "127.0.0.1:9100" || got.Duration != 3*time.Second || got.Capacity != 2 || got.FaultRate != 1 {
		t.Fatalf("defaults = %+v", got)
	}
}

func TestRunSimCommandFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"--fault", "explode"}, "--fault"},
		{[]string{"--fault-rate", "2"}, "--fault-rate"},
		{[]string{"--fault-rate", "-0.5"}, "--fault-rate"},
		{[]string{"--fault-rate", "abc"}, "fault-rate"},
		{[]string{"--require-key", "only-a-key-value"}, "--require-key"},
		{[]string{"--require-key", ":only-a-secret-value"}, "--require-key"},
		{[]string{"--require-key", "k:"}, "--require-key"},
		{[]string{"--capacity", "0"}, "--capacity"},
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"--bogus"}, "bogus"},
		{[]string{"extra"}, "unexpected"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := RunSimCommand(tt.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr %q does not mention %q", stderr.String(), tt.want)
			}
			if strings.Contains(stderr.String(), "only-a-") {
				t.Fatal("stderr echoes the --require-key value")
			}
		})
	}
}

func TestSimFlagsParse(t *testing.T) {
	tests := []struct {
		args []string
		want SimConfig
	}{
		{nil, SimConfig{Addr: "127.0.0.1:9100", Duration: 3 * time.Second, Capacity: 2, Fault: "none", Models: SimModels}},
		{[]string{"--fault", "drop"}, SimConfig{Addr: "127.0.0.1:9100", Duration: 3 * time.Second, Capacity: 2, Fault: "drop", FaultRate: 1, Models: SimModels}},
		{[]string{"--addr", "127.0.0.1:0", "--duration", "500ms", "--capacity", "5", "--fault", "5xx", "--fault-rate", "0.25", "--require-key", "k:s:x"},
			SimConfig{Addr: "127.0.0.1:0", Duration: 500 * time.Millisecond, Capacity: 5, Fault: "5xx", FaultRate: 0.25, RequireKey: "k", RequireSecret: "s:x", Models: SimModels}},
		{[]string{"--fault", "error", "--fault-rate", "0"}, SimConfig{Addr: "127.0.0.1:9100", Duration: 3 * time.Second, Capacity: 2, Fault: "none", Models: SimModels}},
		{[]string{"--models", "flux, pony"}, SimConfig{Addr: "127.0.0.1:9100", Duration: 3 * time.Second, Capacity: 2, Fault: "none", Models: []string{"flux", "pony"}}},
	}
	for _, tt := range tests {
		got, _, ok := parseSimFlags(tt.args, io.Discard)
		if !ok {
			t.Fatalf("parseSimFlags(%v) failed", tt.args)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Fatalf("parseSimFlags(%v) = %+v, want %+v", tt.args, got, tt.want)
		}
		if _, err := NewSim(got); err != nil {
			t.Fatalf("NewSim(%+v): %v", got, err)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := RunSimCommand([]string{"--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "--require-key") && !strings.Contains(stderr.String(), "-require-key") {
		t.Fatalf("--help: exit %d, %q", code, stderr.String())
	}
}

// TestSimDrawsWhatRenderMediaDraws: the simulator hands RenderMedia the whole
// request (model, mode, negative prompt, params and the i2v image sent as
// base64), so its media equal RenderMedia's for that request.
func TestSimDrawsWhatRenderMediaDraws(t *testing.T) {
	_, c, clock := startSim(t, SimConfig{})
	req := videoTask("i2v-1")
	req.Mode = "i2v"
	req.Params = json.RawMessage(`{"width":256,"height":256,"num_frames":5,"fps":8,"seed":9}`)
	req.Image, req.ImageType = testPNG(t, 64, 64, color.RGBA{10, 200, 90, 255}), "image/png"
	finish(t, c, clock, req)
	body, _ := fetch(t, c, req.TaskID, false)
	poster, _ := fetch(t, c, req.TaskID, true)
	want := mustRender(t, req)
	if !bytes.Equal(body, want.Result) || !bytes.Equal(poster, want.Preview) {
		t.Fatal("the simulator's media differ from RenderMedia's for the same request")
	}
	noImage := *req
	noImage.Image = nil
	if bytes.Equal(body, mustRender(t, &noImage).Result) {
		t.Fatal("the i2v image made no difference")
	}
}
