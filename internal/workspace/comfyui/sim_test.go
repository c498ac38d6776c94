package comfyui

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"gooni/internal/workspace"
)

func postJSON(t *testing.T, url string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("answer is not JSON: %q", raw)
		}
	}
	return resp.StatusCode, out
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func filledGraph(t *testing.T, model, mode string, req *workspace.TaskRequest) map[string]any {
	t.Helper()
	wf, _ := shippedWorkflows(t).Get(model, mode)
	g, err := wf.Fill(req, "")
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestSimPromptIDRules(t *testing.T) {
	_, base := startSim(t, SimConfig{Duration: time.Hour}, nil)
	g := filledGraph(t, "pony", "t2i", taskFor(t, "pony", "t2i"))

	code, ans := postJSON(t, base+"/prompt", map[string]any{"prompt": g, "prompt_id": "task-42"})
	if code != 400 || ans["error"].(map[string]any)["type"] != "invalid_prompt_id" || len(ans["node_errors"].(map[string]any)) != 0 {
		t.Errorf("non-UUID prompt_id: %d %v", code, ans)
	}
	code, ans = postJSON(t, base+"/prompt", map[string]any{"prompt": g})
	if id, _ := ans["prompt_id"].(string); code != 200 || !canonicalUUID.MatchString(id) {
		t.Errorf("no prompt_id: %d %v", code, ans)
	}
	// Like ComfyUI, the same prompt_id twice is queued twice: the driver's lookup is what prevents twins.
	const pid = "01927e89-9285-a9ac-7ba3-09c8341d8b83"
	for i := 0; i < 2; i++ {
		if code, ans := postJSON(t, base+"/prompt", map[string]any{"prompt": g, "prompt_id": pid, "client_id": "c"}); code != 200 || ans["prompt_id"] != pid {
			t.Fatalf("post %d: %d %v", i, code, ans)
		}
	}
	q := getJSON(t, base+"/queue")
	n := 0
	for _, list := range []string{"queue_running", "queue_pending"} {
		for _, item := range q[list].([]any) {
			it := item.([]any)
			if it[1] == pid {
				n++
				if extra := it[3].(map[string]any); extra["client_id"] != "c" {
					t.Errorf("extra_data %v lacks the client_id", extra)
				}
			}
		}
	}
	if n != 2 {
		t.Errorf("prompt_id queued %d times, want 2 (ComfyUI does not dedupe)", n)
	}
	code, ans = postJSON(t, base+"/prompt", map[string]any{"client_id": "c"})
	if code != 400 || ans["error"].(map[string]any)["type"] != "no_prompt" {
		t.Errorf("no prompt: %d %v", code, ans)
	}
}

func TestSimValidationAnswerShape(t *testing.T) {
	_, base := startSim(t, SimConfig{}, nil)
	g := filledGraph(t, "pony", "t2i", taskFor(t, "pony", "t2i"))
	inputsOf(g, "6")["scheduler"] = "fastest"
	delete(inputsOf(g, "5"), "height")
	code, ans := postJSON(t, base+"/prompt", map[string]any{"prompt": g})
	if code != 400 {
		t.Fatalf("status %d", code)
	}
	if e := ans["error"].(map[string]any); e["type"] != "prompt_outputs_failed_validation" || e["message"] != "Prompt outputs failed validation" {
		t.Errorf("error %v", e)
	}
	ne := ans["node_errors"].(map[string]any)
	ks := ne["6"].(map[string]any)
	if ks["class_type"] != "KSampler" || ks["dependent_outputs"].([]any)[0] != "8" {
		t.Errorf("node 6: %v", ks)
	}
	e := ks["errors"].([]any)[0].(map[string]any)
	if e["type"] != "value_not_in_list" || !strings.HasPrefix(e["details"].(string), "scheduler: 'fastest' not in ['simple', ") ||
		e["extra_info"].(map[string]any)["input_name"] != "scheduler" {
		t.Errorf("KSampler error %v", e)
	}
	lat := ne["5"].(map[string]any)["errors"].([]any)[0].(map[string]any)
	if lat["type"] != "required_input_missing" || lat["details"] != "height" {
		t.Errorf("latent error %v", lat)
	}
}

func TestSimObjectInfoListsModelsAndUploads(t *testing.T) {
	_, base := startSim(t, SimConfig{Models: []string{"a.safetensors", "b.safetensors"}}, nil)
	info := getJSON(t, base+"/object_info")
	if len(info) != len(fixtureDefs(t)) {
		t.Errorf("%d classes", len(info))
	}
	ckpt := info["CheckpointLoaderSimple"].(map[string]any)["input"].(map[string]any)["required"].(map[string]any)["ckpt_name"].([]any)
	if got, _ := json.Marshal(ckpt[0]); string(got) != `["a.safetensors","b.safetensors"]` {
		t.Errorf("ckpt_name choices %s", got)
	}
	if info["SaveVideo"].(map[string]any)["output_node"] != true {
		t.Error("SaveVideo is not an output node")
	}
	one := getJSON(t, base+"/object_info/UNETLoader")
	if len(one) != 1 || one["UNETLoader"] == nil {
		t.Errorf("/object_info/UNETLoader = %v", one)
	}
	if none := getJSON(t, base+"/object_info/NoSuchNode"); len(none) != 0 {
		t.Errorf("unknown class: %v", none)
	}

	upload := func(name, data, overwrite string) map[string]any {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormFile("image", name)
		io.WriteString(fw, data)
		if overwrite != "" {
			mw.WriteField("overwrite", overwrite)
		}
		mw.Close()
		resp, err := http.Post(base+"/upload/image", mw.FormDataContentType(), &buf)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return map[string]any{"status": resp.StatusCode}
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	if got := upload("x.png", "one", ""); got["name"] != "x.png" || got["type"] != "input" {
		t.Errorf("first upload %v", got)
	}
	if got := upload("x.png", "two", ""); got["name"] != "x (1).png" {
		t.Errorf("same name, other bytes, no overwrite: %v", got)
	}
	if got := upload("x.png", "three", "true"); got["name"] != "x.png" {
		t.Errorf("overwrite: %v", got)
	}
	if got := upload("../x.png", "evil", "true"); got["status"] != 400 {
		t.Errorf("path in the name: %v", got)
	}
	li := getJSON(t, base+"/object_info/LoadImage")["LoadImage"].(map[string]any)["input"].(map[string]any)["required"].(map[string]any)["image"].([]any)
	if got, _ := json.Marshal(li[0]); string(got) != `["x (1).png","x.png"]` {
		t.Errorf("LoadImage choices %s", got)
	}
	resp, err := http.Get(base + "/view?filename=x.png&type=input")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "three" {
		t.Errorf("/view of the upload: %q", b)
	}
	for q, want := range map[string]int{"filename=..%2Fsecret": 400, "filename=%2Fetc%2Fpasswd": 400, "filename=nope.png": 404, "filename=a.png&subfolder=..%2F..": 403} {
		resp, err := http.Get(base + "/view?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("/view?%s: %d, want %d", q, resp.StatusCode, want)
		}
	}
}

// TestSimMediaFollowsTheGraph: the same prompt and settings give the same
// bytes; another seed gives other bytes.
func TestSimMediaFollowsTheGraph(t *testing.T) {
	_, base := startSim(t, SimConfig{Duration: 10 * time.Millisecond}, nil)
	d := startDriver(t, base, hooks{}, nil)
	run := func(seed int) []byte {
		req := taskFor(t, "pony", "t2i")
		req.Params = []byte(`{"width":256,"height":256,"steps":2,"seed":` + string(rune('0'+seed)) + `}`)
		if _, err := d.Submit(t.Context(), req); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, d, req.TaskID, workspace.StatusDone)
		b, _ := readMedia(t, d.Result, req.TaskID)
		return b
	}
	a, b, c := run(1), run(1), run(2)
	if !bytes.Equal(a, b) {
		t.Error("the same settings gave different images")
	}
	if bytes.Equal(a, c) {
		t.Error("another seed gave the same image")
	}
}

// TestSimCachesUnchangedNodes: a second identical prompt reuses the sampler's
// cached output, as ComfyUI does; the driver counts it as done work.
func TestSimCachesUnchangedNodes(t *testing.T) {
	clock := newStepClock()
	_, base := startSim(t, SimConfig{After: clock.After}, nil)
	states := make(chan workspace.TaskState, 64)
	d := startDriver(t, base, hooks{observe: func(_ string, st workspace.TaskState) { states <- st }}, nil)
	waitSocket(t, d)
	first := taskFor(t, "phr00t", "t2v")
	if _, err := d.Submit(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		clock.Step(t)
	}
	waitStatus(t, d, first.TaskID, workspace.StatusDone)
	for len(states) > 0 {
		<-states
	}
	second := *first
	second.TaskID = taskFor(t, "phr00t", "t2v").TaskID
	if _, err := d.Submit(t.Context(), &second); err != nil {
		t.Fatal(err)
	}
	// Without a single step: execution_start (0), then execution_cached names the sampler (99).
	for st := range states {
		if st.Status != workspace.StatusProcessing {
			t.Fatalf("state %+v before the cached sampler was reported", st)
		}
		if st.Progress == 99 {
			break
		}
	}
	clock.Step(t) // nothing left to sample: one pause, then the outputs
	waitStatus(t, d, second.TaskID, workspace.StatusDone)
}

func TestSimSocketSendsPreviewFrames(t *testing.T) {
	clock := newStepClock()
	_, base := startSim(t, SimConfig{After: clock.After}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws?clientId=watcher", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// The greeting comes once the socket is registered (as in ComfyUI):
	// a status frame with the client id; the driver waits for it too.
	if typ, b, err := c.Read(ctx); err != nil || typ != websocket.MessageText ||
		!bytes.Contains(b, []byte(`"type":"status"`)) || !bytes.Contains(b, []byte(`"sid":"watcher"`)) {
		t.Fatalf("first frame %s %v, want the status greeting with sid watcher", b, err)
	}
	g := filledGraph(t, "phr00t", "t2v", taskFor(t, "phr00t", "t2v"))
	if code, _ := postJSON(t, base+"/prompt", map[string]any{"prompt": g, "client_id": "watcher"}); code != 200 {
		t.Fatal(code)
	}
	binary, progress := 0, 0
	go func() {
		for i := 0; i < 4; i++ {
			clock.ch <- time.Time{}
		}
	}()
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ == websocket.MessageBinary {
			binary++
			if !bytes.HasPrefix(b, []byte{0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xd8}) {
				t.Errorf("preview frame starts % x", b[:10])
			}
			continue
		}
		var m struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		json.Unmarshal(b, &m)
		if m.Type == "progress" {
			progress++
		}
		if m.Type == "executing" && m.Data["node"] == nil && m.Data["prompt_id"] != nil {
			break
		}
	}
	if binary != 4 || progress != 4 {
		t.Errorf("%d preview frames and %d progress messages, want 4 and 4", binary, progress)
	}
}

func TestComfySimFlags(t *testing.T) {
	cases := []struct {
		args   []string
		code   int
		ok     bool
		models []string
	}{
		{nil, 0, true, nil},
		{[]string{"--models", "a.safetensors, b.safetensors,", "--fault", "oom", "--duration", "2s"}, 0, true, []string{"a.safetensors", "b.safetensors"}},
		{[]string{"--models", ""}, 0, true, []string{}},
		{[]string{"--fault", "meltdown"}, 2, false, nil},
		{[]string{"--duration", "0s"}, 2, false, nil},
		{[]string{"extra"}, 2, false, nil},
		{[]string{"--help"}, 0, false, nil},
	}
	for _, c := range cases {
		var stderr bytes.Buffer
		cfg, code, ok := parseComfySimFlags(c.args, &stderr)
		if code != c.code || ok != c.ok {
			t.Errorf("%v: code %d ok %t, want %d %t (%s)", c.args, code, ok, c.code, c.ok, stderr.String())
			continue
		}
		if ok {
			if got, want := strings.Join(cfg.Models, ","), strings.Join(c.models, ","); got != want || (cfg.Models == nil) != (c.models == nil) {
				t.Errorf("%v: models %q, want %q", c.args, cfg.Models, c.models)
			}
			if cfg.Addr != "127.0.0.1:8188" {
				t.Errorf("addr %s", cfg.Addr)
			}
		}
	}
	if code := RunSimCommand([]string{"--fault", "meltdown"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("RunSimCommand with a bad fault: %d", code)
	}
}
