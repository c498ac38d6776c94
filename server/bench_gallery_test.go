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

// BenchmarkGallery measures the Gallery's requests at 100k tasks (a tenth
// failed, four models, prompts from a ten-word vocabulary plus a number)
// through the whole handler, one at a time, as the UI sends them: a page of
// 24 with ?total=1 (the count of matches, capped at 500), filtered by
// model, type and prompt words, and a deep page. The exact_* cases time an
// uncapped store count, the alternative the cap avoids. Each reports its
// median and p99 as p50-ms and p99-ms (docs/PERFORMANCE.md).
func BenchmarkGallery(b *testing.B) {
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
			Params:    []byte(`{"width":1024,"height":1024,"steps":28,"guidance":3.5,"seed":1234}`),
			CreatedAt: c, StartedAt: c, CompletedAt: c.Add(3 * time.Second),
			ResultPath: "media/x.png", ResultType: "image/png", PreviewPath: "media/x.preview.png", PreviewType: "image/png"}
		if i%10 == 7 {
			t.Status, t.Progress, t.ErrorCode, t.ErrorMessage = "failed", 50, "worker_error", "simulated failure"
			t.ResultPath, t.ResultType, t.PreviewPath, t.PreviewType = "", "", "", ""
		}
		return t
	})
	if err != nil {
		b.Fatal(err)
	}
	// a cursor 500 pages of 24 deep
	deep := ""
	for range 500 {
		items, next, err := e.db.ListTasks(ctx, store.TaskFilter{Statuses: []string{store.StatusDone}, Cursor: deep, Limit: 24})
		if err != nil || len(items) == 0 {
			b.Fatal(err)
		}
		deep = next
	}
	key := e.sec.APIKey
	time1 := func(b *testing.B, run func() error) {
		var d []time.Duration
		for b.Loop() {
			start := time.Now()
			if err := run(); err != nil {
				b.Fatal(err)
			}
			d = append(d, time.Since(start))
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1000, "p99-ms")
	}
	for _, c := range []struct{ name, path string }{
		{"page", "/gallery?limit=24"},
		{"page_total", "/gallery?limit=24&total=1"},
		{"page_500_deep", "/gallery?limit=24&cursor=" + deep},
		{"model_total", "/gallery?limit=24&total=1&model=pony"},
		{"type_total", "/gallery?limit=24&total=1&type=video"},
		{"q_common_total", "/gallery?limit=24&total=1&q=lighthouse"},
		{"q_two_words", "/gallery?limit=24&q=lighthouse+storm"},
		{"q_two_words_total", "/gallery?limit=24&total=1&q=lighthouse+storm"},
		{"q_rare_total", "/gallery?limit=24&total=1&q=take+99999"},
		{"q_none_total", "/gallery?limit=24&total=1&q=zebra"},
		{"q_model", "/gallery?limit=24&q=fox&model=anisora"},
		{"q_model_total", "/gallery?limit=24&total=1&q=fox&model=anisora"},
	} {
		b.Run(c.name, func(b *testing.B) {
			time1(b, func() error {
				r := httptest.NewRequest("GET", c.path, nil)
				r.Header.Set("X-API-Key", key)
				w := httptest.NewRecorder()
				e.h.ServeHTTP(w, r)
				if w.Code != 200 || w.Body.Len() < 20 {
					return fmt.Errorf("%s: %d %.200s", c.path, w.Code, w.Body.String())
				}
				return nil
			})
		})
	}
	done := []string{store.StatusDone}
	for _, c := range []struct {
		name string
		f    store.TaskFilter
	}{
		{"exact_count_all", store.TaskFilter{Statuses: done}},
		{"exact_count_q_common", store.TaskFilter{Statuses: done, Query: "lighthouse"}},
		{"exact_count_type", store.TaskFilter{Statuses: done, Type: "video"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			time1(b, func() error {
				_, _, err := e.db.CountTasks(ctx, c.f, 0)
				return err
			})
		})
	}
}
