package workspace

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // input images
	_ "image/png"
	"io"
	"math"
	"math/rand/v2"

	_ "golang.org/x/image/webp"

	"gooni/internal/mp4"
)

// RenderedMedia is a simulated task's result and preview, encoded.
type RenderedMedia struct {
	Result      []byte
	ResultType  string // image/png or video/mp4
	Preview     []byte
	PreviewType string // image/jpeg
}

// What the simulators draw when params say nothing, and their limits.
const (
	SimMaxSide   = 2048 // a larger request is scaled down to fit, keeping its aspect
	SimMaxFrames = 241  // num_frames beyond this is cut to it
	SimMaxFPS    = 60   // fps beyond this is cut to it

	simImageSide     = 1024 // default width and height of an image
	simVideoW        = 832  // default video size, frames and rate: the catalog's
	simVideoH        = 480
	simVideoFrames   = 81
	simVideoFPS      = 16
	simMinSide       = 16
	maxPreviewSide   = 512
	simMaxInputPixel = 16 << 20 // a larger i2v input image is ignored (hashed, not drawn)
)

// RenderMedia draws what a simulated workspace returns for a finished task.
// Both simulators (`gooni workspace-sim`, `gooni comfy-sim`) use it, so the
// same task gives the same media whichever fake runs it. The media are a
// function of (type, model, mode, prompt, negative_prompt, params, input
// image) only (CONTRACT section 12): the same request gives the same bytes,
// and another seed or prompt another picture. Images are PNGs of
// params.width x params.height; videos are H.264 MP4s of params.width x
// params.height (odd sides rounded down to even), params.num_frames frames
// at params.fps, with a JPEG poster equal to the first frame. Sides are
// scaled down to fit SimMaxSide; frames and fps are cut to SimMaxFrames and
// SimMaxFPS. An i2v input image (PNG, JPEG or WebP) becomes the background.
func RenderMedia(req *TaskRequest) (*RenderedMedia, error) {
	m, err := renderMedia(req)
	if err != nil {
		return nil, err
	}
	return &RenderedMedia{Result: m.result, ResultType: m.resultType, Preview: m.preview, PreviewType: m.previewType}, nil
}

// renderMedia builds the result and preview of a finished task.
func renderMedia(req *TaskRequest) (*simMedia, error) {
	p, bg, rng, pal := drawStill(req)
	if p.video {
		return renderVideo(newVideoScene(bg, rng, pal, p, req.Prompt))
	}
	result, err := encodePNG(bg)
	if err != nil {
		return nil, err
	}
	preview, err := encodeJPEG(shrink(bg, maxPreviewSide))
	if err != nil {
		return nil, err
	}
	return &simMedia{result: result, resultType: "image/png", preview: preview, previewType: "image/jpeg"}, nil
}

// drawStill draws the picture (an image's result, a video's background) and
// returns the random source seeded from the task, to go on drawing from.
func drawStill(req *TaskRequest) (drawParams, *image.RGBA, *rand.Rand, palette) {
	p := readDrawParams(req.Type, req.Params)
	rng := rand.New(rand.NewPCG(taskSeed(req)))
	pal := newPalette(rng)
	bg := image.NewRGBA(image.Rect(0, 0, p.width, p.height))
	if in := decodeInput(req.Image); in != nil {
		scaleInto(bg, in)
		rect(bg, bg.Rect, pal[0], 56) // a seeded tint: another seed, other bytes
	} else {
		drawBackground(bg, rng, pal)
	}
	drawCaption(bg, req.Prompt)
	return p, bg, rng, pal
}

// videoFrames is the frame source of req's video (a video request) and its settings.
func videoFrames(req *TaskRequest) (*frameSource, drawParams) {
	p, bg, rng, pal := drawStill(req)
	return newFrameSource(newVideoScene(bg, rng, pal, p, req.Prompt)), p
}

// taskSeed digests everything a real model's output depends on.
func taskSeed(req *TaskRequest) (uint64, uint64) {
	h := sha256.New()
	img := sha256.Sum256(req.Image)
	for _, part := range [][]byte{
		[]byte("gooni-sim/2"), []byte(req.Type), []byte(req.Model), []byte(req.Mode),
		[]byte(req.Prompt), []byte(req.NegativePrompt), canonicalJSON(req.Params), img[:],
	} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	sum := h.Sum(nil)
	return binary.BigEndian.Uint64(sum[:8]), binary.BigEndian.Uint64(sum[8:16])
}

// canonicalJSON re-encodes params with sorted keys and no spacing, so two
// spellings of the same params draw the same picture; invalid JSON is used as is.
func canonicalJSON(raw json.RawMessage) []byte {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return raw
	}
	b, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return b
}

type drawParams struct {
	video         bool
	width, height int
	frames, fps   int
}

// readDrawParams takes width, height, num_frames and fps when present as
// numbers in range; anything else falls back to the defaults.
func readDrawParams(typ string, params json.RawMessage) drawParams {
	p := drawParams{video: typ == "video", width: simImageSide, height: simImageSide}
	if p.video {
		p.width, p.height, p.frames, p.fps = simVideoW, simVideoH, simVideoFrames, simVideoFPS
	}
	var m map[string]any
	_ = json.Unmarshal(params, &m)
	num := func(key string, lo, hi, def int) int {
		f, ok := m[key].(float64)
		if !ok || math.IsNaN(f) || f < float64(lo) {
			return def
		}
		return int(math.Min(f, float64(hi)))
	}
	p.width = num("width", simMinSide, 1<<20, p.width)
	p.height = num("height", simMinSide, 1<<20, p.height)
	p.width, p.height = fitWithin(p.width, p.height, SimMaxSide)
	p.width, p.height = max(p.width, simMinSide), max(p.height, simMinSide)
	if p.video {
		// H.264 4:2:0 pictures have even sides.
		p.width, p.height = p.width&^1, p.height&^1
		p.frames = num("num_frames", 1, SimMaxFrames, p.frames)
		p.fps = num("fps", 1, SimMaxFPS, p.fps)
	}
	return p
}

// decodeInput decodes an i2v input image, or nil when there is none, it is
// not an image, or it is larger than simMaxInputPixel.
func decodeInput(b []byte) *image.RGBA {
	if len(b) == 0 {
		return nil
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil || cfg.Width < 1 || cfg.Height < 1 || int64(cfg.Width)*int64(cfg.Height) > simMaxInputPixel {
		return nil
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	return toRGBA(img)
}

// videoScene is a still background with a frame counter in the top-left
// corner and a ball that moves and bounds off the edges of the area between
// the counter and the caption. Only those two change between frames, so the
// encoder skips every other macroblock.
type videoScene struct {
	bg          *image.RGBA
	frames, fps int
	scale       int
	counter     image.Rectangle
	r           int         // ball radius
	x0, y0      int         // ball centre at frame 0
	vx, vy      int         // pixels per frame
	lo, hi      image.Point // the ball centre stays within these
	light, dark color.RGBA
}

func newVideoScene(bg *image.RGBA, rng *rand.Rand, pal palette, p drawParams, prompt string) *videoScene {
	w, h := p.width, p.height
	s := &videoScene{bg: bg, frames: p.frames, fps: p.fps, scale: textScale(w, h)}
	widest := len(s.counterText(p.frames - 1))
	s.counter = image.Rect(0, 0, min(w, (widest*7+8)*s.scale), min(h, (15+6)*s.scale))
	s.r = min(48, max(3, min(w, h)/14)) // capped: what moves is what the video costs
	s.lo = image.Pt(s.r, s.counter.Max.Y+s.r)
	s.hi = image.Pt(w-s.r, h-captionHeight(w, h, prompt)-s.r)
	if s.hi.Y < s.lo.Y { // too small for an area of its own: anywhere
		s.lo.Y, s.hi.Y = s.r, h-s.r
	}
	s.hi = image.Pt(max(s.hi.X, s.lo.X), max(s.hi.Y, s.lo.Y))
	s.x0 = s.lo.X + rng.IntN(s.hi.X-s.lo.X+1)
	s.y0 = s.lo.Y + rng.IntN(s.hi.Y-s.lo.Y+1)
	// Cross the picture in one to two seconds, in a seeded direction.
	s.vx = max(1, w*(50+rng.IntN(50))/(100*p.fps)) * (1 - 2*rng.IntN(2))
	s.vy = max(1, h*(50+rng.IntN(50))/(100*p.fps)) * (1 - 2*rng.IntN(2))
	c := pal[1+rng.IntN(4)]
	s.light = mix(c, color.RGBA{255, 255, 255, 255}, 170)
	s.dark = mix(c, color.RGBA{0, 0, 0, 255}, 60)
	return s
}

// counterText says which frame this is and the settings the video was made with.
func (s *videoScene) counterText(i int) string {
	return fmt.Sprintf("%d/%d %dx%d %dfps", i+1, s.frames, s.bg.Rect.Dx(), s.bg.Rect.Dy(), s.fps)
}

// bounce folds v into lo..hi as a ball bouncing between two walls.
func bounce(v, lo, hi int) int {
	span := hi - lo
	if span <= 0 {
		return lo
	}
	t := ((v-lo)%(2*span) + 2*span) % (2 * span)
	if t > span {
		t = 2*span - t
	}
	return lo + t
}

func (s *videoScene) ball(i int) (x, y int) {
	return bounce(s.x0+s.vx*i, s.lo.X, s.hi.X), bounce(s.y0+s.vy*i, s.lo.Y, s.hi.Y)
}

// dirty is where frame i differs from the background.
func (s *videoScene) dirty(i int) []image.Rectangle {
	x, y := s.ball(i)
	return []image.Rectangle{s.counter, image.Rect(x-s.r-1, y-s.r-1, x+s.r+2, y+s.r+2)}
}

// overlay draws frame i's counter and ball on dst, which may cover only part
// of the picture (drawing is clipped to dst.Rect).
func (s *videoScene) overlay(dst *image.RGBA, i int) {
	rect(dst, s.counter, color.RGBA{0, 0, 0, 255}, 150)
	drawText(dst, []string{s.counterText(i)}, 4*s.scale, 3*s.scale, s.scale)
	x, y := s.ball(i)
	// Shaded: light near a highlight up and left of the centre, dark at the far edge.
	hx, hy := x-s.r/3, y-s.r/3
	far := int64(4*s.r/3+1) * int64(4*s.r/3+1)
	box := image.Rect(x-s.r-1, y-s.r-1, x+s.r+2, y+s.r+2).Intersect(dst.Rect)
	r4 := int64(4*s.r) * int64(4*s.r)
	for py := box.Min.Y; py < box.Max.Y; py++ {
		for px := box.Min.X; px < box.Max.X; px++ {
			n := 0
			for sy := 0; sy < 4; sy++ {
				dy := int64(4*(py-y) + sy - 2)
				for sx := 0; sx < 4; sx++ {
					dx := int64(4*(px-x) + sx - 2)
					if dx*dx+dy*dy <= r4 {
						n++
					}
				}
			}
			if n == 0 {
				continue
			}
			d2 := int64(px-hx)*int64(px-hx) + int64(py-hy)*int64(py-hy)
			blend(dst, px, py, mix(s.light, s.dark, int(min(256, d2*256/far))), 255*n/16)
		}
	}
}

// frameSource renders one frame at a time into a reused buffer: the
// background's samples, then the dirty rectangles redrawn and converted.
type frameSource struct {
	s     *videoScene
	bgYUV *image.YCbCr
	cur   *image.YCbCr
	patch []byte
	i     int
}

// Next implements mp4.FrameSource.
func (f *frameSource) Next() (*image.YCbCr, error) {
	if f.i == f.s.frames {
		return nil, io.EOF
	}
	copy(f.cur.Y, f.bgYUV.Y)
	copy(f.cur.Cb, f.bgYUV.Cb)
	copy(f.cur.Cr, f.bgYUV.Cr)
	for _, r := range f.s.dirty(f.i) {
		// Even corners, so the converted chroma covers whole 2x2 blocks.
		r = image.Rect(r.Min.X&^1, r.Min.Y&^1, r.Max.X+r.Max.X&1, r.Max.Y+r.Max.Y&1).Intersect(f.s.bg.Rect)
		if r.Empty() {
			continue
		}
		n := r.Dx() * r.Dy() * 4
		if cap(f.patch) < n {
			f.patch = make([]byte, n)
		}
		patch := &image.RGBA{Pix: f.patch[:n], Stride: r.Dx() * 4, Rect: r}
		for y := r.Min.Y; y < r.Max.Y; y++ {
			copy(patch.Pix[(y-r.Min.Y)*patch.Stride:(y-r.Min.Y+1)*patch.Stride], f.s.bg.Pix[f.s.bg.PixOffset(r.Min.X, y):])
		}
		f.s.overlay(patch, f.i)
		mp4.ConvertRGBA(f.cur, patch, r)
	}
	f.i++
	return f.cur, nil
}

func newFrameSource(s *videoScene) *frameSource {
	w, h := s.bg.Rect.Dx(), s.bg.Rect.Dy()
	f := &frameSource{s: s, bgYUV: mp4.NewFrame(w, h), cur: mp4.NewFrame(w, h)}
	mp4.ConvertRGBA(f.bgYUV, s.bg, s.bg.Rect)
	return f
}

// renderVideo encodes the scene's frames one at a time; the poster is frame
// 0 drawn in full.
func renderVideo(s *videoScene) (*simMedia, error) {
	first := image.NewRGBA(s.bg.Rect)
	copy(first.Pix, s.bg.Pix)
	s.overlay(first, 0)
	poster, err := encodeJPEG(first)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := mp4.Encode(&out, newFrameSource(s), mp4.Options{FPS: s.fps}); err != nil {
		return nil, err
	}
	return &simMedia{result: out.Bytes(), resultType: "video/mp4", preview: poster, previewType: "image/jpeg"}, nil
}
