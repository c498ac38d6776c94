package workspace

import (
	"bytes"
	"encoding/binary"
	"hash/fnv"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// The simulators' pictures are drawn with integer arithmetic only, so the
// same task gives the same bytes on every machine and architecture (Go may
// fuse floating-point multiply-adds differently per platform).

// simMedia is what a finished task serves, encoded once and kept in memory.
type simMedia struct {
	result, preview         []byte
	resultType, previewType string
}

func encodeJPEG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 82}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func encodePNG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img); err != nil {
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

// fitWithin scales w x h down (keeping the aspect) so the longest side is at most limit.
func fitWithin(w, h, limit int) (int, int) {
	if w <= limit && h <= limit {
		return w, h
	}
	if w >= h {
		return limit, max(1, h*limit/w)
	}
	return max(1, w*limit/h), limit
}

// palette is a scene's colours: a colour scheme around one seeded hue.
type palette [5]color.RGBA

// newPalette picks a base hue and one of four schemes (analogous,
// complementary, triadic, split-complementary), so two seeds rarely share
// colours.
func newPalette(rng *rand.Rand) palette {
	h := rng.IntN(360)
	offsets := [][4]int{{30, 60, 90, 200}, {180, 20, 200, 160}, {120, 240, 60, 180}, {150, 210, 30, 90}}[rng.IntN(4)]
	var p palette
	p[0] = hsv(h, 150+rng.IntN(90), 200+rng.IntN(56))
	for i, o := range offsets {
		p[i+1] = hsv((h+o)%360, 120+rng.IntN(120), 90+rng.IntN(150))
	}
	return p
}

// hsv is an opaque colour from hue h (degrees), saturation s and value v (0..255).
func hsv(h, s, v int) color.RGBA {
	h = (h%360 + 360) % 360
	region, rem := h/60, (h%60)*255/60
	p := v * (255 - s) / 255
	q := v * (255 - s*rem/255) / 255
	t := v * (255 - s*(255-rem)/255) / 255
	var r, g, b int
	switch region {
	case 0:
		r, g, b = v, t, p
	case 1:
		r, g, b = q, v, p
	case 2:
		r, g, b = p, v, t
	case 3:
		r, g, b = p, q, v
	case 4:
		r, g, b = t, p, v
	default:
		r, g, b = v, p, q
	}
	return color.RGBA{uint8(r), uint8(g), uint8(b), 255}
}

// mix is a + (b-a)*t/256 per channel, t in 0..256.
func mix(a, b color.RGBA, t int) color.RGBA {
	l := func(x, y uint8) uint8 { return uint8((int(x)*(256-t) + int(y)*t + 128) >> 8) }
	return color.RGBA{l(a.R, b.R), l(a.G, b.G), l(a.B, b.B), 255}
}

// blend paints c over the opaque pixel at (x, y) with alpha a (0..255).
func blend(img *image.RGBA, x, y int, c color.RGBA, a int) {
	if !(image.Point{x, y}).In(img.Rect) || a <= 0 {
		return
	}
	i := img.PixOffset(x, y)
	p := img.Pix[i : i+3 : i+3]
	a = min(a, 255)
	p[0] = uint8((int(p[0])*(255-a) + int(c.R)*a + 127) / 255)
	p[1] = uint8((int(p[1])*(255-a) + int(c.G)*a + 127) / 255)
	p[2] = uint8((int(p[2])*(255-a) + int(c.B)*a + 127) / 255)
}

// disc paints a disc of radius r (pixels) at (cx, cy) with alpha a, its edge
// smoothed by counting 4x4 subsamples inside. The subsamples of a pixel lie
// within 0.71 pixel of its corner (x, y), so a pixel within r-1 of the
// centre has all 16 inside and one r+1 or more away has none: only the
// pixels of the edge are subsampled (the same picture, a fraction of the
// work of the demo's renders).
func disc(img *image.RGBA, cx, cy, r int, c color.RGBA, a int) {
	if r < 0 {
		return
	}
	box := image.Rect(cx-r-1, cy-r-1, cx+r+2, cy+r+2).Intersect(img.Rect)
	r4 := int64(4*r) * int64(4*r)
	in := int64(max(r-1, 0)) * int64(max(r-1, 0))
	out := int64(r+1) * int64(r+1)
	for y := box.Min.Y; y < box.Max.Y; y++ {
		for x := box.Min.X; x < box.Max.X; x++ {
			d := int64(x-cx)*int64(x-cx) + int64(y-cy)*int64(y-cy)
			switch {
			case r >= 1 && d <= in:
				blend(img, x, y, c, a)
			case d >= out:
			default:
				blend(img, x, y, c, a*discCover(x-cx, y-cy, r4)/16)
			}
		}
	}
}

// discCover counts the 4x4 subsamples of the pixel at (dx, dy) from a
// disc's centre that lie inside it (r4 = (4r)²).
func discCover(dx, dy int, r4 int64) int {
	n := 0
	for sy := 0; sy < 4; sy++ {
		y := int64(4*dy + sy - 2)
		for sx := 0; sx < 4; sx++ {
			x := int64(4*dx + sx - 2)
			if x*x+y*y <= r4 {
				n++
			}
		}
	}
	return n
}

// rect paints r with alpha a.
func rect(img *image.RGBA, r image.Rectangle, c color.RGBA, a int) {
	r = r.Intersect(img.Rect)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			blend(img, x, y, c, a)
		}
	}
}

// drawBackground paints one of three seeded compositions over the whole of img.
func drawBackground(img *image.RGBA, rng *rand.Rand, pal palette) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	side := min(w, h)
	switch rng.IntN(3) {
	case 0: // scattered discs and slabs over a diagonal gradient
		gradient(img, pal[0], pal[1], rng.IntN(33)-16, rng.IntN(33)-16)
		for n := 6 + rng.IntN(6); n > 0; n-- {
			c := pal[1+rng.IntN(4)]
			cx, cy := rng.IntN(w), rng.IntN(h)
			r := side * (5 + rng.IntN(20)) / 100
			if rng.IntN(2) == 0 {
				disc(img, cx, cy, r, c, 90+rng.IntN(110))
			} else {
				rect(img, image.Rect(cx-r, cy-r/2, cx+r, cy+r/2), c, 90+rng.IntN(110))
			}
		}
	case 1: // a landscape: sky, a sun, three ranges of hills
		gradient(img, mix(pal[0], color.RGBA{255, 255, 255, 255}, 96), pal[0], 0, 16)
		disc(img, rng.IntN(w), h/8+rng.IntN(max(1, h/3)), side*(6+rng.IntN(8))/100, pal[1], 230)
		for k := 0; k < 3; k++ {
			base := h * (45 + 15*k + rng.IntN(8)) / 100
			amp := h * (4 + rng.IntN(8)) / 100
			period := max(8, w*(20+rng.IntN(40))/100)
			phase := rng.IntN(period)
			c := mix(pal[2+k%3], color.RGBA{0, 0, 0, 255}, 40*k)
			for x := 0; x < w; x++ {
				// A triangle wave, folded twice for a less regular ridge.
				t := (x + phase) % period
				tri := min(t, period-t) * 2 * amp / period
				t2 := (x*3 + phase) % period
				tri2 := min(t2, period-t2) * amp / period / 2
				rect(img, image.Rect(x, base-tri-tri2, x+1, h), c, 255)
			}
		}
	default: // rings around a seeded centre
		gradient(img, pal[1], pal[0], rng.IntN(33)-16, rng.IntN(33)-16)
		cx, cy := rng.IntN(w), rng.IntN(h)
		step := max(4, side*(4+rng.IntN(6))/100)
		for r, k := side*(60+rng.IntN(40))/100, 0; r > 0; r, k = r-step, k+1 {
			disc(img, cx, cy, r, pal[k%5], 150)
		}
		for n := 2 + rng.IntN(4); n > 0; n-- {
			disc(img, rng.IntN(w), rng.IntN(h), side*(3+rng.IntN(6))/100, pal[4], 200)
		}
	}
}

// gradient fills img from a to b along direction (dx, dy).
func gradient(img *image.RGBA, a, b color.RGBA, dx, dy int) {
	if dx == 0 && dy == 0 {
		dy = 1
	}
	w, h := img.Rect.Dx(), img.Rect.Dy()
	// Project each pixel on (dx, dy); lo..hi spans the picture's corners.
	lo, hi := 0, 0
	for _, p := range [][2]int{{0, 0}, {w, 0}, {0, h}, {w, h}} {
		v := p[0]*dx + p[1]*dy
		lo, hi = min(lo, v), max(hi, v)
	}
	span := max(1, hi-lo)
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			c := mix(a, b, ((x*dx+y*dy)-lo)*256/span)
			row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = c.R, c.G, c.B, 255
		}
	}
}

// scaleInto draws src over the whole of dst, scaled to cover it (cropping the
// overflow, keeping the aspect), with 16.16 fixed-point bilinear sampling.
func scaleInto(dst *image.RGBA, src *image.RGBA) {
	dw, dh := dst.Rect.Dx(), dst.Rect.Dy()
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	// Source pixels per destination pixel (16.16): the smaller ratio covers.
	step := min(int64(sw)<<16/int64(dw), int64(sh)<<16/int64(dh))
	ox := (int64(sw)<<16 - step*int64(dw)) / 2
	oy := (int64(sh)<<16 - step*int64(dh)) / 2
	for y := 0; y < dh; y++ {
		fy := max(0, oy+step*int64(y)+step/2-1<<15)
		y0 := min(int(fy>>16), sh-1)
		y1, ty := min(y0+1, sh-1), int64(fy&0xFFFF)
		for x := 0; x < dw; x++ {
			fx := max(0, ox+step*int64(x)+step/2-1<<15)
			x0 := min(int(fx>>16), sw-1)
			x1, tx := min(x0+1, sw-1), int64(fx&0xFFFF)
			p00 := src.Pix[src.PixOffset(src.Rect.Min.X+x0, src.Rect.Min.Y+y0):]
			p10 := src.Pix[src.PixOffset(src.Rect.Min.X+x1, src.Rect.Min.Y+y0):]
			p01 := src.Pix[src.PixOffset(src.Rect.Min.X+x0, src.Rect.Min.Y+y1):]
			p11 := src.Pix[src.PixOffset(src.Rect.Min.X+x1, src.Rect.Min.Y+y1):]
			d := dst.Pix[dst.PixOffset(dst.Rect.Min.X+x, dst.Rect.Min.Y+y):]
			for k := 0; k < 3; k++ {
				top := int64(p00[k])*(1<<16-tx) + int64(p10[k])*tx
				bot := int64(p01[k])*(1<<16-tx) + int64(p11[k])*tx
				d[k] = uint8((top*(1<<16-ty) + bot*ty + 1<<31) >> 32)
			}
			d[3] = 255
		}
	}
}

// shrink is src reduced so its longest side is at most limit, each pixel the
// mean of the source pixels it covers; src itself when it is small enough.
func shrink(src *image.RGBA, limit int) *image.RGBA {
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	dw, dh := fitWithin(sw, sh, limit)
	if dw == sw && dh == sh {
		return src
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for y := 0; y < dh; y++ {
		y0, y1 := y*sh/dh, max((y+1)*sh/dh, y*sh/dh+1)
		for x := 0; x < dw; x++ {
			x0, x1 := x*sw/dw, max((x+1)*sw/dw, x*sw/dw+1)
			var sum [4]int
			for sy := y0; sy < y1; sy++ {
				p := src.Pix[src.PixOffset(src.Rect.Min.X+x0, src.Rect.Min.Y+sy):]
				for sx := 0; sx < x1-x0; sx++ {
					for k := 0; k < 4; k++ {
						sum[k] += int(p[4*sx+k])
					}
				}
			}
			n := (x1 - x0) * (y1 - y0)
			d := dst.Pix[dst.PixOffset(x, y):]
			for k := 0; k < 4; k++ {
				d[k] = uint8((sum[k] + n/2) / n)
			}
		}
	}
	return dst
}

// textScale is how much the 7x13 bitmap font is enlarged on a w x h picture.
func textScale(w, h int) int { return max(1, (min(w, h)+150)/300) }

// drawText paints lines of ASCII text in white, enlarged scale times, with
// the top-left corner of the first line at (x, y); lines are 15 pixels apart
// before scaling.
func drawText(img *image.RGBA, lines []string, x, y, scale int) {
	width := 0
	for _, l := range lines {
		width = max(width, len(l)*7)
	}
	if width == 0 {
		return
	}
	mask := image.NewAlpha(image.Rect(0, 0, width, len(lines)*15))
	d := &font.Drawer{Dst: mask, Src: image.Opaque, Face: basicfont.Face7x13}
	for i, l := range lines {
		d.Dot = fixed.P(0, i*15+11)
		d.DrawString(l)
	}
	white := color.RGBA{255, 255, 255, 255}
	for my := 0; my < mask.Rect.Dy(); my++ {
		for mx := 0; mx < width; mx++ {
			a := int(mask.Pix[my*mask.Stride+mx])
			if a == 0 {
				continue
			}
			rect(img, image.Rect(x+mx*scale, y+my*scale, x+(mx+1)*scale, y+(my+1)*scale), white, a)
		}
	}
}

// captionHeight is the height of the prompt band drawCaption paints.
func captionHeight(w, h int, prompt string) int {
	return len(captionLines(w, h, prompt))*15*textScale(w, h) + 16*textScale(w, h)
}

func captionLines(w, h int, prompt string) []string {
	scale := textScale(w, h)
	perLine := max(4, (w-16*scale)/(7*scale))
	lines := wrapText(printableASCII(prompt), perLine, 4)
	if len(lines) == 0 {
		lines = []string{"(no prompt)"}
	}
	return lines
}

// drawCaption writes the prompt on a dark band along the bottom.
func drawCaption(img *image.RGBA, prompt string) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	scale := textScale(w, h)
	bandH := captionHeight(w, h, prompt)
	rect(img, image.Rect(0, h-bandH, w, h), color.RGBA{0, 0, 0, 255}, 150)
	drawText(img, captionLines(w, h, prompt), 8*scale, h-bandH+8*scale, scale)
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
			last = last[:max(0, width-3)]
		}
		lines[len(lines)-1] = last + "..."
	}
	return lines
}

// toRGBA converts any image to a fresh *image.RGBA with origin (0, 0).
func toRGBA(src image.Image) *image.RGBA {
	b := src.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(dst, dst.Rect, src, b.Min, draw.Src)
	return dst
}

func hash64(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}
