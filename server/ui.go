package server

import (
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"gooni/server/apierr"
)

// handleIndex serves the UI shell; it is never cached so a new build shows at once.
func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) error {
	return serveNoCache(w, s.cfg.UI, "index.html", "text/html; charset=utf-8")
}

// handleAsset serves hashed build assets with a long cache lifetime.
func (s *Server) handleAsset(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if !fs.ValidPath(name) || strings.Contains(name, "..") {
		return apierr.NotFound()
	}
	b, err := fs.ReadFile(s.cfg.UI, name)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) {
		return apierr.NotFound()
	}
	if err != nil {
		return apierr.NotFound()
	}
	h := w.Header()
	if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
		h.Set("Content-Type", ct)
	}
	if strings.HasPrefix(name, "assets/") {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "public, max-age=3600")
	}
	w.Write(b)
	return nil
}
