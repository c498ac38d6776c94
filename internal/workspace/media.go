package workspace

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// clipMP4 is the one video every simulated video task returns. It is committed so
// that neither the build, the tests nor the simulator need ffmpeg. Made with
// ffmpeg 5.1 (Debian 12):
//
//	ffmpeg -f lavfi -i testsrc2=size=640x360:rate=16 -t 3 -c:v libx264 \
//	  -pix_fmt yuv420p -profile:v baseline -crf 28 -preset slow \
//	  -movflags +faststart -an media/clip.mp4
//
// giving a 3 s, 640x360, 16 fps, constrained-baseline H.264 file (~130 KB) with
// the moov box up front, which Chromium plays while it downloads.
//
//go:embed media/clip.mp4
var clipMP4 []byte

const (
	maxImageSide   = 1024 // the simulator never draws larger than this
	maxPreviewSide = 512
	posterW        = 640 // the clip's frame size, so the poster matches the video
	posterH        = 360
)

// simMedia is what a finished task serves, encoded once and kept in memory.
type simMedia struct {
	result, preview         []byte
	resultType, previewType string
}

// renderMedia builds the result and preview of a finished task.
func renderMedia(typ, prompt string, params json.RawMessage) (*simMedia, error) {
	p := readDrawParams(params)
	if typ == "video" {
		poster := drawPrompt(posterW, posterH, prompt, p.seed)
		pj, err := encodeJPEG(poster)
		if err != nil {
			return nil, err
		}
		return &simMedia{result: clipMP4, resultType: "video/mp4", preview: pj, previewType: "image/jpeg"}, nil
	}
	w, h := fitWithin(p.width, p.height, maxImageSide)
	img := drawPrompt(w, h, prompt, p.seed)
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img); err != nil {
		return nil, err
	}
	tw, th := fitWithin(w, h, maxPreviewSide)
	thumb := image.NewRGBA(image.Rect(0, 0, tw, th))
	xdraw.ApproxBiLinear.Scale(thumb, thumb.Bounds(), img, img.Bounds(), xdraw.Src, nil)
	pj, err := encodeJPEG(thumb)
	if err != nil {
		return nil, err
	}
	return &simMedia{result: buf.Bytes(), resultType: "image/png", preview: pj, previewType: "image/jpeg"}, nil
}

func encodeJPEG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 82}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// corruptBytes is deterministic garbage for the corrupt fault: it carries no
// PNG/JPEG/MP4 signature, so a careful receiver can tell.
func corruptBytes(id string) []byte {
	rng := rand.New(rand.NewPCG(hash64("corrupt", id), 7))
	b := make([]byte, 4096)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	copy(b, "GARBAGE!")
	return b
}

type drawParams struct {
	width, height int
	seed          string
}

// readDrawParams takes width/height/seed when present as numbers; anything else falls back.
func readDrawParams(params json.RawMessage) drawParams {
	p := drawParams{width: 1024, height: 1024}
	var m map[string]any
	if json.Unmarshal(params, &m) != nil {
		return p
	}
	side := func(v any, def int) int {
		f, ok := v.(float64)
		if !ok || math.IsNaN(f) || f < 16 {
			return def
		}
		return int(math.Min(f, 8192))
	}
	p.width = side(m["width"], p.width)
	p.height = side(m["height"], p.height)
	if s, ok := m["seed"].(float64); ok {
		p.seed = strconv.FormatFloat(s, 'f', -1, 64)
	}
	return p
}

// fitWithin scales w x h down (keeping the aspect) so the longest side is at most max.
func fitWithin(w, h, max int) (int, int) {
	if w <= max && h <= max {
		return w, h
	}
	if w >= h {
		return max, maxInt(1, h*max/w)
	}
	return maxInt(1, w*max/h), max
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func hash64(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// drawPrompt paints a picture that is recognisably "this prompt": colours and
// shapes seeded by the prompt and seed, and the prompt text itself.
func drawPrompt(w, h int, prompt, seed string) *image.RGBA {
	hv := hash64(prompt, seed)
	rng := rand.New(rand.NewPCG(hv, hv^0x9e3779b97f4a7c15))
	img := image.NewRGBA(image.Rect(0, 0, w, h))

	hue := rng.Float64() * 360
	c1 := hsv(hue, 0.75, 0.95)
	c2 := hsv(math.Mod(hue+100+rng.Float64()*80, 360), 0.8, 0.55)
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			t := (float64(x)/float64(w) + float64(y)/float64(h)) / 2
			i := x * 4
			row[i] = lerp8(c1.R, c2.R, t)
			row[i+1] = lerp8(c1.G, c2.G, t)
			row[i+2] = lerp8(c1.B, c2.B, t)
			row[i+3] = 255
		}
	}

	minSide := math.Min(float64(w), float64(h))
	for n := 6 + rng.IntN(6); n > 0; n-- {
		c := hsv(rng.Float64()*360, 0.6+rng.Float64()*0.4, 0.7+rng.Float64()*0.3)
		src := image.NewUniform(color.NRGBA{c.R, c.G, c.B, uint8(90 + rng.IntN(110))})
		cx, cy := rng.IntN(w), rng.IntN(h)
		r := int(minSide * (0.05 + rng.Float64()*0.2))
		if rng.IntN(2) == 0 {
			rect := image.Rect(cx-r, cy-r, cx+r, cy+r)
			draw.DrawMask(img, rect, src, image.Point{}, &disc{image.Pt(cx, cy), r}, rect.Min, draw.Over)
		} else {
			rect := image.Rect(cx-r, cy-r/2, cx+r, cy+r/2)
			draw.Draw(img, rect, src, image.Point{}, draw.Over)
		}
	}

	drawCaption(img, prompt)
	return img
}

// drawCaption writes the prompt on a dark band, scaling the 7x13 bitmap font up
// so it stays legible on large images.
func drawCaption(img *image.RGBA, prompt string) {
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	scale := maxInt(1, (minInt(w, h)+150)/300)
	face := basicfont.Face7x13
	charW, lineH := 7, 15
	perLine := maxInt(4, (w-16*scale)/(charW*scale))
	lines := wrapText(printableASCII(prompt), perLine, 4)
	if len(lines) == 0 {
		lines = []string{"(no prompt)"}
	}
	textW := 0
	for _, l := range lines {
		textW = maxInt(textW, len(l)*charW)
	}
	small := image.NewRGBA(image.Rect(0, 0, maxInt(1, textW), len(lines)*lineH))
	d := &font.Drawer{Dst: small, Src: image.White, Face: face}
	for i, l := range lines {
		d.Dot = fixed.P(0, i*lineH+11)
		d.DrawString(l)
	}
	bandH := len(lines)*lineH*scale + 16*scale
	band := image.Rect(0, h-bandH, w, h)
	draw.Draw(img, band, image.NewUniform(color.RGBA{0, 0, 0, 150}), image.Point{}, draw.Over)
	dst := image.Rect(8*scale, h-bandH+8*scale, 8*scale+small.Bounds().Dx()*scale, h-8*scale)
	xdraw.NearestNeighbor.Scale(img, dst, small, small.Bounds(), xdraw.Over, nil)
}

func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// printableASCII replaces what the bitmap font cannot draw.
func printableASCII(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t' || r == '\r':
			b.WriteByte(' ')
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		default:
			b.WriteByte('?')
		}
	}
	return strings.TrimSpace(b.String())
}

// wrapText breaks s into at most maxLines lines of at most width characters.
func wrapText(s string, width, maxLines int) []string {
	var lines []string
	words := strings.Fields(s)
	cur := ""
	for len(words) > 0 {
		wd := words[0]
		if len(wd) > width {
			if cur != "" {
				lines, cur = append(lines, cur), ""
				continue
			}
			lines = append(lines, wd[:width])
			words[0] = wd[width:]
		} else if cur == "" {
			cur, words = wd, words[1:]
		} else if len(cur)+1+len(wd) <= width {
			cur, words = cur+" "+wd, words[1:]
		} else {
			lines, cur = append(lines, cur), ""
		}
		if len(lines) >= maxLines {
			break
		}
	}
	if cur != "" && len(lines) < maxLines {
		lines = append(lines, cur)
		cur = ""
	}
	if (len(words) > 0 || cur != "") && len(lines) > 0 {
		last := lines[len(lines)-1]
		if len(last)+3 > width {
			last = last[:maxInt(0, width-3)]
		}
		lines[len(lines)-1] = last + "..."
	}
	return lines
}

func lerp8(a, b uint8, t float64) uint8 {
	return uint8(float64(a) + (float64(b)-float64(a))*t + 0.5)
}

// disc is a circular alpha mask for draw.DrawMask.
type disc struct {
	c image.Point
	r int
}

func (d *disc) ColorModel() color.Model { return color.AlphaModel }
func (d *disc) Bounds() image.Rectangle {
	return image.Rect(d.c.X-d.r, d.c.Y-d.r, d.c.X+d.r, d.c.Y+d.r)
}
func (d *disc) At(x, y int) color.Color {
	dx, dy := x-d.c.X, y-d.c.Y
	if dx*dx+dy*dy <= d.r*d.r {
		return color.Alpha{255}
	}
	return color.Alpha{0}
}

func hsv(h, s, v float64) color.RGBA {
	c := v * s
	x := c * (1 - math.Abs(math.Mod(h/60, 2)-1))
	m := v - c
	var r, g, b float64
	switch {
	case h < 60:
		r, g, b = c, x, 0
	case h < 120:
		r, g, b = x, c, 0
	case h < 180:
		r, g, b = 0, c, x
	case h < 240:
		r, g, b = 0, x, c
	case h < 300:
		r, g, b = x, 0, c
	default:
		r, g, b = c, 0, x
	}
	return color.RGBA{uint8((r + m) * 255), uint8((g + m) * 255), uint8((b + m) * 255), 255}
}
