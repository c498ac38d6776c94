package mp4

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"reflect"
	"testing"
)

// testFrame is frame i of a w x h test video: a diagonal pattern, a block of
// zero samples (so PCM data holds 00 00 00 and needs emulation prevention)
// and a square that moves, except that frame 2 repeats frame 1 (an all-skip
// P picture).
func testFrame(w, h, i int) *image.YCbCr {
	f := NewFrame(w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			f.Y[y*f.YStride+x] = uint8(16 + (x*3+y*5)%220)
		}
	}
	for y := 0; y < h/2; y++ {
		for x := 0; x < w/2; x++ {
			f.Cb[y*f.CStride+x] = uint8(16 + (x*7+y)%225)
			f.Cr[y*f.CStride+x] = uint8(240 - (x+y*3)%225)
		}
	}
	fill := func(x0, y0, x1, y1 int, yv, cb, cr uint8) {
		for y := max(y0, 0); y < min(y1, h); y++ {
			for x := max(x0, 0); x < min(x1, w); x++ {
				f.Y[y*f.YStride+x] = yv
				f.Cb[y/2*f.CStride+x/2] = cb
				f.Cr[y/2*f.CStride+x/2] = cr
			}
		}
	}
	fill(0, 0, 20, 20, 0, 0, 0)
	j := i
	if i == 2 {
		j = 1
	}
	side := min(24, w/2, h/2) &^ 1
	x0, y0 := (j*14)%max(w-side, 1)&^1, (j*6)%max(h-side, 1)&^1
	fill(x0, y0, x0+side, y0+side, 235, 90, 200)
	return f
}

// testSource yields testFrame(w, h, 0..n-1), reusing one buffer to prove the
// encoder copies what it needs.
func testSource(w, h, n int) FrameSource {
	i := 0
	buf := NewFrame(w, h)
	return FrameFunc(func() (*image.YCbCr, error) {
		if i == n {
			return nil, io.EOF
		}
		f := testFrame(w, h, i)
		copy(buf.Y, f.Y)
		copy(buf.Cb, f.Cb)
		copy(buf.Cr, f.Cr)
		i++
		return buf, nil
	})
}

func encodeTest(t *testing.T, w, h, n, fps int) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Encode(&out, testSource(w, h, n), Options{FPS: fps}); err != nil {
		t.Fatalf("Encode %dx%d: %v", w, h, err)
	}
	return out.Bytes()
}

func TestBoxTreeAndTables(t *testing.T) {
	cases := []struct {
		w, h, n, fps int
		level        uint8
	}{
		{832, 480, 81, 16, 30},
		{720, 406, 9, 24, 30},
		{256, 256, 5, 8, 12}, // a 786 kbit IDR fits 1.2's 1.2 Mbit buffer
		{1280, 720, 4, 30, 31},
		{64, 36, 3, 1, 10},
	}
	wantBoxes := []string{
		"ftyp", "moov", "moov/mvhd", "moov/trak", "moov/trak/tkhd", "moov/trak/mdia",
		"moov/trak/mdia/mdhd", "moov/trak/mdia/hdlr", "moov/trak/mdia/minf",
		"moov/trak/mdia/minf/vmhd", "moov/trak/mdia/minf/dinf", "moov/trak/mdia/minf/dinf/dref",
		"moov/trak/mdia/minf/stbl", "moov/trak/mdia/minf/stbl/stsd",
		"moov/trak/mdia/minf/stbl/stsd/avc1", "moov/trak/mdia/minf/stbl/stsd/avc1/avcC",
		"moov/trak/mdia/minf/stbl/stts", "moov/trak/mdia/minf/stbl/stss",
		"moov/trak/mdia/minf/stbl/stsc", "moov/trak/mdia/minf/stbl/stsz",
		"moov/trak/mdia/minf/stbl/stco", "mdat",
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dx%d@%d", c.w, c.h, c.fps), func(t *testing.T) {
			b := encodeTest(t, c.w, c.h, c.n, c.fps)
			in, err := Probe(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(in.Boxes, wantBoxes) {
				t.Fatalf("boxes:\n got %q\nwant %q", in.Boxes, wantBoxes)
			}
			if in.Brand != "isom" {
				t.Errorf("brand %q", in.Brand)
			}
			if in.Width != c.w || in.Height != c.h || in.CodedWidth != c.w || in.CodedHeight != c.h {
				t.Errorf("tkhd %dx%d, SPS %dx%d, want %dx%d", in.Width, in.Height, in.CodedWidth, in.CodedHeight, c.w, c.h)
			}
			if len(in.SampleSizes) != c.n || len(in.SampleDeltas) != c.n {
				t.Fatalf("%d sizes, %d deltas, want %d", len(in.SampleSizes), len(in.SampleDeltas), c.n)
			}
			for i, d := range in.SampleDeltas {
				if d != in.SampleDeltas[0] {
					t.Fatalf("sample %d lasts %d, sample 0 %d", i, d, in.SampleDeltas[0])
				}
			}
			if in.FPS() != float64(c.fps) {
				t.Errorf("fps %v, want %d", in.FPS(), c.fps)
			}
			if in.Duration != uint64(c.n)*uint64(in.SampleDeltas[0]) || in.Duration*uint64(c.fps) != uint64(c.n)*uint64(in.Timescale) {
				t.Errorf("duration %d at timescale %d for %d frames at %d fps", in.Duration, in.Timescale, c.n, c.fps)
			}
			if !reflect.DeepEqual(in.SyncSamples, []uint32{1}) {
				t.Errorf("sync samples %v, want [1]", in.SyncSamples)
			}
			var sum int64
			for _, s := range in.SampleSizes {
				sum += int64(s)
			}
			if sum != in.MdatSize || len(in.ChunkOffsets) != 1 || int64(in.ChunkOffsets[0]) != in.MdatStart {
				t.Errorf("samples total %d at %v, mdat holds %d at %d", sum, in.ChunkOffsets, in.MdatSize, in.MdatStart)
			}
			if in.Profile != 66 || in.Compatibility != 0xC0 || in.Level != c.level || in.LengthSize != 4 {
				t.Errorf("avcC profile %d compat %#x level %d length %d, want 66 0xc0 %d 4", in.Profile, in.Compatibility, in.Level, in.LengthSize, c.level)
			}
			sps := Unescape(in.SPS)
			if sps[1] != in.Profile || sps[2] != in.Compatibility || sps[3] != in.Level {
				t.Errorf("SPS says profile %d compat %#x level %d, avcC %d %#x %d", sps[1], sps[2], sps[3], in.Profile, in.Compatibility, in.Level)
			}
			for i := 0; i < c.n; i++ {
				s, err := in.Sample(b, i)
				if err != nil {
					t.Fatal(err)
				}
				n := int(s[0])<<24 | int(s[1])<<16 | int(s[2])<<8 | int(s[3])
				if n != len(s)-4 {
					t.Fatalf("sample %d: NAL length %d in a %d-byte sample", i, n, len(s))
				}
				want := byte(1)
				if i == 0 {
					want = 5
				}
				if typ := s[4] & 0x1F; typ != want {
					t.Errorf("sample %d: NAL type %d, want %d", i, typ, want)
				}
				for k := 4; k+2 < len(s); k++ {
					if s[k] == 0 && s[k+1] == 0 && s[k+2] <= 2 {
						t.Fatalf("sample %d: start code emulation at %d", i, k)
					}
				}
			}
		})
	}
}

// ownDecode decodes the subset Encode writes (I_PCM and P_Skip macroblocks)
// and returns each picture's visible planes concatenated (Y, Cb, Cr). It
// checks every syntax element it reads against what section 7.3 allows here.
func ownDecode(t *testing.T, b []byte) [][]byte {
	t.Helper()
	in, err := Probe(b)
	if err != nil {
		t.Fatal(err)
	}
	r := &BitReader{B: Unescape(in.SPS)[4:]}
	r.UE()
	log2MaxFN := int(r.UE()) + 4
	if poc := r.UE(); poc != 2 {
		t.Fatalf("pic_order_cnt_type %d", poc)
	}
	r.UE()
	r.U(1)
	mbW, mbH := int(r.UE())+1, int(r.UE())+1
	pw := mbW * 16
	y := make([]byte, pw*mbH*16)
	cb := make([]byte, len(y)/4)
	cr := make([]byte, len(y)/4)
	var frames [][]byte
	for i := range in.SampleSizes {
		s, err := in.Sample(b, i)
		if err != nil {
			t.Fatal(err)
		}
		nal := Unescape(s[4:])
		idr := nal[0]&0x1F == 5
		r := &BitReader{B: nal[1:]}
		if first := r.UE(); first != 0 {
			t.Fatalf("frame %d: first_mb_in_slice %d", i, first)
		}
		st := r.UE()
		if (idr && st != 7) || (!idr && st != 5) {
			t.Fatalf("frame %d: slice_type %d (idr %v)", i, st, idr)
		}
		r.UE()
		if fn := int(r.U(log2MaxFN)); fn != i%(1<<log2MaxFN) {
			t.Fatalf("frame %d: frame_num %d", i, fn)
		}
		if idr {
			r.UE()
			r.U(2)
		} else if r.U(3) != 0 {
			t.Fatalf("frame %d: override, list modification or adaptive marking set", i)
		}
		if r.SE() != 0 || r.UE() != 1 {
			t.Fatalf("frame %d: slice_qp_delta or deblocking unexpected", i)
		}
		pcm := func(want uint32, addr int) {
			if mt := r.UE(); mt != want {
				t.Fatalf("frame %d mb %d: mb_type %d, want %d", i, addr, mt, want)
			}
			for r.Pos%8 != 0 {
				if r.U(1) != 0 {
					t.Fatalf("frame %d: pcm_alignment_zero_bit is 1", i)
				}
			}
			p := r.B[r.Pos/8:]
			if len(p) < 384 {
				t.Fatalf("frame %d: short PCM data", i)
			}
			mx, my := addr%mbW, addr/mbW
			for k := 0; k < 16; k++ {
				copy(y[(my*16+k)*pw+mx*16:], p[k*16:k*16+16])
			}
			for k := 0; k < 8; k++ {
				copy(cb[(my*8+k)*pw/2+mx*8:], p[256+k*8:256+k*8+8])
				copy(cr[(my*8+k)*pw/2+mx*8:], p[320+k*8:320+k*8+8])
			}
			r.Pos += 384 * 8
		}
		total := mbW * mbH
		if idr {
			for a := 0; a < total; a++ {
				pcm(25, a)
			}
		} else {
			for a := 0; a < total; {
				a += int(r.UE())
				if a > total {
					t.Fatalf("frame %d: mb_skip_run past the picture", i)
				}
				if a == total {
					break
				}
				pcm(30, a)
				a++
			}
		}
		if r.U(1) != 1 || r.Err != nil {
			t.Fatalf("frame %d: no rbsp_stop_one_bit (%v)", i, r.Err)
		}
		for r.Pos%8 != 0 {
			if r.U(1) != 0 {
				t.Fatalf("frame %d: rbsp_alignment_zero_bit is 1", i)
			}
		}
		if r.Pos != len(r.B)*8 {
			t.Fatalf("frame %d: %d bits after the slice", i, len(r.B)*8-r.Pos)
		}
		frames = append(frames, visible(y, cb, cr, pw, in.CodedWidth, in.CodedHeight))
	}
	return frames
}

// visible crops padded planes of stride pw to w x h and concatenates them.
func visible(y, cb, cr []byte, pw, w, h int) []byte {
	var out []byte
	for r := 0; r < h; r++ {
		out = append(out, y[r*pw:r*pw+w]...)
	}
	for _, c := range [][]byte{cb, cr} {
		for r := 0; r < h/2; r++ {
			out = append(out, c[r*pw/2:r*pw/2+w/2]...)
		}
	}
	return out
}

func planes(f *image.YCbCr) []byte {
	return visible(f.Y, f.Cb, f.Cr, f.YStride, f.Rect.Dx(), f.Rect.Dy())
}

func TestOwnDecodeIsLossless(t *testing.T) {
	for _, c := range [][3]int{{832, 480, 6}, {720, 406, 5}, {34, 18, 4}, {2, 2, 3}} {
		b := encodeTest(t, c[0], c[1], c[2], 16)
		got := ownDecode(t, b)
		if len(got) != c[2] {
			t.Fatalf("%v: decoded %d frames", c, len(got))
		}
		for i := range got {
			if !bytes.Equal(got[i], planes(testFrame(c[0], c[1], i))) {
				t.Fatalf("%v: frame %d differs from what was encoded", c, i)
			}
		}
	}
}

func TestStillFramesCostLittle(t *testing.T) {
	b := encodeTest(t, 832, 480, 81, 16)
	in, err := Probe(b)
	if err != nil {
		t.Fatal(err)
	}
	// Frame 2 repeats frame 1: one mb_skip_run over the whole picture.
	if in.SampleSizes[2] > 16 {
		t.Errorf("an unchanged frame takes %d bytes", in.SampleSizes[2])
	}
	raw := 832 * 480 * 3 / 2
	if int(in.SampleSizes[0]) < raw {
		t.Errorf("IDR of %d bytes is smaller than the raw frame (%d)", in.SampleSizes[0], raw)
	}
	// The moving 24x24 square touches at most 3x3 macroblocks where it is and where it was.
	for i := 3; i < 81; i++ {
		if in.SampleSizes[i] > 18*400 {
			t.Fatalf("frame %d takes %d bytes", i, in.SampleSizes[i])
		}
	}
	t.Logf("832x480, 81 frames: %d bytes", len(b))
}

func TestEncodeErrors(t *testing.T) {
	frames := func(fs ...*image.YCbCr) FrameSource {
		return FrameFunc(func() (*image.YCbCr, error) {
			if len(fs) == 0 {
				return nil, io.EOF
			}
			f := fs[0]
			fs = fs[1:]
			return f, nil
		})
	}
	boom := errors.New("source failed")
	cases := []struct {
		name string
		src  FrameSource
		fps  int
		want error
	}{
		{"odd height", frames(NewFrame(720, 405)), 16, ErrFrameSize},
		{"odd width", frames(NewFrame(721, 406)), 16, ErrFrameSize},
		{"too wide", frames(NewFrame(MaxSide+2, 16)), 16, ErrFrameSize},
		{"size changes", frames(NewFrame(64, 64), NewFrame(64, 48)), 16, ErrFrameSize},
		{"not 4:2:0", frames(image.NewYCbCr(image.Rect(0, 0, 16, 16), image.YCbCrSubsampleRatio444)), 16, ErrFrameSize},
		{"short planes", frames(&image.YCbCr{Rect: image.Rect(0, 0, 16, 16), SubsampleRatio: image.YCbCrSubsampleRatio420, YStride: 16, CStride: 8}), 16, ErrFrameSize},
		{"nil frame", frames(nil), 16, ErrFrameSize},
		{"no frames", frames(), 16, ErrNoFrames},
		{"zero fps", frames(NewFrame(16, 16)), 0, ErrFPS},
		{"too fast", frames(NewFrame(16, 16)), MaxFPS + 1, ErrFPS},
		{"over level 5.2", frames(NewFrame(4096, 2304)), 240, ErrFPS},
		{"source error", FrameFunc(func() (*image.YCbCr, error) { return nil, boom }), 16, boom},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Encode(&out, c.src, Options{FPS: c.fps})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if out.Len() != 0 {
				t.Errorf("wrote %d bytes before failing", out.Len())
			}
		})
	}
}

func TestChooseLevel(t *testing.T) {
	repeat := func(first, rest uint32, n int) []uint32 {
		s := make([]uint32, n)
		for i := range s {
			s[i] = rest
		}
		s[0] = first
		return s
	}
	cases := []struct {
		w, h, fps int
		sizes     []uint32
		want      uint8
	}{
		{176, 144, 15, nil, 10},
		{352, 288, 30, nil, 13},   // 396 MBs at 30 fps: 11880 MB/s
		{832, 480, 16, nil, 30},   // 1560 MBs, 24960 MB/s
		{832, 480, 30, nil, 31},   // 46800 MB/s is over 3.0
		{1280, 720, 30, nil, 31},  // 3600 MBs
		{1920, 1080, 30, nil, 40}, // 8160 MBs
		{4096, 2304, 30, nil, 52}, // 36864 MBs at 1105920 MB/s: over 5.1's rate
		{8192, 256, 1, nil, 51},   // 512 MBs wide: only 5.x has 512^2 <= 8*MaxFS
		// 832x480 I_PCM IDR (~600 KB = 4.8 Mbit) then 20 KB a frame at 16 fps
		// (2.6 Mbit/s): level 3.0 (12 Mbit/s, 12 Mbit buffer) carries it.
		{832, 480, 16, repeat(600_000, 20_000, 81), 30},
		// 256x256 at 16 fps, 1.9 Mbit/s after the IDR: level 2.0 (2.4 Mbit/s,
		// 2.4 Mbit buffer) while the IDR fits its buffer, else 2.1 (4.8 Mbit).
		{256, 256, 16, repeat(250_000, 15_000, 50), 20},
		{256, 256, 16, repeat(400_000, 15_000, 50), 21},
		// 3 Mbit per picture at 16 fps = 48 Mbit/s: over 4.0's 24 Mbit/s, within 4.1's 60.
		{832, 480, 16, repeat(375_000, 375_000, 40), 41},
	}
	for _, c := range cases {
		mbW, mbH := int64((c.w+15)/16), int64((c.h+15)/16)
		lv, ok := chooseLevel(mbW, mbH, int64(c.fps), c.sizes)
		if !ok || lv.idc != c.want {
			t.Errorf("%dx%d@%d: level %d (ok %v), want %d", c.w, c.h, c.fps, lv.idc, ok, c.want)
		}
	}
	if _, ok := chooseLevel(600, 10, 1, nil); ok {
		t.Error("600 macroblocks wide fits a level (the limit is sqrt(8*36864) = 543)")
	}
}

func TestExpGolomb(t *testing.T) {
	var w bitWriter
	w.ue(0)  // 1
	w.ue(1)  // 010
	w.ue(2)  // 011
	w.ue(3)  // 00100
	w.se(1)  // 010
	w.se(-1) // 011
	w.se(0)  // 1
	w.trailing()
	// 1 010 011 00100 010 011 1 then stop bit 1 and zeros:
	// 10100110 01000100 11110000
	if want := []byte{0xA6, 0x44, 0xF0}; !bytes.Equal(w.buf, want) {
		t.Fatalf("bits % x, want % x", w.buf, want)
	}
	vals := []uint32{0, 1, 2, 7, 8, 254, 255, 1 << 16, 1<<31 - 1, 1<<32 - 2}
	var w2 bitWriter
	for _, v := range vals {
		w2.ue(v)
		w2.se(int32(v >> 1))
		w2.se(-int32(v >> 1))
	}
	w2.trailing()
	r := &BitReader{B: w2.buf}
	for _, v := range vals {
		if got := r.UE(); got != v {
			t.Fatalf("ue round trip %d -> %d", v, got)
		}
		if got := r.SE(); got != int32(v>>1) {
			t.Fatalf("se round trip %d -> %d", int32(v>>1), got)
		}
		if got := r.SE(); got != -int32(v>>1) {
			t.Fatalf("se round trip %d -> %d", -int32(v>>1), got)
		}
	}
	if r.Err != nil {
		t.Fatal(r.Err)
	}
}

func TestEmulationPrevention(t *testing.T) {
	cases := []struct{ rbsp, want []byte }{
		{[]byte{0, 0, 0}, []byte{0, 0, 3, 0}},
		{[]byte{0, 0, 1}, []byte{0, 0, 3, 1}},
		{[]byte{0, 0, 2}, []byte{0, 0, 3, 2}},
		{[]byte{0, 0, 3}, []byte{0, 0, 3, 3}},
		{[]byte{0, 0, 4}, []byte{0, 0, 4}},
		{[]byte{0, 0, 0, 0, 0}, []byte{0, 0, 3, 0, 0, 3, 0}},
		{[]byte{1, 0, 0, 1, 0, 0, 9}, []byte{1, 0, 0, 3, 1, 0, 0, 9}},
	}
	for _, c := range cases {
		got := nalPayload(3, 5, c.rbsp)
		if got[0] != 0x65 || !bytes.Equal(got[1:], c.want) {
			t.Errorf("% x -> % x, want 65 % x", c.rbsp, got, c.want)
		}
		if back := Unescape(got)[1:]; !bytes.Equal(back, c.rbsp) {
			t.Errorf("Unescape(% x) = % x", got, back)
		}
	}
}

func TestConvertRGBA(t *testing.T) {
	cases := []struct {
		c         color.RGBA
		y, cb, cr uint8
	}{
		{color.RGBA{0, 0, 0, 255}, 16, 128, 128},
		{color.RGBA{255, 255, 255, 255}, 235, 128, 128},
		{color.RGBA{128, 128, 128, 255}, 126, 128, 128},
		// BT.709 limited range: red (63, 102, 240), green (173, 42, 26), blue (32, 240, 118).
		{color.RGBA{255, 0, 0, 255}, 63, 102, 240},
		{color.RGBA{0, 255, 0, 255}, 173, 42, 26},
		{color.RGBA{0, 0, 255, 255}, 32, 240, 118},
	}
	for _, c := range cases {
		src := image.NewRGBA(image.Rect(0, 0, 4, 4))
		for i := 0; i < len(src.Pix); i += 4 {
			src.Pix[i], src.Pix[i+1], src.Pix[i+2], src.Pix[i+3] = c.c.R, c.c.G, c.c.B, c.c.A
		}
		dst := NewFrame(4, 4)
		ConvertRGBA(dst, src, src.Bounds())
		if dst.Y[5] != c.y || dst.Cb[1] != c.cb || dst.Cr[1] != c.cr {
			t.Errorf("%v -> (%d, %d, %d), want (%d, %d, %d)", c.c, dst.Y[5], dst.Cb[1], dst.Cr[1], c.y, c.cb, c.cr)
		}
	}

	// A region converts exactly as the whole image does, even from odd corners.
	src := image.NewRGBA(image.Rect(0, 0, 37, 23))
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 7 % 251)
	}
	whole := NewFrame(38, 24)
	ConvertRGBA(whole, src, src.Bounds())
	part := NewFrame(38, 24)
	ConvertRGBA(part, src, src.Bounds())
	for i := range part.Y {
		part.Y[i] = 0
	}
	ConvertRGBA(part, src, image.Rect(5, 3, 19, 12))
	for y := 2; y < 12; y++ {
		for x := 4; x < 20; x++ {
			if part.Y[y*part.YStride+x] != whole.Y[y*whole.YStride+x] {
				t.Fatalf("region pixel (%d,%d) differs from the whole conversion", x, y)
			}
		}
	}
	if !bytes.Equal(part.Cb, whole.Cb) || !bytes.Equal(part.Cr, whole.Cr) {
		t.Fatal("region chroma differs")
	}
}

func TestProbeRejectsDamage(t *testing.T) {
	b := encodeTest(t, 48, 32, 3, 16)
	if _, err := Probe(b); err != nil {
		t.Fatal(err)
	}
	// Every box has an explicit size, so every truncation is detected.
	for n := 0; n < len(b); n++ {
		if _, err := Probe(b[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d of %d bytes: err = %v", n, len(b), err)
		}
	}
	// A box claiming more than the file holds.
	bad := bytes.Clone(b)
	bad[3] = 0xFF
	if _, err := Probe(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized ftyp: %v", err)
	}
	// An stsz count far larger than its box.
	i := bytes.Index(b, []byte("stsz"))
	bad = bytes.Clone(b)
	bad[i+12], bad[i+13], bad[i+14], bad[i+15] = 0x7F, 0xFF, 0xFF, 0xFF
	if _, err := Probe(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("huge stsz count: %v", err)
	}
}

func FuzzProbe(f *testing.F) {
	var out bytes.Buffer
	if err := Encode(&out, testSource(32, 32, 2), Options{FPS: 8}); err != nil {
		f.Fatal(err)
	}
	f.Add(out.Bytes())
	f.Add([]byte("\x00\x00\x00\x08ftyp"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := Probe(b)
		if err != nil {
			return
		}
		for i := range in.SampleSizes {
			in.Sample(b, i)
		}
	})
}
