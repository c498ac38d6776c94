package workspace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gooni/internal/mp4"
	"gooni/internal/testutil"
)

func renderReq(typ, params string) *TaskRequest {
	r := &TaskRequest{Type: typ, Model: "flux", Mode: "t2i", Prompt: "a lighthouse at dusk", NegativePrompt: "blur", Params: json.RawMessage(params)}
	if typ == "video" {
		r.Model, r.Mode = "anisora", "t2v"
	}
	return r
}

func mustRender(t testing.TB, req *TaskRequest) *RenderedMedia {
	t.Helper()
	m, err := RenderMedia(req)
	if err != nil {
		t.Fatalf("RenderMedia: %v", err)
	}
	return m
}

// testPNG is a w x h PNG filled with c, for i2v inputs.
func testPNG(t *testing.T, w, h int, c color.RGBA) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, 255
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRenderIsDeterministic(t *testing.T) {
	cases := []*TaskRequest{
		renderReq("image", `{"width":640,"height":400,"seed":7}`),
		renderReq("video", `{"width":320,"height":240,"num_frames":17,"fps":8,"seed":7}`),
	}
	i2v := renderReq("video", `{"width":256,"height":256,"num_frames":9,"fps":8,"seed":7}`)
	i2v.Mode, i2v.Image = "i2v", testPNG(t, 100, 60, color.RGBA{200, 40, 40, 255})
	cases = append(cases, i2v)
	for _, req := range cases {
		a, b := mustRender(t, req), mustRender(t, req)
		if !bytes.Equal(a.Result, b.Result) || !bytes.Equal(a.Preview, b.Preview) {
			t.Errorf("%s %s: the same request gave other bytes", req.Type, req.Mode)
		}
		// The same params spelled another way (key order, spacing) are the same request.
		var m map[string]any
		json.Unmarshal(req.Params, &m)
		respelled, _ := json.MarshalIndent(m, "", "   ")
		again := *req
		again.Params = respelled
		if c := mustRender(t, &again); !bytes.Equal(a.Result, c.Result) {
			t.Errorf("%s: respelled params %s gave other bytes", req.Type, respelled)
		}
	}
}

func TestRenderFollowsEveryInput(t *testing.T) {
	for _, typ := range []string{"image", "video"} {
		base := renderReq(typ, `{"width":320,"height":240,"num_frames":9,"fps":8,"seed":7,"steps":30}`)
		want := mustRender(t, base)
		changes := map[string]func(r *TaskRequest){
			"seed": func(r *TaskRequest) {
				r.Params = json.RawMessage(`{"width":320,"height":240,"num_frames":9,"fps":8,"seed":8,"steps":30}`)
			},
			"another param": func(r *TaskRequest) {
				r.Params = json.RawMessage(`{"width":320,"height":240,"num_frames":9,"fps":8,"seed":7,"steps":31}`)
			},
			"prompt":          func(r *TaskRequest) { r.Prompt = "a lighthouse at dawn" },
			"negative prompt": func(r *TaskRequest) { r.NegativePrompt = "noise" },
			"model":           func(r *TaskRequest) { r.Model = "pony" },
			"mode":            func(r *TaskRequest) { r.Mode = "i2v" },
			"input image":     func(r *TaskRequest) { r.Image = []byte("not an image, but part of the request") },
		}
		for name, change := range changes {
			req := *base
			change(&req)
			got := mustRender(t, &req)
			if bytes.Equal(got.Result, want.Result) {
				t.Errorf("%s: another %s gave the same result bytes", typ, name)
			}
			if bytes.Equal(got.Preview, want.Preview) {
				t.Errorf("%s: another %s gave the same preview bytes", typ, name)
			}
		}
	}
}

// meanDiff is the mean absolute difference per channel of two same-size images (0..255).
func meanDiff(a, b image.Image) float64 {
	r := a.Bounds()
	var sum, n int64
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			ar, ag, ab, _ := a.At(x, y).RGBA()
			br, bg, bb, _ := b.At(x, y).RGBA()
			for _, d := range []int64{int64(ar>>8) - int64(br>>8), int64(ag>>8) - int64(bg>>8), int64(ab>>8) - int64(bb>>8)} {
				sum += max(d, -d)
				n++
			}
		}
	}
	return float64(sum) / float64(n)
}

func TestRenderSeedsLookDifferent(t *testing.T) {
	// Five "random seed" submissions of one prompt must give five pictures a
	// person tells apart, not five copies (issue 14): every pair differs by
	// a mean of more than 20 levels per channel.
	var imgs []image.Image
	for seed := 1; seed <= 5; seed++ {
		m := mustRender(t, renderReq("image", fmt.Sprintf(`{"width":256,"height":256,"seed":%d}`, seed)))
		img, err := png.Decode(bytes.NewReader(m.Result))
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	for i := range imgs {
		for j := i + 1; j < len(imgs); j++ {
			if d := meanDiff(imgs[i], imgs[j]); d < 20 {
				t.Errorf("seeds %d and %d: pictures differ by only %.1f levels on average", i+1, j+1, d)
			}
		}
	}
}

func TestRenderImageSize(t *testing.T) {
	cases := []struct {
		params string
		w, h   int
	}{
		{`{}`, 1024, 1024},
		{`{"width":1600,"height":900}`, 1600, 900},
		{`{"width":333,"height":227}`, 333, 227},
		{`{"width":2048,"height":2048}`, 2048, 2048},
		{`{"width":4096,"height":1024}`, 2048, 512}, // over SimMaxSide: scaled down, aspect kept
		{`{"width":100,"height":3000}`, 68, 2048},
		{`{"width":"wide","height":-5}`, 1024, 1024},
		{`not json`, 1024, 1024},
	}
	for _, c := range cases {
		m := mustRender(t, renderReq("image", c.params))
		if m.ResultType != "image/png" || m.PreviewType != "image/jpeg" {
			t.Fatalf("%s: types %q, %q", c.params, m.ResultType, m.PreviewType)
		}
		img, err := png.Decode(bytes.NewReader(m.Result))
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dx() != c.w || b.Dy() != c.h {
			t.Errorf("%s: image %dx%d, want %dx%d", c.params, b.Dx(), b.Dy(), c.w, c.h)
		}
		prev, _, err := image.Decode(bytes.NewReader(m.Preview))
		if err != nil {
			t.Fatal(err)
		}
		pw, ph := fitWithin(c.w, c.h, maxPreviewSide)
		if b := prev.Bounds(); b.Dx() != pw || b.Dy() != ph {
			t.Errorf("%s: preview %dx%d, want %dx%d", c.params, b.Dx(), b.Dy(), pw, ph)
		}
	}
}

func TestRenderVideoMatchesSettings(t *testing.T) {
	cases := []struct {
		params            string
		w, h, frames, fps int
	}{
		{`{}`, 832, 480, 81, 16}, // the catalog's defaults
		{`{"width":832,"height":480,"num_frames":81,"fps":16,"seed":1}`, 832, 480, 81, 16},
		{`{"width":1280,"height":720,"num_frames":17,"fps":30}`, 1280, 720, 17, 30},
		{`{"width":256,"height":256,"num_frames":121,"fps":8}`, 256, 256, 121, 8},
		{`{"width":720,"height":405,"num_frames":5,"fps":24}`, 720, 404, 5, 24}, // 4:2:0 H.264 has even sides
		{`{"width":4096,"height":1024,"num_frames":2,"fps":12}`, 2048, 512, 2, 12},
		{`{"width":64,"height":64,"num_frames":1000,"fps":100}`, 64, 64, SimMaxFrames, SimMaxFPS},
		{`{"width":17,"height":17,"num_frames":1,"fps":1}`, 16, 16, 1, 1},
	}
	for _, c := range cases {
		t.Run(c.params, func(t *testing.T) {
			m := mustRender(t, renderReq("video", c.params))
			if m.ResultType != "video/mp4" || m.PreviewType != "image/jpeg" {
				t.Fatalf("types %q, %q", m.ResultType, m.PreviewType)
			}
			in, err := mp4.Probe(m.Result)
			if err != nil {
				t.Fatal(err)
			}
			if in.Width != c.w || in.Height != c.h || in.CodedWidth != c.w || in.CodedHeight != c.h {
				t.Errorf("video %dx%d (SPS %dx%d), want %dx%d", in.Width, in.Height, in.CodedWidth, in.CodedHeight, c.w, c.h)
			}
			if len(in.SampleSizes) != c.frames || in.FPS() != float64(c.fps) {
				t.Errorf("%d frames at %v fps, want %d at %d", len(in.SampleSizes), in.FPS(), c.frames, c.fps)
			}
			if in.Duration*uint64(c.fps) != uint64(c.frames)*uint64(in.Timescale) {
				t.Errorf("duration %d/%d s, want %d/%d", in.Duration, in.Timescale, c.frames, c.fps)
			}
			if in.Profile != 66 || in.Compatibility != 0xC0 {
				t.Errorf("profile %d compat %#x: not Constrained Baseline", in.Profile, in.Compatibility)
			}
			poster, _, err := image.Decode(bytes.NewReader(m.Preview))
			if err != nil {
				t.Fatal(err)
			}
			if b := poster.Bounds(); b.Dx() != c.w || b.Dy() != c.h {
				t.Errorf("poster %dx%d, want %dx%d", b.Dx(), b.Dy(), c.w, c.h)
			}
		})
	}
}

// firstFrame renders frame 0 of req's video the way the encoder gets it.
func firstFrame(t *testing.T, req *TaskRequest) *image.YCbCr {
	t.Helper()
	src, _ := videoFrames(req)
	f, err := src.Next()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRenderPosterIsFirstFrame(t *testing.T) {
	req := renderReq("video", `{"width":832,"height":480,"num_frames":9,"fps":16,"seed":3}`)
	m := mustRender(t, req)
	poster, err := decodeJPEG(m.Preview)
	if err != nil {
		t.Fatal(err)
	}
	first := firstFrame(t, req)
	// JPEG is lossy and uses another colour matrix: compare in RGB.
	if d := meanDiff(poster, bt709ToRGB(first)); d > 3 {
		t.Errorf("poster differs from frame 0 by %.2f levels on average", d)
	}
	// ...and is not merely close to any frame: frame 8 has the ball elsewhere
	// and another counter.
	src, _ := videoFrames(req)
	var last *image.YCbCr
	for {
		f, err := src.Next()
		if err == io.EOF {
			break
		}
		last = f
	}
	if dFirst, dLast := meanDiff(poster, bt709ToRGB(first)), meanDiff(poster, bt709ToRGB(last)); dLast <= dFirst {
		t.Errorf("poster is as close to the last frame (%.2f) as to the first (%.2f)", dLast, dFirst)
	}
}

// bt709ToRGB converts limited-range BT.709 4:2:0 samples back to RGB.
func bt709ToRGB(f *image.YCbCr) *image.RGBA {
	out := image.NewRGBA(f.Rect)
	clamp := func(v float64) uint8 { return uint8(min(255, max(0, v+0.5))) }
	for y := f.Rect.Min.Y; y < f.Rect.Max.Y; y++ {
		for x := f.Rect.Min.X; x < f.Rect.Max.X; x++ {
			yy := (float64(f.Y[f.YOffset(x, y)]) - 16) * 255 / 219
			cb := (float64(f.Cb[f.COffset(x, y)]) - 128) * 255 / 224
			cr := (float64(f.Cr[f.COffset(x, y)]) - 128) * 255 / 224
			r := yy + 1.5748*cr
			b := yy + 1.8556*cb
			g := (yy - 0.2126*r - 0.0722*b) / 0.7152
			out.Set(x, y, color.RGBA{clamp(r), clamp(g), clamp(b), 255})
		}
	}
	return out
}

func decodeJPEG(b []byte) (image.Image, error) {
	img, _, err := image.Decode(bytes.NewReader(b))
	return img, err
}

func TestRenderI2VUsesTheInputImage(t *testing.T) {
	reds, blues := 0, 0
	for _, c := range []color.RGBA{{220, 30, 30, 255}, {30, 30, 220, 255}} {
		req := renderReq("video", `{"width":320,"height":240,"num_frames":3,"fps":8,"seed":11}`)
		req.Mode, req.Image = "i2v", testPNG(t, 640, 480, c)
		poster, err := decodeJPEG(mustRender(t, req).Preview)
		if err != nil {
			t.Fatal(err)
		}
		// The middle of the picture, away from the counter and the caption,
		// is mostly the input image under a light tint.
		var r, b int64
		for y := 90; y < 150; y++ {
			for x := 0; x < 320; x++ {
				pr, _, pb, _ := poster.At(x, y).RGBA()
				r, b = r+int64(pr>>8), b+int64(pb>>8)
			}
		}
		if r > 2*b {
			reds++
		}
		if b > 2*r {
			blues++
		}
	}
	if reds != 1 || blues != 1 {
		t.Fatalf("a red and a blue input gave %d red and %d blue videos", reds, blues)
	}
}

func TestRenderFFmpegDecodesTheVideo(t *testing.T) {
	testutil.NeedTool(t, "ffmpeg", "decoding the simulator's video with FFmpeg")
	req := renderReq("video", `{"width":720,"height":405,"num_frames":17,"fps":16,"seed":5}`)
	m := mustRender(t, req)
	path := filepath.Join(t.TempDir(), "v.mp4")
	if err := os.WriteFile(path, m.Result, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ffmpeg", "-v", "error", "-xerror", "-i", path, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffmpeg: %v: %s", err, stderr.String())
	}
	w, h := 720, 404
	size := w * h * 3 / 2
	if len(out) != 17*size {
		t.Fatalf("decoded %d bytes, want 17 frames of %d", len(out), size)
	}
	src, _ := videoFrames(req)
	for i := 0; i < 17; i++ {
		f, err := src.Next()
		if err != nil {
			t.Fatal(err)
		}
		want := append(append(append([]byte{}, f.Y...), f.Cb...), f.Cr...)
		if !bytes.Equal(out[i*size:(i+1)*size], want) {
			t.Fatalf("decoded frame %d differs from the rendered one", i)
		}
	}
}

func BenchmarkRenderVideo832x480x81(b *testing.B) {
	req := renderReq("video", `{"width":832,"height":480,"num_frames":81,"fps":16,"seed":1}`)
	var size int
	for b.Loop() {
		size = len(mustRender(b, req).Result)
	}
	b.ReportMetric(float64(size), "mp4-bytes")
}

// BenchmarkRenderImage1024 renders the demo's 1024x1024 stills (PNG
// included), seeds 1-12 in turn so that every kind of background is drawn.
func BenchmarkRenderImage1024(b *testing.B) {
	var reqs []*TaskRequest
	for seed := 1; seed <= 12; seed++ {
		reqs = append(reqs, renderReq("image", fmt.Sprintf(`{"width":1024,"height":1024,"seed":%d}`, seed)))
	}
	i := 0
	for b.Loop() {
		mustRender(b, reqs[i%len(reqs)])
		i++
	}
}
