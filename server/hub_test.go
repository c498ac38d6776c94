package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gooni/internal/testutil"
)

// countingLoads wraps the hub's loader to count reads per task id.
type countingLoads struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingLoads) wrap(load func(string) ([]byte, bool, error)) func(string) ([]byte, bool, error) {
	c.n = map[string]int{}
	return func(id string) ([]byte, bool, error) {
		c.mu.Lock()
		c.n[id]++
		c.mu.Unlock()
		return load(id)
	}
}

func (c *countingLoads) of(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

// recv waits for one value from c, failing the test after 10 s.
func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("nothing came: %s", what)
	}
	panic("unreachable")
}

// TestEventHubOneReadPerChangeForEveryStream: a change of a task that
// global streams and several streams of that task watch is read once, and
// every one of them gets that view.
func TestEventHubOneReadPerChangeForEveryStream(t *testing.T) {
	var loads atomic.Int64
	release := make(chan struct{})
	h := newEventHub(func(id string) ([]byte, bool, error) {
		<-release
		loads.Add(1)
		return []byte("view of " + id), false, nil
	}, time.Hour)
	var feeds []*taskSub
	for range 5 {
		f, stop := h.watch("a")
		t.Cleanup(stop)
		feeds = append(feeds, f)
	}
	global, _ := h.subscribeAll()
	close(release)
	// The watches asked for one read after they began: wait for it.
	for _, f := range feeds {
		recv(t, f.c, "the read a watch asks for")
	}
	before := loads.Load()
	h.notify("a")
	if got := string(recv(t, global.c, "the global view")); got != "view of a" {
		t.Fatalf("global stream got %q", got)
	}
	for i, f := range feeds {
		recv(t, f.c, "the task view")
		if v, _, err := f.take(); string(v) != "view of a" || err != nil {
			t.Fatalf("stream %d got %q %v", i, v, err)
		}
	}
	if n := loads.Load() - before; n != 1 {
		t.Errorf("%d reads for one change watched by 5 task streams and a global one", n)
	}
	h.notify("b") // nobody watches b: no read for task streams, one for the global
	if got := string(recv(t, global.c, "the global view of b")); got != "view of b" {
		t.Fatalf("global stream got %q", got)
	}
}

// TestEventHubNeverSendsAViewReadBeforeTheWatch: a read that began before a
// stream subscribed may hold an older state than the stream's own first
// read; it must not reach the stream (a view never goes back), and the
// read the watch asks for must.
func TestEventHubNeverSendsAViewReadBeforeTheWatch(t *testing.T) {
	state := atomic.Value{}
	state.Store("old")
	started := make(chan struct{}, 8)
	gates := []chan struct{}{make(chan struct{}), make(chan struct{})}
	var calls atomic.Int64
	h := newEventHub(func(id string) ([]byte, bool, error) {
		v := state.Load().(string) // the read
		gate := gates[min(calls.Add(1)-1, 1)]
		started <- struct{}{}
		<-gate
		return []byte(v), false, nil
	}, time.Hour)
	_, stopA := h.watch("a") // someone else watches: a read of "old" begins
	defer stopA()
	recv(t, started, "the first read")
	state.Store("new") // committed; the new stream's own read sees "new"
	feed, stop := h.watch("a")
	defer stop()
	close(gates[0])
	// The second read starts only once the first was handed out.
	recv(t, started, "the read the new watch asked for")
	select {
	case <-feed.c:
		v, _, _ := feed.take()
		t.Fatalf("the stream got %q, a view read before it subscribed", v)
	default:
	}
	close(gates[1])
	recv(t, feed.c, "the read after the watch")
	if v, _, _ := feed.take(); string(v) != "new" {
		t.Fatalf("the stream got %q", v)
	}
}

// TestEventHubRefreshReadsEachWatchedTaskOnce: the refresh re-reads every
// watched task once a period whatever its number of streams, and stops
// when nothing is watched.
func TestEventHubRefreshReadsEachWatchedTaskOnce(t *testing.T) {
	var c countingLoads
	h := newEventHub(c.wrap(func(id string) ([]byte, bool, error) { return []byte(id), false, nil }), 10*time.Millisecond)
	var stops []func()
	for range 4 {
		_, stop := h.watch("busy")
		stops = append(stops, stop)
	}
	_, stop := h.watch("quiet")
	stops = append(stops, stop)
	testutil.WaitFor(t, 10*time.Second, "ten refreshes", func() bool { return c.of("quiet") >= 10 })
	busy, quiet := c.of("busy"), c.of("quiet")
	if busy > quiet+2 || busy < quiet-2 {
		t.Errorf("a task with 4 streams was read %d times, one with 1 stream %d times", busy, quiet)
	}
	for _, s := range stops {
		s()
	}
	testutil.WaitFor(t, 10*time.Second, "the refresh to stop", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return !h.ticking && !h.loading && len(h.watched) == 0
	})
}

// TestTaskStreamsFollowEveryChange: streams of one task see each committed
// change (each waited for before the next), with one read per change for
// all of them, and a queue_position that changes because another task was
// handed out (no change of their own task) arrives through the refresh.
func TestTaskStreamsFollowEveryChange(t *testing.T) {
	e := newEnv(t)
	var loads countingLoads
	e.srv.events.load = loads.wrap(e.srv.loadView)
	e.srv.events.refresh = 50 * time.Millisecond
	acc := e.readyAccount()
	ahead := e.task("pending", 0)
	task := e.task("pending", 0)
	hs := httptest.NewServer(e.h)
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	const streams = 3
	var views [streams]<-chan sseEvent
	for i := range views {
		r, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/events/"+task.ID, nil)
		r.Header.Set("X-API-Key", e.sec.APIKey)
		resp, err := http.DefaultClient.Do(r)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream %d: %v %v", i, err, resp)
		}
		t.Cleanup(func() { resp.Body.Close() })
		views[i] = readEvents(resp.Body)
	}
	// waitAll reads each stream until a view satisfies ok.
	waitAll := func(what string, ok func(TaskView) bool) {
		t.Helper()
		for i, ch := range views {
			deadline := time.After(10 * time.Second)
			for done := false; !done; {
				select {
				case ev, open := <-ch:
					if !open {
						t.Fatalf("stream %d ended before %s", i, what)
					}
					var v TaskView
					if ev.name == "task" && json.Unmarshal([]byte(ev.data), &v) == nil && ok(v) {
						done = true
					}
				case <-deadline:
					t.Fatalf("stream %d never saw %s", i, what)
				}
			}
		}
	}
	pos := func(n int) func(TaskView) bool {
		return func(v TaskView) bool { return v.QueuePosition != nil && *v.QueuePosition == n }
	}
	waitAll("queue_position 2", pos(2))
	// Another task is handed out: only the refresh can tell these streams.
	if _, err := e.db.ClaimTask(context.Background(), ahead.ID, acc.ID); err != nil {
		t.Fatal(err)
	}
	waitAll("queue_position 1", pos(1))
	steps := []struct {
		what string
		do   func() error
		ok   func(TaskView) bool
	}{
		{"handed out (position 0)", func() error { _, err := e.db.ClaimTask(ctx, task.ID, acc.ID); return err }, pos(0)},
		{"processing", func() error { _, err := e.db.StartTask(ctx, task.ID, acc.ID); return err },
			func(v TaskView) bool { return v.Status == "processing" }},
		{"progress 30", func() error { return e.db.SetProgress(ctx, task.ID, 30) }, func(v TaskView) bool { return v.Progress == 30 }},
		{"progress 60", func() error { return e.db.SetProgress(ctx, task.ID, 60) }, func(v TaskView) bool { return v.Progress == 60 }},
		{"failed", func() error { return e.db.FailTask(ctx, task.ID, "worker_error", "boom") }, func(v TaskView) bool { return v.Status == "failed" }},
	}
	for _, st := range steps {
		before, start := loads.of(task.ID), time.Now()
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		waitAll(st.what, st.ok)
		// One read for the change and one a refresh (a slow machine may
		// see several while the step runs), plus one refresh begun before
		// it: not one per stream, which would be 3 for the change and 3 a
		// refresh.
		n := loads.of(task.ID) - before
		refreshes := int(time.Since(start) / e.srv.events.refresh)
		if n > 2+refreshes {
			t.Errorf("%s: %d reads for %d streams in %d whole refresh periods", st.what, n, streams, refreshes)
		}
	}
	for i, ch := range views {
		select {
		case _, open := <-ch:
			for open {
				_, open = <-ch
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d still open after the terminal view", i)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "the streams to leave the hub", func() bool {
		e.srv.events.mu.Lock()
		defer e.srv.events.mu.Unlock()
		return len(e.srv.events.watched) == 0
	})
}
