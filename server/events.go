package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"gooni/store"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"gooni/server/apierr"
)

// The event hub re-reads each watched task this often, for the fields a
// view computes (hub.go); streams ping proxies, recheck their credential
// (CONTRACT section 18), and give a client that stops reading this long to
// take a write.
const (
	eventsRefresh   = 2 * time.Second
	eventsPing      = 15 * time.Second
	eventsAuthCheck = 30 * time.Second
	eventsWriteIdle = 30 * time.Second
)

// handleEvents streams the task view on every change until it is terminal.
// The views come from the event hub (one read per change, whoever watches).
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["task_id"]
	v, err := s.taskView(r, id)
	if err != nil {
		return err
	}
	release, err := s.streams.acquire(actorOf(r.Context()), clientKey(s.clientIP(r)))
	if err != nil {
		return err
	}
	defer release()
	rc := http.NewResponseController(w)
	feed, unwatch := s.events.watch(id)
	defer unwatch()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The stream lives as long as the task runs: the server's read timeout
	// (which would cancel the request context) does not apply; each write
	// gets its own deadline, so a client that stops reading is let go.
	_ = rc.SetReadDeadline(time.Time{})
	write := func(format string, args ...any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(eventsWriteIdle))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	endWith := func(err error) {
		e := apierr.From(err)
		b, _ := json.Marshal(errorBody{Error: errorPayload{Code: e.Code, Message: e.Message, CorrelationID: correlationID(r.Context())}})
		write("event: error\ndata: %s\n\n", b)
	}
	if !write("retry: 2000\n") {
		return nil
	}
	last, _ := json.Marshal(v)
	if !write("event: task\ndata: %s\n\n", last) {
		return nil
	}
	if v.Status == store.StatusDone || v.Status == store.StatusFailed {
		return nil
	}
	ping := time.NewTicker(eventsPing)
	defer ping.Stop()
	auth := time.NewTicker(s.authCheckEvery())
	defer auth.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-ping.C:
			if !write(": ping\n\n") {
				return nil
			}
		case <-auth.C:
			// A revoked or expired session (or a rotated-out key) ends the stream.
			if _, err := s.userActor(r); err != nil {
				endWith(err)
				return nil
			}
		case <-feed.c:
			view, terminal, err := feed.take()
			if err != nil {
				// Deleted under us or the store failed: end the stream with an error event.
				endWith(err)
				return nil
			}
			if !bytes.Equal(view, last) {
				last = view
				if !write("event: task\ndata: %s\n\n", view) {
					return nil
				}
			}
			if terminal {
				return nil
			}
		}
	}
}

func (s *Server) authCheckEvery() time.Duration {
	if s.cfg.StreamAuthCheck > 0 {
		return s.cfg.StreamAuthCheck
	}
	return eventsAuthCheck
}
