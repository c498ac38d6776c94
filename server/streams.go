package server

import (
	"sync"

	"gooni/server/apierr"
)

// Event stream limits (CONTRACT section 18).
const (
	streamsPerSession = 8  // per session, or per API key
	streamsPerIP      = 32 // per client IP (an IPv6 /64)
	// streamRetryAfter is the Retry-After of a stream refused by a limit.
	streamRetryAfter = 5
)

// streamLimits counts open event streams per credential, per client and in
// all. Its maps hold only keys with a stream open, so they never hold more
// than max entries.
type streamLimits struct {
	mu      sync.Mutex
	total   int
	max     int
	byActor map[string]int
	byIP    map[string]int
}

func newStreamLimits(max int) *streamLimits {
	if max <= 0 {
		max = 2000
	}
	return &streamLimits{max: max, byActor: map[string]int{}, byIP: map[string]int{}}
}

// acquire opens a stream for actor from ip or says which limit refuses it:
// 503 server_busy when the server holds max streams, else 429 rate_limited
// past the per-credential or per-client limit.
func (l *streamLimits) acquire(actor, ip string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.max:
		return nil, apierr.ServerBusy("the server holds as many event streams as it may; try again shortly", streamRetryAfter)
	case l.byActor[actor] >= streamsPerSession:
		return nil, apierr.RateLimited(streamRetryAfter).With(errStreamsPerSession)
	case l.byIP[ip] >= streamsPerIP:
		return nil, apierr.RateLimited(streamRetryAfter).With(errStreamsPerIP)
	}
	l.total++
	l.byActor[actor]++
	l.byIP[ip]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.byActor[actor]--; l.byActor[actor] <= 0 {
				delete(l.byActor, actor)
			}
			if l.byIP[ip]--; l.byIP[ip] <= 0 {
				delete(l.byIP, ip)
			}
		})
	}, nil
}

// open is how many streams are open now.
func (l *streamLimits) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

type streamLimitError string

func (e streamLimitError) Error() string { return string(e) }

const (
	errStreamsPerSession = streamLimitError("more than 8 event streams for one session or key")
	errStreamsPerIP      = streamLimitError("more than 32 event streams from one client")
)
