package workspace

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
)

// TestRedactorFindsEncodedForms (issue 11 point 10): a workspace that
// echoes its request headers may do so as they are, URL-encoded, JSON-
// escaped or inside a base64 blob at any byte offset. Inputs tried: a
// secret with '/', '+' and '"' in it, embedded at offsets 0..5 of a text
// that is then base64-encoded (standard and URL alphabets), query- and
// path-escaped, and JSON-escaped.
func TestRedactorFindsEncodedForms(t *testing.T) {
	secret := `ms-Se/cr+et"v4lue=`
	r := NewRedactor(secret, "short", "", "ab")
	for pad := 0; pad < 6; pad++ {
		text := strings.Repeat("x", pad) + "Modal-Secret: " + secret + "\r\nAccept: */*"
		for name, encoded := range map[string]string{
			"raw":          text,
			"base64 std":   base64.StdEncoding.EncodeToString([]byte(text)),
			"base64 url":   base64.URLEncoding.EncodeToString([]byte(text)),
			"base64 raw":   base64.RawStdEncoding.EncodeToString([]byte(text)),
			"query escape": url.QueryEscape(text),
			"path escape":  url.PathEscape(text),
			"json":         `{"headers":"` + strings.ReplaceAll(text, `"`, `\"`) + `"}`,
		} {
			out := r.Redact("error: " + encoded)
			if !strings.Contains(out, Redacted) {
				t.Errorf("pad %d, %s: nothing redacted in %q", pad, name, out)
			}
			for _, form := range []string{secret, url.QueryEscape(secret), alignedBase64(base64.StdEncoding, secret, (pad+len("Modal-Secret: "))%3)} {
				if strings.Contains(out, form) {
					t.Errorf("pad %d, %s: %q still holds %q", pad, name, out, form)
				}
			}
		}
	}
	if got := r.Redact("a short answer about ab"); got != "a [redacted] answer about ab" {
		t.Errorf("values of 4+ bytes are redacted, shorter ones are not: %q", got)
	}
	var none *Redactor
	if none.Redact("as is") != "as is" {
		t.Error("a nil Redactor changes text")
	}
}
