package comfyui

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"gooni/internal/workspace"
)

var update = flag.Bool("update", false, "rewrite testdata/transcripts from a live run against the sim")

// A transcript is what ComfyUI's socket (here comfy-sim) sent the driver
// during one task, and the task states the driver derived from it live.
type transcriptCase struct {
	name, model, mode, fault, taskID string
	final                            workspace.TaskState
}

var transcriptCases = []transcriptCase{
	{"pony-t2i-success", "pony", "t2i", FaultNone, "01J9Z8K4M5N6P7Q8R9S0T1V2W1", workspace.TaskState{Status: "done", Progress: 100}},
	{"phr00t-t2v-success", "phr00t", "t2v", FaultNone, "01J9Z8K4M5N6P7Q8R9S0T1V2W2", workspace.TaskState{Status: "done", Progress: 100}},
	{"anisora-i2v-exec_error", "anisora", "i2v", FaultExecError, "01J9Z8K4M5N6P7Q8R9S0T1V2W3", workspace.TaskState{Status: "failed", Progress: 0,
		Error: "KSampler: RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"}},
	{"flux-t2i-oom", "flux", "t2i", FaultOOM, "01J9Z8K4M5N6P7Q8R9S0T1V2W4", workspace.TaskState{Status: "failed", Progress: 0,
		Error: "KSampler: out of GPU memory (torch.OutOfMemoryError): Allocation on device"}},
	{"phr00t-i2v-interrupt", "phr00t", "i2v", FaultInterrupt, "01J9Z8K4M5N6P7Q8R9S0T1V2W5", workspace.TaskState{Status: "failed", Progress: 0,
		Error: "interrupted in ComfyUI at KSampler"}},
}

type transcriptHeader struct {
	PromptID string   `json:"prompt_id"`
	Model    string   `json:"model"`
	Mode     string   `json:"mode"`
	Fault    string   `json:"fault"`
	Samplers []string `json:"samplers"`
}

type transcriptFrame struct {
	Text   json.RawMessage `json:"text,omitempty"`
	Binary string          `json:"binary,omitempty"` // base64
}

type transcript struct {
	header transcriptHeader
	frames []transcriptFrame
	states []workspace.TaskState
}

func transcriptPath(name, ext string) string {
	return filepath.Join("testdata", "transcripts", name+ext)
}

// record runs the case live: a stepped sim with a fixed clock, the real
// driver, its socket frames and state changes captured.
func record(t *testing.T, c transcriptCase) *transcript {
	t.Helper()
	clock := newStepClock()
	fixed := time.Date(2026, 1, 7, 12, 0, 0, 0, time.UTC)
	_, base := startSim(t, SimConfig{After: clock.After, Now: func() time.Time { return fixed }, Fault: c.fault}, nil)
	pid := mustPromptID(t, c.taskID)
	var mu sync.Mutex
	tr := &transcript{}
	ended := make(chan struct{})
	var endOnce sync.Once
	h := hooks{
		frame: func(binary bool, data []byte) {
			mu.Lock()
			defer mu.Unlock()
			if binary {
				tr.frames = append(tr.frames, transcriptFrame{Binary: base64.StdEncoding.EncodeToString(data)})
				return
			}
			tr.frames = append(tr.frames, transcriptFrame{Text: append(json.RawMessage(nil), data...)})
			var m struct {
				Type string `json:"type"`
				Data struct {
					Node     *string `json:"node"`
					PromptID string  `json:"prompt_id"`
				} `json:"data"`
			}
			// The last frame of a prompt: executing with node null.
			if json.Unmarshal(data, &m) == nil && m.Type == "executing" && m.Data.Node == nil && m.Data.PromptID == pid {
				endOnce.Do(func() { close(ended) })
			}
		},
		observe: func(_ string, st workspace.TaskState) {
			mu.Lock()
			tr.states = append(tr.states, st)
			mu.Unlock()
		},
	}
	d := startDriver(t, base, h, nil)
	waitSocket(t, d)
	wf, _ := shippedWorkflows(t).Get(c.model, c.mode)
	tr.header = transcriptHeader{PromptID: pid, Model: c.model, Mode: c.mode, Fault: c.fault, Samplers: wf.Manifest.Samplers}
	req := taskFor(t, c.model, c.mode)
	req.TaskID = c.taskID
	if _, err := d.Submit(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case clock.ch <- time.Time{}:
			continue
		case <-ended:
		case <-time.After(20 * time.Second):
			t.Fatal("the prompt did not end")
		}
		break
	}
	d.Close() // no frame after this
	mu.Lock()
	defer mu.Unlock()
	return tr
}

func (tr *transcript) write(t *testing.T, name string) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.Encode(tr.header)
	for _, f := range tr.frames {
		enc.Encode(f)
	}
	if err := os.WriteFile(transcriptPath(name, ".jsonl"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	states, _ := json.MarshalIndent(tr.states, "", " ")
	if err := os.WriteFile(transcriptPath(name, ".states.json"), append(states, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTranscript(t *testing.T, name string) *transcript {
	t.Helper()
	f, err := os.Open(transcriptPath(name, ".jsonl"))
	if err != nil {
		t.Fatalf("%v (run go test -run Transcript -update to record)", err)
	}
	defer f.Close()
	tr := &transcript{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	first := true
	for sc.Scan() {
		if first {
			if err := json.Unmarshal(sc.Bytes(), &tr.header); err != nil {
				t.Fatal(err)
			}
			first = false
			continue
		}
		var fr transcriptFrame
		if err := json.Unmarshal(sc.Bytes(), &fr); err != nil {
			t.Fatal(err)
		}
		tr.frames = append(tr.frames, fr)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(transcriptPath(name, ".states.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &tr.states); err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestTranscriptsReplay feeds each golden socket session to a fresh state
// machine, as the driver's socket loop does (binary previews skipped), and
// checks it reaches the same task states the driver reached live.
func TestTranscriptsReplay(t *testing.T) {
	if *update {
		for _, c := range transcriptCases {
			record(t, c).write(t, c.name)
		}
	}
	for _, c := range transcriptCases {
		t.Run(c.name, func(t *testing.T) {
			golden := readTranscript(t, c.name)
			var got []workspace.TaskState
			tr := newTracker(time.Now, newRedactor("", "", "", nil))
			tr.observe = func(_ string, st workspace.TaskState) { got = append(got, st) }
			tr.socketUp()
			tr.begin(golden.header.PromptID, &Manifest{Model: golden.header.Model, Mode: golden.header.Mode, Samplers: golden.header.Samplers})
			binary := 0
			for _, f := range golden.frames {
				if f.Binary != "" {
					binary++
					continue
				}
				tr.handle(f.Text)
			}
			if !reflect.DeepEqual(got, golden.states) {
				t.Fatalf("replayed states\n %+v\nrecorded live\n %+v", got, golden.states)
			}
			if len(got) == 0 || got[len(got)-1] != c.final {
				t.Fatalf("final state %+v, want %+v", got[len(got)-1], c.final)
			}
			if c.fault == FaultNone && binary == 0 {
				t.Error("the transcript has no binary preview frames")
			}
		})
	}
}

// TestTranscriptsMatchTheSim records each case again and compares it with the
// golden file: a change in what the sim sends, or in what the driver makes of
// it, shows here (run with -update after a deliberate change).
func TestTranscriptsMatchTheSim(t *testing.T) {
	for _, c := range transcriptCases {
		t.Run(c.name, func(t *testing.T) {
			golden := readTranscript(t, c.name)
			live := record(t, c)
			if !reflect.DeepEqual(live.header, golden.header) {
				t.Errorf("header %+v, golden %+v", live.header, golden.header)
			}
			if len(live.frames) != len(golden.frames) {
				t.Fatalf("%d frames, golden %d", len(live.frames), len(golden.frames))
			}
			for i := range live.frames {
				if !bytes.Equal(live.frames[i].Text, golden.frames[i].Text) || live.frames[i].Binary != golden.frames[i].Binary {
					t.Fatalf("frame %d differs:\n live   %s\n golden %s", i, live.frames[i].Text, golden.frames[i].Text)
				}
			}
			if !reflect.DeepEqual(live.states, golden.states) {
				t.Errorf("states %+v, golden %+v", live.states, golden.states)
			}
		})
	}
}
