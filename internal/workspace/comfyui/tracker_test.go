package comfyui

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"gooni/internal/workspace"
)

func frame(kind string, data map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"type": kind, "data": data})
	return b
}

func newTestTracker(pid string, samplers ...string) *tracker {
	tr := newTracker(time.Now, newRedactor("", "", "", nil))
	tr.socketUp()
	tr.begin(pid, &Manifest{Model: "wan22", Mode: "t2v", Samplers: samplers})
	return tr
}

func stateOf(t *testing.T, tr *tracker, pid string) workspace.TaskState {
	t.Helper()
	st, ok := tr.fresh(pid)
	if !ok {
		t.Fatalf("no fresh state for %s", pid)
	}
	return st
}

// A Wan 2.2 workflow has two samplers (high noise, then low noise): progress
// is their sum, each counting half.
func TestTrackerSumsTwoSamplers(t *testing.T) {
	const pid = "00000000-0000-0000-0000-000000000001"
	tr := newTestTracker(pid, "3", "7")
	steps := []struct {
		kind string
		data map[string]any
		want workspace.TaskState
	}{
		{"execution_start", map[string]any{"prompt_id": pid}, workspace.TaskState{Status: "processing"}},
		{"executing", map[string]any{"node": "3", "prompt_id": pid}, workspace.TaskState{Status: "processing"}},
		{"progress", map[string]any{"value": 10, "max": 20, "node": "3", "prompt_id": pid}, workspace.TaskState{Status: "processing", Progress: 25}},
		{"progress", map[string]any{"value": 3, "max": 3, "node": "9", "prompt_id": pid}, workspace.TaskState{Status: "processing", Progress: 25}}, // VAE decode: not a sampler
		{"progress", map[string]any{"value": 20, "max": 20, "node": "3", "prompt_id": pid}, workspace.TaskState{Status: "processing", Progress: 50}},
		{"progress", map[string]any{"value": 1, "max": 4, "node": "7", "prompt_id": pid}, workspace.TaskState{Status: "processing", Progress: 62}},
		{"progress", map[string]any{"value": 4, "max": 4, "node": "7", "prompt_id": "00000000-0000-0000-0000-000000000002"}, workspace.TaskState{Status: "processing", Progress: 62}}, // another prompt
		{"progress", map[string]any{"value": 4, "max": 4, "node": "7", "prompt_id": pid}, workspace.TaskState{Status: "processing", Progress: 99}},
		{"execution_success", map[string]any{"prompt_id": pid}, workspace.TaskState{Status: "done", Progress: 100}},
		{"execution_error", map[string]any{"prompt_id": pid, "node_type": "X"}, workspace.TaskState{Status: "done", Progress: 100}}, // final states stay
	}
	for i, s := range steps {
		tr.handle(frame(s.kind, s.data))
		if got := stateOf(t, tr, pid); got != s.want {
			t.Fatalf("after message %d (%s): %+v, want %+v", i, s.kind, got, s.want)
		}
	}
}

func TestTrackerCountsCachedSamplersAsDone(t *testing.T) {
	const pid = "00000000-0000-0000-0000-000000000001"
	tr := newTestTracker(pid, "3", "7")
	tr.handle(frame("execution_start", map[string]any{"prompt_id": pid}))
	tr.handle(frame("execution_cached", map[string]any{"nodes": []string{"1", "3"}, "prompt_id": pid}))
	if got := stateOf(t, tr, pid); got.Progress != 50 {
		t.Fatalf("progress %d with one of two samplers cached, want 50", got.Progress)
	}
	tr.handle(frame("execution_cached", map[string]any{"nodes": []string{"3", "7"}, "prompt_id": pid}))
	if got := stateOf(t, tr, pid); got.Progress != 99 || got.Status != "processing" {
		t.Fatalf("all cached: %+v, want processing 99", got)
	}
}

func TestTrackerIgnoresMalformedFrames(t *testing.T) {
	const pid = "00000000-0000-0000-0000-000000000001"
	tr := newTestTracker(pid, "3")
	for _, f := range []string{
		``, `not json`, `[]`, `{"type": 5}`, `{"type":"progress","data":"x"}`,
		`{"type":"progress","data":{"prompt_id":"` + pid + `","node":"3","value":"1","max":4}}`,
		`{"type":"progress","data":{"prompt_id":"` + pid + `","node":"3","value":1,"max":0}}`,
		`{"type":"progress","data":{"prompt_id":"` + pid + `","node":3,"value":1,"max":4}}`,
		`{"type":"execution_start","data":{"prompt_id":["` + pid + `"]}}`,
	} {
		tr.handle([]byte(f))
	}
	if got := stateOf(t, tr, pid); got != (workspace.TaskState{Status: "pending"}) {
		t.Fatalf("malformed frames changed the state: %+v", got)
	}
	tr.handle([]byte(`{"type":"progress","data":{"prompt_id":"` + pid + `","node":"3","value":9,"max":4}}`))
	if got := stateOf(t, tr, pid); got.Progress != 99 {
		t.Fatalf("value over max: progress %d, want it capped at 99", got.Progress)
	}
}

func TestTrackerDistrustsLiveStatesAfterAnEmptyQueue(t *testing.T) {
	const pid = "00000000-0000-0000-0000-000000000001"
	tr := newTestTracker(pid, "3")
	tr.handle(frame("execution_start", map[string]any{"prompt_id": pid}))
	tr.handle(frame("status", map[string]any{"status": map[string]any{"exec_info": map[string]any{"queue_remaining": 0}}}))
	if _, ok := tr.fresh(pid); ok {
		t.Fatal("a running task is still trusted after ComfyUI said its queue is empty")
	}
	tr.handle(frame("progress", map[string]any{"value": 1, "max": 4, "node": "3", "prompt_id": pid}))
	if _, ok := tr.fresh(pid); !ok {
		t.Fatal("a new message should confirm the state again")
	}
	tr.socketUp() // a new session: everything must be confirmed again
	if _, ok := tr.fresh(pid); ok {
		t.Fatal("state from the previous socket session trusted")
	}
}

func TestTaskErrorText(t *testing.T) {
	red := newRedactor("sekret-token-123", "", "", nil)
	cases := []struct {
		name, node, typ, msg, want string
	}{
		{"plain", "KSampler", "RuntimeError", "mat1 and mat2 shapes cannot be multiplied (77x2048 and 768x320)\n",
			"KSampler: RuntimeError: mat1 and mat2 shapes cannot be multiplied (77x2048 and 768x320)"},
		{"torch OOM with ComfyUI's tips", "KSampler", "torch.OutOfMemoryError", "Allocation on device \nThis error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might have accidentally set the batch_size to a large number.",
			"KSampler: out of GPU memory (torch.OutOfMemoryError): Allocation on device"},
		{"CUDA OOM", "VAEDecode", "torch.cuda.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity; 20.1 GiB already allocated)",
			"VAEDecode: out of GPU memory (torch.cuda.OutOfMemoryError): CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity; 20.1 GiB already allocated)"},
		{"traceback in the message", "UNETLoader", "FileNotFoundError", "no such file\nTraceback (most recent call last):\n  File \"x.py\", line 1\n",
			"UNETLoader: FileNotFoundError: no such file"},
		{"control characters and a credential", "CLIPTextEncode", "ValueError", "bad\x1b[31m token sekret-token-123\x00 here\ttoo",
			"CLIPTextEncode: ValueError: bad [31m token [redacted] here too"},
		{"nothing known", "", "", "", "unknown node: error: no message"},
	}
	for _, c := range cases {
		if got := taskErrorText(red, c.node, c.typ, c.msg); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
	long := taskErrorText(red, "KSampler", "RuntimeError", strings.Repeat("é", 3000))
	if len(long) > maxTaskError || !utf8.ValidString(long) || !strings.HasSuffix(long, "...") {
		t.Errorf("long message: %d bytes, valid UTF-8 %t", len(long), utf8.ValidString(long))
	}
}
