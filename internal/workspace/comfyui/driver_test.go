package comfyui

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"gooni/internal/mp4"
	"gooni/internal/workspace"
)

// TestDriverRunsEveryWorkflowOnTheSim submits a task for every catalog model
// and mode and follows it to done, then fetches the result and poster.
func TestDriverRunsEveryWorkflowOnTheSim(t *testing.T) {
	for _, wf := range shippedWorkflows(t).All() {
		model, mode := wf.Manifest.Model, wf.Manifest.Mode
		t.Run(model+"-"+mode, func(t *testing.T) {
			t.Parallel()
			sim, base := startSim(t, SimConfig{Duration: 40 * time.Millisecond}, nil)
			d := startDriver(t, base, hooks{}, nil)
			req := taskFor(t, model, mode)
			st, err := d.Submit(t.Context(), req)
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if st.TaskID != req.TaskID || (st.Status != workspace.StatusPending && st.Status != workspace.StatusProcessing) {
				t.Fatalf("Submit answered %+v", st)
			}
			done := waitStatus(t, d, req.TaskID, workspace.StatusDone)
			if done.Progress != 100 || done.Error != "" {
				t.Errorf("done state %+v", done)
			}
			if n := sim.Submissions(mustPromptID(t, req.TaskID)); n != 1 {
				t.Errorf("ComfyUI got prompt_id %s %d times", mustPromptID(t, req.TaskID), n)
			}
			if mode == "i2v" {
				sim.mu.Lock()
				up := sim.uploads[req.TaskID+".png"]
				sim.mu.Unlock()
				if !bytes.Equal(up, req.Image) {
					t.Errorf("the input image was not uploaded as %s.png", req.TaskID)
				}
			}
			body, ctype := readMedia(t, d.Result, req.TaskID)
			switch wf.Manifest.Type {
			case "video":
				if ctype != "video/mp4" || !bytes.Contains(body[:16], []byte("ftyp")) {
					t.Errorf("result %s, %d bytes, not an MP4", ctype, len(body))
				}
				// What was asked for (taskFor), through the graph: the
				// latent's width, height and length, CreateVideo's fps.
				if in, err := mp4.Probe(body); err != nil {
					t.Errorf("result: %v", err)
				} else if in.Width != 320 || in.Height != 192 || len(in.SampleSizes) != 17 || in.FPS() != 8 {
					t.Errorf("video is %dx%d, %d frames at %v fps; want 320x192, 17 at 8 (taskFor)", in.Width, in.Height, len(in.SampleSizes), in.FPS())
				}
				poster, ptype := readMedia(t, d.Preview, req.TaskID)
				if ptype != "image/png" || !bytes.HasPrefix(poster, []byte("\x89PNG")) {
					t.Errorf("poster %s is not a PNG", ptype)
				}
			case "image":
				if ctype != "image/png" || !bytes.HasPrefix(body, []byte("\x89PNG")) {
					t.Errorf("result %s is not a PNG", ctype)
				}
				if _, err := d.Preview(t.Context(), req.TaskID); !errors.Is(err, workspace.ErrNotFound) {
					t.Errorf("image Preview: %v, want ErrNotFound (no poster node)", err)
				}
			}
		})
	}
}

func TestDriverHealthReportsServableModels(t *testing.T) {
	wfs := shippedWorkflows(t)
	all := RequiredModelFiles(wfs)
	without := func(drop string) []string {
		var out []string
		for _, f := range all {
			if f != drop {
				out = append(out, f)
			}
		}
		return out
	}
	cases := []struct {
		name   string
		models []string
		want   string
	}{
		{"every file", nil, "anisora,flux,phr00t,pony"},
		{"no Wan 2.1 T2V base: AniSora t2v cannot run", without("wan2.1_t2v_14B_fp8_e4m3fn.safetensors"), "flux,phr00t,pony"},
		{"no shared VAE", without("wan_2.1_vae.safetensors"), "flux,phr00t,pony"},
		{"only FLUX", []string{"flux1-dev-fp8.safetensors"}, "flux"},
		{"nothing", []string{}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, base := startSim(t, SimConfig{Models: c.models}, nil)
			d := startDriver(t, base, hooks{}, nil)
			h, err := d.Health(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(h.Models, ","); got != c.want || h.Status != "ok" || h.Capacity != 1 {
				t.Errorf("health %+v; want models %q", h, c.want)
			}
		})
	}
}

// TestDriverProgressFollowsTheSocket steps the sim one sampler step at a
// time: the progress rises to 99 at most, then done is 100, all without
// polling /queue or /history while the socket is up.
func TestDriverProgressFollowsTheSocket(t *testing.T) {
	clock := newStepClock()
	sim, base := startSim(t, SimConfig{After: clock.After}, nil)
	var mu sync.Mutex
	var seen []workspace.TaskState
	d := startDriver(t, base, hooks{observe: func(_ string, st workspace.TaskState) {
		mu.Lock()
		seen = append(seen, st)
		mu.Unlock()
	}}, nil)
	waitSocket(t, d)
	req := taskFor(t, "phr00t", "t2v") // 4 steps
	if _, err := d.Submit(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, d, req.TaskID, workspace.StatusProcessing)
	polls := sim.PollRequests()
	for step := 1; step <= 4; step++ {
		clock.Step(t)
		want := min(99, step*100/4)
		if step == 4 {
			waitStatus(t, d, req.TaskID, workspace.StatusDone)
			break
		}
		waitFor(t, "progress", func() bool {
			st, err := d.Status(t.Context(), req.TaskID)
			return err == nil && st.Progress == want
		})
	}
	if got := sim.PollRequests(); got != polls {
		t.Errorf("%d polls of /queue or /history while the socket was up", got-polls)
	}
	mu.Lock()
	defer mu.Unlock()
	var progress []int
	for _, st := range seen {
		progress = append(progress, st.Progress)
	}
	want := []int{0, 25, 50, 75, 99, 100} // 4/4 is 99 until ComfyUI says the prompt succeeded
	if len(progress) != len(want) {
		t.Fatalf("states seen %+v", seen)
	}
	for i := range want {
		if progress[i] != want[i] {
			t.Fatalf("progress %v, want %v", progress, want)
		}
	}
}

func TestDriverFaults(t *testing.T) {
	cases := []struct {
		fault   string
		wantErr string
	}{
		{FaultExecError, "KSampler: RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"},
		{FaultOOM, "KSampler: out of GPU memory (torch.OutOfMemoryError): Allocation on device"},
		{FaultInterrupt, "interrupted in ComfyUI at KSampler"},
	}
	for _, c := range cases {
		t.Run(c.fault, func(t *testing.T) {
			t.Parallel()
			_, base := startSim(t, SimConfig{Duration: 40 * time.Millisecond, Fault: c.fault}, nil)
			d := startDriver(t, base, hooks{}, nil)
			req := taskFor(t, "pony", "t2i")
			if _, err := d.Submit(t.Context(), req); err != nil {
				t.Fatal(err)
			}
			st := waitStatus(t, d, req.TaskID, workspace.StatusFailed)
			if st.Error != c.wantErr {
				t.Errorf("error %q, want %q", st.Error, c.wantErr)
			}
			// The same answer from /history alone (a fresh driver with no socket history).
			d2 := startDriver(t, base, hooks{}, func(c *Config) { c.ClientID = "gooni-account-2" })
			st2, err := d2.Status(t.Context(), req.TaskID)
			if err != nil || st2.Status != workspace.StatusFailed || st2.Error != c.wantErr {
				t.Errorf("from history: %+v, %v", st2, err)
			}
		})
	}
}

func TestDriverValidationRefusal(t *testing.T) {
	t.Run("model files missing", func(t *testing.T) {
		_, base := startSim(t, SimConfig{Fault: FaultValidation}, nil)
		d := startDriver(t, base, hooks{}, nil)
		_, err := d.Submit(t.Context(), taskFor(t, "flux", "t2i"))
		var re *workspace.RefusedError
		if !errors.As(err, &re) {
			t.Fatalf("Submit: %v, want a RefusedError", err)
		}
		want := "ComfyUI refused the workflow: CheckpointLoaderSimple #1, input ckpt_name: Value not in list: ckpt_name: 'flux1-dev-fp8.safetensors' not in []"
		if re.Message != want {
			t.Errorf("refusal %q\nwant     %q", re.Message, want)
		}
	})
	t.Run("value over the node's max", func(t *testing.T) {
		sim, base := startSim(t, SimConfig{}, nil)
		d := startDriver(t, base, hooks{}, nil)
		req := taskFor(t, "pony", "t2i")
		req.Params = []byte(`{"guidance": 250, "seed": 1}`)
		_, err := d.Submit(t.Context(), req)
		var re *workspace.RefusedError
		if !errors.As(err, &re) || re.Message != "ComfyUI refused the workflow: KSampler #6, input cfg: Value 250 bigger than max of 100" {
			t.Fatalf("Submit: %v", err)
		}
		if n := sim.Submissions(mustPromptID(t, req.TaskID)); n != 0 {
			t.Errorf("refused prompt was queued %d times", n)
		}
	})
	t.Run("no workflow", func(t *testing.T) {
		_, base := startSim(t, SimConfig{}, nil)
		d := startDriver(t, base, hooks{}, nil)
		req := taskFor(t, "pony", "t2i")
		req.Model = "sdxl-turbo"
		var re *workspace.RefusedError
		if _, err := d.Submit(t.Context(), req); !errors.As(err, &re) || !strings.Contains(re.Message, `no ComfyUI workflow for model "sdxl-turbo"`) {
			t.Fatalf("Submit: %v", err)
		}
	})
}

func TestDriverRefusesAnOldComfyUI(t *testing.T) {
	sim, base := startSim(t, SimConfig{Fault: FaultOldVersion, Duration: time.Hour}, nil)
	d := startDriver(t, base, hooks{}, nil)
	_, err := d.Submit(t.Context(), taskFor(t, "pony", "t2i"))
	var ie *workspace.IncompatibleError
	if !errors.As(err, &ie) || !strings.Contains(ie.Reason, "too old") || !strings.Contains(ie.Reason, "update ComfyUI") {
		t.Fatalf("Submit: %v, want an IncompatibleError naming an old ComfyUI and the fix", err)
	}
	// Its stray prompt was taken back (deleted, or interrupted if it had started): nothing runs.
	waitFor(t, "an idle ComfyUI", func() bool {
		h, err := d.Health(t.Context())
		return err == nil && h.Running == 0
	})
	sim.mu.Lock()
	defer sim.mu.Unlock()
	for id, e := range sim.history {
		if st := e["status"].(map[string]any)["status_str"]; st != "error" {
			t.Errorf("stray prompt %s ended %v", id, st)
		}
	}
}

func TestDriverCancel(t *testing.T) {
	clock := newStepClock()
	sim, base := startSim(t, SimConfig{After: clock.After}, nil)
	d := startDriver(t, base, hooks{}, nil)
	waitSocket(t, d)
	running, queued := taskFor(t, "pony", "t2i"), taskFor(t, "flux", "t2i")
	for _, req := range []*workspace.TaskRequest{running, queued} {
		if _, err := d.Submit(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus(t, d, running.TaskID, workspace.StatusProcessing)
	if st, err := d.Status(t.Context(), queued.TaskID); err != nil || st.Status != workspace.StatusPending {
		t.Fatalf("second task: %+v, %v", st, err)
	}

	// While queued: taken out of ComfyUI's queue; it never runs.
	if err := d.Cancel(t.Context(), queued.TaskID); err != nil {
		t.Fatalf("Cancel queued: %v", err)
	}
	if _, err := d.Status(t.Context(), queued.TaskID); !errors.Is(err, workspace.ErrNotFound) {
		t.Errorf("Status after cancel: %v, want ErrNotFound", err)
	}

	// While running: interrupted.
	if err := d.Cancel(t.Context(), running.TaskID); err != nil {
		t.Fatalf("Cancel running: %v", err)
	}
	st := waitStatus(t, d, running.TaskID, workspace.StatusFailed)
	if st.Error != "interrupted in ComfyUI at KSampler" {
		t.Errorf("error %q", st.Error)
	}
	if sim.Completions(mustPromptID(t, queued.TaskID)) != 0 || sim.Completions(mustPromptID(t, running.TaskID)) != 0 {
		t.Error("a cancelled prompt completed")
	}

	// Finished: forgotten. Unknown: ErrNotFound.
	if err := d.Cancel(t.Context(), running.TaskID); err != nil {
		t.Fatalf("Cancel finished: %v", err)
	}
	if _, err := d.Status(t.Context(), running.TaskID); !errors.Is(err, workspace.ErrNotFound) {
		t.Errorf("Status after forgetting: %v", err)
	}
	if err := d.Cancel(t.Context(), taskFor(t, "pony", "t2i").TaskID); !errors.Is(err, workspace.ErrNotFound) {
		t.Errorf("Cancel unknown: %v, want ErrNotFound", err)
	}
}

// TestDriverSurvivesAComfyUIRestart: ComfyUI forgets the task mid-run; Status
// says ErrNotFound (the dispatcher sends it again), the re-send completes,
// and sending it once more creates no twin.
func TestDriverSurvivesAComfyUIRestart(t *testing.T) {
	clock := newStepClock()
	sim, base := startSim(t, SimConfig{After: clock.After, Fault: FaultRestart}, nil)
	d := startDriver(t, base, hooks{}, nil)
	waitSocket(t, d)
	req := taskFor(t, "phr00t", "t2v") // 4 steps: the restart comes at step 2
	pid := mustPromptID(t, req.TaskID)
	if _, err := d.Submit(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	// A re-send while it waits (a dispatcher that crashed after posting) finds it.
	if st, err := d.Submit(t.Context(), req); err != nil || st.TaskID != req.TaskID {
		t.Fatalf("re-send: %+v, %v", st, err)
	}
	if n := sim.Submissions(pid); n != 1 {
		t.Fatalf("re-send queued a twin: %d submissions", n)
	}
	waitStatus(t, d, req.TaskID, workspace.StatusProcessing)
	clock.Step(t)
	clock.Step(t) // halfway: ComfyUI "restarts"
	waitFor(t, "ErrNotFound after the restart", func() bool {
		_, err := d.Status(t.Context(), req.TaskID)
		return errors.Is(err, workspace.ErrNotFound)
	})
	if _, err := d.Submit(t.Context(), req); err != nil {
		t.Fatalf("Submit after restart: %v", err)
	}
	waitStatus(t, d, req.TaskID, workspace.StatusProcessing)
	for i := 0; i < 4; i++ {
		clock.Step(t)
	}
	waitStatus(t, d, req.TaskID, workspace.StatusDone)
	if _, err := d.Submit(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if s, c := sim.Submissions(pid), sim.Completions(pid); s != 2 || c != 1 {
		t.Errorf("submissions %d (want 2: before and after the restart), completions %d (want 1)", s, c)
	}
}

// TestDriverFallsBackToPolling: the socket drops mid-task and cannot
// reconnect; Status polls /queue and /history and still reaches done.
func TestDriverFallsBackToPolling(t *testing.T) {
	clock := newStepClock()
	sim, base := startSim(t, SimConfig{After: clock.After, Fault: FaultWSDrop}, nil)
	d := startDriver(t, base, hooks{}, nil)
	waitSocket(t, d)
	req := taskFor(t, "anisora", "i2v")
	if _, err := d.Submit(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, d, req.TaskID, workspace.StatusProcessing)
	clock.Step(t)
	waitFor(t, "progress 25", func() bool {
		st, err := d.Status(t.Context(), req.TaskID)
		return err == nil && st.Progress == 25
	})
	clock.Step(t) // halfway: sockets closed, /ws refused until the prompt ends
	waitFor(t, "the socket to drop", func() bool { return !d.tr.isUp() })
	polls := sim.PollRequests()
	st := waitStatus(t, d, req.TaskID, workspace.StatusProcessing)
	if st.Progress != 25 {
		t.Errorf("progress while polling %d, want the last known 25", st.Progress)
	}
	clock.Step(t)
	clock.Step(t)
	waitStatus(t, d, req.TaskID, workspace.StatusDone)
	if sim.PollRequests() <= polls {
		t.Error("no /queue or /history polls after the socket dropped")
	}
	body, ctype := readMedia(t, d.Result, req.TaskID)
	if ctype != "video/mp4" || len(body) == 0 {
		t.Errorf("result %s, %d bytes", ctype, len(body))
	}
	waitSocket(t, d) // and it reconnects once /ws answers again
}

// busyProxy answers the first POST /prompt calls with the given statuses.
func busyProxy(answers []int, retryAfter []string) func(http.Handler) http.Handler {
	var mu sync.Mutex
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if r.Method == http.MethodPost && r.URL.Path == "/prompt" && len(answers) > 0 {
				code, ra := answers[0], retryAfter[0]
				answers, retryAfter = answers[1:], retryAfter[1:]
				mu.Unlock()
				if ra != "" {
					w.Header().Set("Retry-After", ra)
				}
				http.Error(w, "cold start", code)
				return
			}
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	}
}

func TestDriverBusyThenFree(t *testing.T) {
	sim, base := startSim(t, SimConfig{Duration: 20 * time.Millisecond},
		busyProxy([]int{503, 429, 503}, []string{"7", "", "soon"}))
	d := startDriver(t, base, hooks{}, nil)
	req := taskFor(t, "flux", "t2i")
	for _, want := range []workspace.BusyError{{Status: 503, RetryAfter: 7 * time.Second}, {Status: 429, RetryAfter: workspace.DefaultRetryAfter}, {Status: 503, RetryAfter: workspace.DefaultRetryAfter}} {
		_, err := d.Submit(t.Context(), req)
		var be *workspace.BusyError
		if !errors.As(err, &be) || *be != want {
			t.Fatalf("Submit: %v, want %+v", err, want)
		}
	}
	if _, err := d.Submit(t.Context(), req); err != nil {
		t.Fatalf("Submit once free: %v", err)
	}
	waitStatus(t, d, req.TaskID, workspace.StatusDone)
	if n := sim.Submissions(mustPromptID(t, req.TaskID)); n != 1 {
		t.Errorf("%d submissions", n)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              workspace.DefaultRetryAfter,
		"12":                            12 * time.Second,
		"0":                             0,
		"-3":                            workspace.DefaultRetryAfter,
		"99999":                         time.Hour,
		"Fri, 02 Jan 2026 03:04:35 GMT": 30 * time.Second,
		"Fri, 02 Jan 2026 03:00:00 GMT": 0,
		"later":                         workspace.DefaultRetryAfter,
	}
	for in, want := range cases {
		if got := workspace.RetryAfter(in, now); got != want {
			t.Errorf("RetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestDriverSendsCredentials(t *testing.T) {
	const token = "tok-3f9a2c"
	var mu sync.Mutex
	var unauthorized []string
	_, base := startSim(t, SimConfig{Duration: 20 * time.Millisecond}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+token || r.Header.Get("Modal-Key") != "k1" || r.Header.Get("Modal-Secret") != "s1" {
				mu.Lock()
				unauthorized = append(unauthorized, r.Method+" "+r.URL.Path)
				mu.Unlock()
				http.Error(w, "401: Unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	d := startDriver(t, base, hooks{}, func(c *Config) { c.BearerToken, c.ProxyKey, c.ProxySecret = token, "k1", "s1" })
	waitSocket(t, d)
	req := taskFor(t, "phr00t", "i2v")
	if _, err := d.Submit(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, d, req.TaskID, workspace.StatusDone)
	if _, err := d.Health(t.Context()); err != nil {
		t.Fatal(err)
	}
	readMedia(t, d.Result, req.TaskID)
	mu.Lock()
	defer mu.Unlock()
	if len(unauthorized) > 0 {
		t.Errorf("calls without the credentials: %v", unauthorized)
	}
}

func TestNewChecksItsConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"plain http to another host", Config{BaseURL: "http://comfy.example:8188", ClientID: "a"}},
		{"path", Config{BaseURL: "https://comfy.example/comfy", ClientID: "a"}},
		{"query", Config{BaseURL: "https://comfy.example/?x=1", ClientID: "a"}},
		{"user info", Config{BaseURL: "https://u:p@comfy.example", ClientID: "a"}},
		{"no client id", Config{BaseURL: "https://comfy.example"}},
		{"client id with a space", Config{BaseURL: "https://comfy.example", ClientID: "a b"}},
		{"token with a newline", Config{BaseURL: "https://comfy.example", ClientID: "a", BearerToken: "x\r\nX-Evil: 1"}},
	}
	for _, c := range cases {
		if d, err := New(c.cfg); err == nil {
			d.Close()
			t.Errorf("%s: accepted", c.name)
		}
	}
	if _, err := New(Config{BaseURL: "ftp://comfy.example", ClientID: "a"}); !errors.Is(err, workspace.ErrTargetInvalid) {
		t.Errorf("bad scheme: %v, want ErrTargetInvalid", err)
	}
	d, err := New(Config{BaseURL: "https://comfy.example:8443/", ClientID: "gooni-account-9"})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if d.base != "https://comfy.example:8443" || d.socketURL() != "wss://comfy.example:8443/ws?clientId=gooni-account-9" {
		t.Errorf("base %s socket %s", d.base, d.socketURL())
	}
}
