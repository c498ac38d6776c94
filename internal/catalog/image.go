package catalog

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"regexp"
	"strings"

	"golang.org/x/image/webp"
)

// dataURLHeader is what may stand between "data:" and the comma. The claimed
// subtype is ignored: the bytes decide what the picture is.
var dataURLHeader = regexp.MustCompile(`(?i)^image/[a-z0-9.+-]+;base64$`)

var imageSniffers = []struct {
	contentType string
	matches     func([]byte) bool
	config      func(io.Reader) (image.Config, error)
	decode      func(io.Reader) (image.Image, error)
}{
	{"image/png", func(b []byte) bool { return bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) }, png.DecodeConfig, png.Decode},
	{"image/jpeg", func(b []byte) bool { return bytes.HasPrefix(b, []byte("\xff\xd8\xff")) }, jpeg.DecodeConfig, jpeg.Decode},
	{"image/webp", func(b []byte) bool {
		return len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP"
	}, webp.DecodeConfig, webp.Decode},
}

// ImageSink is where a request's image is decoded to (a temp file in
// media/ for the server), and read back from for the full check.
type ImageSink interface {
	io.Writer
	io.ReaderAt
}

// saveImage decodes the request's image (the raw JSON value of "image": a
// base64 string, standard or URL-safe, padded or not, or a data URL) into
// sink without holding it in memory beyond a small buffer, then reads the
// whole picture back: it must be a PNG, JPEG or WebP of at most
// MaxImageSide a side that decodes to its end (a valid header followed by
// garbage is refused). Errors are *FieldError on "image".
func saveImage(raw json.RawMessage, sink ImageSink) (typ string, n int64, err error) {
	src, ferr := imagePayload(raw)
	if ferr != nil {
		return "", 0, ferr
	}
	n, err = io.Copy(sink, io.LimitReader(src, MaxImageBytes+1))
	switch {
	case errors.Is(err, errBadBase64):
		return "", 0, fieldErr("image", "image is not valid base64")
	case err != nil:
		return "", 0, fmt.Errorf("%w: %v", ErrImageStorage, err)
	case n == 0:
		return "", 0, fieldErr("image", "image is not valid base64")
	case n > MaxImageBytes:
		return "", 0, fieldErr("image", "image must be at most 10 MiB")
	}
	gate, _ := sink.(DecodeGate)
	typ, err = checkImage(io.NewSectionReader(sink, 0, n), gate)
	if err != nil {
		return "", 0, err
	}
	return typ, n, nil
}

// DecodeGate is an optional method of an ImageSink. Before the image is
// decoded whole, saveImage calls BeforeDecode with the bytes its pixels take
// in memory once decoded (width x height x the bytes per pixel of its colour
// model: a small file can decode to hundreds of MiB); an error stops the
// validation and is returned as it is.
type DecodeGate interface {
	BeforeDecode(pixelBytes int64) error
}

// pixelBytes is what image/png, image/jpeg or x/image/webp allocate for a
// decoded picture of cfg (their image types' bytes per pixel).
func pixelBytes(cfg image.Config) int64 {
	per := int64(4)
	switch cfg.ColorModel {
	case color.RGBA64Model, color.NRGBA64Model:
		per = 8
	case color.Gray16Model:
		per = 2
	case color.GrayModel, color.AlphaModel:
		per = 1
	}
	if _, ok := cfg.ColorModel.(color.Palette); ok {
		per = 1
	}
	return int64(cfg.Width) * int64(cfg.Height) * per
}

// ErrImageStorage means the image could not be written to its sink (the
// server answers storage_failed); the request itself may be fine.
var ErrImageStorage = errors.New("catalog: the image could not be stored")

// errBadBase64 marks a decoding failure inside the copy.
var errBadBase64 = errors.New("catalog: bad base64")

type base64Errors struct{ r io.Reader }

func (b base64Errors) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	var ce base64.CorruptInputError
	if errors.As(err, &ce) {
		err = errBadBase64
	}
	return n, err
}

// imagePayload turns the raw JSON string into a reader of decoded bytes.
func imagePayload(raw json.RawMessage) (io.Reader, *FieldError) {
	var payload []byte
	if bytes.IndexByte(raw, '\\') >= 0 {
		// Escapes (\/, \n, \u...) are rare in base64: only then is a copy made.
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fieldErr("image", "image must be a string")
		}
		payload = []byte(s)
	} else {
		if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
			return nil, fieldErr("image", "image must be a string")
		}
		payload = raw[1 : len(raw)-1]
	}
	if len(payload) >= 5 && bytes.EqualFold(payload[:5], []byte("data:")) {
		comma := bytes.IndexByte(payload, ',')
		if comma < 0 || !dataURLHeader.Match(payload[5:comma]) {
			return nil, fieldErr("image", "image must be a base64 string or a data:image/...;base64, URL")
		}
		payload = payload[comma+1:]
	}
	// Whitespace inside base64 (line breaks of MIME tools) is skipped.
	digits := len(payload) - countSpace(payload)
	if digits > base64.StdEncoding.EncodedLen(MaxImageBytes) {
		return nil, fieldErr("image", "image must be at most 10 MiB")
	}
	enc := base64.StdEncoding
	if bytes.ContainsAny(payload, "-_") {
		enc = base64.URLEncoding
	}
	if digits%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return base64Errors{base64.NewDecoder(enc, spaceless{bytes.NewReader(payload)})}, nil
}

func countSpace(b []byte) int {
	n := 0
	for _, c := range b {
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			n++
		}
	}
	return n
}

// spaceless drops whitespace from what it reads.
type spaceless struct{ r io.Reader }

func (s spaceless) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		k := 0
		for _, c := range p[:n] {
			if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
				p[k] = c
				k++
			}
		}
		if k > 0 || err != nil {
			return k, err
		}
	}
}

// checkImage reads the picture's header, asks gate (when not nil) for the
// memory its pixels take, then decodes it whole. Errors are *FieldError on
// "image", or gate's own.
func checkImage(r io.ReadSeeker, gate DecodeGate) (string, error) {
	head := make([]byte, 16)
	k, _ := io.ReadFull(r, head)
	head = head[:k]
	for _, sn := range imageSniffers {
		if !sn.matches(head) {
			continue
		}
		name := strings.TrimPrefix(sn.contentType, "image/")
		r.Seek(0, io.SeekStart)
		cfg, err := safeDecode(func() (image.Config, error) { return sn.config(bufio.NewReader(r)) })
		if err != nil {
			return "", fieldErr("image", "image looks like %s but cannot be read as one", name)
		}
		if cfg.Width <= 0 || cfg.Height <= 0 {
			return "", fieldErr("image", "image has no pixels")
		}
		if cfg.Width > MaxImageSide || cfg.Height > MaxImageSide {
			return "", fieldErr("image", "image must be at most %dx%d pixels (it is %dx%d)", MaxImageSide, MaxImageSide, cfg.Width, cfg.Height)
		}
		if gate != nil {
			if err := gate.BeforeDecode(pixelBytes(cfg)); err != nil {
				return "", err
			}
		}
		r.Seek(0, io.SeekStart)
		if _, err := safeDecode(func() (image.Config, error) {
			_, err := sn.decode(bufio.NewReader(r))
			return image.Config{}, err
		}); err != nil {
			return "", fieldErr("image", "image is a damaged %s: it cannot be decoded to its end", name)
		}
		return sn.contentType, nil
	}
	return "", fieldErr("image", "image must be a PNG, JPEG or WebP picture")
}

// safeDecode turns a decoder panic on hostile bytes into an error: a bad
// upload must never take the server down.
func safeDecode(fn func() (image.Config, error)) (cfg image.Config, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("image decoder panicked: %v", r)
		}
	}()
	return fn()
}

// memImage is the ImageSink Validate uses when the caller gives none.
type memImage struct{ b []byte }

func (m *memImage) Write(p []byte) (int, error) { m.b = append(m.b, p...); return len(p), nil }
func (m *memImage) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
