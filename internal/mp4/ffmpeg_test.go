package mp4

import (
	"bytes"
	"encoding/json"
	"fmt"
	"gooni/internal/testutil"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests check Encode's output with an independent decoder, FFmpeg's
// (Debian's ffmpeg package). They skip when ffprobe or ffmpeg is not
// installed (a failure under GG_REQUIRE_TOOLS=1); everything else in this package runs without them.

func needFFmpeg(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ffprobe", "ffmpeg"} {
		testutil.NeedTool(t, tool, "decoding with FFmpeg (apt-get install ffmpeg)")
	}
}

type ffStream struct {
	CodecName    string `json:"codec_name"`
	Profile      string `json:"profile"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	PixFmt       string `json:"pix_fmt"`
	ColorRange   string `json:"color_range"`
	ColorSpace   string `json:"color_space"`
	RFrameRate   string `json:"r_frame_rate"`
	AvgFrameRate string `json:"avg_frame_rate"`
	NbReadFrames string `json:"nb_read_frames"`
	NbFrames     string `json:"nb_frames"`
	HasBFrames   int    `json:"has_b_frames"`
	Level        int    `json:"level"`
}

func ffprobe(t *testing.T, path string) ffStream {
	t.Helper()
	cmd := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
		"-show_entries", "stream=codec_name,profile,width,height,pix_fmt,color_range,color_space,r_frame_rate,avg_frame_rate,nb_read_frames,nb_frames,has_b_frames,level",
		"-of", "json", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe: %v: %s", err, stderr.String())
	}
	var res struct{ Streams []ffStream }
	if err := json.Unmarshal(out, &res); err != nil || len(res.Streams) != 1 {
		t.Fatalf("ffprobe output %s: %v", out, err)
	}
	return res.Streams[0]
}

func TestFFmpegReadsAndDecodesExactly(t *testing.T) {
	needFFmpeg(t)
	cases := []struct{ w, h, n, fps int }{
		{832, 480, 81, 16}, // the UI's default video
		{720, 406, 17, 24}, // neither side a multiple of 16 (405 is odd: see TestEncodeErrors)
		{256, 256, 9, 8},
		{1280, 720, 12, 30},
		{34, 18, 5, 1},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dx%dx%d@%d", c.w, c.h, c.n, c.fps), func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("%dx%d.mp4", c.w, c.h))
			if err := os.WriteFile(path, encodeTest(t, c.w, c.h, c.n, c.fps), 0o600); err != nil {
				t.Fatal(err)
			}
			s := ffprobe(t, path)
			want := ffStream{
				CodecName: "h264", Profile: "Constrained Baseline", Width: c.w, Height: c.h,
				PixFmt: "yuv420p", ColorRange: "tv", ColorSpace: "bt709",
				RFrameRate: fmt.Sprintf("%d/1", c.fps), AvgFrameRate: fmt.Sprintf("%d/1", c.fps),
				NbReadFrames: fmt.Sprint(c.n), NbFrames: fmt.Sprint(c.n), HasBFrames: 0, Level: s.Level,
			}
			if s != want {
				t.Fatalf("ffprobe:\n got %+v\nwant %+v", s, want)
			}

			// Decode every frame to raw yuv420p and compare with what was
			// encoded: I_PCM is lossless, so they must be equal.
			cmd := exec.Command("ffmpeg", "-v", "error", "-xerror", "-i", path,
				"-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			frame := make([]byte, c.w*c.h*3/2)
			i := 0
			for ; ; i++ {
				if _, err := io.ReadFull(out, frame); err != nil {
					if err != io.EOF {
						t.Errorf("after %d frames: %v", i, err)
					}
					break
				}
				if i >= c.n {
					t.Errorf("FFmpeg decoded more than %d frames", c.n)
					break
				}
				if !bytes.Equal(frame, planes(testFrame(c.w, c.h, i))) {
					t.Errorf("decoded frame %d differs from the encoded one", i)
				}
			}
			io.Copy(io.Discard, out)
			if err := cmd.Wait(); err != nil || strings.TrimSpace(stderr.String()) != "" {
				t.Fatalf("ffmpeg: %v: %s", err, stderr.String())
			}
			if i != c.n {
				t.Fatalf("FFmpeg decoded %d frames, want %d", i, c.n)
			}
		})
	}
}
