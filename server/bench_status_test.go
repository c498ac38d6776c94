package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gooni/internal/testutil"
	"gooni/store"
)

// BenchmarkReadPaths drives the read routes through the whole handler
// (every middleware, the router, auth by X-API-Key, the store), in-process
// and without a network, so a CPU profile shows only the server's work:
//
//	go test ./server -run '^$' -bench BenchmarkReadPaths -benchtime 20000x -cpuprofile /tmp/status.out
//	go tool pprof -top -cum server.test /tmp/status.out
//
// config is the reference (static JSON through the same middleware);
// status_done reads a done task with an API key; status_unknown is the
// error path (a well-formed id that does not exist), route_unknown the
// router's 404 (every route tried).
func BenchmarkReadPaths(b *testing.B) {
	e := newEnv(b)
	e.clock.FollowReal()
	ctx := context.Background()
	now := time.Now().Add(-time.Hour)
	done := store.Task{ID: store.IDAt(now), Type: "image", Model: "flux", Mode: "t2i", Prompt: "a lighthouse on a rocky coast",
		Params: []byte(`{"guidance":3.5,"height":1024,"seed":7,"steps":28,"width":1024}`), Status: store.StatusDone,
		Progress: 100, CreatedAt: now, StartedAt: now.Add(time.Second), CompletedAt: now.Add(4 * time.Second),
		ResultPath: "media/x.png", ResultType: "image/png", PreviewPath: "media/x.preview.png", PreviewType: "image/png"}
	if err := e.db.SeedTasks(ctx, 1, func(int) store.Task { return done }); err != nil {
		b.Fatal(err)
	}
	key := e.sec.APIKey
	for _, c := range []struct {
		name, path string
		code       int
	}{
		{"config", "/config", 200},
		{"status_done", "/status/" + done.ID, 200},
		{"status_unknown", "/status/" + store.IDAt(now.Add(time.Minute)), 404},
		{"route_unknown", "/no/such/route", 404},
	} {
		b.Run(c.name, func(b *testing.B) {
			defer testutil.ReportCPU(b)()
			for b.Loop() {
				r := httptest.NewRequest("GET", c.path, nil)
				r.RemoteAddr = "127.0.0.1:40000"
				r.Header.Set("X-API-Key", key)
				w := httptest.NewRecorder()
				e.h.ServeHTTP(w, r)
				if w.Code != c.code {
					b.Fatalf("%s: %d %.200s", c.path, w.Code, w.Body.String())
				}
			}
		})
	}
}

// BenchmarkStatusQueue reads GET /status/{id} of a pending task (its
// queue_position and eta_seconds computed) with the queue empty but for it,
// and at the back and in the middle of a queue of 100,000 pending tasks;
// a done task of the same model and mode gives the ETA its basis, and a
// ready account its capacity:
//
//	go test ./server -run '^$' -bench BenchmarkStatusQueue -benchtime 20000x
func BenchmarkStatusQueue(b *testing.B) {
	const deep = 100_000
	setup := func(b *testing.B, n int) (*testEnv, []string) {
		e := newEnv(b)
		e.clock.FollowReal()
		ctx := context.Background()
		acc := &store.Account{Name: "gpu", Workspace: "w", BaseURL: "http://127.0.0.1:9", Capacity: 4}
		if err := e.db.CreateAccount(ctx, acc, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := e.db.SetAccountStatus(ctx, acc.ID, store.AccountReady, "", time.Now()); err != nil {
			b.Fatal(err)
		}
		first := time.Now().Add(-48 * time.Hour)
		ids := make([]string, n+1)
		err := e.db.SeedTasks(ctx, n+1, func(i int) store.Task {
			c := first.Add(time.Duration(i) * time.Millisecond)
			t := store.Task{ID: store.IDAt(c), Type: "image", Model: "flux", Mode: "t2i", Prompt: "a lighthouse",
				Params: []byte(`{"seed":7,"steps":28}`), Status: store.StatusPending, CreatedAt: c}
			if i == 0 { // the ETA's basis: one done task of the same kind
				t.Status, t.Progress, t.StartedAt, t.CompletedAt = store.StatusDone, 100, c, c.Add(20*time.Second)
			}
			ids[i] = t.ID
			return t
		})
		if err != nil {
			b.Fatal(err)
		}
		return e, ids[1:]
	}
	read := func(b *testing.B, e *testEnv, id string, wantPos int) {
		path := "/status/" + id
		report := testutil.ReportCPU(b)
		for b.Loop() {
			r := httptest.NewRequest("GET", path, nil)
			r.RemoteAddr = "127.0.0.1:40000"
			r.Header.Set("X-API-Key", e.sec.APIKey)
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("%d %s", w.Code, w.Body.String())
			}
		}
		report()
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("X-API-Key", e.sec.APIKey)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		if want := fmt.Sprintf(`"queue_position":%d,`, wantPos); !strings.Contains(w.Body.String(), want) ||
			!strings.Contains(w.Body.String(), `"eta_seconds":`) || strings.Contains(w.Body.String(), `"eta_seconds":null`) {
			b.Fatalf("want %s and an eta in %s", want, w.Body.String())
		}
	}
	empty, one := setup(b, 1)
	b.Run("empty", func(b *testing.B) { read(b, empty, one[0], 1) })
	full, ids := setup(b, deep)
	b.Run("queue_100k_middle", func(b *testing.B) { read(b, full, ids[deep/2], deep/2+1) })
	b.Run("queue_100k_back", func(b *testing.B) { read(b, full, ids[deep-1], deep) })
	b.Run("empty_again", func(b *testing.B) { read(b, empty, one[0], 1) })
}
