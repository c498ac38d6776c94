package catalog

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"gooni/internal/testutil"
)

func realCatalogBytes(t testing.TB) []byte { return testutil.Catalog(t) }

func realCatalog(t testing.TB) *Catalog {
	t.Helper()
	c, err := Load(realCatalogBytes(t))
	if err != nil {
		t.Fatalf("Load(inference_settings.json): %v", err)
	}
	return c
}

// TestLoadRealCatalog pins the names and bounds the contract fixes, so a
// bad edit of inference_settings.json fails here and not in a user's browser.
func TestLoadRealCatalog(t *testing.T) {
	data := realCatalogBytes(t)
	c := realCatalog(t)
	if !bytes.Equal(c.Raw, data) {
		t.Error("Raw is not the file as loaded")
	}
	if c.Version != 1 {
		t.Errorf("version = %d, want 1", c.Version)
	}
	type bounds struct{ min, max, def float64 }
	want := []struct {
		id, typ string
		modes   []string
		aliases []string
		neg     bool
		params  map[string]bounds
	}{
		// What really runs (issue 13): AniSora and Wan 2.1 are 480p models
		// at their native 16 fps, at most 81 frames; Phr00t's Wan 2.2 14B
		// Rapid AllInOne at 16 fps, 4 steps, cfg 1.
		{"anisora", "video", []string{"i2v", "t2v"}, nil, true, map[string]bounds{
			"width": {256, 832, 832}, "height": {256, 832, 480}, "num_frames": {17, 81, 81},
			"fps": {16, 16, 16}, "steps": {1, 50, 40}, "guidance": {1, 10, 5}, "seed": {-1, 2147483647, -1}}},
		{"phr00t", "video", []string{"t2v", "i2v"}, []string{"wan-remix"}, true, map[string]bounds{
			"width": {256, 1280, 832}, "height": {256, 1280, 480}, "num_frames": {17, 81, 81},
			"fps": {16, 16, 16}, "steps": {1, 12, 4}, "guidance": {1, 3, 1}, "seed": {-1, 2147483647, -1}}},
		{"pony", "image", []string{"t2i"}, nil, true, map[string]bounds{
			"width": {512, 1536, 1024}, "height": {512, 1536, 1024}, "steps": {1, 60, 25},
			"guidance": {1, 12, 7}, "seed": {-1, 2147483647, -1}}},
		{"flux", "image", []string{"t2i"}, nil, false, map[string]bounds{
			"width": {256, 2048, 1024}, "height": {256, 2048, 1024}, "steps": {1, 50, 28},
			"guidance": {1, 10, 3.5}, "seed": {-1, 2147483647, -1}}},
	}
	if len(c.Models) != len(want) {
		t.Fatalf("%d models, want %d", len(c.Models), len(want))
	}
	for i, w := range want {
		m := c.Models[i]
		if m.ID != w.id || m.Type != w.typ || m.NegativePrompt != w.neg || m.Label == "" {
			t.Errorf("model %d = %s/%s neg=%v label=%q, want %s/%s neg=%v", i, m.ID, m.Type, m.NegativePrompt, m.Label, w.id, w.typ, w.neg)
		}
		if strings.Join(m.Modes, ",") != strings.Join(w.modes, ",") {
			t.Errorf("%s modes = %v, want %v", m.ID, m.Modes, w.modes)
		}
		if strings.Join(m.Aliases, ",") != strings.Join(w.aliases, ",") {
			t.Errorf("%s aliases = %v, want %v", m.ID, m.Aliases, w.aliases)
		}
		if len(m.Params) != len(w.params) {
			t.Errorf("%s has %d params, want %d", m.ID, len(m.Params), len(w.params))
		}
		for _, p := range m.Params {
			b, ok := w.params[p.Name]
			if !ok {
				t.Errorf("%s: unexpected param %s", m.ID, p.Name)
				continue
			}
			if p.Min == nil || p.Max == nil || *p.Min != b.min || *p.Max != b.max || p.Default != b.def {
				t.Errorf("%s.%s = [%v,%v] default %v, want [%v,%v] default %v", m.ID, p.Name, p.Min, p.Max, p.Default, b.min, b.max, b.def)
			}
			if p.Label == "" {
				t.Errorf("%s.%s has no label", m.ID, p.Name)
			}
		}
	}
	for _, name := range []string{"anisora", "phr00t", "wan-remix", "pony", "flux"} {
		if _, ok := c.Lookup(name); !ok {
			t.Errorf("Lookup(%q) failed", name)
		}
	}
	if m, _ := c.Lookup("wan-remix"); m == nil || m.ID != "phr00t" {
		t.Errorf("Lookup(wan-remix) = %v, want phr00t", m)
	}
	for _, name := range []string{"", "Flux", "wan", "phr00t "} {
		if _, ok := c.Lookup(name); ok {
			t.Errorf("Lookup(%q) succeeded", name)
		}
	}
}

// tinyCatalog is a valid catalog the rejection table breaks one piece at a time.
const tinyCatalog = `{
 "version": 1,
 "models": [
  {"id": "vid", "label": "Vid", "type": "video", "modes": ["t2v", "i2v"], "aliases": ["v"], "negative_prompt": true,
   "params": [
    {"name": "width", "label": "Width", "kind": "int", "min": 256, "max": 1280, "step": 16, "default": 832},
    {"name": "guidance", "label": "Guidance", "kind": "float", "min": 1, "max": 3, "step": 0.1, "default": 1.3},
    {"name": "sampler", "label": "Sampler", "kind": "enum", "options": ["euler", "dpm"], "default": "euler"},
    {"name": "tiling", "label": "Tiling", "kind": "bool", "default": false}
   ]},
  {"id": "img", "label": "Img", "type": "image", "modes": ["t2i", "i2i"], "negative_prompt": false, "params": []}
 ]
}`

// edit parses tinyCatalog, lets fn change it, and returns the JSON.
func edit(t *testing.T, fn func(root map[string]any)) []byte {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal([]byte(tinyCatalog), &root); err != nil {
		t.Fatal(err)
	}
	fn(root)
	out, err := json.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func model(root map[string]any, i int) map[string]any {
	return root["models"].([]any)[i].(map[string]any)
}

func param(root map[string]any, m, p int) map[string]any {
	return model(root, m)["params"].([]any)[p].(map[string]any)
}

func TestLoadTinyCatalog(t *testing.T) {
	c, err := Load([]byte(tinyCatalog))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	m, ok := c.Lookup("v")
	if !ok || m.ID != "vid" {
		t.Fatalf("Lookup(v) = %v, %v", m, ok)
	}
	if img, _ := c.Lookup("img"); img == nil || len(img.Aliases) != 0 || img.Aliases == nil {
		t.Errorf("a model without aliases should have an empty, non-nil list: %#v", img)
	}
}

func TestLoadRejects(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want string // the whole error text
	}{
		{"empty", []byte(""), "not valid JSON"},
		{"syntax with position", []byte("{\n \"version\": 1,\n \"models\": [}\n"), "not valid JSON at line 3"},
		{"trailing data", []byte(tinyCatalog + " {}"), "not valid JSON"},
		{"not an object", []byte(`[1]`), "must be a JSON object"},
		{"unknown top field", edit(t, func(r map[string]any) { r["extra"] = 1 }), "extra: unknown field"},
		{"duplicate key", []byte(`{"version":1,"version":1,"models":[]}`), "version: is given twice"},
		{"missing version", edit(t, func(r map[string]any) { delete(r, "version") }), "version: is required"},
		{"missing models", edit(t, func(r map[string]any) { delete(r, "models") }), "models: is required"},
		{"version 2", edit(t, func(r map[string]any) { r["version"] = 2 }), "version: must be 1"},
		{"version string", edit(t, func(r map[string]any) { r["version"] = "1" }), "version: must be a number"},
		{"models not array", edit(t, func(r map[string]any) { r["models"] = map[string]any{} }), "models: must be an array"},
		{"empty models", edit(t, func(r map[string]any) { r["models"] = []any{} }), "models: must list at least one model"},
		{"model not object", edit(t, func(r map[string]any) { r["models"].([]any)[1] = "img" }), "models[1]: must be an object"},
		{"unknown model field", edit(t, func(r map[string]any) { model(r, 1)["gpu"] = "a100" }), "models[1].gpu: unknown field"},
		{"missing id", edit(t, func(r map[string]any) { delete(model(r, 1), "id") }), "models[1].id: is required"},
		{"bad id", edit(t, func(r map[string]any) { model(r, 1)["id"] = "Has Space" }), `models[1].id: "Has Space" must be`},
		{"empty label", edit(t, func(r map[string]any) { model(r, 1)["label"] = " " }), "models[1].label: must not be empty"},
		{"missing negative_prompt", edit(t, func(r map[string]any) { delete(model(r, 1), "negative_prompt") }), "models[1].negative_prompt: is required"},
		{"negative_prompt not bool", edit(t, func(r map[string]any) { model(r, 1)["negative_prompt"] = "no" }), "models[1].negative_prompt: must be true or false"},
		{"duplicate id", edit(t, func(r map[string]any) { model(r, 1)["id"] = "vid" }), `models[1].id: "vid" is used twice`},
		{"alias equals id", edit(t, func(r map[string]any) { model(r, 0)["aliases"] = []any{"img"} }), `models[0].aliases[0]: "img" is used twice`},
		{"duplicate alias", edit(t, func(r map[string]any) { model(r, 1)["aliases"] = []any{"v"} }), `models[1].aliases[0]: "v" is used twice`},
		{"alias not string", edit(t, func(r map[string]any) { model(r, 0)["aliases"] = []any{1} }), "models[0].aliases[0]: must be a string"},
		{"bad type", edit(t, func(r map[string]any) { model(r, 1)["type"] = "audio" }), `models[1].type: must be "video" or "image", not "audio"`},
		{"no modes", edit(t, func(r map[string]any) { model(r, 0)["modes"] = []any{} }), "models[0].modes: must list at least one mode"},
		{"unknown mode", edit(t, func(r map[string]any) { model(r, 0)["modes"] = []any{"v2v"} }), `models[0].modes[0]: "v2v" is not a video mode (use t2v or i2v)`},
		{"video with t2i", edit(t, func(r map[string]any) { model(r, 0)["modes"] = []any{"t2v", "t2i"} }), `models[0].modes[1]: "t2i" is not a video mode (use t2v or i2v)`},
		{"image with i2v", edit(t, func(r map[string]any) { model(r, 1)["modes"] = []any{"i2v"} }), `models[1].modes[0]: "i2v" is not an image mode`},
		{"duplicate mode", edit(t, func(r map[string]any) { model(r, 0)["modes"] = []any{"t2v", "t2v"} }), `models[0].modes[1]: "t2v" is listed twice`},
		{"params missing", edit(t, func(r map[string]any) { delete(model(r, 1), "params") }), "models[1].params: is required"},
		{"param unknown field", edit(t, func(r map[string]any) { param(r, 0, 3)["hint"] = "x" }), "models[0].params[3].hint: unknown field"},
		{"duplicate param", edit(t, func(r map[string]any) { param(r, 0, 1)["name"] = "width" }), `models[0].params[1].name: "width" is used twice`},
		{"bad param name", edit(t, func(r map[string]any) { param(r, 0, 1)["name"] = "9x" }), `models[0].params[1].name: "9x" must be`},
		{"bad kind", edit(t, func(r map[string]any) { param(r, 0, 0)["kind"] = "integer" }), `models[0].params[0].kind: must be int, float, enum or bool, not "integer"`},
		{"missing default", edit(t, func(r map[string]any) { delete(param(r, 0, 0), "default") }), "models[0].params[0].default: is required"},
		{"int without min", edit(t, func(r map[string]any) { delete(param(r, 0, 0), "min") }), "models[0].params[0].min: is required for kind int"},
		{"max below min", edit(t, func(r map[string]any) { param(r, 0, 0)["max"] = 100 }), "models[0].params[0].max: must be >= min"},
		{"step zero", edit(t, func(r map[string]any) { param(r, 0, 0)["step"] = 0 }), "models[0].params[0].step: must be > 0"},
		{"step negative", edit(t, func(r map[string]any) { param(r, 0, 1)["step"] = -0.5 }), "models[0].params[1].step: must be > 0"},
		{"int min fractional", edit(t, func(r map[string]any) { param(r, 0, 0)["min"] = 255.5 }), "models[0].params[0].min: must be a whole number"},
		{"int step fractional", edit(t, func(r map[string]any) { param(r, 0, 0)["step"] = 1.5 }), "models[0].params[0].step: must be a whole number"},
		{"int beyond 2^53", []byte(strings.Replace(tinyCatalog, `"max": 1280`, `"max": 18014398509481984`, 1)), "models[0].params[0].max: must be within"},
		{"default out of bounds", edit(t, func(r map[string]any) { param(r, 0, 0)["default"] = 2000 }), "models[0].params[0].default: must be between min and max"},
		{"default off step", edit(t, func(r map[string]any) { param(r, 0, 0)["default"] = 830 }), "models[0].params[0].default: must be min plus a multiple of step"},
		{"int default off a coarse step", []byte(strings.Replace(tinyCatalog, `"max": 1280, "step": 16, "default": 832`, `"max": 9007199254740992, "step": 3, "default": 9007199254740990`, 1)), "models[0].params[0].default: must be min plus a multiple of step"},
		{"float default off step", edit(t, func(r map[string]any) { param(r, 0, 1)["default"] = 1.25 }), "models[0].params[1].default: must be min plus a multiple of step"},
		{"int default fractional", edit(t, func(r map[string]any) { param(r, 0, 0)["default"] = 832.5 }), "models[0].params[0].default: must be a whole number"},
		{"default wrong kind", edit(t, func(r map[string]any) { param(r, 0, 0)["default"] = "832" }), "models[0].params[0].default: must be a number"},
		{"min not finite", []byte(strings.Replace(tinyCatalog, `"min": 1,`, `"min": 1e400,`, 1)), "models[0].params[1].min: must be a finite number"},
		{"number options", edit(t, func(r map[string]any) { param(r, 0, 0)["options"] = []any{"a"} }), "models[0].params[0].options: only an enum takes options"},
		{"enum without options", edit(t, func(r map[string]any) { delete(param(r, 0, 2), "options") }), "models[0].params[2].options: is required for an enum"},
		{"enum empty options", edit(t, func(r map[string]any) { param(r, 0, 2)["options"] = []any{} }), "models[0].params[2].options: must list at least one option"},
		{"enum duplicate option", edit(t, func(r map[string]any) { param(r, 0, 2)["options"] = []any{"euler", "euler"} }), `models[0].params[2].options[1]: "euler" is listed twice`},
		{"enum empty option", edit(t, func(r map[string]any) { param(r, 0, 2)["options"] = []any{"euler", ""} }), "models[0].params[2].options[1]: must not be empty"},
		{"enum default not option", edit(t, func(r map[string]any) { param(r, 0, 2)["default"] = "ddim" }), `models[0].params[2].default: "ddim" is not one of the options`},
		{"enum default not string", edit(t, func(r map[string]any) { param(r, 0, 2)["default"] = 1 }), "models[0].params[2].default: must be a string"},
		{"enum with min", edit(t, func(r map[string]any) { param(r, 0, 2)["min"] = 1 }), "models[0].params[2].min: an enum takes options, not min"},
		{"bool with max", edit(t, func(r map[string]any) { param(r, 0, 3)["max"] = 1 }), "models[0].params[3].max: a bool takes no max"},
		{"bool default not bool", edit(t, func(r map[string]any) { param(r, 0, 3)["default"] = "false" }), "models[0].params[3].default: must be true or false"},
		{"null label", edit(t, func(r map[string]any) { param(r, 0, 3)["label"] = nil }), "models[0].params[3].label: must be a string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.data)
			if err == nil {
				t.Fatalf("Load accepted it: %+v", c)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestLoadRejectsExactPath checks the whole message of one error, so the
// format "path: message" that main prints stays as documented.
func TestLoadRejectsExactPath(t *testing.T) {
	data := edit(t, func(r map[string]any) { param(r, 1-1, 1)["max"] = 0.5 })
	_, err := Load(data)
	if err == nil || err.Error() != "models[0].params[1].max: must be >= min" {
		t.Fatalf("error = %v", err)
	}
}

func TestLoadKeepsRawCopy(t *testing.T) {
	data := []byte(tinyCatalog)
	c, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	data[0] = 'X'
	if c.Raw[0] != '{' {
		t.Error("Raw shares memory with the caller's buffer")
	}
}
