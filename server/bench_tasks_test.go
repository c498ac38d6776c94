package server

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"gooni/store"
)

// BenchmarkListTasks measures GET /tasks at 100k tasks (a tenth failed,
// prompts from a small vocabulary) through the whole handler: ?q= with two
// words, ?status=failed, and a model filter. It reports the p99 of each
// request as p99-ms (docs/PERFORMANCE.md).
func BenchmarkListTasks(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	first := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	words := []string{"lighthouse", "harbour", "fox", "mountain", "lake", "city", "forest", "boat", "storm", "garden"}
	models := []struct{ id, typ, mode string }{{"flux", "image", "t2i"}, {"pony", "image", "t2i"}, {"anisora", "video", "t2v"}, {"phr00t", "video", "t2v"}}
	const n = 100_000
	err := e.db.SeedTasks(ctx, n, func(i int) store.Task {
		c := first.Add(time.Duration(i) * time.Second)
		m := models[i%len(models)]
		t := store.Task{ID: store.IDAt(c), Type: m.typ, Model: m.id, Mode: m.mode, Status: "done", Progress: 100,
			Prompt:    fmt.Sprintf("a %s by the %s at dusk, take %d", words[i%len(words)], words[(i/10)%len(words)], i),
			CreatedAt: c, StartedAt: c, CompletedAt: c.Add(3 * time.Second)}
		if i%10 == 7 {
			t.Status, t.Progress, t.ErrorCode, t.ErrorMessage = "failed", 50, "worker_error", "simulated failure"
		}
		return t
	})
	if err != nil {
		b.Fatal(err)
	}
	key := e.sec.APIKey
	for _, c := range []struct{ name, path string }{
		{"q", "/tasks?q=lighthouse+storm"},
		{"q_rare", "/tasks?q=take+99999"},
		{"status_failed", "/tasks?status=failed"},
		{"model", "/tasks?model=anisora&status=done"},
		{"status_done_failed", "/tasks?status=done,failed"},
		{"all", "/tasks"},
		{"status_failed_page_500", ""}, // filled below: a deep page
	} {
		path := c.path
		if path == "" {
			// walk 500 pages in to measure a deep keyset page
			items, _, err := e.db.ListTasks(ctx, store.TaskFilter{Statuses: []string{"failed"}, Limit: 100})
			if err != nil || len(items) == 0 {
				b.Fatal(err)
			}
			cursor := items[len(items)-1].ID
			for range 50 {
				items, _, _ = e.db.ListTasks(ctx, store.TaskFilter{Statuses: []string{"failed"}, Cursor: cursor, Limit: 100})
				cursor = items[len(items)-1].ID
			}
			path = "/tasks?status=failed&cursor=" + cursor
		}
		b.Run(c.name, func(b *testing.B) {
			var d []time.Duration
			for b.Loop() {
				r := httptest.NewRequest("GET", path, nil)
				r.Header.Set("X-API-Key", key)
				w := httptest.NewRecorder()
				start := time.Now()
				e.h.ServeHTTP(w, r)
				d = append(d, time.Since(start))
				if w.Code != 200 || w.Body.Len() < 100 {
					b.Fatalf("%s: %d %.200s", path, w.Code, w.Body.String())
				}
			}
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
