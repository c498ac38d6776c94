package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"gooni/server/apierr"
)

// openAPIFile is the path of the OpenAPI 3.1 description of every route in
// Config.Docs (the repository path): hand-maintained, checked against the
// router and against real answers by server/openapi_test.go, and served at
// GET /openapi.json (CONTRACT section 17).
const openAPIFile = "docs/openapi.json"

// openAPIDoc is the document as this server serves it, with its ETag.
type openAPIDoc struct {
	body []byte
	etag string
}

// loadOpenAPI reads openAPIFile from docs and, when basePath is not empty
// (GG_PUBLIC_URL has a path), puts it first in `servers`: a client that
// fetched the document through the reverse proxy then calls through it
// too, and `/` (the listener itself) stays as the second choice. The
// relative URLs resolve against wherever the document was fetched from.
func loadOpenAPI(docs fs.FS, basePath string) (*openAPIDoc, error) {
	body, err := fs.ReadFile(docs, openAPIFile)
	if err != nil {
		return nil, err
	}
	if basePath != "" {
		servers, err := json.Marshal([]map[string]string{
			{"url": basePath, "description": "through the reverse proxy: GG_PUBLIC_URL's base path"},
			{"url": "/", "description": "the listener itself, without the proxy"},
		})
		if err != nil {
			return nil, err
		}
		if body, err = replaceMember(body, "servers", servers); err != nil {
			return nil, fmt.Errorf("%s: %w", openAPIFile, err)
		}
	}
	sum := sha256.Sum256(body)
	return &openAPIDoc{body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}, nil
}

// replaceMember returns the JSON object doc with the value of its top-level
// member key replaced by value, every other byte (order, indentation) kept.
func replaceMember(doc []byte, key string, value []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		if tok != key {
			continue
		}
		end := int(dec.InputOffset())
		start := end - len(raw)
		out := make([]byte, 0, len(doc)-len(raw)+len(value))
		out = append(append(append(out, doc[:start]...), value...), doc[end:]...)
		return out, nil
	}
	return nil, fmt.Errorf("no top-level %q", key)
}

// handleOpenAPI answers GET and HEAD /openapi.json without auth: the
// document with a strong ETag, revalidated by caches (no-cache), 304 when
// If-None-Match names it; not_found when the binary carries none.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	if s.openapi == nil {
		return apierr.NotFound()
	}
	h := w.Header()
	h.Set("ETag", s.openapi.etag)
	h.Set("Cache-Control", "no-cache")
	if etagListed(r.Header.Values("If-None-Match"), s.openapi.etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(s.openapi.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		io.Copy(w, bytes.NewReader(s.openapi.body))
	}
	return nil
}

// etagListed reports whether If-None-Match values name etag (weak
// comparison, RFC 9110 section 13.1.2) or are "*".
func etagListed(values []string, etag string) bool {
	for _, v := range values {
		for _, tag := range strings.Split(v, ",") {
			tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
			if tag == "*" || tag == etag {
				return true
			}
		}
	}
	return false
}
