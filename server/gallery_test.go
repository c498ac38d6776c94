package server

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"gooni/store"
)

// TestGalleryTotal: ?total=1 on GET /gallery and GET /tasks adds the count
// of matches for the same filters, exact up to 500, then 500 and
// total_capped; without it the answer has no total; a bad value is
// validation_failed naming total.
func TestGalleryTotal(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 1203
	err := e.db.SeedTasks(ctx, n, func(i int) store.Task {
		c := first.Add(time.Duration(i) * time.Second)
		t := store.Task{ID: store.IDAt(c), Type: "image", Model: "flux", Mode: "t2i", Status: "done", Progress: 100,
			Prompt: fmt.Sprintf("a fox in the snow, take %d", i), CreatedAt: c, StartedAt: c, CompletedAt: c.Add(time.Second)}
		switch {
		case i%10 == 3:
			t.Status, t.Progress, t.ErrorCode, t.ErrorMessage = "failed", 20, "worker_error", "broken"
		case i%100 == 7:
			t.Model, t.Type, t.Mode, t.Prompt = "anisora", "video", "t2v", fmt.Sprintf("a lighthouse in a storm, take %d", i)
		}
		return t
	})
	if err != nil {
		t.Fatal(err)
	}
	// by construction: 120 failed (i%10 == 3), 12 done anisora (i%100 == 7), 1071 done flux
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	type page struct {
		Items       []TaskView `json:"items"`
		Total       *int       `json:"total"`
		TotalCapped *bool      `json:"total_capped"`
	}
	for _, c := range []struct {
		path   string
		total  int
		capped bool
	}{
		{"/gallery?total=1", 500, true},
		{"/gallery?total=1&model=anisora", 12, false},
		{"/gallery?total=1&type=video", 12, false},
		{"/gallery?total=1&q=lighthouse+storm", 12, false},
		{"/gallery?total=1&q=take+1100", 1, false},
		{"/gallery?total=1&q=zebra", 0, false},
		{"/gallery?total=1&model=flux&limit=2&cursor=" + store.IDAt(first.Add(50*time.Second)), 500, true},
		{"/tasks?total=1&status=failed", 120, false},
		{"/tasks?total=1&status=done,failed&model=anisora", 12, false},
		{"/tasks?total=1", 500, true},
		{"/tasks?total=1&status=failed,pending", 120, false},
	} {
		w := e.do(req{method: "GET", path: c.path, header: key})
		if w.Code != 200 {
			t.Fatalf("GET %s: %d %s", c.path, w.Code, w.Body.String())
		}
		var p page
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		if p.Total == nil || p.TotalCapped == nil || *p.Total != c.total || *p.TotalCapped != c.capped {
			t.Errorf("GET %s: total %v capped %v, want %d %v", c.path, p.Total, p.TotalCapped, c.total, c.capped)
		}
		if !c.capped && c.total <= 50 && len(p.Items) != c.total {
			t.Errorf("GET %s: %d items on the page, total says %d", c.path, len(p.Items), c.total)
		}
	}
	for _, path := range []string{"/gallery", "/gallery?total=0", "/tasks?status=failed"} {
		w := e.do(req{method: "GET", path: path, header: key})
		var raw map[string]json.RawMessage
		json.Unmarshal(w.Body.Bytes(), &raw)
		if _, ok := raw["total"]; w.Code != 200 || ok {
			t.Errorf("GET %s: %d, total present %v", path, w.Code, ok)
		}
	}
	for _, path := range []string{"/gallery?total=yes", "/gallery?total=1&total=1", "/tasks?total=2"} {
		w := e.do(req{method: "GET", path: path, header: key})
		var b struct {
			Error struct {
				Code    string
				Details struct{ Field string }
			}
		}
		json.Unmarshal(w.Body.Bytes(), &b)
		if w.Code != 400 || b.Error.Code != "validation_failed" || b.Error.Details.Field != "total" {
			t.Errorf("GET %s: %d %s, want 400 validation_failed on total", path, w.Code, w.Body.String())
		}
	}
}
