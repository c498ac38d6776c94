package workspace

import (
	"bytes"
	"image"
	"image/color"
	"math/rand/v2"
	"testing"
)

// discBySubsamples is disc without its shortcut: every pixel of the box
// subsampled 4x4.
func discBySubsamples(img *image.RGBA, cx, cy, r int, c color.RGBA, a int) {
	box := image.Rect(cx-r-1, cy-r-1, cx+r+2, cy+r+2).Intersect(img.Rect)
	r4 := int64(4*r) * int64(4*r)
	for y := box.Min.Y; y < box.Max.Y; y++ {
		for x := box.Min.X; x < box.Max.X; x++ {
			blend(img, x, y, c, a*discCover(x-cx, y-cy, r4)/16)
		}
	}
}

// The demo's discs skip subsampling inside and outside the edge; the
// picture must be the same, pixel for pixel, as subsampling every pixel:
// radii 0-200 (0, 1 and 2 included), centres inside, on and off the
// picture's edges, several alphas, over a picture that is not blank.
func TestDiscShortcutPaintsTheSamePicture(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 400; i++ {
		w, h := 64+rng.IntN(200), 64+rng.IntN(200)
		base := image.NewRGBA(image.Rect(0, 0, w, h))
		gradient(base, color.RGBA{10, 200, 30, 255}, color.RGBA{250, 20, 90, 255}, rng.IntN(9)-4, rng.IntN(9)-4)
		r := rng.IntN(201)
		if i < 3 {
			r = i
		}
		cx, cy := rng.IntN(w+2*r+40)-r-20, rng.IntN(h+2*r+40)-r-20
		c := color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255}
		a := []int{255, 200, 90, 17}[i%4]
		fast, slow := image.NewRGBA(base.Rect), image.NewRGBA(base.Rect)
		copy(fast.Pix, base.Pix)
		copy(slow.Pix, base.Pix)
		disc(fast, cx, cy, r, c, a)
		discBySubsamples(slow, cx, cy, r, c, a)
		if !bytes.Equal(fast.Pix, slow.Pix) {
			t.Fatalf("disc r=%d at (%d,%d) on %dx%d, alpha %d: pictures differ", r, cx, cy, w, h, a)
		}
	}
}
