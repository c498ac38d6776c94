package server

import (
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// DefaultLimiterKeys is how many keys a Limiter remembers before it forgets
// the least recently seen one.
const DefaultLimiterKeys = 100_000

// Limiter admits at most N requests per key in any rolling Window: it keeps
// the admission times of each key (at most N of them), so the bound holds for
// every span, not just fixed buckets. Rejected requests count toward nothing.
// Keys live in a bounded LRU: each request costs O(1) map work plus at most N
// timestamp drops, whatever the number of clients; past MaxKeys the least
// recently seen key is forgotten (it may start afresh, a cost an attacker
// pays for with MaxKeys other addresses or /64 networks).
type Limiter struct {
	Name   string // for metrics
	N      int
	Window time.Duration
	Now    func() time.Time

	mu   sync.Mutex
	keys *simplelru.LRU[string, *admissions]
}

type admissions struct {
	times        []int64 // admitted, unix ns, oldest first, len <= N
	lastRejected int64   // last rejection reported as "first in window"; 0 = none
}

// NewLimiter returns a limiter of n per window remembering at most maxKeys
// keys (0 = DefaultLimiterKeys).
func NewLimiter(n int, window time.Duration, now func() time.Time, maxKeys int) *Limiter {
	if now == nil {
		now = time.Now
	}
	if maxKeys <= 0 {
		maxKeys = DefaultLimiterKeys
	}
	keys, err := simplelru.NewLRU[string, *admissions](maxKeys, nil)
	if err != nil {
		panic(err) // only for a size <= 0, excluded above
	}
	return &Limiter{N: n, Window: window, Now: now, keys: keys}
}

// Allow reports whether a request of key is admitted now. When it is not,
// retryAfter says when the oldest admission leaves the window, and first is
// true for the first rejection of this key in a window (to audit once).
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration, first bool) {
	now := l.Now().UnixNano()
	cut := now - int64(l.Window)
	l.mu.Lock()
	defer l.mu.Unlock()
	a, found := l.keys.Get(key)
	if !found {
		a = &admissions{times: make([]int64, 0, min(l.N, 4))}
		l.keys.Add(key, a)
	}
	i := 0
	for i < len(a.times) && a.times[i] <= cut {
		i++
	}
	if i > 0 {
		a.times = append(a.times[:0], a.times[i:]...)
	}
	if len(a.times) < l.N {
		a.times = append(a.times, now)
		return true, 0, false
	}
	retryAfter = time.Duration(a.times[0] + int64(l.Window) - now)
	first = a.lastRejected == 0 || a.lastRejected <= cut
	if first {
		a.lastRejected = now
	}
	return false, retryAfter, first
}

// Len is how many keys the limiter remembers now.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys.Len()
}

// clientKey is the throttling identity of a client address: the address
// itself for IPv4, its /64 network for IPv6 (one host usually owns a whole
// /64, so per-address keys would let it rotate through 2^64 identities).
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() || a.Is4In6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}
