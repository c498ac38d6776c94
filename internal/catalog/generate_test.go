package catalog

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func pngBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	img.Set(0, 0, color.NRGBA{R: 200, A: 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// cutJPEG is a real JPEG cut in the middle of its scan data (its header
// and frame are whole, so only the decode of the pixels can tell).
func cutJPEG(t testing.TB) []byte {
	b := jpegBytes(t, 64, 64)
	sos := bytes.Index(b, []byte{0xFF, 0xDA})
	return b[:sos+(len(b)-sos)/2]
}

// damagedPNG is a real PNG whose IDAT data was replaced by garbage (CRCs
// fixed up, so only the decode of the pixels can tell).
func damagedPNG(t testing.TB) []byte {
	b := pngBytes(t, 32, 32)
	i := bytes.Index(b, []byte("IDAT"))
	n := int(binary.BigEndian.Uint32(b[i-4 : i]))
	for k := 0; k < n; k++ {
		b[i+4+k] = byte(k*7 + 1)
	}
	binary.BigEndian.PutUint32(b[i+4+n:], crc32.ChecksumIEEE(b[i:i+4+n]))
	return b
}

// webpBytes builds a lossless (VP8L) WebP header of the given size with no
// image data behind it: DecodeConfig reads it, a full decode does not.
func webpBytes(w, h int) []byte {
	var bits uint32 = uint32(w-1) | uint32(h-1)<<14
	payload := []byte{0x2f, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(payload[1:5], bits)
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(4+8+len(payload)))
	b.WriteString("WEBPVP8L")
	binary.Write(&b, binary.LittleEndian, uint32(len(payload)))
	b.Write(payload)
	return b.Bytes()
}

// webp1x1 is a whole lossless 1x1 WebP (x/image has no encoder to make one).
const webp1x1 = "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA=="

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// body fills $PNG, $JPEG, $WEBP placeholders with base64 pictures.
func body(t testing.TB, s string) string {
	t.Helper()
	return strings.NewReplacer(
		"$PNG", b64(pngBytes(t, 4, 3)),
		"$JPEG", b64(jpegBytes(t, 8, 8)),
		"$WEBP", webp1x1,
	).Replace(s)
}

func decodeAndValidate(t testing.TB, c *Catalog, s string) (*Validated, error) {
	t.Helper()
	req, err := DecodeGenerate(strings.NewReader(s), DefaultMaxGenerateBytes)
	if err != nil {
		return nil, err
	}
	return c.Validate(req)
}

func TestValidateAccepts(t *testing.T) {
	c := realCatalog(t)
	cases := []struct {
		name      string
		body      string
		model     string
		typ       string
		prompt    string
		neg       string
		imageType string
		params    map[string]any // checked subset
	}{
		{"anisora t2v defaults", `{"model":"anisora","mode":"t2v","prompt":"a fox"}`, "anisora", "video", "a fox", "", "",
			map[string]any{"width": int64(832), "height": int64(480), "num_frames": int64(81), "fps": int64(16), "steps": int64(40), "guidance": 5.0, "seed": int64(-1)}},
		{"anisora i2v png", `{"model":"anisora","mode":"i2v","prompt":"move","image":"$PNG"}`, "anisora", "video", "move", "", "image/png", nil},
		{"phr00t t2v defaults", `{"model":"phr00t","mode":"t2v","prompt":"x"}`, "phr00t", "video", "x", "", "",
			map[string]any{"steps": int64(4), "guidance": 1.0}},
		{"phr00t i2v jpeg data url", `{"model":"phr00t","mode":"i2v","prompt":"x","image":"data:image/jpeg;base64,$JPEG"}`, "phr00t", "video", "x", "", "image/jpeg", nil},
		{"alias wan-remix stored as phr00t", `{"model":"wan-remix","mode":"t2v","prompt":"x","type":"video"}`, "phr00t", "video", "x", "", "", nil},
		{"pony t2i with params", `{"model":"pony","mode":"t2i","prompt":"p","negative_prompt":" blurry ","params":{"width":1032,"height":512,"steps":60,"guidance":12,"seed":2147483647}}`,
			"pony", "image", "p", "blurry", "", map[string]any{"width": int64(1032), "height": int64(512), "steps": int64(60), "guidance": 12.0, "seed": int64(2147483647)}},
		{"flux t2i defaults", `{"model":"flux","mode":"t2i","prompt":"f","type":"image"}`, "flux", "image", "f", "", "",
			map[string]any{"width": int64(1024), "steps": int64(28), "guidance": 3.5}},
		{"flux empty negative prompt", `{"model":"flux","mode":"t2i","prompt":"f","negative_prompt":"  "}`, "flux", "image", "f", "", "", nil},
		{"flux float guidance", `{"model":"flux","mode":"t2i","prompt":"f","params":{"guidance":2.75,"steps":1}}`, "flux", "image", "f", "", "", map[string]any{"guidance": 2.75, "steps": int64(1)}},
		{"float with exponent", `{"model":"flux","mode":"t2i","prompt":"f","params":{"guidance":1e0}}`, "flux", "image", "f", "", "", map[string]any{"guidance": 1.0}},
		{"int param at bounds", `{"model":"anisora","mode":"t2v","prompt":"f","params":{"width":832,"num_frames":17,"fps":16,"seed":-1}}`, "anisora", "video", "f", "", "",
			map[string]any{"width": int64(832), "num_frames": int64(17), "fps": int64(16)}},
		{"prompt trimmed", "{\"model\":\"flux\",\"mode\":\"t2i\",\"prompt\":\"\\n  a cat \\t\"}", "flux", "image", "a cat", "", "", nil},
		{"prompt 2000 runes", `{"model":"flux","mode":"t2i","prompt":"` + strings.Repeat("é", 2000) + `"}`, "flux", "image", strings.Repeat("é", 2000), "", "", nil},
		{"claimed png but jpeg bytes", `{"model":"anisora","mode":"i2v","prompt":"x","image":"data:image/png;base64,$JPEG"}`, "anisora", "video", "x", "", "image/jpeg", nil},
		{"webp", `{"model":"anisora","mode":"i2v","prompt":"x","image":"$WEBP"}`, "anisora", "video", "x", "", "image/webp", nil},
		{"base64 without padding", `{"model":"anisora","mode":"i2v","prompt":"x","image":"` + base64.RawStdEncoding.EncodeToString(pngBytes(t, 5, 5)) + `"}`, "anisora", "video", "x", "", "image/png", nil},
		{"t2v with empty image string", `{"model":"anisora","mode":"t2v","prompt":"x","image":""}`, "anisora", "video", "x", "", "", nil},
		{"nulls are absent", `{"model":"anisora","mode":"t2v","prompt":"x","image":null,"type":null,"negative_prompt":null,"params":null}`, "anisora", "video", "x", "", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := decodeAndValidate(t, c, body(t, tc.body))
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if v.ModelID != tc.model || v.Model.ID != tc.model || v.Type != tc.typ || v.Prompt != tc.prompt || v.NegativePrompt != tc.neg {
				t.Errorf("got model=%s type=%s prompt=%q neg=%q", v.ModelID, v.Type, v.Prompt, v.NegativePrompt)
			}
			if v.ImageType != tc.imageType || (tc.imageType == "") != (v.Image == nil) {
				t.Errorf("image type %q (%d bytes), want %q", v.ImageType, len(v.Image), tc.imageType)
			}
			if len(v.Params) != len(v.Model.Params) {
				t.Errorf("%d params, want every catalog param (%d)", len(v.Params), len(v.Model.Params))
			}
			for k, want := range tc.params {
				if got := v.Params[k]; got != want {
					t.Errorf("params[%s] = %#v, want %#v", k, got, want)
				}
			}
			var back map[string]any
			if err := json.Unmarshal(v.ParamsJSON, &back); err != nil || len(back) != len(v.Params) {
				t.Errorf("ParamsJSON %s does not hold every param: %v", v.ParamsJSON, err)
			}
		})
	}
}

func TestParamsJSONIsCanonical(t *testing.T) {
	c := realCatalog(t)
	v, err := decodeAndValidate(t, c, `{"model":"flux","mode":"t2i","prompt":"f","params":{"seed":7,"guidance":2.5}}`)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"guidance":2.5,"height":1024,"seed":7,"steps":28,"width":1024}`
	if string(v.ParamsJSON) != want {
		t.Errorf("ParamsJSON = %s, want %s", v.ParamsJSON, want)
	}
}

func TestValidateRejects(t *testing.T) {
	c := realCatalog(t)
	big := pngBytes(t, MaxImageSide+1, 1)
	huge := append(pngBytes(t, 2, 2), make([]byte, MaxImageBytes)...)
	gif := []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;")
	cases := []struct {
		name, body, field, message string // message: a substring
	}{
		{"no model", `{"mode":"t2v","prompt":"x"}`, "model", "model is required"},
		{"unknown model", `{"model":"x","mode":"t2v","prompt":"x"}`, "model", `model "x" is not in the catalog`},
		{"model id is case sensitive", `{"model":"Flux","mode":"t2i","prompt":"x"}`, "model", `model "Flux" is not in the catalog`},
		{"type mismatch", `{"type":"image","model":"anisora","mode":"t2v","prompt":"x"}`, "type", `type must be "video" for model anisora`},
		{"empty type", `{"type":"","model":"flux","mode":"t2i","prompt":"x"}`, "type", `type must be "image"`},
		{"no mode", `{"model":"anisora","prompt":"x"}`, "mode", "mode is required"},
		{"image mode on video model", `{"model":"anisora","mode":"t2i","prompt":"x"}`, "mode", `mode "t2i" is not available for anisora (choose i2v or t2v)`},
		{"i2i not offered by flux", `{"model":"flux","mode":"i2i","prompt":"x","image":"$PNG"}`, "mode", `mode "i2i" is not available for flux`},
		{"empty prompt", `{"model":"flux","mode":"t2i","prompt":""}`, "prompt", "prompt is required"},
		{"missing prompt", `{"model":"flux","mode":"t2i"}`, "prompt", "prompt is required"},
		{"blank prompt", "{\"model\":\"flux\",\"mode\":\"t2i\",\"prompt\":\" \\n\\t \"}", "prompt", "prompt is required"},
		{"prompt 2001 runes", `{"model":"flux","mode":"t2i","prompt":"` + strings.Repeat("é", 2001) + `"}`, "prompt", "prompt must be at most 2000 characters"},
		{"prompt with NUL", `{"model":"flux","mode":"t2i","prompt":"a\u0000b"}`, "prompt", "must not contain NUL"},
		{"negative prompt too long", `{"model":"pony","mode":"t2i","prompt":"x","negative_prompt":"` + strings.Repeat("n", 2001) + `"}`, "negative_prompt", "at most 2000 characters"},
		{"negative prompt with NUL", `{"model":"pony","mode":"t2i","prompt":"x","negative_prompt":"\u0000"}`, "negative_prompt", "NUL"},
		{"negative prompt refused by flux", `{"model":"flux","mode":"t2i","prompt":"x","negative_prompt":"ugly"}`, "negative_prompt", "model flux does not take a negative prompt"},
		{"unknown param", `{"model":"flux","mode":"t2i","prompt":"x","params":{"foo":1}}`, "params.foo", `unknown parameter "foo" for model flux`},
		{"num_frames on image model", `{"model":"pony","mode":"t2i","prompt":"x","params":{"num_frames":17}}`, "params.num_frames", "unknown parameter"},
		{"steps above max", `{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":51}}`, "params.steps", "steps must be between 1 and 50"},
		{"steps below min", `{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":0}}`, "params.steps", "steps must be between 1 and 50"},
		{"phr00t steps bound", `{"model":"wan-remix","mode":"t2v","prompt":"x","params":{"steps":13}}`, "params.steps", "steps must be between 1 and 12"},
		{"int given as fraction", `{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":1.5}}`, "params.steps", "steps must be a whole number"},
		{"int given as 16.0", `{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":16.0}}`, "params.steps", "steps must be a whole number"},
		{"int given with exponent", `{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":1e1}}`, "params.steps", "steps must be a whole number"},
		{"int given as string", `{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":"1"}}`, "params.steps", "steps must be a whole number"},
		{"int given as bool", `{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":true}}`, "params.steps", "steps must be a whole number"},
		{"int given as null", `{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":null}}`, "params.steps", "steps must be a whole number"},
		{"int 1e400", `{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":1e400}}`, "params.steps", "steps must be a whole number"},
		{"int beyond int64", `{"model":"flux","mode":"t2i","prompt":"x","params":{"seed":92233720368547758070}}`, "params.seed", "seed must be between -1 and 2147483647"},
		{"width off step", `{"model":"flux","mode":"t2i","prompt":"x","params":{"width":1000}}`, "params.width", "width must be a multiple of 16 from 256"},
		{"pony width off step", `{"model":"pony","mode":"t2i","prompt":"x","params":{"width":1030}}`, "params.width", "width must be a multiple of 8 from 512"},
		{"num_frames off step", `{"model":"anisora","mode":"t2v","prompt":"x","params":{"num_frames":18}}`, "params.num_frames", "num_frames must be a multiple of 4 from 17"},
		{"fps other than its one value", `{"model":"anisora","mode":"t2v","prompt":"x","params":{"fps":24}}`, "params.fps", "fps must be 16"},
		{"float above max", `{"model":"flux","mode":"t2i","prompt":"x","params":{"guidance":10.5}}`, "params.guidance", "guidance must be between 1 and 10"},
		{"float 1e400", `{"model":"flux","mode":"t2i","prompt":"x","params":{"guidance":1e400}}`, "params.guidance", "guidance must be between 1 and 10"},
		{"float as string", `{"model":"flux","mode":"t2i","prompt":"x","params":{"guidance":"5"}}`, "params.guidance", "guidance must be a number"},
		{"duplicate param", `{"model":"flux","mode":"t2i","prompt":"x","params":{"steps":2,"steps":3}}`, "params.steps", "steps is given twice"},
		{"i2v without image", `{"model":"anisora","mode":"i2v","prompt":"x"}`, "image", "image is required for mode i2v"},
		{"i2v with empty image", `{"model":"phr00t","mode":"i2v","prompt":"x","image":""}`, "image", "image is required for mode i2v"},
		{"t2v with image", `{"model":"anisora","mode":"t2v","prompt":"x","image":"$PNG"}`, "image", "mode t2v does not take an image"},
		{"t2i with image", `{"model":"flux","mode":"t2i","prompt":"x","image":"$PNG"}`, "image", "mode t2i does not take an image"},
		{"image not base64", `{"model":"anisora","mode":"i2v","prompt":"x","image":"not base64!!"}`, "image", "image is not valid base64"},
		{"data url not image", `{"model":"anisora","mode":"i2v","prompt":"x","image":"data:text/plain;base64,$PNG"}`, "image", "data:image/...;base64, URL"},
		{"data url without base64", `{"model":"anisora","mode":"i2v","prompt":"x","image":"data:image/png,abc"}`, "image", "data:image/...;base64, URL"},
		{"gif refused", `{"model":"anisora","mode":"i2v","prompt":"x","image":"data:image/gif;base64,` + b64(gif) + `"}`, "image", "image must be a PNG, JPEG or WebP picture"},
		{"text bytes refused", `{"model":"anisora","mode":"i2v","prompt":"x","image":"` + b64([]byte("hello, this is not a picture")) + `"}`, "image", "image must be a PNG, JPEG or WebP picture"},
		{"png magic then garbage", `{"model":"anisora","mode":"i2v","prompt":"x","image":"` + b64([]byte("\x89PNG\r\n\x1a\ngarbage garbage")) + `"}`, "image", "cannot be read as one"},
		{"jpeg magic then garbage", `{"model":"anisora","mode":"i2v","prompt":"x","image":"` + b64([]byte("\xff\xd8\xff\xe0garbage")) + `"}`, "image", "cannot be read as one"},
		{"too wide", `{"model":"anisora","mode":"i2v","prompt":"x","image":"` + b64(big) + `"}`, "image", "image must be at most 4096x4096 pixels"},
		// Issue 11 point 12: only the header used to be decoded, so a valid
		// header followed by garbage reached the GPU.
		{"webp header without image data", `{"model":"anisora","mode":"i2v","prompt":"x","image":"` + b64(webpBytes(16, 9)) + `"}`, "image", "image is a damaged webp"},
		{"png header and IDAT of garbage", `{"model":"anisora","mode":"i2v","prompt":"x","image":"` + b64(damagedPNG(t)) + `"}`, "image", "image is a damaged png"},
		{"jpeg cut after its header", `{"model":"anisora","mode":"i2v","prompt":"x","image":"` + b64(cutJPEG(t)) + `"}`, "image", "image is a damaged jpeg"},
		{"over 10 MiB", `{"model":"anisora","mode":"i2v","prompt":"x","image":"` + b64(huge) + `"}`, "image", "image must be at most 10 MiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := decodeAndValidate(t, c, body(t, tc.body))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v (%+v), want a *FieldError on %s", err, v, tc.field)
			}
			if fe.Field != tc.field {
				t.Errorf("field = %q, want %q (message %q)", fe.Field, tc.field, fe.Message)
			}
			if !strings.Contains(fe.Message, tc.message) {
				t.Errorf("message = %q, want it to contain %q", fe.Message, tc.message)
			}
			if fe.Error() != fe.Message {
				t.Errorf("Error() = %q, want the message", fe.Error())
			}
		})
	}
}

// TestValidateDirect covers requests built in Go rather than decoded, as a
// caller with its own decoder would pass them.
func TestValidateDirect(t *testing.T) {
	c := realCatalog(t)
	str := func(s string) *string { return &s }
	cases := []struct {
		name  string
		req   *GenerateRequest
		field string
	}{
		{"nil request", nil, "model"},
		{"invalid UTF-8 prompt", &GenerateRequest{Model: "flux", Mode: "t2i", Prompt: "a\xffb"}, "prompt"},
		{"invalid UTF-8 negative prompt", &GenerateRequest{Model: "pony", Mode: "t2i", Prompt: "a", NegativePrompt: str("\xc3")}, "negative_prompt"},
		{"param raw not JSON", &GenerateRequest{Model: "flux", Mode: "t2i", Prompt: "a", Params: map[string]json.RawMessage{"steps": json.RawMessage("0x10")}}, "params.steps"},
		{"float raw Inf", &GenerateRequest{Model: "flux", Mode: "t2i", Prompt: "a", Params: map[string]json.RawMessage{"guidance": json.RawMessage("-Inf")}}, "params.guidance"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Validate(tc.req)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want a *FieldError on %s", err, tc.field)
			}
		})
	}
	var empty *Catalog
	if _, err := empty.Validate(&GenerateRequest{Model: "flux"}); err == nil {
		t.Error("a nil catalog validated a request")
	}
}

func TestDecodeGenerate(t *testing.T) {
	deep := `{"model":"flux","params":{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}}`
	cases := []struct {
		name  string
		body  string
		want  error  // ErrInvalidJSON or ErrTooLarge
		field string // when a *FieldError is expected
	}{
		{"empty", "", ErrInvalidJSON, ""},
		{"whitespace", " \n ", ErrInvalidJSON, ""},
		{"not an object", `["model"]`, ErrInvalidJSON, ""},
		{"null", `null`, ErrInvalidJSON, ""},
		{"string", `"flux"`, ErrInvalidJSON, ""},
		{"trailing object", `{"model":"flux"} {}`, ErrInvalidJSON, ""},
		{"trailing garbage", `{"model":"flux"}x`, ErrInvalidJSON, ""},
		{"truncated", `{"model":"flux"`, ErrInvalidJSON, ""},
		{"NaN token", `{"model":"flux","params":{"guidance":NaN}}`, ErrInvalidJSON, ""},
		{"single quotes", `{'model':'flux'}`, ErrInvalidJSON, ""},
		{"invalid UTF-8", "{\"model\":\"fl\xffux\"}", ErrInvalidJSON, ""},
		{"prompt not a string", `{"prompt":5}`, ErrInvalidJSON, ""},
		{"type not a string", `{"type":["video"]}`, ErrInvalidJSON, ""},
		{"image not a string", `{"image":{}}`, ErrInvalidJSON, ""},
		{"params not an object", `{"params":[1]}`, ErrInvalidJSON, ""},
		{"deep nesting", deep, ErrInvalidJSON, ""},
		{"unknown field", `{"model":"flux","foo":1}`, nil, "foo"},
		{"unknown field checked before values", `{"bar":1,"prompt":5}`, nil, "bar"},
		{"duplicate field", `{"prompt":"a","prompt":"b"}`, nil, "prompt"},
		{"duplicate param", `{"params":{"seed":1,"seed":2}}`, nil, "params.seed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeGenerate(strings.NewReader(tc.body), 1<<20)
			if err == nil {
				t.Fatalf("accepted: %+v", req)
			}
			if tc.field != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field {
					t.Fatalf("got %v, want a *FieldError on %s", err, tc.field)
				}
				if errors.Is(err, ErrInvalidJSON) {
					t.Error("a field error must not also be invalid_json")
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodeGenerateUnknownFieldMessage(t *testing.T) {
	_, err := DecodeGenerate(strings.NewReader(`{"model":"flux","foo":1}`), 1024)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "foo" || fe.Message != `unknown field "foo"` {
		t.Fatalf("got %#v", err)
	}
	long := strings.Repeat("k", 5000)
	_, err = DecodeGenerate(strings.NewReader(`{"`+long+`":1}`), 1<<20)
	if !errors.As(err, &fe) || len(fe.Field) > 100 || len(fe.Message) > 120 {
		t.Fatalf("a huge unknown key is echoed in full: %d bytes", len(err.Error()))
	}
}

func TestDecodeGenerateSizeLimit(t *testing.T) {
	valid := `{"model":"flux","mode":"t2i","prompt":"x"}`
	n := int64(len(valid))
	if _, err := DecodeGenerate(strings.NewReader(valid), n); err != nil {
		t.Errorf("body of exactly the limit: %v", err)
	}
	if _, err := DecodeGenerate(strings.NewReader(valid+" "), n); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte over: got %v, want ErrTooLarge", err)
	}
	// The server may also wrap the body in http.MaxBytesReader.
	rec := httptest.NewRecorder()
	r := http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(valid)), 10)
	if _, err := DecodeGenerate(r, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxBytesReader over: got %v, want ErrTooLarge", err)
	}
	// A failing reader is neither invalid JSON nor too large.
	_, err := DecodeGenerate(io.MultiReader(strings.NewReader("{"), errReader{}), 1<<20)
	if err == nil || errors.Is(err, ErrInvalidJSON) || errors.Is(err, ErrTooLarge) {
		t.Errorf("read error: got %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestParseCount: "count" is a JSON integer from 1 to 8; null means absent.
func TestParseCount(t *testing.T) {
	base := `{"model":"flux","mode":"t2i","prompt":"x"`
	for _, c := range []struct {
		body string
		want int
		ok   bool
	}{
		{base + `}`, 0, true},
		{base + `,"count":null}`, 0, true},
		{base + `,"count":1}`, 1, true},
		{base + `,"count":8}`, 8, true},
		{base + `,"count":0}`, 0, false},
		{base + `,"count":9}`, 0, false},
		{base + `,"count":-1}`, 0, false},
		{base + `,"count":2.0}`, 0, false},
		{base + `,"count":"3"}`, 0, false},
		{base + `,"count":true}`, 0, false},
		{base + `,"count":99999999999999999999}`, 0, false},
	} {
		req, err := ParseGenerate([]byte(c.body))
		if !c.ok {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "count" {
				t.Errorf("%s: %v, want a count field error", c.body, err)
			}
			continue
		}
		if err != nil || req.Count != c.want {
			t.Errorf("%s: count %v %v, want %d", c.body, req, err, c.want)
		}
	}
}
