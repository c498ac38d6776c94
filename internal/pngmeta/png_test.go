package pngmeta_test

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"gooni/internal/pngmeta"
	"gooni/internal/workspace"
)

func embed(t *testing.T, src []byte, chunks []pngmeta.Chunk) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := pngmeta.Embed(&out, bytes.NewReader(src), chunks); err != nil {
		t.Fatalf("Embed: %v", err)
	}
	return out.Bytes()
}

func read(t *testing.T, b []byte) map[string]string {
	t.Helper()
	m, err := pngmeta.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return m
}

func settingsChunks(t *testing.T, s pngmeta.Settings) []pngmeta.Chunk {
	t.Helper()
	cs, err := pngmeta.Chunks(s)
	if err != nil {
		t.Fatalf("Chunks: %v", err)
	}
	return cs
}

// The simulator's PNG (Go's image/png, BestSpeed) gets both chunks right after
// IHDR; everything else stays byte for byte, so the pixels do too.
func TestEmbedSimulatorPNG(t *testing.T) {
	params := json.RawMessage(`{"width":320,"height":200,"steps":28,"guidance":3.5,"seed":1234}`)
	media, err := workspace.RenderMedia(&workspace.TaskRequest{TaskID: "t1", Type: "image", Model: "flux", Mode: "t2i", Prompt: "a lighthouse at dawn", Params: params})
	if err != nil {
		t.Fatal(err)
	}
	src := media.Result
	s := pngmeta.Settings{Model: "flux", Mode: "t2i", Prompt: "a lighthouse at dawn", Params: params, TaskID: "t1"}
	out := embed(t, src, settingsChunks(t, s))

	in, got := chunksOf(t, src), chunksOf(t, out)
	if want := append([]string{"IHDR", "tEXt", "iTXt"}, typesOf(in[1:])...); !reflect.DeepEqual(typesOf(got), want) {
		t.Fatalf("chunk order %v, want %v", typesOf(got), want)
	}
	for i, c := range in[1:] {
		g := got[i+3]
		if g.typ != c.typ || !bytes.Equal(g.data, c.data) || g.crc != c.crc {
			t.Fatalf("chunk %d (%s) changed", i+1, c.typ)
		}
	}
	if !bytes.Equal(idat(in), idat(got)) {
		t.Fatal("IDAT bytes changed")
	}
	samePixels(t, src, out)

	m := read(t, out)
	wantJSON, _ := pngmeta.GooniJSON(s)
	want := map[string]string{
		"parameters": "a lighthouse at dawn\nSteps: 28, CFG scale: 3.5, Seed: 1234, Size: 320x200, Model: flux",
		"gooni":      wantJSON,
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("Read = %q, want %q", m, want)
	}
	if string(got[1].data) != "parameters\x00"+want["parameters"] {
		t.Fatalf("parameters chunk data %q", got[1].data)
	}
	if string(got[2].data) != "gooni\x00\x00\x00\x00\x00"+wantJSON {
		t.Fatalf("gooni chunk data %q", got[2].data)
	}

	// embedding again replaces rather than adds
	s.Prompt = "a lighthouse at dusk"
	again := embed(t, out, settingsChunks(t, s))
	if n := len(chunksOf(t, again)); n != len(got) {
		t.Fatalf("second Embed: %d chunks, want %d", n, len(got))
	}
	if p := read(t, again)["parameters"]; !strings.HasPrefix(p, "a lighthouse at dusk\n") {
		t.Fatalf("second Embed: parameters %q", p)
	}
}

// Files laid out the way Pillow (and so A1111 and ComfyUI) writes them, with
// ancillary chunks, text before and after IDAT, and existing chunks of our keywords.
func TestEmbedPillowLayouts(t *testing.T) {
	img := pattern(40, 30, 9)
	scan := deflate(rgbScanlines(img))
	half := len(scan) / 2
	idat1, idat2 := rawChunk{typ: "IDAT", data: scan[:half]}, rawChunk{typ: "IDAT", data: scan[half:]}
	head := ihdr(40, 30, 8, 2)
	iend := rawChunk{typ: "IEND"}
	srgb := rawChunk{typ: "sRGB", data: []byte{0}}
	gama := rawChunk{typ: "gAMA", data: []byte{0, 0, 0xb1, 0x8f}}
	phys := rawChunk{typ: "pHYs", data: []byte{0, 0, 0x0b, 0x13, 0, 0, 0x0b, 0x13, 1}}

	// a palette image: IHDR, PLTE, tRNS, IDAT
	pal := []byte{}
	for i := 0; i < 4; i++ {
		pal = append(pal, byte(i*60), byte(255-i*60), byte(i*20))
	}
	var praw []byte
	for y := 0; y < 8; y++ {
		praw = append(praw, 0)
		for x := 0; x < 8; x++ {
			praw = append(praw, byte((x+y)%4))
		}
	}

	cases := []struct {
		name string
		in   []rawChunk
		kept []int // indexes of input chunks after IHDR that must survive, in order
	}{
		{"plain", []rawChunk{head, idat1, idat2, iend}, []int{1, 2, 3}},
		{"sRGB gAMA pHYs", []rawChunk{head, srgb, gama, phys, idat1, idat2, iend}, []int{1, 2, 3, 4, 5, 6}},
		{"existing parameters tEXt", []rawChunk{head, text("parameters", "old prompt\nSteps: 20"), text("Software", "Pillow"), idat1, idat2, iend}, []int{2, 3, 4, 5}},
		{"existing zTXt parameters and iTXt gooni", []rawChunk{head, gama, ztxt("parameters", "old"), itxt("gooni", "", "", `{"model":"old"}`, true), idat1, idat2, iend}, []int{1, 4, 5, 6}},
		{"text after IDAT", []rawChunk{head, phys, idat1, idat2, text("parameters", "late"), text("Comment", "kept"), iend}, []int{1, 2, 3, 5, 6}},
		{"ComfyUI prompt and workflow", []rawChunk{head, text("prompt", `{"3": {}}`), text("workflow", `{"nodes": []}`), idat1, idat2, iend}, []int{1, 2, 3, 4, 5}},
		{"palette with tRNS", []rawChunk{ihdr(8, 8, 8, 3), {typ: "PLTE", data: pal}, {typ: "tRNS", data: []byte{255, 128, 0, 255}}, {typ: "IDAT", data: deflate(praw)}, iend}, []int{1, 2, 3, 4}},
		{"keyword prefix is not a match", []rawChunk{head, text("parameters2", "other"), text("gooni", "replaced"), idat1, idat2, iend}, []int{1, 3, 4, 5}},
	}
	s := pngmeta.Settings{Model: "pony", Mode: "t2i", Prompt: "a fox", NegativePrompt: "blurry", Params: json.RawMessage(`{"steps":25,"guidance":7,"seed":5,"width":1024,"height":1024}`), TaskID: "t2"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := build(tc.in...)
			in := chunksOf(t, src)
			out := embed(t, src, settingsChunks(t, s))
			got := chunksOf(t, out)
			want := []rawChunk{in[0], {typ: "tEXt"}, {typ: "iTXt"}}
			for _, i := range tc.kept {
				want = append(want, in[i])
			}
			if !reflect.DeepEqual(typesOf(got), typesOf(want)) {
				t.Fatalf("chunks %v, want %v", typesOf(got), typesOf(want))
			}
			for i, w := range want {
				if i == 1 || i == 2 {
					continue
				}
				if !bytes.Equal(got[i].data, w.data) || got[i].crc != w.crc {
					t.Fatalf("chunk %d (%s) changed", i, w.typ)
				}
			}
			if !bytes.Equal(idat(in), idat(got)) {
				t.Fatal("IDAT bytes changed")
			}
			samePixels(t, src, out)
			m := read(t, out)
			if m["parameters"] != pngmeta.Parameters(s) {
				t.Fatalf("parameters = %q", m["parameters"])
			}
			if g, _ := pngmeta.GooniJSON(s); m["gooni"] != g {
				t.Fatalf("gooni = %q", m["gooni"])
			}
		})
	}
}

// Latin-1 text is stored as tEXt in Latin-1 bytes; anything else as UTF-8 iTXt.
func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name, prompt, negative string
		paramsType             string
		paramsBytes            string // the stored text's bytes, as the chunk holds them
	}{
		{"ascii", "a cat, sitting", "dog", "tEXt", "a cat, sitting\nNegative prompt: dog\n"},
		{"latin-1", "café crème, ñandú × 2", "", "tEXt", "caf\xe9 cr\xe8me, \xf1and\xfa \xd7 2\n"},
		{"japanese", "富士山の上の猫", "ぼやけた", "iTXt", "富士山の上の猫\nNegative prompt: ぼやけた\n"},
		{"emoji", "a rocket 🚀 and a cat 🐱", "", "iTXt", "a rocket 🚀 and a cat 🐱\n"},
		{"latin-1 prompt, non-latin-1 negative", "résumé", "ß 😀", "iTXt", "résumé\nNegative prompt: ß 😀\n"},
	}
	src := build(ihdr(4, 4, 8, 2), rawChunk{typ: "IDAT", data: deflate(rgbScanlines(pattern(4, 4, 1)))}, rawChunk{typ: "IEND"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := pngmeta.Settings{Model: "pony", Mode: "t2i", Prompt: tc.prompt, NegativePrompt: tc.negative, Params: json.RawMessage(`{"seed":7}`), TaskID: "x"}
			out := embed(t, src, settingsChunks(t, s))
			cs := chunksOf(t, out)
			if cs[1].typ != tc.paramsType {
				t.Fatalf("parameters stored as %s, want %s", cs[1].typ, tc.paramsType)
			}
			wantData := "parameters\x00"
			if tc.paramsType == "iTXt" {
				wantData += "\x00\x00\x00\x00"
			}
			wantData += tc.paramsBytes + "Seed: 7, Model: pony"
			if string(cs[1].data) != wantData {
				t.Fatalf("parameters data %q, want %q", cs[1].data, wantData)
			}
			m := read(t, out)
			if m["parameters"] != pngmeta.Parameters(s) {
				t.Fatalf("parameters = %q, want %q", m["parameters"], pngmeta.Parameters(s))
			}
			var g struct{ Prompt, Negative_prompt string }
			if err := json.Unmarshal([]byte(m["gooni"]), &g); err != nil || g.Prompt != tc.prompt || g.Negative_prompt != tc.negative {
				t.Fatalf("gooni = %q (%v)", m["gooni"], err)
			}
		})
	}
}

// Read takes every text form Pillow and others write.
func TestReadForms(t *testing.T) {
	body := rawChunk{typ: "IDAT", data: deflate(rgbScanlines(pattern(2, 2, 0)))}
	src := build(ihdr(2, 2, 8, 2),
		text("Title", "caf\xe9"), // Latin-1 byte 0xE9
		ztxt("Comment", strings.Repeat("zipped ", 100)),
		itxt("Author", "", "", "山田", false),
		itxt("Description", "ja", "説明", "圧縮された説明", true),
		body,
		text("Title", "second Title is ignored"),
		text("Late", "after IDAT"),
		rawChunk{typ: "IEND"})
	want := map[string]string{
		"Title":       "café",
		"Comment":     strings.Repeat("zipped ", 100),
		"Author":      "山田",
		"Description": "圧縮された説明",
		"Late":        "after IDAT",
	}
	if got := read(t, src); !reflect.DeepEqual(got, want) {
		t.Fatalf("Read = %q, want %q", got, want)
	}
	// a Latin-1 keyword is returned as UTF-8
	if got := read(t, build(ihdr(1, 1, 8, 0), text("Gr\xf6\xdfe", "x"), rawChunk{typ: "IEND"})); got["Größe"] != "x" {
		t.Fatalf("Latin-1 keyword: %q", got)
	}
}

// spoil returns a copy of b with one byte changed.
func spoil(b []byte, at int) []byte {
	c := bytes.Clone(b)
	c[at] ^= 0xff
	return c
}

// withLength returns a PNG whose chunk after IHDR claims length n but carries only a few bytes.
func withLength(typ string, n uint32) []byte {
	b := build(ihdr(1, 1, 8, 0))
	var h [8]byte
	binary.BigEndian.PutUint32(h[:4], n)
	copy(h[4:], typ)
	b = append(b, h[:]...)
	return append(b, "parameters\x00tiny"...)
}

// bomb is a zlib stream of n zero bytes: tiny compressed, huge inflated.
func bomb(n int) []byte {
	var out bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&out, zlib.BestCompression)
	zero := make([]byte, 1<<20)
	for ; n > 0; n -= len(zero) {
		zw.Write(zero[:min(n, len(zero))])
	}
	zw.Close()
	return out.Bytes()
}

func TestHostileInput(t *testing.T) {
	good := build(ihdr(2, 2, 8, 2), text("a", "b"), rawChunk{typ: "IDAT", data: deflate(rgbScanlines(pattern(2, 2, 0)))}, rawChunk{typ: "IEND"})
	// offsets into good: signature 8, IHDR 25 bytes, then tEXt (12+3), then IDAT
	textCRC := 8 + 25 + 8 + 3
	idatData := 8 + 25 + 15 + 8
	zbomb := append([]byte("parameters\x00\x00"), bomb(64<<20)...)
	ibomb := append([]byte("gooni\x00\x01\x00\x00\x00"), bomb(64<<20)...)
	many := []rawChunk{ihdr(1, 1, 8, 0)}
	for i := 0; i < 5; i++ { // each inflates to MaxTextChunk: 5 of them pass MaxText
		many = append(many, rawChunk{typ: "zTXt", data: append([]byte{'k', byte('0' + i), 0, 0}, bomb(pngmeta.MaxTextChunk-3)...)})
	}
	many = append(many, rawChunk{typ: "IEND"})

	cases := []struct {
		name       string
		in         []byte
		read, emb  error // nil: must succeed
		maxAllocMB uint64
	}{
		{"empty", nil, pngmeta.ErrNotPNG, pngmeta.ErrNotPNG, 1},
		{"jpeg", []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), pngmeta.ErrNotPNG, pngmeta.ErrNotPNG, 1},
		{"signature only", good[:8], pngmeta.ErrTruncated, pngmeta.ErrTruncated, 1},
		{"no IEND", good[:len(good)-12], pngmeta.ErrTruncated, pngmeta.ErrTruncated, 1},
		{"cut inside IDAT", good[:idatData+3], pngmeta.ErrTruncated, pngmeta.ErrTruncated, 1},
		{"bad CRC in tEXt", spoil(good, textCRC), pngmeta.ErrCRC, pngmeta.ErrCRC, 1},
		{"bad CRC from a changed text byte", spoil(good, textCRC-1), pngmeta.ErrCRC, pngmeta.ErrCRC, 1},
		{"bad CRC in IDAT data", spoil(good, idatData+1), pngmeta.ErrCRC, pngmeta.ErrCRC, 1},
		{"first chunk not IHDR", build(text("a", "b"), rawChunk{typ: "IEND"}), pngmeta.ErrMalformed, pngmeta.ErrMalformed, 1},
		{"chunk type not letters", build(ihdr(1, 1, 8, 0), rawChunk{typ: "ID4T", data: []byte{1}}, rawChunk{typ: "IEND"}), pngmeta.ErrMalformed, pngmeta.ErrMalformed, 1},
		{"tEXt length 0x7fffffff", withLength("tEXt", 0x7fffffff), pngmeta.ErrTooLarge, pngmeta.ErrTruncated, 1},
		{"IDAT length 0x7fffffff", withLength("IDAT", 0x7fffffff), pngmeta.ErrTruncated, pngmeta.ErrTruncated, 1},
		{"length over 2^31-1", withLength("IDAT", 0x80000000), pngmeta.ErrTooLarge, pngmeta.ErrTooLarge, 1},
		{"zTXt bomb", build(ihdr(1, 1, 8, 0), rawChunk{typ: "zTXt", data: zbomb}, rawChunk{typ: "IEND"}), pngmeta.ErrTooLarge, nil, 40},
		{"iTXt bomb", build(ihdr(1, 1, 8, 0), rawChunk{typ: "iTXt", data: ibomb}, rawChunk{typ: "IEND"}), pngmeta.ErrTooLarge, nil, 40},
		{"texts over MaxText in all", build(many...), pngmeta.ErrTooLarge, nil, 120},
		{"zTXt not zlib", build(ihdr(1, 1, 8, 0), rawChunk{typ: "zTXt", data: []byte("k\x00\x00garbage")}, rawChunk{typ: "IEND"}), pngmeta.ErrMalformed, nil, 1},
		{"zTXt unknown method", build(ihdr(1, 1, 8, 0), rawChunk{typ: "zTXt", data: append([]byte("k\x00\x07"), deflate([]byte("x"))...)}, rawChunk{typ: "IEND"}), pngmeta.ErrMalformed, nil, 1},
		{"tEXt without NUL", build(ihdr(1, 1, 8, 0), rawChunk{typ: "tEXt", data: []byte("keyword")}, rawChunk{typ: "IEND"}), pngmeta.ErrMalformed, nil, 1},
		{"empty keyword", build(ihdr(1, 1, 8, 0), text("", "x"), rawChunk{typ: "IEND"}), pngmeta.ErrMalformed, nil, 1},
		{"80-byte keyword", build(ihdr(1, 1, 8, 0), text(strings.Repeat("k", 80), "x"), rawChunk{typ: "IEND"}), pngmeta.ErrMalformed, nil, 1},
		{"iTXt invalid UTF-8", build(ihdr(1, 1, 8, 0), itxt("k", "", "", "\xff\xfe", false), rawChunk{typ: "IEND"}), pngmeta.ErrMalformed, nil, 1},
		{"iTXt unterminated language tag", build(ihdr(1, 1, 8, 0), rawChunk{typ: "iTXt", data: []byte("k\x00\x00\x00en")}, rawChunk{typ: "IEND"}), pngmeta.ErrMalformed, nil, 1},
		{"iTXt bad compression flag", build(ihdr(1, 1, 8, 0), rawChunk{typ: "iTXt", data: []byte("k\x00\x02\x00\x00\x00x")}, rawChunk{typ: "IEND"}), pngmeta.ErrMalformed, nil, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check := func(op string, want error, f func() error) {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				err := f()
				runtime.ReadMemStats(&after)
				if want == nil && err != nil {
					t.Fatalf("%s: %v", op, err)
				}
				if want != nil {
					if !errors.Is(err, want) {
						t.Fatalf("%s: error %v, want %v", op, err, want)
					}
					var fe *pngmeta.FormatError
					if !errors.As(err, &fe) {
						t.Fatalf("%s: %T is not a *FormatError", op, err)
					}
				}
				// bytes.Buffer and the copy buffer are fixed costs; a length field must not add to them
				if alloc := (after.TotalAlloc - before.TotalAlloc) >> 20; alloc > tc.maxAllocMB {
					t.Fatalf("%s allocated %d MiB, limit %d MiB", op, alloc, tc.maxAllocMB)
				}
			}
			check("Read", tc.read, func() error { _, err := pngmeta.Read(bytes.NewReader(tc.in)); return err })
			check("Embed", tc.emb, func() error {
				return pngmeta.Embed(&bytes.Buffer{}, bytes.NewReader(tc.in), []pngmeta.Chunk{{Keyword: "parameters", Text: "x"}})
			})
		})
	}
}

// A reader error other than EOF is passed on, not taken for a truncated file.
func TestReaderError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := &failAfter{b: build(ihdr(1, 1, 8, 0), rawChunk{typ: "IEND"})[:20], err: boom}
	if _, err := pngmeta.Read(r); !errors.Is(err, boom) {
		t.Fatalf("Read: %v, want %v", err, boom)
	}
}

type failAfter struct {
	b   []byte
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, f.err
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}

func TestEmbedBadChunks(t *testing.T) {
	src := build(ihdr(1, 1, 8, 0), rawChunk{typ: "IEND"})
	cases := []struct {
		name   string
		chunks []pngmeta.Chunk
		want   error
	}{
		{"empty keyword", []pngmeta.Chunk{{Keyword: "", Text: "x"}}, pngmeta.ErrBadText},
		{"80-character keyword", []pngmeta.Chunk{{Keyword: strings.Repeat("k", 80), Text: "x"}}, pngmeta.ErrBadText},
		{"leading space", []pngmeta.Chunk{{Keyword: " k", Text: "x"}}, pngmeta.ErrBadText},
		{"double space", []pngmeta.Chunk{{Keyword: "a  b", Text: "x"}}, pngmeta.ErrBadText},
		{"control character in keyword", []pngmeta.Chunk{{Keyword: "a\nb", Text: "x"}}, pngmeta.ErrBadText},
		{"non-Latin-1 keyword", []pngmeta.Chunk{{Keyword: "鍵", Text: "x"}}, pngmeta.ErrBadText},
		{"NUL in text", []pngmeta.Chunk{{Keyword: "k", Text: "a\x00b"}}, pngmeta.ErrBadText},
		{"invalid UTF-8 text", []pngmeta.Chunk{{Keyword: "k", Text: "\xff"}}, pngmeta.ErrBadText},
		{"keyword twice", []pngmeta.Chunk{{Keyword: "k", Text: "x"}, {Keyword: "k", Text: "y", ITXt: true}}, pngmeta.ErrBadText},
		{"text over MaxTextChunk", []pngmeta.Chunk{{Keyword: "k", Text: strings.Repeat("x", pngmeta.MaxTextChunk)}}, pngmeta.ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := pngmeta.Embed(&out, bytes.NewReader(src), tc.chunks)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if out.Len() != 0 {
				t.Fatalf("wrote %d bytes before refusing", out.Len())
			}
		})
	}
	// the largest allowed keyword and a Latin-1 one with inner spaces are fine
	ok := []pngmeta.Chunk{{Keyword: strings.Repeat("k", 79), Text: "x"}, {Keyword: "Größe der Datei", Text: "1"}}
	m := read(t, embed(t, src, ok))
	if m[strings.Repeat("k", 79)] != "x" || m["Größe der Datei"] != "1" {
		t.Fatalf("Read = %q", m)
	}
}
