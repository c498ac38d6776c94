package catalog

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
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
}{
	{"image/png", func(b []byte) bool { return bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) }, png.DecodeConfig},
	{"image/jpeg", func(b []byte) bool { return bytes.HasPrefix(b, []byte("\xff\xd8\xff")) }, jpeg.DecodeConfig},
	{"image/webp", func(b []byte) bool {
		return len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP"
	}, webp.DecodeConfig},
}

// decodeImage turns the request's image (base64 or a data URL) into bytes
// and checks that they are a PNG, JPEG or WebP picture of sane size.
func decodeImage(s string) ([]byte, string, *FieldError) {
	payload := s
	if len(s) >= 5 && strings.EqualFold(s[:5], "data:") {
		comma := strings.IndexByte(s, ',')
		if comma < 0 || !dataURLHeader.MatchString(s[5:comma]) {
			return nil, "", fieldErr("image", "image must be a base64 string or a data:image/...;base64, URL")
		}
		payload = s[comma+1:]
	}
	if strings.ContainsAny(payload, " \t\r\n") {
		payload = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, payload)
	}
	if len(payload) > base64.StdEncoding.EncodedLen(MaxImageBytes) {
		return nil, "", fieldErr("image", "image must be at most 10 MiB")
	}
	data, err := decodeBase64(payload)
	if err != nil || len(data) == 0 {
		return nil, "", fieldErr("image", "image is not valid base64")
	}
	if len(data) > MaxImageBytes {
		return nil, "", fieldErr("image", "image must be at most 10 MiB")
	}
	for _, sn := range imageSniffers {
		if !sn.matches(data) {
			continue
		}
		cfg, err := safeConfig(sn.config, data)
		if err != nil {
			return nil, "", fieldErr("image", "image looks like %s but cannot be read as one", strings.TrimPrefix(sn.contentType, "image/"))
		}
		if cfg.Width <= 0 || cfg.Height <= 0 {
			return nil, "", fieldErr("image", "image has no pixels")
		}
		if cfg.Width > MaxImageSide || cfg.Height > MaxImageSide {
			return nil, "", fieldErr("image", "image must be at most %dx%d pixels (it is %dx%d)", MaxImageSide, MaxImageSide, cfg.Width, cfg.Height)
		}
		return data, sn.contentType, nil
	}
	return nil, "", fieldErr("image", "image must be a PNG, JPEG or WebP picture")
}

// decodeBase64 accepts standard and URL-safe alphabets, padded or not,
// since browsers and command-line tools differ.
func decodeBase64(s string) ([]byte, error) {
	encs := []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding}
	if len(s)%4 == 0 {
		encs = []*base64.Encoding{base64.StdEncoding, base64.URLEncoding}
	}
	var err error
	for _, enc := range encs {
		var b []byte
		if b, err = enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, err
}

// safeConfig turns a decoder panic on hostile bytes into an error: a bad
// upload must never take the server down.
func safeConfig(fn func(io.Reader) (image.Config, error), data []byte) (cfg image.Config, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("image decoder panicked: %v", r)
		}
	}()
	return fn(bytes.NewReader(data))
}
