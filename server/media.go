package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/mux"

	"gooni/internal/config"
	"gooni/internal/dispatch"
	"gooni/server/apierr"
	"gooni/store"
)

func (s *Server) handleResult(w http.ResponseWriter, r *http.Request) error {
	return s.serveMedia(w, r, false)
}

func (s *Server) handlePreview(w http.ResponseWriter, r *http.Request) error {
	return s.serveMedia(w, r, true)
}

// serveMedia answers GET /results/{id} and /preview/{id}: the stored file
// for a done task (ServeContent: Range, ETag, conditional requests); the
// workspace's copy, proxied, while a remote task has not been copied yet.
func (s *Server) serveMedia(w http.ResponseWriter, r *http.Request, preview bool) error {
	t, err := s.loadTask(r, mux.Vars(r)["task_id"])
	if err != nil {
		return err
	}
	switch t.Status {
	case store.StatusFailed:
		msg := t.ErrorMessage
		if msg == "" {
			msg = "the task failed"
		}
		return apierr.TaskFailed(msg)
	case store.StatusPending:
		return apierr.ResultNotReady()
	case store.StatusProcessing:
		return s.proxyMedia(w, r, t, preview)
	}
	rel, ctype := t.ResultPath, t.ResultType
	if preview {
		rel, ctype = t.PreviewPath, t.PreviewType
	}
	f, err := s.dataDir().OpenMedia(rel)
	switch {
	case errors.Is(err, config.ErrMediaPath), errors.Is(err, fs.ErrNotExist):
		return apierr.ResultGone()
	case errors.Is(err, syscall.ELOOP):
		s.log.Warn("a media file is a symbolic link: refused", "task_id", t.ID, "path", rel)
		return apierr.StorageFailed().With(err)
	case err != nil:
		return apierr.StorageFailed().With(err)
	}
	path := f.Name()
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return apierr.StorageFailed().With(err)
	}
	h := w.Header()
	if ctype == "" {
		ctype = mime.TypeByExtension(filepath.Ext(path))
	}
	h.Set("Content-Type", ctype)
	kind := "r"
	if preview {
		kind = "p"
	}
	h.Set("ETag", fmt.Sprintf(`"%s-%s-%d"`, t.ID, kind, st.Size()))
	h.Set("Cache-Control", "private, max-age=86400")
	h.Set("Accept-Ranges", "bytes")
	if r.URL.Query().Get("download") == "1" {
		name := "gooni-" + t.ID + extFor(ctype, path)
		if preview {
			name = "gooni-" + t.ID + "-preview" + extFor(ctype, path)
		}
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
	dropForeignRange(r)
	http.ServeContent(&contentErrorWriter{ResponseWriter: w, s: s, r: r}, r, "", st.ModTime(), f)
	return nil
}

// handleInput answers GET /inputs/{task_id}: the i2v input image a task was
// made from (CONTRACT section 12), input_not_found when it has none.
func (s *Server) handleInput(w http.ResponseWriter, r *http.Request) error {
	t, err := s.loadTask(r, mux.Vars(r)["task_id"])
	if err != nil {
		return err
	}
	if !t.HasImage() {
		return apierr.InputNotFound()
	}
	f, err := s.dataDir().OpenMedia(t.InputPath)
	switch {
	case errors.Is(err, config.ErrMediaPath), errors.Is(err, fs.ErrNotExist):
		return apierr.InputNotFound()
	case err != nil:
		return apierr.StorageFailed().With(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return apierr.StorageFailed().With(err)
	}
	h := w.Header()
	h.Set("Content-Type", t.InputType)
	h.Set("ETag", fmt.Sprintf(`"%s-i-%d"`, t.ID, st.Size()))
	h.Set("Cache-Control", "private, max-age=86400")
	h.Set("Accept-Ranges", "bytes")
	dropForeignRange(r)
	http.ServeContent(&contentErrorWriter{ResponseWriter: w, s: s, r: r}, r, "", st.ModTime(), f)
	return nil
}

// dropForeignRange removes a Range header whose unit is not bytes: RFC 9110
// section 14.2 says a server ignores a range unit it does not understand and
// answers the whole representation (200), where http.ServeContent would
// answer 416. The unit is case-insensitive, so "Bytes=" counts as bytes.
func dropForeignRange(r *http.Request) {
	v := r.Header.Get("Range")
	if v == "" {
		return
	}
	unit, rest, ok := strings.Cut(v, "=")
	switch {
	case !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes"):
		r.Header.Del("Range")
	case unit != "bytes":
		r.Header.Set("Range", "bytes="+rest)
	}
}

// contentErrorWriter turns the plain-text errors http.ServeContent writes (416
// for an unsatisfiable Range, 412 for a failed precondition) into the
// contract's JSON error, keeping their status and Content-Range. The codes
// stay in the contract's vocabulary: validation_failed naming the header.
// ReadFrom passes through so a served file still goes out with sendfile.
type contentErrorWriter struct {
	http.ResponseWriter
	s      *Server
	r      *http.Request
	failed bool
}

// mediaChunk is how much of a file goes out per write deadline: a client
// that takes no byte for the idle time is let go, a slow steady one is not.
const mediaChunk = 1 << 20

func (w *contentErrorWriter) extend() {
	_ = http.NewResponseController(w.ResponseWriter).SetWriteDeadline(time.Now().Add(w.s.mediaIdle()))
}

func (w *contentErrorWriter) WriteHeader(code int) {
	if code < 400 || w.failed {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.failed = true
	field, msg := "Range", "the requested range is not satisfiable for this file"
	if code == http.StatusPreconditionFailed {
		field, msg = "If-Match", "a precondition of the request does not hold for this file"
	}
	w.ResponseWriter.Header().Del("ETag")
	w.s.writeError(w.ResponseWriter, w.r, &apierr.Error{Code: "validation_failed", Status: code, Message: msg,
		Details: map[string]any{"field": field}})
}

func (w *contentErrorWriter) Write(b []byte) (int, error) {
	if w.failed {
		return len(b), nil
	}
	w.extend()
	return w.ResponseWriter.Write(b)
}

// ReadFrom sends the file in chunks (sendfile where the connection allows),
// each under a fresh write deadline.
func (w *contentErrorWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.failed {
		return io.Copy(io.Discard, src)
	}
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	var total int64
	for {
		w.extend()
		var n int64
		var err error
		if ok {
			n, err = rf.ReadFrom(io.LimitReader(src, mediaChunk))
		} else {
			n, err = io.Copy(w.ResponseWriter, io.LimitReader(src, mediaChunk))
		}
		total += n
		if err != nil || n < mediaChunk {
			return total, err
		}
	}
}

func (w *contentErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func extFor(ctype, path string) string {
	if e := filepath.Ext(path); e != "" {
		return e
	}
	switch ctype {
	case "video/mp4":
		return ".mp4"
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	}
	return ""
}

func (s *Server) dataDir() config.DataDir { return config.DataDir(s.cfg.DataDir) }

// proxyMedia streams a processing task's media from its workspace, which
// is resolved only from the account registry. Anything short of a usable
// answer is result_not_ready: the task is still running as far as we know.
func (s *Server) proxyMedia(w http.ResponseWriter, r *http.Request, t *store.Task, preview bool) error {
	if t.AccountID == 0 || s.cfg.Dispatcher == nil {
		return apierr.ResultNotReady()
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	m, err := s.cfg.Dispatcher.LiveMedia(ctx, t, preview)
	switch {
	case errors.Is(err, dispatch.ErrProxyRefused):
		s.audit(r, "security.proxy_refused", "task:"+t.ID, "denied", map[string]any{"reason": strings.TrimPrefix(err.Error(), dispatch.ErrProxyRefused.Error()+": ")})
		return apierr.ProxyTargetInvalid()
	case errors.Is(err, dispatch.ErrNotLive):
		return apierr.ResultNotReady()
	case errors.Is(err, dispatch.ErrUnusable):
		return apierr.WorkerUnavailable()
	case err != nil:
		return apierr.Internal(err)
	}
	defer m.Body.Close()
	ct := m.ContentType
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Cache-Control", "no-store")
	if m.Length > 0 {
		h.Set("Content-Length", fmt.Sprint(m.Length))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		io.Copy(&contentErrorWriter{ResponseWriter: w, s: s, r: r}, m.Body)
	}
	return nil
}

type galleryPage struct {
	Items      []*TaskView `json:"items"`
	NextCursor *string     `json:"next_cursor"`
	// Total and TotalCapped answer ?total=1: how many tasks match the
	// filters, counted up to maxTotal (TotalCapped: more than that).
	Total       *int  `json:"total,omitempty"`
	TotalCapped *bool `json:"total_capped,omitempty"`
}

// handleGallery lists done tasks newest first with keyset paging and the
// model, type and q filters of GET /tasks.
func (s *Server) handleGallery(w http.ResponseWriter, r *http.Request) error {
	f, err := s.listFilter(r.URL.Query(), false)
	if err != nil {
		return err
	}
	f.Statuses = []string{store.StatusDone}
	return s.writeTaskPage(w, r, f)
}

// handleGalleryDelete removes a done task's files, then its row: a delete
// that fails half-way leaves the row, never an orphan file.
func (s *Server) handleGalleryDelete(w http.ResponseWriter, r *http.Request) error {
	t, err := s.loadTask(r, mux.Vars(r)["task_id"])
	if err != nil {
		return err
	}
	if t.Status != store.StatusDone {
		return apierr.TaskNotDone()
	}
	for _, rel := range []string{t.ResultPath, t.PreviewPath, t.InputPath} {
		p, err := s.dataDir().MediaPath(rel)
		if err != nil {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return apierr.StorageFailed().With(err)
		}
	}
	if err := s.cfg.DB.DeleteTask(r.Context(), t.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return apierr.Internal(err)
	}
	s.log.Info("gallery item deleted", "task_id", t.ID, "actor", actorOf(r.Context()), "correlation_id", correlationID(r.Context()))
	w.WriteHeader(http.StatusNoContent)
	return nil
}
