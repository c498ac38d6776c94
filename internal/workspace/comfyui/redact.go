package comfyui

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"gooni/internal/workspace"
)

const (
	// maxErrorText bounds any text from ComfyUI that goes into an error.
	maxErrorText = 512
	// maxTaskError bounds a task's error message (CONTRACT section 14: 1 KiB).
	maxTaskError = 1024
)

// redactor replaces an account's credential values, and the forms they take
// on the wire, with [redacted] (workspace.Redactor, the one rule for every
// driver).
type redactor struct{ r *workspace.Redactor }

// newRedactor covers the credentials the driver sends plus every other
// credential value of the account (extra), and the basic-auth form a proxy
// may build from key and secret.
func newRedactor(bearer, key, secret string, extra []string) *redactor {
	vals := append([]string{bearer, key, secret}, extra...)
	if key != "" && secret != "" {
		vals = append(vals, key+":"+secret)
	}
	return &redactor{r: workspace.NewRedactor(vals...)}
}

// redact replaces every credential form in s.
func (r *redactor) redact(s string) string {
	if r == nil {
		return s
	}
	return r.r.Redact(s)
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
