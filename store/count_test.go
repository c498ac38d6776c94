package store

import (
	"fmt"
	"testing"
	"time"
)

// TestCountTasks: the count of each filter is the number of tasks ListTasks
// pages through for it, exact up to the bound, then the bound and more.
func TestCountTasks(t *testing.T) {
	db, _ := openTest(t, testOptions(t))
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	models := []struct{ model, typ, mode string }{{"flux", "image", "t2i"}, {"anisora", "video", "t2v"}, {"pony", "image", "t2i"}}
	statuses := []string{StatusDone, StatusFailed, StatusDone, StatusPending}
	prompts := []string{"A red Lighthouse at dusk", "a blue boat", "Éclair on a red plate", "a fox"}
	const n = 240
	err := db.SeedTasks(bg, n, func(i int) Task {
		m := models[i%3]
		return Task{ID: IDAt(first.Add(time.Duration(i) * time.Second)), Type: m.typ, Model: m.model, Mode: m.mode,
			Prompt: fmt.Sprintf("%s %d", prompts[i%4], i), Status: statuses[(i/4)%4], CreatedAt: first.Add(time.Duration(i) * time.Second)}
	})
	if err != nil {
		t.Fatal(err)
	}
	listed := func(f TaskFilter) int {
		f.Limit = 100
		total := 0
		for {
			items, next, err := db.ListTasks(bg, f)
			if err != nil {
				t.Fatal(err)
			}
			total += len(items)
			if next == "" {
				return total
			}
			f.Cursor = next
		}
	}
	done := []string{StatusDone}
	for _, c := range []struct {
		name string
		f    TaskFilter
		want int // by construction, checked against ListTasks too
	}{
		{"gallery", TaskFilter{Statuses: done}, 120},
		{"everything", TaskFilter{}, n},
		{"gallery by model", TaskFilter{Statuses: done, Model: "anisora"}, 40},
		{"gallery by type", TaskFilter{Statuses: done, Type: "image"}, 80},
		{"gallery q", TaskFilter{Statuses: done, Query: "red"}, 60},
		{"gallery q accents, model and type", TaskFilter{Statuses: done, Query: "ECLAIR", Model: "pony", Type: "image"}, 10},
		{"q whole words only", TaskFilter{Statuses: done, Query: "ligh"}, 0},
		{"two statuses", TaskFilter{Statuses: []string{StatusFailed, StatusPending, StatusFailed}}, 120},
		{"cursor and limit are ignored", TaskFilter{Statuses: done, Cursor: IDAt(first.Add(10 * time.Second)), Limit: 3}, 120},
	} {
		t.Run(c.name, func(t *testing.T) {
			lf := c.f
			lf.Cursor = ""
			if got := listed(lf); got != c.want {
				t.Fatalf("ListTasks pages through %d, the test expects %d", got, c.want)
			}
			for _, upTo := range []int{0, c.want, c.want + 1, 1000} {
				got, more, err := db.CountTasks(bg, c.f, upTo)
				if err != nil || got != c.want || more {
					t.Errorf("CountTasks(upTo %d) = %d, %v, %v; want %d, false", upTo, got, more, err, c.want)
				}
			}
			if c.want > 1 {
				got, more, err := db.CountTasks(bg, c.f, c.want-1)
				if err != nil || got != c.want-1 || !more {
					t.Errorf("CountTasks(upTo %d) = %d, %v, %v; want %d, true", c.want-1, got, more, err, c.want-1)
				}
			}
		})
	}
}
