package comfyui

import (
	"encoding/json"
	"io"
	"runtime"
	"strings"
	"testing"

	"gooni/internal/workspace"
)

const scanPID = "01927e89-9285-a9ac-7ba3-09c8341d8b83"

// reference reads a /queue answer with encoding/json, holding all of it.
func reference(data []byte, want string) (*queueInfo, bool) {
	var doc map[string]json.RawMessage
	if json.Unmarshal(data, &doc) != nil {
		return nil, false
	}
	q := &queueInfo{}
	for _, key := range []string{"queue_running", "queue_pending"} {
		raw, ok := doc[key]
		if !ok {
			return nil, false
		}
		var items [][]json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil, false
		}
		for _, it := range items {
			if key == "queue_running" {
				q.running++
			} else {
				q.pending++
			}
			var id string
			if len(it) > 1 && json.Unmarshal(it[1], &id) == nil && id == want && !strings.Contains(string(it[1]), `\`) {
				q.found = map[bool]string{true: workspace.StatusProcessing, false: workspace.StatusPending}[key == "queue_running"]
				var e struct {
					Gooni gooniExtra `json:"gooni"`
				}
				if len(it) > 3 && json.Unmarshal(it[3], &e) == nil {
					q.extra = e.Gooni
				}
			}
		}
	}
	return q, true
}

func TestParseQueueAgreesWithEncodingJSON(t *testing.T) {
	item := func(n int, id string, extra any) []any {
		return []any{n, id, map[string]any{"1": map[string]any{"class_type": "X", "inputs": map[string]any{"text": `a "]}[{" \\ ` + "\u00e9\n"}}}, extra, []string{"9"}}
	}
	docs := []any{
		map[string]any{"queue_running": []any{}, "queue_pending": []any{}},
		map[string]any{"queue_running": []any{item(3, scanPID, map[string]any{"gooni": map[string]any{"task_id": "T", "model": "pony", "mode": "t2i"}})}, "queue_pending": []any{}},
		map[string]any{"queue_pending": []any{item(1, "other", nil), item(2, scanPID, map[string]any{"client_id": "c", "gooni": map[string]any{"model": "flux", "mode": "t2i"}}), []any{}}, "queue_running": []any{item(0, "x", nil)}, "extra": []any{1, "]", map[string]any{"a": nil}}},
		map[string]any{"queue_running": []any{[]any{1.5e3, nil, true, false}}, "queue_pending": []any{[]any{-1, scanPID}}},
	}
	for i, d := range docs {
		b, _ := json.MarshalIndent(d, "", "  ")
		want, _ := reference(b, scanPID)
		got, err := parseQueue(strings.NewReader(string(b)), scanPID)
		if err != nil || *got != *want {
			t.Errorf("doc %d: %+v, %v; encoding/json says %+v", i, got, err, want)
		}
	}
	for _, bad := range []string{``, `[]`, `{}`, `{"queue_running": []}`, `{"queue_running": {}, "queue_pending": []}`,
		`{"queue_running": [1], "queue_pending": []}`, `{"queue_running": [[1, "a"`, `{"queue_running": [], "queue_pending": [] `, `{"queue_running": [] "queue_pending": []}`} {
		if _, err := parseQueue(strings.NewReader(bad), scanPID); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseQueue(f *testing.F) {
	f.Add([]byte(`{"queue_running": [[1, "` + scanPID + `", {}, {"gooni": {"model": "pony"}}, []]], "queue_pending": []}`))
	f.Add([]byte(`{"queue_pending": [[2, "x", {"a": "]\"["}, null, []], []], "queue_running": [], "z": [[[]]]}`))
	f.Add([]byte(`{"queue_running": [[1, "a\"b"]], "queue_pending": [[1e9, 2, 3]]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseQueue(strings.NewReader(string(data)), scanPID)
		want, ok := reference(data, scanPID)
		if ok && json.Valid(data) {
			if err != nil {
				t.Fatalf("valid answer refused: %v", err)
			}
			if *got != *want {
				t.Fatalf("%+v, encoding/json says %+v", got, want)
			}
		}
	})
}

// TestParseQueueHoldsLittle streams a 64 MiB answer through the scanner.
func TestParseQueueHoldsLittle(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		io.WriteString(pw, `{"queue_pending": [[1, "x", {"1": {"inputs": {"text": "`)
		endless(pw, "", 64<<20)
		io.WriteString(pw, `"}}}, {}, []], [2, "`+scanPID+`", {}, {}, []]], "queue_running": []}`)
		pw.Close()
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	q, err := parseQueue(pr, scanPID)
	runtime.ReadMemStats(&after)
	if err != nil || q.pending != 2 || q.found != workspace.StatusPending {
		t.Fatalf("%+v, %v", q, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("allocated %d bytes to read past a 64 MiB string", alloc)
	}
}
