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

// Event streams re-read the task at least this often, even without a signal.
const (
	eventsRecheck = 2 * time.Second
	eventsPing    = 15 * time.Second
)

// handleEvents streams the task view on every change until it is terminal.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["task_id"]
	v, err := s.taskView(r, id)
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	changed, unsubscribe := s.hub.subscribe(id)
	defer unsubscribe()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The stream lives as long as the task runs: neither the server's read
	// timeout (which would cancel the request context) nor a write timeout applies.
	_ = rc.SetWriteDeadline(time.Time{})
	_ = rc.SetReadDeadline(time.Time{})

	send := func(v *TaskView) bool {
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "event: task\ndata: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if _, err := fmt.Fprint(w, "retry: 2000\n"); err != nil {
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
	for v.Status != store.StatusDone && v.Status != store.StatusFailed {
		select {
		case <-r.Context().Done():
			return nil
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return nil
			}
			continue
		case <-changed:
		case <-recheck.C:
		}
		nv, err := s.taskView(r, id)
		if err != nil {
			// Deleted under us or the store failed: end the stream with an error event.
			e := apierr.From(err)
			b, _ := json.Marshal(errorBody{Error: errorPayload{Code: e.Code, Message: e.Message, CorrelationID: correlationID(r.Context())}})
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
			rc.Flush()
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
