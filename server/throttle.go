package server

import (
	"sync"
	"time"
)

// Limiter admits at most N requests per key in any rolling Window: it keeps
// the admission times of each key (at most N of them), so the bound holds for
// every span, not just fixed buckets. Rejected requests count toward nothing.
type Limiter struct {
	Name    string // for metrics
	N       int
	Window  time.Duration
	Now     func() time.Time
	MaxKeys int // keys kept before old ones are swept; 0 = 100000

	mu   sync.Mutex
	keys map[string]*admissions
}

type admissions struct {
	times        []time.Time // admitted, oldest first, len <= N
	lastRejected time.Time   // last rejection reported as "first in window"
}

// NewLimiter returns a limiter of n per window.
func NewLimiter(n int, window time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{N: n, Window: window, Now: now, keys: map[string]*admissions{}}
}

// Allow reports whether a request of key is admitted now. When it is not,
// retryAfter says when the oldest admission leaves the window, and first is
// true for the first rejection of this key in a window (to audit once).
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration, first bool) {
	now := l.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.keys[key]
	if a == nil {
		l.sweep(now)
		a = &admissions{}
		l.keys[key] = a
	}
	cut := now.Add(-l.Window)
	i := 0
	for i < len(a.times) && !a.times[i].After(cut) {
		i++
	}
	a.times = a.times[i:]
	if len(a.times) < l.N {
		a.times = append(a.times, now)
		return true, 0, false
	}
	retryAfter = a.times[0].Add(l.Window).Sub(now)
	first = a.lastRejected.IsZero() || !a.lastRejected.After(cut)
	if first {
		a.lastRejected = now
	}
	return false, retryAfter, first
}

// sweep drops keys with nothing inside the window when the map grows large.
func (l *Limiter) sweep(now time.Time) {
	max := l.MaxKeys
	if max <= 0 {
		max = 100000
	}
	if len(l.keys) < max {
		return
	}
	cut := now.Add(-l.Window)
	for k, a := range l.keys {
		if (len(a.times) == 0 || !a.times[len(a.times)-1].After(cut)) && !a.lastRejected.After(cut) {
			delete(l.keys, k)
		}
	}
}
