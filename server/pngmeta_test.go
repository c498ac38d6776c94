package server

import (
	"bytes"
	"encoding/json"
	"image"
	"image/draw"
	_ "image/png"
	"strings"
	"testing"

	"gooni/internal/pngmeta"
	"gooni/internal/workspace"
)

// TestServedPNGCarriesSettings: a task submitted with a random seed runs
// through the real dispatcher on a workspace-sim on loopback; the PNG that
// GET /results serves, and the one ?download=1 gives, carry the A1111
// `parameters` and the `gooni` chunks (CONTRACT section 13) with the seed
// the task view shows (resolved before the commit), and the file in media/
// is what is served.
func TestServedPNGCarriesSettings(t *testing.T) {
	e := newLiveEnv(t, workspace.SimConfig{})
	id := e.submit(`{"model":"pony","mode":"t2i","prompt":"a lighthouse at dusk","negative_prompt":"blurry, text",
		"params":{"width":832,"height":1216,"steps":12,"guidance":6.5,"seed":-1}}`)
	v := e.waitTerminal(id)
	if v.Status != "done" {
		t.Fatalf("task %s: %+v", id, v)
	}
	var params struct {
		Seed json.Number `json:"seed"`
	}
	if err := json.Unmarshal(v.Params, &params); err != nil || params.Seed == "" || params.Seed == "-1" {
		t.Fatalf("the view's params %s hold no resolved seed", v.Params)
	}
	want := pngmeta.Settings{Model: "pony", Mode: "t2i", Prompt: v.Prompt, NegativePrompt: v.NegativePrmpt, Params: v.Params, TaskID: id}
	wantGooni, err := pngmeta.GooniJSON(want)
	if err != nil {
		t.Fatal(err)
	}
	var served []byte
	for _, path := range []string{"/results/" + id, "/results/" + id + "?download=1"} {
		w := e.do(req{method: "GET", path: path, header: e.key()})
		if w.Code != 200 || w.Header().Get("Content-Type") != "image/png" {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Header().Get("Content-Type"))
		}
		if strings.Contains(path, "download") && !strings.Contains(w.Header().Get("Content-Disposition"), "gooni-"+id+".png") {
			t.Errorf("download named %q", w.Header().Get("Content-Disposition"))
		}
		texts, err := pngmeta.Read(bytes.NewReader(w.Body.Bytes()))
		if err != nil {
			t.Fatalf("GET %s: not a readable PNG: %v", path, err)
		}
		p := texts["parameters"]
		if p != pngmeta.Parameters(want) {
			t.Errorf("GET %s: parameters\n%q\nwant\n%q", path, p, pngmeta.Parameters(want))
		}
		for _, s := range []string{"a lighthouse at dusk\n", "Negative prompt: blurry, text\n", "Steps: 12", "CFG scale: 6.5", "Seed: " + params.Seed.String() + ",", "Size: 832x1216", "Model: pony"} {
			if !strings.Contains(p, s) {
				t.Errorf("GET %s: parameters %q lacks %q", path, p, s)
			}
		}
		if texts["gooni"] != wantGooni {
			t.Errorf("GET %s: gooni chunk\n%s\nwant\n%s", path, texts["gooni"], wantGooni)
		}
		if served == nil {
			served = w.Body.Bytes()
		} else if !bytes.Equal(served, w.Body.Bytes()) {
			t.Errorf("the download differs from the served result")
		}
	}
	onDisk := readFile(t, e.dataDir+"/media/"+id+".png")
	if !bytes.Equal(onDisk, served) {
		t.Errorf("the served bytes are not the stored file")
	}
}

// pixels decodes a PNG into its RGBA pixels (bounds first), so images can be
// compared whatever text chunks they carry.
func pixels(t *testing.T, b []byte) []byte {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decoding a result: %v", err)
	}
	rgba := image.NewRGBA(img.Bounds())
	draw.Draw(rgba, rgba.Bounds(), img, img.Bounds().Min, draw.Src)
	return append([]byte(img.Bounds().String()), rgba.Pix...)
}
