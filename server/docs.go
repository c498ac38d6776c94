package server

import (
	"io/fs"
	"net/http"

	"gooni/server/apierr"
)

// servedDocs maps the routes of the read-only guides the Admin page links
// to onto their files in Config.Docs (the repository paths). They are
// served from the binary, so the guide a person reads is the one of the
// version that runs, without the repository at hand.
var servedDocs = map[string]string{
	"/docs/WORKSPACES.md":   "docs/WORKSPACES.md",
	"/docs/modal/README.md": "modal/README.md",
}

// handleDoc serves one guide as plain UTF-8 text (no auth: it holds nothing
// that is not in the public repository).
func (s *Server) handleDoc(file string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		return serveNoCache(w, s.cfg.Docs, file, "text/plain; charset=utf-8")
	}
}

// serveNoCache answers 200 with file from fsys as contentType, marked
// no-cache (revalidated on every use, so a new build shows at once), or the
// contract's 404 when fsys has no such file.
func serveNoCache(w http.ResponseWriter, fsys fs.FS, file, contentType string) error {
	b, err := fs.ReadFile(fsys, file)
	if err != nil {
		return apierr.NotFound()
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	w.Write(b)
	return nil
}
