package comfyui

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gooni/internal/catalog"
	"gooni/internal/workspace"
)

func loadCatalog(t *testing.T) *catalog.Catalog {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "inference_settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := catalog.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fixtureDefs(t *testing.T) NodeDefs {
	t.Helper()
	defs, err := ParseNodeDefs(nodeDefsJSON)
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return defs
}

func shippedWorkflows(t *testing.T) *Workflows {
	t.Helper()
	wfs, err := LoadWorkflows(EmbeddedWorkflows(), "")
	if err != nil {
		t.Fatalf("LoadWorkflows: %v", err)
	}
	return wfs
}

// withUpload is the fixture with one uploaded file in LoadImage's list, as
// ComfyUI's list holds the files in its input folder.
func withUpload(defs NodeDefs, name string) NodeDefs {
	out := NodeDefs{}
	for k, v := range defs {
		out[k] = v
	}
	li := *defs["LoadImage"]
	li.Input.Required = map[string]json.RawMessage{"image": withChoices(defs["LoadImage"].Input.Required["image"], []string{name})}
	out["LoadImage"] = &li
	return out
}

// paramValues gives each catalog param of m its min, max or default.
func paramValues(m *catalog.Model, which string) json.RawMessage {
	vals := map[string]any{}
	for _, p := range m.Params {
		switch {
		case which == "min" && p.Min != nil:
			vals[p.Name] = *p.Min
		case which == "max" && p.Max != nil:
			vals[p.Name] = *p.Max
		default:
			vals[p.Name] = p.Default
		}
		if p.Name == "seed" {
			if f, ok := vals["seed"].(float64); ok && f < 0 {
				vals["seed"] = 0.0 // the server resolves -1 before a task is sent (CONTRACT section 12)
			}
		}
	}
	b, _ := json.Marshal(vals)
	return b
}

func nodeErrorsText(v *validation) string {
	var parts []string
	if v.err != nil {
		parts = append(parts, v.err.Type+": "+v.err.Message+": "+v.err.Details)
	}
	for id, ne := range v.nodeErrors {
		for _, e := range ne.Errors {
			parts = append(parts, ne.ClassType+" #"+id+": "+e.Type+": "+e.Message+": "+e.Details)
		}
	}
	return strings.Join(parts, "\n")
}

// TestShippedWorkflowsAgainstNodeFixture checks every workflow against the
// pinned node definitions: known class types, required inputs present,
// choices in their lists, links to existing nodes and outputs of the right
// type, values within min/max (also when filled with the catalog's bounds),
// manifest paths existing, and the output shape CONTRACT section 14 asks for.
func TestShippedWorkflowsAgainstNodeFixture(t *testing.T) {
	cat := loadCatalog(t)
	defs := fixtureDefs(t)
	wfs := shippedWorkflows(t)

	for _, m := range cat.Models {
		for _, mode := range m.Modes {
			if _, ok := wfs.Get(m.ID, mode); !ok {
				t.Errorf("catalog model %s mode %s has no workflow", m.ID, mode)
			}
		}
	}
	for _, wf := range wfs.All() {
		man := wf.Manifest
		t.Run(man.Model+"-"+man.Mode, func(t *testing.T) {
			m, ok := cat.Lookup(man.Model)
			if !ok || !slices.Contains(m.Modes, man.Mode) {
				t.Fatalf("workflow for %s %s, which the catalog does not have", man.Model, man.Mode)
			}
			if man.Type != m.Type {
				t.Errorf("manifest type %s, catalog type %s", man.Type, m.Type)
			}
			graph := wf.Graph()
			v := withUpload(defs, "example.png").validate(graph)
			if v.err != nil || len(v.nodeErrors) > 0 {
				t.Fatalf("workflow fails validation:\n%s", nodeErrorsText(v))
			}
			for _, p := range m.Params {
				if len(man.Params[p.Name]) == 0 {
					t.Errorf("catalog param %s is not mapped", p.Name)
				}
			}
			if m.NegativePrompt != (len(man.Params["negative_prompt"]) > 0) {
				t.Errorf("negative_prompt mapped = %t, catalog negative_prompt = %t", len(man.Params["negative_prompt"]) > 0, m.NegativePrompt)
			}
			if (man.Mode == "i2v") != (len(man.Params["image"]) > 0) {
				t.Errorf("image mapped = %t for mode %s", len(man.Params["image"]) > 0, man.Mode)
			}
			for _, s := range man.Samplers {
				if !samplerClasses[classOf(graph, s)] {
					t.Errorf("sampler %s is a %s", s, classOf(graph, s))
				}
			}
			if len(man.Samplers) == 0 {
				t.Error("no sampler nodes: progress would stay at 0")
			}
			outputs := map[string]bool{}
			for _, o := range v.outputs {
				outputs[o] = true
			}
			if !outputs[man.Result] {
				t.Errorf("result node %s is not a valid output node", man.Result)
			}
			switch man.Type {
			case "image":
				if classOf(graph, man.Result) != "SaveImage" {
					t.Errorf("image result node is %s, want SaveImage", classOf(graph, man.Result))
				}
			case "video":
				if classOf(graph, man.Result) != "SaveVideo" {
					t.Errorf("video result node is %s, want SaveVideo", classOf(graph, man.Result))
				}
				if f, c := inputOf(graph, man.Result, "format"), inputOf(graph, man.Result, "codec"); f != "mp4" || c != "h264" {
					t.Errorf("SaveVideo format %v codec %v, want mp4 h264", f, c)
				}
				if src, _ := linkOf(graph, man.Result, "video"); classOf(graph, src) != "CreateVideo" {
					t.Errorf("SaveVideo is fed by %s, want CreateVideo", classOf(graph, src))
				}
				if !outputs[man.Poster] || classOf(graph, man.Poster) != "SaveImage" {
					t.Errorf("poster node %s is not a valid SaveImage output", man.Poster)
				}
				if src, _ := linkOf(graph, man.Poster, "images"); classOf(graph, src) != "ImageFromBatch" {
					t.Errorf("poster is fed by %s, want ImageFromBatch", classOf(graph, src))
				}
			}
			for _, f := range wf.ModelFiles {
				opts, ok := defs[f.ClassType].Options(f.Input)
				if !ok || !slices.Contains(opts, f.File) {
					t.Errorf("model file %s (%s.%s) is not in the fixture's list", f.File, f.ClassType, f.Input)
				}
			}
			// Filled with the catalog's bounds, the graph must still validate:
			// every value the server accepts is one ComfyUI accepts.
			for _, which := range []string{"min", "max", "default"} {
				req := &workspace.TaskRequest{TaskID: "01J9Z8K4M5N6P7Q8R9S0T1V2W3", Model: man.Model, Mode: man.Mode,
					Prompt: `a "quoted" }{ prompt\n`, NegativePrompt: "blur", Params: paramValues(m, which)}
				img := ""
				if man.Mode == "i2v" {
					img = "01J9Z8K4M5N6P7Q8R9S0T1V2W3.png"
				}
				filled, err := wf.Fill(req, img)
				if err != nil {
					t.Fatalf("Fill(%s): %v", which, err)
				}
				v := withUpload(defs, img).validate(filled)
				if v.err != nil || len(v.nodeErrors) > 0 {
					t.Errorf("filled with catalog %s values, the workflow fails validation:\n%s", which, nodeErrorsText(v))
				}
			}
		})
	}
}

// TestValidatorRefusesBrokenWorkflows shows the fixture check can fail, with
// ComfyUI's error types, for each rule it enforces.
func TestValidatorRefusesBrokenWorkflows(t *testing.T) {
	defs := fixtureDefs(t)
	wfs := shippedWorkflows(t)
	pony, _ := wfs.Get("pony", "t2i") // 1 ckpt, 2 clip skip, 3/4 text, 5 latent, 6 KSampler, 7 decode, 8 save
	cases := []struct {
		name     string
		edit     func(g map[string]any)
		wantType string // in error or node_errors
		wantNode string
	}{
		{"unknown class", func(g map[string]any) { g["6"].(map[string]any)["class_type"] = "KSamplerTurbo" }, "invalid_prompt", ""},
		{"no class_type", func(g map[string]any) { delete(g["6"].(map[string]any), "class_type") }, "invalid_prompt", ""},
		{"no outputs", func(g map[string]any) { delete(g, "8") }, "prompt_no_outputs", ""},
		{"required input missing", func(g map[string]any) { delete(inputsOf(g, "6"), "steps") }, "required_input_missing", "6"},
		{"choice not in list", func(g map[string]any) { inputsOf(g, "6")["sampler_name"] = "euler_turbo" }, "value_not_in_list", "6"},
		{"model file missing", func(g map[string]any) { inputsOf(g, "1")["ckpt_name"] = "nope.safetensors" }, "value_not_in_list", "1"},
		{"over max", func(g map[string]any) { inputsOf(g, "6")["cfg"] = json.Number("100.5") }, "value_bigger_than_max", "6"},
		{"under min", func(g map[string]any) { inputsOf(g, "5")["width"] = json.Number("8") }, "value_smaller_than_min", "5"},
		{"not a number", func(g map[string]any) { inputsOf(g, "6")["steps"] = "many" }, "invalid_input_type", "6"},
		{"link to missing node", func(g map[string]any) { inputsOf(g, "7")["samples"] = []any{"99", json.Number("0")} }, "exception_during_inner_validation", "7"},
		{"link to missing output", func(g map[string]any) { inputsOf(g, "7")["vae"] = []any{"1", json.Number("3")} }, "exception_during_inner_validation", "7"},
		{"link of wrong type", func(g map[string]any) { inputsOf(g, "7")["vae"] = []any{"1", json.Number("1")} }, "return_type_mismatch", "7"},
		{"bad link shape", func(g map[string]any) { inputsOf(g, "8")["images"] = []any{"7"} }, "bad_linked_input", "8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := pony.Graph()
			c.edit(g)
			v := defs.validate(g)
			if v.err == nil {
				t.Fatalf("accepted")
			}
			if c.wantNode == "" {
				if v.err.Type != c.wantType {
					t.Fatalf("error type %s, want %s", v.err.Type, c.wantType)
				}
				return
			}
			ne, ok := v.nodeErrors[c.wantNode]
			if !ok || len(ne.Errors) == 0 || ne.Errors[0].Type != c.wantType {
				t.Fatalf("node_errors = %s; want %s on node %s", nodeErrorsText(v), c.wantType, c.wantNode)
			}
			if v.err.Type != "prompt_outputs_failed_validation" {
				t.Errorf("error type %s", v.err.Type)
			}
		})
	}
}

func inputsOf(g map[string]any, id string) map[string]any {
	return g[id].(map[string]any)["inputs"].(map[string]any)
}

func TestFillAssignsValuesByPath(t *testing.T) {
	wfs := shippedWorkflows(t)
	wf, _ := wfs.Get("anisora", "i2v")
	hostile := `x"}, "99": {"class_type": "SaveImage", "inputs": {}}, "y": "`
	req := &workspace.TaskRequest{TaskID: "01J9Z8K4M5N6P7Q8R9S0T1V2W3", Model: "anisora", Mode: "i2v",
		Prompt: hostile, NegativePrompt: "n", Params: json.RawMessage(`{"width":640,"seed":123,"guidance":4.5,"unknown":1}`)}
	g, err := wf.Fill(req, "01J9Z8K4M5N6P7Q8R9S0T1V2W3.png")
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != len(wf.Graph()) {
		t.Fatalf("the prompt text changed the graph's shape: %d nodes", len(g))
	}
	if got := inputOf(g, "7", "text"); got != hostile {
		t.Errorf("prompt = %v", got)
	}
	if got := inputOf(g, "5", "image"); got != "01J9Z8K4M5N6P7Q8R9S0T1V2W3.png" {
		t.Errorf("image = %v", got)
	}
	if got := inputOf(g, "9", "width"); got != json.Number("640") {
		t.Errorf("width = %#v", got)
	}
	if got := inputOf(g, "10", "cfg"); got != json.Number("4.5") {
		t.Errorf("cfg = %#v", got)
	}
	if got := inputOf(g, "9", "height"); got != json.Number("480") {
		t.Errorf("height kept the workflow's value? %#v", got)
	}
	if got := inputOf(g, "13", "filename_prefix"); got != "gooni/01J9Z8K4M5N6P7Q8R9S0T1V2W3" {
		t.Errorf("filename_prefix = %v", got)
	}
	// A second fill starts from the clean graph.
	if g2 := wf.Graph(); inputOf(g2, "7", "text") == hostile {
		t.Error("Fill changed the stored graph")
	}

	for name, params := range map[string]string{"array": `{"seed":["1",0]}`, "object": `{"seed":{"a":1}}`, "not object": `[1]`} {
		req.Params = json.RawMessage(params)
		if _, err := wf.Fill(req, "x.png"); err == nil {
			t.Errorf("%s params accepted", name)
		}
	}
	req.Params = nil
	if _, err := wf.Fill(req, ""); err == nil {
		t.Error("i2v without an image accepted")
	}
}

func writeFile(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadWorkflowsOverridesFileByFile(t *testing.T) {
	dir := t.TempDir()
	wfs := shippedWorkflows(t)
	pony, _ := wfs.Get("pony", "t2i")
	g := pony.Graph()
	inputsOf(g, "6")["sampler_name"] = "dpmpp_2m"
	b, _ := json.Marshal(g)
	writeFile(t, dir, "pony-t2i.json", string(b))
	writeFile(t, dir, "README.txt", "not a workflow")

	got, err := LoadWorkflows(EmbeddedWorkflows(), dir)
	if err != nil {
		t.Fatal(err)
	}
	wf, _ := got.Get("pony", "t2i")
	if s := inputOf(wf.Graph(), "6", "sampler_name"); s != "dpmpp_2m" {
		t.Errorf("override not used: sampler %v", s)
	}
	if !strings.HasPrefix(wf.Source, dir) {
		t.Errorf("source = %s", wf.Source)
	}
	if flux, _ := got.Get("flux", "t2i"); flux == nil || flux.Source != "flux-t2i.json" {
		t.Errorf("flux should stay embedded: %+v", flux)
	}
	if len(got.All()) != len(wfs.All()) {
		t.Errorf("%d workflows, want %d", len(got.All()), len(wfs.All()))
	}
}

func TestLoadWorkflowsRefusesBrokenFiles(t *testing.T) {
	wfs := shippedWorkflows(t)
	pony, _ := wfs.Get("pony", "t2i")
	goodGraph, _ := json.Marshal(pony.Graph())
	manifest := func(edit func(m map[string]any)) string {
		b, _ := json.Marshal(pony.Manifest)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		edit(m)
		out, _ := json.Marshal(m)
		return string(out)
	}
	cases := []struct {
		name, graph, manifest, want string
	}{
		{"path to a missing input", string(goodGraph), manifest(func(m map[string]any) {
			m["params"].(map[string]any)["steps"] = []string{"/6/inputs/stepz"}
		}), `"stepz" does not exist`},
		{"unknown manifest field", string(goodGraph), manifest(func(m map[string]any) { m["sampler"] = "6" }), "unknown field"},
		{"result node missing", string(goodGraph), manifest(func(m map[string]any) { m["result"] = "42" }), `node "42"`},
		{"wrong file name", string(goodGraph), manifest(func(m map[string]any) { m["mode"] = "t2v" }), "must be named"},
		{"UI-format workflow", `{"last_node_id": 9, "nodes": []}`, manifest(func(map[string]any) {}), "Save (API)"},
		{"model file not a name", string(goodGraph), manifest(func(m map[string]any) { m["model_files"] = []string{"/6/inputs/steps"} }), "file name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "pony-t2i.json", c.graph)
			writeFile(t, dir, "pony-t2i.manifest.json", c.manifest)
			_, err := LoadWorkflows(EmbeddedWorkflows(), dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v; want it to mention %q", err, c.want)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("the error does not name the override file: %v", err)
			}
		})
	}
	dir := t.TempDir()
	writeFile(t, dir, "extra-t2i.manifest.json", "{}")
	if _, err := LoadWorkflows(EmbeddedWorkflows(), dir); err == nil || !strings.Contains(err.Error(), "has no workflow") {
		t.Errorf("a manifest without a workflow: %v", err)
	}
	dir = t.TempDir()
	writeFile(t, dir, "big-t2i.json", `{"1":"`+strings.Repeat("a", maxWorkflowFile)+`"}`)
	writeFile(t, dir, "big-t2i.manifest.json", "{}")
	if _, err := LoadWorkflows(EmbeddedWorkflows(), dir); err == nil || !strings.Contains(err.Error(), "over "+strconv.Itoa(maxWorkflowFile)) {
		t.Errorf("an oversized file: %v", err)
	}
}

// TestFillReplacesARandomSeed: ComfyUI refuses a seed of -1 (KSampler's
// minimum is 0); a task queued before seeds were resolved gets one drawn
// from its id, the same on every re-send, in 0..2147483647.
func TestFillReplacesARandomSeed(t *testing.T) {
	wfs, err := LoadWorkflows(EmbeddedWorkflows(), "")
	if err != nil {
		t.Fatal(err)
	}
	wf, _ := wfs.Get("pony", "t2i")
	req := &workspace.TaskRequest{TaskID: "01M8PRCHCKA5QW5R33EH020ZQ4", Prompt: "p", Params: json.RawMessage(`{"seed":-1,"steps":5}`)}
	seedOf := func() string {
		g, err := wf.Fill(req, "")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(g)
		i := bytes.Index(b, []byte(`"seed":`))
		j := bytes.IndexAny(b[i+7:], ",}")
		return string(b[i+7 : i+7+j])
	}
	first := seedOf()
	if first == "-1" || first != seedOf() {
		t.Fatalf("seed %s, then %s: want one fixed non-negative seed", first, seedOf())
	}
	req.Params = json.RawMessage(`{"seed":42}`)
	if got := seedOf(); got != "42" {
		t.Fatalf("a real seed was changed to %s", got)
	}
}
