package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"gooni/internal/taskid"
	"gooni/server/apierr"
	"gooni/store"
)

// canceledMessage is the error message of a task a user canceled.
const canceledMessage = "the task was canceled"

// handleCancel answers POST /tasks/{task_id}/cancel (CONTRACT section 12):
// the task is committed as failed with code canceled first; a processing
// task's workspace is then asked to drop it, whatever it answers. No audit
// row; one log line.
func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["task_id"]
	if !taskid.Valid(id) {
		return apierr.TaskNotFound()
	}
	was, err := s.cfg.DB.CancelTask(r.Context(), id, canceledMessage)
	switch {
	case errors.Is(err, store.ErrConflict):
		return apierr.TaskFinished()
	case err != nil:
		return taskErr(err)
	}
	// A processing task, or a pending one already handed to a workspace
	// (waiting in its own queue), is stopped there too.
	if was.AccountID != 0 && s.cfg.Dispatcher != nil {
		s.cfg.Dispatcher.CancelRemote(r.Context(), id, was.AccountID)
	}
	s.log.Info("task canceled", "task_id", id, "was", was.Status, "account_id", was.AccountID,
		"actor", actorOf(r.Context()), "correlation_id", correlationID(r.Context()))
	v, err := s.taskView(r, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// Limits of a task list's q filter.
const maxQueryRunes = 200

var taskStatuses = map[string]bool{store.StatusPending: true, store.StatusProcessing: true, store.StatusDone: true, store.StatusFailed: true}

// listFilter reads the filters GET /tasks and GET /gallery share: model,
// type, q, limit (1-100, default 50) and cursor, and status when
// withStatus. A value that is not valid is validation_failed naming it.
func (s *Server) listFilter(q url.Values, withStatus bool) (store.TaskFilter, error) {
	f := store.TaskFilter{Limit: 50}
	one := func(name string) (string, bool, error) {
		v, ok := q[name]
		if !ok {
			return "", false, nil
		}
		if len(v) != 1 {
			return "", false, apierr.Validation(name, name+" must be given once")
		}
		return v[0], true, nil
	}
	if v, ok := q["limit"]; ok {
		n, err := parseIntParam(v, 1, 100)
		if err != nil {
			return f, apierr.Validation("limit", "limit must be a whole number from 1 to 100")
		}
		f.Limit = n
	}
	cursor, _, err := one("cursor")
	if err != nil {
		return f, err
	}
	if cursor != "" && !store.IsID(cursor) {
		return f, apierr.Validation("cursor", "cursor is not one this server gave out")
	}
	f.Cursor = cursor
	if withStatus {
		st, ok, err := one("status")
		if err != nil {
			return f, err
		}
		if ok {
			for _, part := range strings.Split(st, ",") {
				part = strings.TrimSpace(part)
				if !taskStatuses[part] {
					return f, apierr.Validation("status", "status must be a comma-separated list of pending, processing, done and failed")
				}
				f.Statuses = append(f.Statuses, part)
			}
		}
	}
	if m, ok, err := one("model"); err != nil {
		return f, err
	} else if ok {
		model, found := s.cfg.Catalog.Lookup(m)
		if !found {
			return f, apierr.Validation("model", "model is not in the catalog")
		}
		f.Model = model.ID
	}
	if t, ok, err := one("type"); err != nil {
		return f, err
	} else if ok {
		known := false
		for _, m := range s.cfg.Catalog.Models {
			known = known || m.Type == t
		}
		if !known {
			return f, apierr.Validation("type", "type must be a type of a catalog model (image or video)")
		}
		f.Type = t
	}
	if text, ok, err := one("q"); err != nil {
		return f, err
	} else if ok && strings.TrimSpace(text) != "" {
		if !utf8.ValidString(text) || utf8.RuneCountInString(text) > maxQueryRunes {
			return f, apierr.Validation("q", fmt.Sprintf("q must be text of at most %d characters", maxQueryRunes))
		}
		words := store.QueryWords(text)
		if len(words) == 0 || len(words) > store.MaxQueryWords {
			return f, apierr.Validation("q", fmt.Sprintf("q must hold 1 to %d words of letters or digits", store.MaxQueryWords))
		}
		f.Query = text
	}
	return f, nil
}

// maxTotal bounds the count ?total=1 asks for: beyond it the answer is
// maxTotal with total_capped true, so a count costs about what a page does
// at any table size (docs/PERFORMANCE.md).
const maxTotal = 500

// totalParam reads ?total= of GET /gallery and /tasks: "1" asks for the
// count of matches; absent or "0" does not.
func totalParam(q url.Values) (bool, error) {
	v, ok := q["total"]
	if !ok {
		return false, nil
	}
	if len(v) != 1 || (v[0] != "0" && v[0] != "1") {
		return false, apierr.Validation("total", "total must be given once, as 1 (count the matches) or 0")
	}
	return v[0] == "1", nil
}

// handleTasks answers GET /tasks: tasks of every status, newest first,
// filtered and paged like the gallery (CONTRACT section 12).
func (s *Server) handleTasks(w http.ResponseWriter, r *http.Request) error {
	f, err := s.listFilter(r.URL.Query(), true)
	if err != nil {
		return err
	}
	return s.writeTaskPage(w, r, f)
}

func (s *Server) writeTaskPage(w http.ResponseWriter, r *http.Request, f store.TaskFilter) error {
	wantTotal, err := totalParam(r.URL.Query())
	if err != nil {
		return err
	}
	items, next, err := s.cfg.DB.ListTasks(r.Context(), f)
	if err != nil {
		return apierr.Internal(err)
	}
	page := galleryPage{Items: make([]*TaskView, 0, len(items))}
	if wantTotal {
		n, more, err := s.cfg.DB.CountTasks(r.Context(), f, maxTotal)
		if err != nil {
			return apierr.Internal(err)
		}
		page.Total, page.TotalCapped = &n, &more
	}
	for _, t := range items {
		v, err := s.liveView(r.Context(), t)
		if err != nil {
			return err
		}
		page.Items = append(page.Items, v)
	}
	if next != "" {
		page.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// allEventsPing is how often GET /events sends a comment when nothing
// changes (CONTRACT section 12: at least every 15 s); tests shorten it.
var allEventsPing = eventsPing

// handleAllEvents answers GET /events: every changed task view as an event
// named task, a ping comment every 15 s, under the same stream limits and
// credential recheck as GET /events/{task_id}.
func (s *Server) handleAllEvents(w http.ResponseWriter, r *http.Request) error {
	release, err := s.streams.acquire(actorOf(r.Context()), clientKey(s.clientIP(r)))
	if err != nil {
		return err
	}
	defer release()
	sub, unsubscribe := s.events.subscribeAll()
	defer unsubscribe()
	st := startSSE(w, r)
	if !st.write("retry: 2000\n: connected\n\n") {
		return nil
	}
	pumpSSE(s, st, allEventsPing, sub.c, func(msg []byte, ok bool) bool {
		// Not ok: too far behind; end, so the client reconnects and reloads.
		return ok && st.write("event: task\ndata: %s\n\n", msg)
	})
	return nil
}

// syncDir makes a directory's new entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
