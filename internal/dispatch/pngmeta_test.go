package dispatch

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gooni/internal/pngmeta"
	"gooni/internal/workspace"
	"gooni/store"
)

// samePixels fails unless a and b decode to images of the same bounds and colours.
func samePixels(t *testing.T, a, b []byte) {
	t.Helper()
	ia, _, err := image.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatalf("decoding the first image: %v", err)
	}
	ib, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decoding the second image: %v", err)
	}
	if ia.Bounds() != ib.Bounds() {
		t.Fatalf("bounds %v vs %v", ia.Bounds(), ib.Bounds())
	}
	r := ia.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, a1 := ia.At(x, y).RGBA()
			r2, g2, b2, a2 := ib.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 || a1 != a2 {
				t.Fatalf("pixel (%d,%d) differs: %v vs %v", x, y, ia.At(x, y), ib.At(x, y))
			}
		}
	}
}

// chunkTypes lists a PNG's chunk types in file order.
func chunkTypes(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for off := 8; off+12 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[off:]))
		out = append(out, string(b[off+4:off+8]))
		off += 12 + n
	}
	return out
}

// TestPNGResultCarriesSettings: a PNG the simulator draws, fetched by the real
// dispatcher from a workspace-sim on loopback, is stored with the task's
// `parameters` and `gooni` chunks (CONTRACT section 13), and its pixels are
// the simulator's. The preview (a JPEG) is stored as sent.
func TestPNGResultCarriesSettings(t *testing.T) {
	for _, tc := range []struct {
		name, prompt, negative string
		params                 string
		wantParamsChunk        string // tEXt when Latin-1, else iTXt
	}{
		{"latin1", "a lighthouse at dusk, café lights", "blurry", `{"guidance":3.5,"height":96,"seed":1234567,"steps":4,"width":128}`, "tEXt"},
		{"unicode", "富士山の上の猫 🌅", "", `{"guidance":7,"height":64,"seed":0,"steps":20,"width":64}`, "iTXt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.account("sim-png", e.sim(workspace.SimConfig{Duration: 100 * time.Millisecond}).URL, 1, "ready", nil)
			e.start(e.config())
			task := &store.Task{Type: "image", Model: "pony", Mode: "t2i", Prompt: tc.prompt, NegativePrompt: tc.negative,
				Params: json.RawMessage(tc.params)}
			if err := e.db.CreateTask(context.Background(), task, store.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			got := e.waitTerminal(task.ID)
			if got.Status != "done" {
				t.Fatalf("status %s (%s: %s)", got.Status, got.ErrorCode, got.ErrorMessage)
			}
			stored, err := os.ReadFile(filepath.Join(e.dataDir, got.ResultPath))
			if err != nil {
				t.Fatal(err)
			}
			texts, err := pngmeta.Read(bytes.NewReader(stored))
			if err != nil {
				t.Fatalf("the stored result is not a readable PNG: %v", err)
			}
			want := pngmeta.Settings{Model: "pony", Mode: "t2i", Prompt: tc.prompt, NegativePrompt: tc.negative,
				Params: json.RawMessage(tc.params), TaskID: task.ID}
			if texts["parameters"] != pngmeta.Parameters(want) {
				t.Errorf("parameters chunk\n%q\nwant\n%q", texts["parameters"], pngmeta.Parameters(want))
			}
			var p struct{ Seed json.Number }
			json.Unmarshal([]byte(tc.params), &p)
			if !strings.Contains(texts["parameters"], "Seed: "+p.Seed.String()+",") {
				t.Errorf("parameters %q does not name the seed the task used, %s", texts["parameters"], p.Seed)
			}
			var g struct {
				Model, Mode, Prompt string
				Negative            string `json:"negative_prompt"`
				Params              map[string]json.Number
				TaskID              string `json:"task_id"`
			}
			d := json.NewDecoder(strings.NewReader(texts["gooni"]))
			d.UseNumber()
			if err := d.Decode(&g); err != nil {
				t.Fatalf("gooni chunk %q: %v", texts["gooni"], err)
			}
			if g.Model != "pony" || g.Mode != "t2i" || g.Prompt != tc.prompt || g.Negative != tc.negative || g.TaskID != task.ID || g.Params["seed"] != p.Seed {
				t.Errorf("gooni chunk %+v", g)
			}
			types := chunkTypes(t, stored)
			if len(types) < 4 || types[0] != "IHDR" || types[1] != tc.wantParamsChunk || types[2] != "iTXt" || types[len(types)-1] != "IEND" {
				t.Errorf("chunk order %v, want IHDR, %s parameters, iTXt gooni, ..., IEND", types, tc.wantParamsChunk)
			}

			// the pixels are the simulator's, which draws the same bytes for the same request
			params := json.RawMessage(tc.params)
			drawn, err := workspace.RenderMedia(&workspace.TaskRequest{TaskID: task.ID, Type: "image", Model: "pony", Mode: "t2i",
				Prompt: tc.prompt, NegativePrompt: tc.negative, Params: params})
			if err != nil {
				t.Fatal(err)
			}
			sent := drawn.Result
			if t0, _ := pngmeta.Read(bytes.NewReader(sent)); t0["gooni"] != "" {
				t.Fatal("the simulator's PNG already holds a gooni chunk; the test proves nothing")
			}
			samePixels(t, sent, stored)

			prev, err := os.ReadFile(filepath.Join(e.dataDir, got.PreviewPath))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(prev, drawn.Preview) {
				t.Errorf("the preview was changed on the way (%d bytes stored, %d sent)", len(prev), len(drawn.Preview))
			}
		})
	}
}

// pngChunk is one chunk's bytes with its CRC.
func pngChunk(typ string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.WriteString(typ)
	b.Write(data)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	return b.Bytes()
}

// pillowLike encodes img and lays out text chunks the way Pillow's PngInfo
// does (after IHDR, before IDAT), plus a zTXt-free iTXt after IDAT.
func pillowLike(t *testing.T, img image.Image) []byte {
	t.Helper()
	var enc bytes.Buffer
	if err := png.Encode(&enc, img); err != nil {
		t.Fatal(err)
	}
	b := enc.Bytes()
	ihdrEnd := 8 + 12 + 13
	iend := bytes.LastIndex(b, []byte("IEND")) - 4
	var out bytes.Buffer
	out.Write(b[:ihdrEnd])
	out.Write(pngChunk("tEXt", []byte("parameters\x00an old prompt\nSteps: 1, Seed: 9")))
	out.Write(pngChunk("tEXt", []byte("Software\x00Pillow-like")))
	out.Write(b[ihdrEnd:iend])
	out.Write(pngChunk("iTXt", []byte("gooni\x00\x00\x00\x00\x00{\"model\":\"old\"}")))
	out.Write(b[iend:])
	return out.Bytes()
}

// fakeResult is a workspace whose result is the given bytes (or a reader).
type fakeResult struct {
	workspace.Driver
	body        func() io.Reader
	contentType string
}

func (f fakeResult) Result(ctx context.Context, id string) (*workspace.Media, error) {
	return &workspace.Media{Body: io.NopCloser(f.body()), ContentType: f.contentType, Length: -1}, nil
}

// failingReader gives n bytes of b, then err.
type failingReader struct {
	b   []byte
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, r.err
	}
	k := copy(p, r.b[:min(r.n, len(r.b))])
	k = min(k, r.n)
	r.b, r.n = r.b[k:], r.n-k
	return k, nil
}

// TestPNGEmbedOnTheWay: fetchMedia streams a PNG result through the chunk
// writer: text chunks a Pillow-like encoder wrote under Gooni's keywords are
// replaced, others kept, the pixels unchanged; a damaged PNG is a
// corrupt_result and leaves nothing in media/; a broken download stays a
// download error (retried), never a corrupt result.
func TestPNGEmbedOnTheWay(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 40, 24))
	for i := range img.Pix {
		img.Pix[i] = byte(i*13 + i/7)
	}
	pillow := pillowLike(t, img)
	var plain bytes.Buffer
	png.Encode(&plain, img)
	badCRC := bytes.Clone(plain.Bytes())
	idat := bytes.Index(badCRC, []byte("IDAT"))
	badCRC[idat+6] ^= 0xff
	var jpg bytes.Buffer
	jpeg.Encode(&jpg, image.NewGray(image.Rect(0, 0, 8, 8)), nil)
	errNet := errors.New("connection reset by peer")

	type outcome int
	const (
		stored outcome = iota
		corrupt
		retried
	)
	for _, tc := range []struct {
		name    string
		body    func() io.Reader
		want    outcome
		message string
	}{
		{"pillow layout", func() io.Reader { return bytes.NewReader(pillow) }, stored, ""},
		{"bytes after IEND", func() io.Reader {
			return io.MultiReader(bytes.NewReader(plain.Bytes()), strings.NewReader("trailing junk"))
		}, stored, ""},
		{"bad CRC", func() io.Reader { return bytes.NewReader(badCRC) }, corrupt, "CRC"},
		{"truncated", func() io.Reader { return bytes.NewReader(plain.Bytes()[:plain.Len()-20]) }, corrupt, "not a well-formed PNG"},
		{"a JPEG said to be a PNG", func() io.Reader { return bytes.NewReader(jpg.Bytes()) }, corrupt, "not the image/png the workspace claimed"},
		{"empty", func() io.Reader { return strings.NewReader("") }, corrupt, "empty result"},
		{"download cut", func() io.Reader { return &failingReader{b: plain.Bytes(), n: 100, err: errNet} }, retried, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			d := New(e.config())
			task := e.task("image")
			task, _ = e.db.GetTask(context.Background(), task.ID)
			m, err := d.fetchMedia(context.Background(), fakeResult{body: tc.body, contentType: "image/png"}, task, false)
			switch tc.want {
			case stored:
				if err != nil {
					t.Fatalf("fetchMedia: %v", err)
				}
				b, err := os.ReadFile(filepath.Join(e.dataDir, "media", m.name))
				if err != nil {
					t.Fatal(err)
				}
				texts, err := pngmeta.Read(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				want := pngmeta.Settings{Model: task.Model, Mode: task.Mode, Prompt: task.Prompt, Params: task.Params, TaskID: task.ID}
				if texts["parameters"] != pngmeta.Parameters(want) {
					t.Errorf("parameters %q, want the task's %q", texts["parameters"], pngmeta.Parameters(want))
				}
				if !strings.Contains(texts["gooni"], task.ID) {
					t.Errorf("gooni chunk %q does not name the task", texts["gooni"])
				}
				if tc.name == "pillow layout" && texts["Software"] != "Pillow-like" {
					t.Errorf("another text chunk was dropped: %v", texts)
				}
				n := 0
				for _, ty := range chunkTypes(t, b) {
					if ty == "tEXt" || ty == "iTXt" {
						n++
					}
				}
				if want := map[bool]int{true: 3, false: 2}[tc.name == "pillow layout"]; n != want {
					t.Errorf("%d text chunks, want %d (old parameters and gooni replaced): %v", n, want, chunkTypes(t, b))
				}
				if !bytes.HasSuffix(b, pngChunk("IEND", nil)) {
					t.Error("the stored file does not end with IEND")
				}
				samePixels(t, plain.Bytes(), b)
			case corrupt:
				var ce *corruptError
				if !errors.As(err, &ce) || !strings.Contains(ce.msg, tc.message) {
					t.Fatalf("error %v, want a corrupt result saying %q", err, tc.message)
				}
			case retried:
				var ce *corruptError
				var se *storageError
				if err == nil || errors.As(err, &ce) || errors.As(err, &se) || !errors.Is(err, errNet) {
					t.Fatalf("error %v, want the download's own error", err)
				}
			}
			if tc.want != stored {
				if files := e.mediaFiles(); len(files) != 0 {
					t.Errorf("media/ holds %v after a failed copy", files)
				}
			}
		})
	}
}
