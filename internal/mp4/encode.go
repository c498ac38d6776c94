// Package mp4 writes H.264 video in an MP4 file that browsers play, in pure
// Go: a deliberately simple Constrained Baseline encoder (an IDR picture of
// I_PCM macroblocks, then P pictures whose unchanged macroblocks are skipped
// and whose changed ones are I_PCM again, so decoding is lossless) and an
// ISO BMFF (ISO/IEC 14496-12, -15) muxer that puts the moov box first.
//
// Output grows with what changes between frames: a still background with a
// small moving element costs one raw frame plus the moving area per frame.
package mp4

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"io"
)

// Errors Encode returns, wrapped with details.
var (
	// ErrFrameSize: a frame is not 4:2:0, has an odd or out-of-range size, or
	// differs in size from the first frame.
	ErrFrameSize = errors.New("mp4: bad frame size or format")
	// ErrFPS: Options.FPS is outside 1..MaxFPS, or the size and rate together
	// exceed H.264 level 5.2.
	ErrFPS = errors.New("mp4: bad frame rate")
	// ErrNoFrames: the source ended before its first frame.
	ErrNoFrames = errors.New("mp4: no frames")
	// ErrTooLarge: the file would pass MaxMediaBytes or MaxFrames.
	ErrTooLarge = errors.New("mp4: video too large")
)

// Limits of what Encode accepts.
const (
	MaxSide       = 8192    // luma samples per side (level 5.2 allows 8688 but no larger picture area than 36864 macroblocks)
	MaxFPS        = 240     // frames per second
	MaxFrames     = 1 << 20 // frames per video
	MaxMediaBytes = 1 << 31 // encoded bytes held before writing (all 32-bit offsets stay valid)
)

// Options says how to encode.
type Options struct {
	FPS int // frames per second, 1..MaxFPS; the file's timescale makes it exact
}

// FrameSource yields the frames of a video in order.
type FrameSource interface {
	// Next returns the next frame, or io.EOF after the last one. Frames are
	// *image.YCbCr with SubsampleRatio 4:2:0 and even width and height, all of
	// one size; samples are BT.709 limited range (Y 16..235, Cb and Cr
	// 16..240), which the stream declares. Encode is done with a frame when it
	// calls Next again, so a source may reuse one buffer.
	Next() (*image.YCbCr, error)
}

// FrameFunc adapts a function to FrameSource.
type FrameFunc func() (*image.YCbCr, error)

// Next calls f.
func (f FrameFunc) Next() (*image.YCbCr, error) { return f() }

// Encode writes frames as an H.264 Constrained Baseline video in an MP4 file
// to w: ftyp, then moov (so playback can start while the file downloads),
// then mdat. It holds two raw frames and the encoded stream in memory, never
// all raw frames. Errors: ErrFrameSize, ErrFPS, ErrNoFrames, ErrTooLarge, or
// an error from frames or w.
func Encode(w io.Writer, frames FrameSource, opts Options) error {
	if opts.FPS < 1 || opts.FPS > MaxFPS {
		return fmt.Errorf("%w: %d fps, want 1..%d", ErrFPS, opts.FPS, MaxFPS)
	}
	var enc *encoder
	var mdat []byte
	var sizes []uint32
	for n := 0; ; n++ {
		f, err := frames.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if enc == nil {
			if enc, err = newEncoder(f, opts.FPS); err != nil {
				return err
			}
			if _, ok := chooseLevel(int64(enc.mbW), int64(enc.mbH), int64(opts.FPS), nil); !ok {
				return fmt.Errorf("%w: %dx%d at %d fps is over H.264 level 5.2", ErrFPS, enc.width, enc.height, opts.FPS)
			}
		}
		if n >= MaxFrames {
			return fmt.Errorf("%w: over %d frames", ErrTooLarge, MaxFrames)
		}
		start := len(mdat)
		if mdat, err = enc.encode(mdat, f, n); err != nil {
			return err
		}
		if int64(len(mdat)) > MaxMediaBytes {
			return fmt.Errorf("%w: over %d bytes", ErrTooLarge, int64(MaxMediaBytes))
		}
		sizes = append(sizes, uint32(len(mdat)-start))
	}
	if enc == nil {
		return ErrNoFrames
	}
	lv, ok := chooseLevel(int64(enc.mbW), int64(enc.mbH), int64(opts.FPS), sizes)
	if !ok {
		return fmt.Errorf("%w: %dx%d at %d fps is over H.264 level 5.2", ErrFPS, enc.width, enc.height, opts.FPS)
	}
	t := track{
		width: enc.width, height: enc.height, fps: opts.FPS,
		sps:   nalPayload(3, nalSPS, buildSPS(spsParams{width: enc.width, height: enc.height, fps: opts.FPS, levelIdc: lv.idc})),
		pps:   nalPayload(3, nalPPS, buildPPS()),
		level: lv.idc, sizes: sizes,
	}
	return writeMP4(w, &t, mdat)
}

// encoder keeps the previous picture (padded to whole macroblocks) to find
// the macroblocks that changed.
type encoder struct {
	width, height int
	mbW, mbH      int
	fps           int
	cur, prev     picture
	mb            []byte // one macroblock's PCM samples: 256 Y, 64 Cb, 64 Cr
	bw            bitWriter
}

// picture is a 4:2:0 frame padded to whole macroblocks by repeating its last
// column and row.
type picture struct {
	y, cb, cr []byte
	yStride   int // mbW*16; chroma stride is half
}

func newEncoder(f *image.YCbCr, fps int) (*encoder, error) {
	if f == nil {
		return nil, fmt.Errorf("%w: nil frame", ErrFrameSize)
	}
	w, h := f.Rect.Dx(), f.Rect.Dy()
	if err := checkFrame(f, w, h); err != nil {
		return nil, err
	}
	mbW, mbH := (w+15)/16, (h+15)/16
	if int64(mbW)*int64(mbH) > levels[len(levels)-1].maxFS {
		return nil, fmt.Errorf("%w: %dx%d is over %d macroblocks", ErrFrameSize, w, h, levels[len(levels)-1].maxFS)
	}
	e := &encoder{width: w, height: h, mbW: mbW, mbH: mbH, fps: fps, mb: make([]byte, 384)}
	e.cur = newPicture(mbW, mbH)
	e.prev = newPicture(mbW, mbH)
	return e, nil
}

func newPicture(mbW, mbH int) picture {
	ys := mbW * 16 * mbH * 16
	return picture{y: make([]byte, ys), cb: make([]byte, ys/4), cr: make([]byte, ys/4), yStride: mbW * 16}
}

func checkFrame(f *image.YCbCr, w, h int) error {
	if f == nil {
		return fmt.Errorf("%w: nil frame", ErrFrameSize)
	}
	if f.SubsampleRatio != image.YCbCrSubsampleRatio420 {
		return fmt.Errorf("%w: subsampling %v, want 4:2:0", ErrFrameSize, f.SubsampleRatio)
	}
	fw, fh := f.Rect.Dx(), f.Rect.Dy()
	if fw != w || fh != h {
		return fmt.Errorf("%w: frame is %dx%d, the first was %dx%d", ErrFrameSize, fw, fh, w, h)
	}
	if w < 2 || h < 2 || w > MaxSide || h > MaxSide || w%2 != 0 || h%2 != 0 {
		return fmt.Errorf("%w: %dx%d, want even sides within 2..%d (4:2:0 H.264 cannot show odd sizes)", ErrFrameSize, w, h, MaxSide)
	}
	if f.Rect.Min.X%2 != 0 || f.Rect.Min.Y%2 != 0 {
		return fmt.Errorf("%w: frame origin %v is not even", ErrFrameSize, f.Rect.Min)
	}
	// Guard the plane lengths so a malformed image cannot make us index out of range.
	cw, ch := w/2, h/2
	if f.YStride < w || f.CStride < cw ||
		len(f.Y) < f.YOffset(f.Rect.Max.X-1, f.Rect.Max.Y-1)+1 ||
		len(f.Cb) < f.COffset(f.Rect.Max.X-1, f.Rect.Max.Y-1)+1 ||
		len(f.Cr) < f.COffset(f.Rect.Max.X-1, f.Rect.Max.Y-1)+1 || ch < 1 {
		return fmt.Errorf("%w: planes shorter than the frame", ErrFrameSize)
	}
	return nil
}

// load copies f into p, repeating the last column and row into the padding.
func (p *picture) load(f *image.YCbCr, w, h int) {
	loadPlane(p.y, p.yStride, len(p.y)/p.yStride, f.Y[f.YOffset(f.Rect.Min.X, f.Rect.Min.Y):], f.YStride, w, h)
	cs := p.yStride / 2
	co := f.COffset(f.Rect.Min.X, f.Rect.Min.Y)
	loadPlane(p.cb, cs, len(p.cb)/cs, f.Cb[co:], f.CStride, w/2, h/2)
	loadPlane(p.cr, cs, len(p.cr)/cs, f.Cr[co:], f.CStride, w/2, h/2)
}

func loadPlane(dst []byte, dstStride, dstRows int, src []byte, srcStride, w, h int) {
	for y := 0; y < dstRows; y++ {
		sy := min(y, h-1)
		row := dst[y*dstStride : (y+1)*dstStride]
		copy(row, src[sy*srcStride:sy*srcStride+w])
		for x := w; x < dstStride; x++ {
			row[x] = row[w-1]
		}
	}
}

// macroblock gathers the PCM samples of macroblock (mx, my) into e.mb.
func (e *encoder) macroblock(p *picture, mx, my int) []byte {
	b := e.mb[:0]
	for y := 0; y < 16; y++ {
		o := (my*16+y)*p.yStride + mx*16
		b = append(b, p.y[o:o+16]...)
	}
	cs := p.yStride / 2
	for _, plane := range [][]byte{p.cb, p.cr} {
		for y := 0; y < 8; y++ {
			o := (my*8+y)*cs + mx*8
			b = append(b, plane[o:o+8]...)
		}
	}
	return b
}

// same reports whether macroblock (mx, my) is equal in cur and prev.
func (e *encoder) same(mx, my int) bool {
	for y := 0; y < 16; y++ {
		o := (my*16+y)*e.cur.yStride + mx*16
		if !bytes.Equal(e.cur.y[o:o+16], e.prev.y[o:o+16]) {
			return false
		}
	}
	cs := e.cur.yStride / 2
	for y := 0; y < 8; y++ {
		o := (my*8+y)*cs + mx*8
		if !bytes.Equal(e.cur.cb[o:o+8], e.prev.cb[o:o+8]) || !bytes.Equal(e.cur.cr[o:o+8], e.prev.cr[o:o+8]) {
			return false
		}
	}
	return true
}

// encode appends frame n to dst as one MP4 sample: a length-prefixed slice NAL unit.
func (e *encoder) encode(dst []byte, f *image.YCbCr, n int) ([]byte, error) {
	if err := checkFrame(f, e.width, e.height); err != nil {
		return nil, err
	}
	e.cur.load(f, e.width, e.height)
	w := &e.bw
	w.buf, w.cur, w.ncur = w.buf[:0], 0, 0
	sliceHeader(w, n)
	if n == 0 {
		// slice_data() of an I slice: one macroblock_layer() per macroblock.
		for my := 0; my < e.mbH; my++ {
			for mx := 0; mx < e.mbW; mx++ {
				pcmMB(w, mbTypeIPCMinI, e.macroblock(&e.cur, mx, my))
			}
		}
	} else {
		// slice_data() of a P slice: mb_skip_run before each coded macroblock,
		// and once more at the end when the last macroblocks are skipped.
		skip := uint32(0)
		for my := 0; my < e.mbH; my++ {
			for mx := 0; mx < e.mbW; mx++ {
				if e.same(mx, my) {
					skip++
					continue
				}
				w.ue(skip)
				skip = 0
				pcmMB(w, mbTypeIPCMinP, e.macroblock(&e.cur, mx, my))
			}
		}
		if skip > 0 {
			w.ue(skip)
		}
	}
	w.trailing()
	refIdc, typ := byte(2), byte(nalSlice)
	if n == 0 {
		refIdc, typ = 3, nalIDR
	}
	dst = appendNAL(dst, refIdc, typ, w.buf)
	e.cur, e.prev = e.prev, e.cur
	return dst, nil
}
