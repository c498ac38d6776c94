package pngmeta_test

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/adler32"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"testing"
)

// rawChunk is one chunk as it stands in a file; crc is filled by build.
type rawChunk struct {
	typ  string
	data []byte
	crc  uint32
}

// build writes a PNG from chunks, computing each CRC (a test may spoil one after).
func build(chunks ...rawChunk) []byte {
	var b bytes.Buffer
	b.Write([]byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'})
	for _, c := range chunks {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(c.data)))
		b.Write(l[:])
		b.WriteString(c.typ)
		b.Write(c.data)
		var crc [4]byte
		binary.BigEndian.PutUint32(crc[:], crc32.ChecksumIEEE(append([]byte(c.typ), c.data...)))
		b.Write(crc[:])
	}
	return b.Bytes()
}

// chunksOf parses a PNG independently of the package under test, failing the
// test on a bad signature, a bad CRC or bytes after IEND.
func chunksOf(t *testing.T, b []byte) []rawChunk {
	t.Helper()
	if len(b) < 8 || !bytes.Equal(b[:8], []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}) {
		t.Fatalf("no PNG signature")
	}
	var out []rawChunk
	rest := b[8:]
	for len(rest) > 0 {
		if len(rest) < 12 {
			t.Fatalf("truncated chunk header at %d", len(b)-len(rest))
		}
		n := int(binary.BigEndian.Uint32(rest[:4]))
		if len(rest) < 12+n {
			t.Fatalf("truncated chunk at %d", len(b)-len(rest))
		}
		c := rawChunk{typ: string(rest[4:8]), data: rest[8 : 8+n], crc: binary.BigEndian.Uint32(rest[8+n : 12+n])}
		if want := crc32.ChecksumIEEE(rest[4 : 8+n]); c.crc != want {
			t.Fatalf("chunk %d (%s): CRC %08x, want %08x", len(out), c.typ, c.crc, want)
		}
		out = append(out, c)
		rest = rest[12+n:]
		if c.typ == "IEND" && len(rest) > 0 {
			t.Fatalf("%d bytes after IEND", len(rest))
		}
	}
	return out
}

func typesOf(cs []rawChunk) []string {
	var s []string
	for _, c := range cs {
		s = append(s, c.typ)
	}
	return s
}

// idat concatenates the data of all IDAT chunks.
func idat(cs []rawChunk) []byte {
	var b []byte
	for _, c := range cs {
		if c.typ == "IDAT" {
			b = append(b, c.data...)
		}
	}
	return b
}

func ihdr(w, h int, depth, colorType byte) rawChunk {
	d := make([]byte, 13)
	binary.BigEndian.PutUint32(d[0:], uint32(w))
	binary.BigEndian.PutUint32(d[4:], uint32(h))
	d[8], d[9] = depth, colorType
	return rawChunk{typ: "IHDR", data: d}
}

func text(kw, t string) rawChunk { return rawChunk{typ: "tEXt", data: []byte(kw + "\x00" + t)} }

func ztxt(kw, t string) rawChunk {
	return rawChunk{typ: "zTXt", data: append([]byte(kw+"\x00\x00"), deflate([]byte(t))...)}
}

// itxt writes an iTXt chunk, compressed when zip is set.
func itxt(kw, lang, tkey, t string, zip bool) rawChunk {
	d := []byte(kw + "\x00")
	body := []byte(t)
	if zip {
		d = append(d, 1, 0)
		body = deflate(body)
	} else {
		d = append(d, 0, 0)
	}
	d = append(d, lang+"\x00"+tkey+"\x00"...)
	return rawChunk{typ: "iTXt", data: append(d, body...)}
}

func deflate(b []byte) []byte {
	var out bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&out, zlib.BestCompression)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

// storedZlib wraps b in a zlib stream of stored (uncompressed) deflate blocks:
// valid for every decoder and the same bytes whatever Go's compressor does,
// so committed fixtures do not change with the Go version.
func storedZlib(b []byte) []byte {
	sum := adler32.Checksum(b)
	out := []byte{0x78, 0x01}
	for {
		n := min(len(b), 65535)
		final := byte(0)
		if n == len(b) {
			final = 1
		}
		out = append(out, final, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		out = append(out, b[:n]...)
		b = b[n:]
		if final == 1 {
			break
		}
	}
	return binary.BigEndian.AppendUint32(out, sum)
}

// rgbScanlines returns img's rows as 8-bit RGB scanlines, each with filter type 0.
func rgbScanlines(img *image.NRGBA) []byte {
	var raw []byte
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		raw = append(raw, 0)
		for x := r.Min.X; x < r.Max.X; x++ {
			c := img.NRGBAAt(x, y)
			raw = append(raw, c.R, c.G, c.B)
		}
	}
	return raw
}

// pattern draws a w x h image that differs per seed.
func pattern(w, h int, seed byte) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{byte(x*255/w) ^ seed, byte(y*255/h) + seed, byte((x+y)*7) ^ (seed * 3), 255})
		}
	}
	return img
}

// decodePixels decodes a PNG with image/png and returns its pixels as NRGBA.
func decodePixels(t *testing.T, b []byte) *image.NRGBA {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("image/png cannot decode: %v", err)
	}
	out := image.NewNRGBA(img.Bounds())
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			out.Set(x, y, img.At(x, y))
		}
	}
	return out
}

func samePixels(t *testing.T, before, after []byte) {
	t.Helper()
	a, b := decodePixels(t, before), decodePixels(t, after)
	if a.Bounds() != b.Bounds() || !bytes.Equal(a.Pix, b.Pix) {
		t.Fatalf("pixels differ after Embed (bounds %v vs %v)", a.Bounds(), b.Bounds())
	}
}
