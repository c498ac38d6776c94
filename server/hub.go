package server

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"gooni/store"
)

// eventHub feeds every open event stream from one reader. Each committed
// task change (store.ListenTasks) that someone listens for is read once, as
// a task view, and the same JSON goes to every GET /events stream and to
// every GET /events/{id} stream of that task: the cost of a change does not
// grow with the streams watching it, and no stream reads the store itself.
//
// The fields a view computes rather than stores (queue_position,
// eta_seconds) also change when other tasks move and as time passes, which
// no change of this task signals; so every refresh period the hub re-reads
// each watched task once (one read per task, not per stream) and sends it
// where it differs from the last view a stream sent. A GET /events stream
// gets only committed changes, as before.
//
// A goroutine loads while changes wait and another refreshes while a task
// is watched; neither runs when nobody listens.
type eventHub struct {
	load    func(id string) (view []byte, terminal bool, err error)
	refresh time.Duration

	mu      sync.Mutex
	global  map[*allSub]struct{}
	watched map[string]map[*taskSub]struct{}
	dirty   map[string]uint8 // ids waiting for a load, and for whom
	order   []string         // the same ids, oldest change first
	loads   uint64           // loads started so far
	loading bool
	ticking bool
}

// Whom a load is for.
const (
	forGlobal uint8 = 1 << iota // GET /events streams: a committed change
	forTask                     // GET /events/{id} streams of the task
)

// allSub is one GET /events stream: the views to send, in order; closed
// when the stream fell allBuffer views behind.
type allSub struct{ c chan []byte }

// allBuffer is how many events a global stream may be behind.
const allBuffer = 256

// taskSub is one GET /events/{id} stream. Only the newest view matters to
// it, so the hub replaces what it has not sent yet and never blocks on it.
type taskSub struct {
	after uint64        // loads started before it subscribed are not for it
	c     chan struct{} // capacity 1: "a newer view is waiting"

	mu       sync.Mutex
	view     []byte
	terminal bool
	err      error
}

func newEventHub(load func(id string) ([]byte, bool, error), refresh time.Duration) *eventHub {
	return &eventHub{load: load, refresh: refresh, global: map[*allSub]struct{}{},
		watched: map[string]map[*taskSub]struct{}{}, dirty: map[string]uint8{}}
}

// notify records a committed change of task id; it never blocks (it runs on
// the store's committing goroutine) and does nothing when nobody listens.
func (h *eventHub) notify(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var f uint8
	if len(h.global) > 0 {
		f |= forGlobal
	}
	if h.watched[id] != nil {
		f |= forTask
	}
	if f != 0 {
		h.markLocked(id, f)
	}
}

func (h *eventHub) markLocked(id string, f uint8) {
	if h.dirty[id] == 0 {
		h.order = append(h.order, id)
	}
	h.dirty[id] |= f
	if !h.loading {
		h.loading = true
		go h.run()
	}
}

// run loads each waiting id once and hands the view to its listeners. One
// goroutine loads, so the views of one task reach a stream in the order
// they were read.
func (h *eventHub) run() {
	for {
		h.mu.Lock()
		if len(h.order) == 0 {
			h.loading = false
			h.mu.Unlock()
			return
		}
		ids, flags := h.order, h.dirty
		h.order, h.dirty = nil, map[string]uint8{}
		h.mu.Unlock()
		for _, id := range ids {
			h.mu.Lock()
			h.loads++
			seq := h.loads
			h.mu.Unlock()
			view, terminal, err := h.load(id)
			f := flags[id]
			h.mu.Lock()
			if f&forGlobal != 0 && err == nil {
				for sub := range h.global {
					select {
					case sub.c <- view:
					default:
						close(sub.c)
						delete(h.global, sub)
					}
				}
			}
			if f&forTask != 0 {
				for sub := range h.watched[id] {
					if seq > sub.after {
						sub.put(view, terminal, err)
					}
				}
			}
			h.mu.Unlock()
		}
	}
}

// tick marks every watched task for a re-read each refresh period, while
// any is watched.
func (h *eventHub) tick() {
	t := time.NewTicker(h.refresh)
	defer t.Stop()
	for range t.C {
		h.mu.Lock()
		if len(h.watched) == 0 {
			h.ticking = false
			h.mu.Unlock()
			return
		}
		for id := range h.watched {
			h.markLocked(id, forTask)
		}
		h.mu.Unlock()
	}
}

// subscribeAll opens a GET /events stream's feed.
func (h *eventHub) subscribeAll() (*allSub, func()) {
	sub := &allSub{c: make(chan []byte, allBuffer)}
	h.mu.Lock()
	h.global[sub] = struct{}{}
	h.mu.Unlock()
	return sub, func() {
		h.mu.Lock()
		delete(h.global, sub)
		h.mu.Unlock()
	}
}

// watch opens a GET /events/{id} stream's feed. The caller has read the
// task already; the hub reads it once more after this subscription, so a
// change committed in between is not missed, and no view read before the
// subscription ever reaches the stream (views of a task never go back).
func (h *eventHub) watch(id string) (*taskSub, func()) {
	sub := &taskSub{c: make(chan struct{}, 1)}
	h.mu.Lock()
	sub.after = h.loads
	subs := h.watched[id]
	if subs == nil {
		subs = map[*taskSub]struct{}{}
		h.watched[id] = subs
	}
	subs[sub] = struct{}{}
	h.markLocked(id, forTask)
	if !h.ticking {
		h.ticking = true
		go h.tick()
	}
	h.mu.Unlock()
	return sub, func() {
		h.mu.Lock()
		delete(subs, sub)
		if len(subs) == 0 && h.watched[id] != nil && len(h.watched[id]) == 0 {
			delete(h.watched, id)
		}
		h.mu.Unlock()
	}
}

func (s *taskSub) put(view []byte, terminal bool, err error) {
	s.mu.Lock()
	s.view, s.terminal, s.err = view, terminal, err
	s.mu.Unlock()
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// take returns the newest view (or the error that ends the stream).
func (s *taskSub) take() ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view, s.terminal, s.err
}

// loadView is the hub's read of one task: its view as JSON and whether it
// is terminal; store.ErrNotFound (as task_not_found) when it is gone.
func (s *Server) loadView(id string) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t, err := s.cfg.DB.GetTask(ctx, id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("events: read a changed task", "task_id", id, "err", err)
		}
		return nil, false, taskErr(err)
	}
	v, err := s.liveView(ctx, t)
	if err != nil {
		s.log.Warn("events: build a task view", "task_id", id, "err", err)
		return nil, false, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false, err
	}
	return b, t.Status == store.StatusDone || t.Status == store.StatusFailed, nil
}
