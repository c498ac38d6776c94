package audit

import (
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// RepeatWindow is how long one audit row stands for every repeat of a
// repeatable denial by the same client (CONTRACT section 19).
const RepeatWindow = 60 * time.Second

// RepeatKeys is how many (action, client) windows are remembered at once:
// about 200 bytes each, so under 1 MB.
const RepeatKeys = 4096

// repeatableDenials are the actions whose denial a client can repeat at will
// (CONTRACT section 19). Adding a denial here (a later invite route's
// invite.use) is all it takes to put it under the rule.
var repeatableDenials = map[string]bool{
	"security.cors_blocked": true,
	"security.throttled":    true,
	"session.revoke":        true, // a replayed logout with a valid-MAC cookie of an ended session
	"invite.use":            true,
	"session.issue":         true, // POST /auth/session refused (key mode without the key, invite mode)
}

// IsRepeatable reports whether an event is a denial a client can repeat at
// will: at most one row per (action, client) per RepeatWindow is written; the
// rest are only counted (Writer.OnSuppressed).
//
// The key is the action and the client address (an IPv6 client by its /64,
// which one host usually holds whole), never the Origin, path or cookie the
// client sends: those cost nothing to vary, and keying on them would let one
// client write a row per request again. The row written keeps what was sent
// (the first Origin of the window, say); the next window's row says how many
// repeats were not written.
func IsRepeatable(action, outcome string) bool {
	return outcome == "denied" && repeatableDenials[action]
}

type repeatKey struct{ action, source string }

type repeatWindow struct {
	start      time.Time
	suppressed int
}

// repeats remembers the open window of each (action, client). It is bounded:
// at most max keys, O(1) work per event (a hash lookup and a list move). A
// key whose window ended is dropped first; when every key remembered is still
// inside its window (max distinct clients denied within a minute), a new
// client's denial is counted instead of written, so no mix of clients makes
// more than max rows per window either.
type repeats struct {
	mu  sync.Mutex
	max int
	lru *simplelru.LRU[repeatKey, *repeatWindow] // oldest window start at the back
}

func newRepeats(max int) *repeats {
	l, err := simplelru.NewLRU[repeatKey, *repeatWindow](max, nil)
	if err != nil {
		panic(err) // max <= 0: a programming error
	}
	return &repeats{max: max, lru: l}
}

func inWindow(start, now time.Time) bool {
	d := now.Sub(start)
	return d >= 0 && d < RepeatWindow
}

// admit decides for one denial at now: write a row (suppressed is how many
// repeats of the key's previous window were not written), or not.
func (r *repeats) admit(k repeatKey, now time.Time) (write bool, suppressed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.lru.Peek(k); ok {
		if inWindow(w.start, now) {
			w.suppressed++
			return false, 0
		}
		n := w.suppressed
		w.start, w.suppressed = now, 0
		r.lru.Add(k, w) // to the front: the newest window
		return true, n
	}
	if r.lru.Len() >= r.max {
		if _, oldest, ok := r.lru.GetOldest(); ok && inWindow(oldest.start, now) {
			return false, 0
		}
		r.lru.RemoveOldest()
	}
	r.lru.Add(k, &repeatWindow{start: now})
	return true, 0
}

// forget drops k (its row could not be written).
func (r *repeats) forget(k repeatKey) {
	r.mu.Lock()
	r.lru.Remove(k)
	r.mu.Unlock()
}

// sourceKey is the client part of the key: an IPv4 address, an IPv6 /64, or
// (not an address: "local", "") the text itself, bounded.
func sourceKey(src string) string {
	a, err := netip.ParseAddr(src)
	if err != nil {
		if len(src) > 64 {
			src = src[:64]
		}
		return src
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.String()
	}
	return a.String()
}
