package workspace

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"sort"
	"strings"
)

// Redacted is what a credential becomes in any text that leaves the server.
const Redacted = "[redacted]"

// Redactor replaces credential values in text that comes back from a
// workspace (error messages, answers, deploy output) before it is stored,
// logged or shown: the values as they are, URL-encoded (query and path
// forms), JSON-escaped, and base64-encoded (standard and URL alphabets) at
// each of the three byte alignments a value can have inside a longer
// encoded text, so a workspace that echoes its request headers inside a
// base64 blob cannot leak them either. Values shorter than 4 bytes are
// ignored (they would mangle ordinary words); encoded forms shorter than 6
// characters too.
type Redactor struct{ forms []string }

// NewRedactor builds a Redactor for values; nil or empty values are skipped.
func NewRedactor(values ...string) *Redactor {
	seen := map[string]bool{}
	var forms []string
	add := func(f string, minLen int) {
		if len(f) >= minLen && !seen[f] {
			seen[f] = true
			forms = append(forms, f)
		}
	}
	for _, v := range values {
		if len(v) < 4 {
			continue
		}
		add(v, 4)
		add(url.QueryEscape(v), 6)
		add(url.PathEscape(v), 6)
		if j, err := json.Marshal(v); err == nil {
			add(string(j[1:len(j)-1]), 6)
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			for shift := 0; shift < 3; shift++ {
				add(alignedBase64(enc, v, shift), 6)
			}
		}
	}
	// Longest first, so a value is replaced before a shorter form inside it.
	sort.Slice(forms, func(i, j int) bool { return len(forms[i]) > len(forms[j]) })
	return &Redactor{forms: forms}
}

// alignedBase64 is the part of base64(prefix + v) that depends on v alone,
// where prefix is shift bytes: it appears in the encoding of any text that
// holds v at an offset of shift modulo 3.
func alignedBase64(enc *base64.Encoding, v string, shift int) string {
	b := enc.EncodeToString(append(make([]byte, shift), v...))
	first := (8*shift + 5) / 6       // first character made only of v's bits
	last := (8*(shift+len(v)))/6 - 1 // last such character
	if last < first || last >= len(b) {
		return ""
	}
	return b[first : last+1]
}

// Redact returns s with every form of every value replaced; a nil Redactor
// returns s as it is.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	for _, f := range r.forms {
		if strings.Contains(s, f) {
			s = strings.ReplaceAll(s, f, Redacted)
		}
	}
	return s
}
