package pngmeta_test

import (
	"encoding/json"
	"errors"
	"testing"

	"gooni/internal/pngmeta"
)

func TestParameters(t *testing.T) {
	cases := []struct {
		name string
		s    pngmeta.Settings
		want string
	}{
		{"flux, no negative", pngmeta.Settings{Model: "flux", Prompt: "a cat", Params: json.RawMessage(`{"width":1024,"height":768,"steps":28,"guidance":3.5,"seed":1234}`)},
			"a cat\nSteps: 28, CFG scale: 3.5, Seed: 1234, Size: 1024x768, Model: flux"},
		{"pony with negative, whole guidance", pngmeta.Settings{Model: "pony", Prompt: "a fox", NegativePrompt: "blurry, lowres", Params: json.RawMessage(`{"seed":-1,"guidance":7,"steps":25,"height":1216,"width":832}`)},
			"a fox\nNegative prompt: blurry, lowres\nSteps: 25, CFG scale: 7, Seed: -1, Size: 832x1216, Model: pony"},
		{"float forms are shortest", pngmeta.Settings{Model: "pony", Prompt: "p", Params: json.RawMessage(`{"guidance":7.0,"steps":2.5e1,"seed":2147483647}`)},
			"p\nSteps: 25, CFG scale: 7, Seed: 2147483647, Model: pony"},
		{"one side is no Size", pngmeta.Settings{Model: "flux", Prompt: "p", Params: json.RawMessage(`{"width":512}`)},
			"p\nModel: flux"},
		{"non-numbers are left out", pngmeta.Settings{Model: "flux", Prompt: "p", Params: json.RawMessage(`{"steps":"28","seed":null,"guidance":true}`)},
			"p\nModel: flux"},
		{"params not an object", pngmeta.Settings{Model: "flux", Prompt: "p", Params: json.RawMessage(`[1]`)},
			"p\nModel: flux"},
		{"multi-line prompt", pngmeta.Settings{Model: "pony", Prompt: "line one\nline two", NegativePrompt: "n1\nn2", Params: json.RawMessage(`{"steps":1}`)},
			"line one\nline two\nNegative prompt: n1\nn2\nSteps: 1, Model: pony"},
		{"model needing quotes", pngmeta.Settings{Model: "my,model: v2", Prompt: "p"},
			"p\nModel: \"my,model: v2\""},
		{"empty prompt", pngmeta.Settings{Model: "flux", Params: json.RawMessage(`{"seed":3}`)},
			"\nSeed: 3, Model: flux"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := pngmeta.Parameters(tc.s); got != tc.want {
				t.Fatalf("Parameters =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestGooniJSON(t *testing.T) {
	s := pngmeta.Settings{Model: "flux", Mode: "t2i", Prompt: "<猫> & \"dog\"", Params: json.RawMessage(`{ "seed": 1234,
		"width": 1024 }`), TaskID: "01JTASK"}
	got, err := pngmeta.GooniJSON(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"flux","mode":"t2i","prompt":"<猫> & \"dog\"","negative_prompt":"","params":{"seed":1234,"width":1024},"task_id":"01JTASK"}`
	if got != want {
		t.Fatalf("GooniJSON =\n%s\nwant\n%s", got, want)
	}

	s.Params = nil
	if got, err := pngmeta.GooniJSON(s); err != nil || got != `{"model":"flux","mode":"t2i","prompt":"<猫> & \"dog\"","negative_prompt":"","params":{},"task_id":"01JTASK"}` {
		t.Fatalf("empty params: %s, %v", got, err)
	}
	for _, bad := range []string{`[1,2]`, `"x"`, `{"a":`, `{} {}`} {
		s.Params = json.RawMessage(bad)
		if _, err := pngmeta.GooniJSON(s); !errors.Is(err, pngmeta.ErrParams) {
			t.Fatalf("params %s: error %v, want ErrParams", bad, err)
		}
		if _, err := pngmeta.Chunks(s); !errors.Is(err, pngmeta.ErrParams) {
			t.Fatalf("Chunks with params %s: error %v, want ErrParams", bad, err)
		}
	}
}

func TestChunks(t *testing.T) {
	s := pngmeta.Settings{Model: "flux", Mode: "t2i", Prompt: "p", Params: json.RawMessage(`{"seed":1}`), TaskID: "t"}
	cs, err := pngmeta.Chunks(s)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := pngmeta.GooniJSON(s)
	want := []pngmeta.Chunk{{Keyword: "parameters", Text: pngmeta.Parameters(s)}, {Keyword: "gooni", Text: g, ITXt: true}}
	if len(cs) != 2 || cs[0] != want[0] || cs[1] != want[1] {
		t.Fatalf("Chunks = %+v, want %+v", cs, want)
	}
}
