package comfyui

import (
	"encoding/base64"
	"net/url"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// maxErrorText bounds any text from ComfyUI that goes into an error.
	maxErrorText = 512
	// maxTaskError bounds a task's error message (CONTRACT section 14: 1 KiB).
	maxTaskError = 1024
)

// redactor replaces an account's credential values, and the forms they take
// on the wire (base64, URL-encoded), with [redacted].
type redactor struct {
	forms []string // longest first, so a longer form is never half-replaced by a shorter one
}

func newRedactor(bearer, key, secret string) *redactor {
	seen := map[string]bool{}
	var forms []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			forms = append(forms, s)
		}
	}
	for _, v := range []string{bearer, key, secret} {
		if v == "" {
			continue
		}
		add(v)
		add(base64.StdEncoding.EncodeToString([]byte(v)))
		add(base64.RawStdEncoding.EncodeToString([]byte(v)))
		add(base64.URLEncoding.EncodeToString([]byte(v)))
		add(base64.RawURLEncoding.EncodeToString([]byte(v)))
		add(url.QueryEscape(v))
		add(url.PathEscape(v))
	}
	// A proxy may echo HTTP basic credentials built from key and secret.
	if key != "" && secret != "" {
		add(base64.StdEncoding.EncodeToString([]byte(key + ":" + secret)))
	}
	sort.Slice(forms, func(i, j int) bool { return len(forms[i]) > len(forms[j]) })
	return &redactor{forms: forms}
}

// redact replaces every credential form in s.
func (r *redactor) redact(s string) string {
	if r == nil {
		return s
	}
	for _, f := range r.forms {
		s = strings.ReplaceAll(s, f, "[redacted]")
	}
	return s
}

// clean makes peer text safe for an error: redacted, valid UTF-8, control
// characters turned into spaces, runs of space collapsed, at most max bytes
// (cut on a rune boundary, with "..." when cut).
func (r *redactor) clean(s string, max int) string {
	// Redact before cutting, so a cut never leaves half a credential behind,
	// but bound the work first: a peer may send megabytes.
	if len(s) > 4*max+256 {
		s = s[:4*max+256]
	}
	s = r.redact(strings.ToValidUTF8(s, "?"))
	var b strings.Builder
	space := false
	for _, c := range s {
		if unicode.IsControl(c) || unicode.IsSpace(c) || c == utf8.RuneError {
			if c == utf8.RuneError {
				c = '?'
			} else {
				space = b.Len() > 0
				continue
			}
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(c)
	}
	return clip(b.String(), max)
}

// clip cuts s to at most max bytes on a rune boundary, marking the cut.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
