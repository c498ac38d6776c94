package pngmeta_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"gooni/internal/pngmeta"
)

// go test ./internal/pngmeta -run 'TestImportFixtures|TestFuzzSeeds' -update
// rewrites the committed files from the definitions below.
var update = flag.Bool("update", false, "rewrite the committed import PNGs and fuzz seeds")

// importDir holds the PNGs the UI's import is tested with (ui/test and the browser tests).
const importDir = "../../e2e/browser/testdata/import"

// fixturePNG is a small RGB PNG whose image data is stored, not compressed, so
// its bytes do not depend on Go's compressor; texts go where Pillow puts them:
// after IHDR, before IDAT.
func fixturePNG(seed byte, texts ...rawChunk) []byte {
	const w, h = 48, 32
	chunks := append([]rawChunk{ihdr(w, h, 8, 2)}, texts...)
	chunks = append(chunks, rawChunk{typ: "IDAT", data: storedZlib(rgbScanlines(pattern(w, h, seed)))}, rawChunk{typ: "IEND"})
	return build(chunks...)
}

// GooniFlux is what Gooni itself writes for a FLUX task with a non-Latin-1 prompt.
var gooniFlux = pngmeta.Settings{
	Model:  "flux",
	Mode:   "t2i",
	Prompt: "富士山の上の猫、夕焼け — a cat on Mount Fuji at sunset 🌅",
	Params: json.RawMessage(`{"width":1024,"height":768,"steps":28,"guidance":3.5,"seed":1234}`),
	TaskID: "01JQZ8W3K5T1V2X3Y4Z5A6B7C8",
}

// a1111Pony is AUTOMATIC1111's infotext for a Pony Diffusion image, with a
// sampler Gooni does not offer and keys it has no setting for.
const a1111Pony = "score_9, score_8_up, a red fox in a snowy forest, detailed fur\n" +
	"Negative prompt: blurry, lowres, bad anatomy\n" +
	"Steps: 30, Sampler: DPM++ 2M Karras, Schedule type: Karras, CFG scale: 6.5, Seed: 987654321, Size: 832x1216, " +
	"Model hash: 67ab2fd8ec, Model: ponyDiffusionV6XL_v6StartWithThisOne, Version: v1.10.1"

// a1111Unknown names a checkpoint Gooni's catalog does not have.
const a1111Unknown = "a watercolor map of an imaginary island\n" +
	"Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 3141592, Size: 1024x1024, " +
	"Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Version: v1.10.1"

// comfyPrompt is ComfyUI's API-format graph as SaveImage writes it (Python
// json.dumps: ", " and ": " separators, non-ASCII escaped). The negative
// CLIPTextEncode comes first, so only following KSampler's links finds the positive.
const comfyPrompt = `{"3": {"inputs": {"seed": 424242, "steps": 25, "cfg": 7.5, "sampler_name": "euler_ancestral", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["7", 0], "negative": ["6", 0], "latent_image": ["5", 0]}, "class_type": "KSampler", "_meta": {"title": "KSampler"}}, ` +
	`"4": {"inputs": {"ckpt_name": "ponyDiffusionV6XL_v6StartWithThisOne.safetensors"}, "class_type": "CheckpointLoaderSimple", "_meta": {"title": "Load Checkpoint"}}, ` +
	`"5": {"inputs": {"width": 896, "height": 1152, "batch_size": 1}, "class_type": "EmptyLatentImage", "_meta": {"title": "Empty Latent Image"}}, ` +
	`"6": {"inputs": {"text": "text, watermark, blurry", "clip": ["4", 1]}, "class_type": "CLIPTextEncode", "_meta": {"title": "CLIP Text Encode (Negative Prompt)"}}, ` +
	`"7": {"inputs": {"text": "score_9, a lighthouse on a cliff at dawn, caf\u00e9 terrace, oil painting", "clip": ["4", 1]}, "class_type": "CLIPTextEncode", "_meta": {"title": "CLIP Text Encode (Positive Prompt)"}}, ` +
	`"8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode", "_meta": {"title": "VAE Decode"}}, ` +
	`"9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage", "_meta": {"title": "Save Image"}}}`

// comfyWorkflow is the same graph in ComfyUI's UI (litegraph) format, the `workflow` chunk.
const comfyWorkflow = `{"last_node_id": 9, "last_link_id": 9, "nodes": [` +
	`{"id": 4, "type": "CheckpointLoaderSimple", "pos": [26, 474], "size": [315, 98], "flags": {}, "order": 0, "mode": 0, "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0}, {"name": "CLIP", "type": "CLIP", "links": [2, 3], "slot_index": 1}, {"name": "VAE", "type": "VAE", "links": [8], "slot_index": 2}], "properties": {"Node name for S&R": "CheckpointLoaderSimple"}, "widgets_values": ["ponyDiffusionV6XL_v6StartWithThisOne.safetensors"]}, ` +
	`{"id": 5, "type": "EmptyLatentImage", "pos": [473, 609], "size": [315, 106], "flags": {}, "order": 1, "mode": 0, "outputs": [{"name": "LATENT", "type": "LATENT", "links": [6], "slot_index": 0}], "properties": {"Node name for S&R": "EmptyLatentImage"}, "widgets_values": [896, 1152, 1]}, ` +
	`{"id": 6, "type": "CLIPTextEncode", "pos": [413, 389], "size": [425, 180], "flags": {}, "order": 2, "mode": 0, "inputs": [{"name": "clip", "type": "CLIP", "link": 2}], "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [5], "slot_index": 0}], "title": "CLIP Text Encode (Negative Prompt)", "properties": {"Node name for S&R": "CLIPTextEncode"}, "widgets_values": ["text, watermark, blurry"]}, ` +
	`{"id": 7, "type": "CLIPTextEncode", "pos": [415, 186], "size": [422, 164], "flags": {}, "order": 3, "mode": 0, "inputs": [{"name": "clip", "type": "CLIP", "link": 3}], "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4], "slot_index": 0}], "title": "CLIP Text Encode (Positive Prompt)", "properties": {"Node name for S&R": "CLIPTextEncode"}, "widgets_values": ["score_9, a lighthouse on a cliff at dawn, caf\u00e9 terrace, oil painting"]}, ` +
	`{"id": 3, "type": "KSampler", "pos": [863, 186], "size": [315, 262], "flags": {}, "order": 4, "mode": 0, "inputs": [{"name": "model", "type": "MODEL", "link": 1}, {"name": "positive", "type": "CONDITIONING", "link": 4}, {"name": "negative", "type": "CONDITIONING", "link": 5}, {"name": "latent_image", "type": "LATENT", "link": 6}], "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7], "slot_index": 0}], "properties": {"Node name for S&R": "KSampler"}, "widgets_values": [424242, "fixed", 25, 7.5, "euler_ancestral", "normal", 1.0]}, ` +
	`{"id": 8, "type": "VAEDecode", "pos": [1209, 188], "size": [210, 46], "flags": {}, "order": 5, "mode": 0, "inputs": [{"name": "samples", "type": "LATENT", "link": 7}, {"name": "vae", "type": "VAE", "link": 8}], "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9], "slot_index": 0}], "properties": {"Node name for S&R": "VAEDecode"}}, ` +
	`{"id": 9, "type": "SaveImage", "pos": [1451, 189], "size": [210, 270], "flags": {}, "order": 6, "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 9}], "properties": {}, "widgets_values": ["ComfyUI"]}], ` +
	`"links": [[1, 4, 0, 3, 0, "MODEL"], [2, 4, 1, 6, 0, "CLIP"], [3, 4, 1, 7, 0, "CLIP"], [4, 7, 0, 3, 1, "CONDITIONING"], [5, 6, 0, 3, 2, "CONDITIONING"], [6, 5, 0, 3, 3, "LATENT"], [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"], [9, 8, 0, 9, 0, "IMAGE"]], ` +
	`"groups": [], "config": {}, "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4}`

// importFixtures builds every committed import PNG, by file name.
func importFixtures(t *testing.T) map[string][]byte {
	t.Helper()
	var gooni bytes.Buffer
	if err := pngmeta.Embed(&gooni, bytes.NewReader(fixturePNG(1)), settingsChunks(t, gooniFlux)); err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		// Gooni's own result: parameters (iTXt, the prompt is not Latin-1) and gooni
		"gooni-flux.png": gooni.Bytes(),
		// AUTOMATIC1111 through Pillow: one tEXt parameters after IHDR
		"a1111-pony.png": fixturePNG(2, text("parameters", a1111Pony)),
		// ComfyUI's SaveImage through Pillow: tEXt prompt, then tEXt workflow
		"comfyui-pony.png": fixturePNG(3, text("prompt", comfyPrompt), text("workflow", comfyWorkflow)),
		// AUTOMATIC1111 with a checkpoint Gooni does not know
		"a1111-unknown-model.png": fixturePNG(4, text("parameters", a1111Unknown)),
	}
}

// The committed import PNGs are exactly what this file builds, and each
// carries the chunks (and only those) its source writes.
func TestImportFixtures(t *testing.T) {
	fixtures := importFixtures(t)
	wantTexts := map[string]map[string]string{
		"gooni-flux.png":          {"parameters": pngmeta.Parameters(gooniFlux), "gooni": mustGooniJSON(t, gooniFlux)},
		"a1111-pony.png":          {"parameters": a1111Pony},
		"comfyui-pony.png":        {"prompt": comfyPrompt, "workflow": comfyWorkflow},
		"a1111-unknown-model.png": {"parameters": a1111Unknown},
	}
	for _, name := range sortedKeys(fixtures) {
		b := fixtures[name]
		path := filepath.Join(importDir, name)
		if *update {
			if err := os.MkdirAll(importDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		committed, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run with -update to write it)", name, err)
		}
		if !bytes.Equal(committed, b) {
			t.Fatalf("%s differs from what this test builds (run with -update and commit it)", name)
		}
		if got := read(t, committed); !reflect.DeepEqual(got, wantTexts[name]) {
			t.Fatalf("%s: Read = %q, want %q", name, got, wantTexts[name])
		}
		decodePixels(t, committed) // a real PNG image/png (and so a browser) decodes
		for _, js := range []string{"gooni", "prompt", "workflow"} {
			if v, ok := wantTexts[name][js]; ok && !json.Valid([]byte(v)) {
				t.Fatalf("%s: %s chunk is not valid JSON", name, js)
			}
		}
	}
	entries, err := os.ReadDir(importDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".png" && fixtures[e.Name()] == nil {
			t.Errorf("%s is committed but no longer built here", e.Name())
		}
	}
}

func mustGooniJSON(t *testing.T, s pngmeta.Settings) string {
	t.Helper()
	g, err := pngmeta.GooniJSON(s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fuzzSeeds are the committed seed corpus of FuzzRead: small files in each
// text form, and broken ones near the paths that refuse input.
func fuzzSeeds(t *testing.T) map[string][]byte {
	tiny := func(texts ...rawChunk) []byte {
		chunks := append([]rawChunk{ihdr(1, 1, 8, 0)}, texts...)
		return build(append(chunks, rawChunk{typ: "IDAT", data: storedZlib([]byte{0, 0x80})}, rawChunk{typ: "IEND"})...)
	}
	var gooni bytes.Buffer
	if err := pngmeta.Embed(&gooni, bytes.NewReader(tiny()), settingsChunks(t, gooniFlux)); err != nil {
		t.Fatal(err)
	}
	badCRC := tiny(text("parameters", "a cat\nSteps: 20"))
	badCRC[8+25+8+5] ^= 1
	return map[string][]byte{
		"text":      tiny(text("parameters", "a cat\nNegative prompt: dog\nSteps: 20, CFG scale: 7, Seed: 1, Size: 512x512, Model: pony")),
		"ztxt":      tiny(ztxt("Comment", "zipped zipped zipped")),
		"itxt":      tiny(itxt("Description", "ja", "説明", "説明文", false)),
		"itxt-zip":  tiny(itxt("gooni", "", "", `{"model":"flux"}`, true)),
		"gooni":     gooni.Bytes(),
		"after":     build(ihdr(1, 1, 8, 0), rawChunk{typ: "IDAT", data: storedZlib([]byte{0, 0})}, text("late", "x"), rawChunk{typ: "IEND"}),
		"bad-crc":   badCRC,
		"truncated": tiny(text("prompt", `{"3": {}}`))[:40],
	}
}

func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzRead")
	for name, b := range fuzzSeeds(t) {
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		path := filepath.Join(dir, name)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Fatalf("seed %s is missing or stale (run with -update): %v", name, err)
		}
	}
}
