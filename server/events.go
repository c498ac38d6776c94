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
	feed, unwatch := s.events.watch(id)
	defer unwatch()

	st := startSSE(w, r)
	if !st.write("retry: 2000\n") {
		return nil
	}
	last, _ := json.Marshal(v)
	if !st.write("event: task\ndata: %s\n\n", last) {
		return nil
	}
	if v.Status == store.StatusDone || v.Status == store.StatusFailed {
		return nil
	}
	pumpSSE(s, st, eventsPing, feed.c, func(struct{}, bool) bool {
		view, terminal, err := feed.take()
		if err != nil {
			// Deleted under us or the store failed: end the stream with an error event.
			st.endWith(err)
			return false
		}
		if !bytes.Equal(view, last) {
			last = view
			if !st.write("event: task\ndata: %s\n\n", view) {
				return false
			}
		}
		return !terminal
	})
	return nil
}

// sseStream is one open server-sent-events answer (text/event-stream,
// WHATWG HTML "Server-sent events"): headers sent, the server's read timeout
// lifted (the stream lives as long as its subject), a write deadline per
// event, so a client that stops reading is let go.
type sseStream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	r  *http.Request
}

// startSSE sends the headers of an event stream and answers 200.
func startSSE(w http.ResponseWriter, r *http.Request) *sseStream {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	st := &sseStream{w: w, rc: http.NewResponseController(w), r: r}
	_ = st.rc.SetReadDeadline(time.Time{})
	return st
}

// write sends one formatted piece and flushes it; false when the client is gone.
func (st *sseStream) write(format string, args ...any) bool {
	_ = st.rc.SetWriteDeadline(time.Now().Add(eventsWriteIdle))
	if _, err := fmt.Fprintf(st.w, format, args...); err != nil {
		return false
	}
	return st.rc.Flush() == nil
}

// endWith sends err as an event named error carrying the contract's error body.
func (st *sseStream) endWith(err error) {
	e := apierr.From(err)
	b, _ := json.Marshal(errorBody{Error: errorPayload{Code: e.Code, Message: e.Message, CorrelationID: correlationID(st.r.Context())}})
	st.write("event: error\ndata: %s\n\n", b)
}

// pumpSSE runs a stream until the client leaves, a write fails, on returns
// false, the server shuts down (EndStreams), or the credential that opened
// it is no longer valid (rechecked every authCheckEvery; a revoked session
// or rotated-out key ends it with an error event). It sends a ping comment
// every ping and calls on for each value received from c (ok false when c
// is closed).
func pumpSSE[T any](s *Server, st *sseStream, ping time.Duration, c <-chan T, on func(v T, ok bool) bool) {
	pings := time.NewTicker(ping)
	defer pings.Stop()
	auth := time.NewTicker(s.authCheckEvery())
	defer auth.Stop()
	for {
		select {
		case <-st.r.Context().Done():
			return
		case <-s.shutdown:
			return
		case <-pings.C:
			if !st.write(": ping\n\n") {
				return
			}
		case <-auth.C:
			if _, err := s.userActor(st.r); err != nil {
				st.endWith(err)
				return
			}
		case v, ok := <-c:
			if !on(v, ok) {
				return
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
