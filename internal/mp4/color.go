package mp4

import "image"

// BT.709 (ITU-R BT.709-6 item 3.2-3.4) RGB to limited-range Y'CbCr, 16.16
// fixed point: Y = 16 + 219*(Kr R + Kg G + Kb B)/255 and
// Cb, Cr = 128 + 224*(B-Y, R-Y)/(2(1-Kb), 2(1-Kr))/255 with Kr 0.2126,
// Kb 0.0722. The Cb and Cr rows sum to zero so greys get 128 exactly.
const (
	yR, yG, yB    = 11966, 40254, 4064
	cbR, cbG, cbB = -6596, -22188, 28784
	crR, crG, crB = 28784, -26145, -2639
)

// ConvertRGBA writes the pixels of src inside r into dst as BT.709
// limited-range 4:2:0 samples, the colour space Encode declares. r is
// clipped to both images and widened to even coordinates (a chroma sample
// covers 2x2 pixels, averaged); dst must be 4:2:0 with even origin. Converting
// a region gives the same samples as converting the whole image, so a caller
// can redraw only what changed. Alpha is ignored (src is premultiplied, so a
// translucent pixel reads as over black).
func ConvertRGBA(dst *image.YCbCr, src *image.RGBA, r image.Rectangle) {
	if dst.SubsampleRatio != image.YCbCrSubsampleRatio420 {
		return
	}
	r.Min.X &^= 1
	r.Min.Y &^= 1
	r.Max.X += r.Max.X & 1
	r.Max.Y += r.Max.Y & 1
	r = r.Intersect(dst.Rect).Intersect(src.Rect)
	for y := r.Min.Y; y < r.Max.Y; y += 2 {
		s0 := src.Pix[src.PixOffset(r.Min.X, y):]
		var s1 []byte
		if y+1 < r.Max.Y {
			s1 = src.Pix[src.PixOffset(r.Min.X, y+1):]
		} else {
			s1 = s0 // an odd last row (clipped source): use it twice
		}
		y0 := dst.Y[dst.YOffset(r.Min.X, y):]
		var y1 []byte
		if y+1 < r.Max.Y {
			y1 = dst.Y[dst.YOffset(r.Min.X, y+1):]
		}
		co := dst.COffset(r.Min.X, y)
		cb, cr := dst.Cb[co:], dst.Cr[co:]
		for x, i := 0, 0; r.Min.X+x < r.Max.X; x, i = x+2, i+8 {
			two := r.Min.X+x+1 < r.Max.X
			var sr, sg, sb int32
			for _, p := range [][]byte{s0, s1} {
				for k := 0; k < 2; k++ {
					j := i + 4*k
					if k == 1 && !two {
						j = i
					}
					sr += int32(p[j])
					sg += int32(p[j+1])
					sb += int32(p[j+2])
				}
			}
			y0[x] = luma(s0[i:])
			if two {
				y0[x+1] = luma(s0[i+4:])
			}
			if y1 != nil {
				y1[x] = luma(s1[i:])
				if two {
					y1[x+1] = luma(s1[i+4:])
				}
			}
			// Sums of four pixels: shift two more bits.
			cb[x/2] = uint8(128 + (cbR*sr+cbG*sg+cbB*sb+1<<17)>>18)
			cr[x/2] = uint8(128 + (crR*sr+crG*sg+crB*sb+1<<17)>>18)
		}
	}
}

func luma(p []byte) uint8 {
	return uint8(16 + (yR*int32(p[0])+yG*int32(p[1])+yB*int32(p[2])+1<<15)>>16)
}

// NewFrame is a 4:2:0 frame of w x h pixels, as Encode takes.
func NewFrame(w, h int) *image.YCbCr {
	return image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
}
