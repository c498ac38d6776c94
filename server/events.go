package server

import (
	"encoding/json"
	"fmt"
	"gooni/store"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"gooni/server/apierr"
)

// Hub fans "task changed" signals out to the event streams watching a task.
// It holds no state of its own: a stream re-reads the task from the store.
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[string]map[chan struct{}]struct{}{}} }

// Notify wakes every stream of task id; it never blocks.
func (h *Hub) Notify(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs[id] {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (h *Hub) subscribe(id string) (chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[id] == nil {
		h.subs[id] = map[chan struct{}]struct{}{}
	}
	h.subs[id][c] = struct{}{}
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		delete(h.subs[id], c)
		if len(h.subs[id]) == 0 {
			delete(h.subs, id)
		}
		h.mu.Unlock()
	}
}

// Event streams re-read the task at least this often, even without a
// signal; ping proxies; recheck their credential (CONTRACT section 18); and
// give a client that stops reading this long to take a write.
const (
	eventsRecheck   = 2 * time.Second
	eventsPing      = 15 * time.Second
	eventsAuthCheck = 30 * time.Second
	eventsWriteIdle = 30 * time.Second
)

// handleEvents streams the task view on every change until it is terminal.
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
	changed, unsubscribe := s.hub.subscribe(id)
	defer unsubscribe()

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
	send := func(v *TaskView) bool {
		b, _ := json.Marshal(v)
		return write("event: task\ndata: %s\n\n", b)
	}
	endWith := func(err error) {
		e := apierr.From(err)
		b, _ := json.Marshal(errorBody{Error: errorPayload{Code: e.Code, Message: e.Message, CorrelationID: correlationID(r.Context())}})
		write("event: error\ndata: %s\n\n", b)
	}
	if !write("retry: 2000\n") {
		return nil
	}
	if !send(v) {
		return nil
	}
	last, _ := json.Marshal(v)
	recheck := time.NewTicker(eventsRecheck)
	defer recheck.Stop()
	ping := time.NewTicker(eventsPing)
	defer ping.Stop()
	auth := time.NewTicker(s.authCheckEvery())
	defer auth.Stop()
	for v.Status != store.StatusDone && v.Status != store.StatusFailed {
		select {
		case <-r.Context().Done():
			return nil
		case <-ping.C:
			if !write(": ping\n\n") {
				return nil
			}
			continue
		case <-auth.C:
			// A revoked or expired session (or a rotated-out key) ends the stream.
			if _, err := s.userActor(r); err != nil {
				endWith(err)
				return nil
			}
			continue
		case <-changed:
		case <-recheck.C:
		}
		nv, err := s.taskView(r, id)
		if err != nil {
			// Deleted under us or the store failed: end the stream with an error event.
			endWith(err)
			return nil
		}
		b, _ := json.Marshal(nv)
		v = nv
		if string(b) == string(last) {
			continue
		}
		last = b
		if !send(v) {
			return nil
		}
	}
	return nil
}

func (s *Server) authCheckEvery() time.Duration {
	if s.cfg.StreamAuthCheck > 0 {
		return s.cfg.StreamAuthCheck
	}
	return eventsAuthCheck
}
