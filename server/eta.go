package server

import (
	"context"
	"math"
	"sync"
	"time"

	"gooni/store"
)

// ETA basis (CONTRACT section 12, formula in docs/ARCHITECTURE.md): the mean
// run time of the last etaSamples done tasks of a model and mode, and the
// capacity of the ready accounts, each cached for etaCacheFor.
const (
	etaSamples  = 20
	etaCacheFor = 5 * time.Second
)

// etaEstimator computes eta_seconds for pending and processing views.
type etaEstimator struct {
	db  *store.DB
	now func() time.Time

	mu       sync.Mutex
	runs     map[store.ModelMode]etaRun
	capacity int
	capAt    time.Time
}

type etaRun struct {
	mean  time.Duration // 0 = no basis
	known bool
	at    time.Time
}

func newETA(db *store.DB, now func() time.Time) *etaEstimator {
	return &etaEstimator{db: db, now: now, runs: map[store.ModelMode]etaRun{}}
}

// runTime is the mean run time of recent done tasks of k; false without any.
func (e *etaEstimator) runTime(ctx context.Context, k store.ModelMode) (time.Duration, bool, error) {
	now := e.now()
	e.mu.Lock()
	r, ok := e.runs[k]
	e.mu.Unlock()
	if ok && now.Sub(r.at) < etaCacheFor && now.Sub(r.at) >= 0 {
		return r.mean, r.known, nil
	}
	ds, err := e.db.RecentRunTimes(ctx, k.Model, k.Mode, etaSamples)
	if err != nil {
		return 0, false, err
	}
	r = etaRun{at: now}
	if len(ds) > 0 {
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		r.mean, r.known = sum/time.Duration(len(ds)), true
	}
	e.mu.Lock()
	if len(e.runs) > 1024 { // kinds come from the catalog; bound it anyway
		clear(e.runs)
	}
	e.runs[k] = r
	e.mu.Unlock()
	return r.mean, r.known, nil
}

// slots is the capacity of the ready accounts (at least 1: a queue with no
// ready account still drains one task at a time once one is back).
func (e *etaEstimator) slots(ctx context.Context) (int, error) {
	now := e.now()
	e.mu.Lock()
	if !e.capAt.IsZero() && now.Sub(e.capAt) < etaCacheFor && now.Sub(e.capAt) >= 0 {
		c := e.capacity
		e.mu.Unlock()
		return c, nil
	}
	e.mu.Unlock()
	accs, err := e.db.ListAccounts(ctx)
	if err != nil {
		return 0, err
	}
	c := 0
	for _, a := range accs {
		if a.Status == store.AccountReady {
			c += a.Capacity
		}
	}
	c = max(c, 1)
	e.mu.Lock()
	e.capacity, e.capAt = c, now
	e.mu.Unlock()
	return c, nil
}

// estimate returns t's eta in whole seconds (rounded up), or -1 when there is
// no basis (no done task of its model and mode yet).
//
// processing: max(0, R - elapsed), R the mean run time of its kind.
// pending: R + W / C, where W is the work ahead (each processing task's
// remaining time plus R of each pending task queued before it, a kind with
// no basis counted with t's own R) and C the ready capacity.
func (e *etaEstimator) estimate(ctx context.Context, t *store.Task) (int, error) {
	r, ok, err := e.runTime(ctx, store.ModelMode{Model: t.Model, Mode: t.Mode})
	if err != nil || !ok {
		return -1, err
	}
	now := e.now()
	if t.Status == store.StatusProcessing {
		left := r
		if !t.StartedAt.IsZero() {
			left = r - now.Sub(t.StartedAt)
		}
		return ceilSeconds(max(left, 0)), nil
	}
	kindTime := func(k store.ModelMode) (time.Duration, error) {
		d, ok, err := e.runTime(ctx, k)
		if err != nil || !ok {
			return r, err
		}
		return d, nil
	}
	var work time.Duration
	for _, p := range e.db.Running() {
		d, err := kindTime(p.Kind)
		if err != nil {
			return -1, err
		}
		if !p.StartedAt.IsZero() {
			d -= now.Sub(p.StartedAt)
		}
		work += max(d, 0)
	}
	ahead, err := e.db.PendingAhead(ctx, t.ID)
	if err != nil {
		return -1, err
	}
	for k, n := range ahead {
		d, err := kindTime(k)
		if err != nil {
			return -1, err
		}
		work += time.Duration(n) * d
	}
	c, err := e.slots(ctx)
	if err != nil {
		return -1, err
	}
	return ceilSeconds(r + work/time.Duration(c)), nil
}

func ceilSeconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}
