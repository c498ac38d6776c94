package store

import (
	"slices"
	"time"
)

// How the group committer gathers a batch.
//
// Without waiting, concurrent submitters split into a lone request and
// "everyone else": the committer takes the first request that comes back
// after a COMMIT and commits it alone (a whole fsync for one row) while the
// others, answered by the same COMMIT, are still on their way back. Measured
// with 10 HTTP clients: 57 % of the commits held one request, 3.2 on
// average. So, like PostgreSQL's commit_delay with commit_siblings, the
// committer waits a little for siblings when there is reason to expect
// them: while it expects more requests than it has, it waits for them until
// a short linger has passed. Durability is unchanged: every caller still
// returns only after the COMMIT that holds its rows.
//
// How many it expects is the largest of the last few batches (siblings),
// not the last one alone: waiting for the last batch's size lets 10 clients
// settle into two halves that alternate, each paying a whole COMMIT for 5
// rows (5.5 per commit measured), while most of the other half is already
// back. Waiting for the largest recent batch gathers 8-9 of them
// (docs/PERFORMANCE.md, "The submit path"). A lone caller right after a
// burst waits at most one linger per batch until the burst leaves the
// window, or until the committer has been idle for siblingIdle; a lone
// caller otherwise never waits.
//
// The batch's transaction is open while it gathers: each request is
// inserted as it comes (createBatch in tasks.go), so that only the COMMIT
// is left when the batch closes. Another write waits for the writer
// meanwhile, at most one linger longer than it would for the COMMIT alone.
const (
	// maxLinger caps the wait for siblings; the wait is also at most the
	// previous COMMIT's duration (waiting longer than a commit takes costs
	// more than the shared fsync saves).
	maxLinger = 2 * time.Millisecond
	minLinger = 100 * time.Microsecond
)

// siblingWindow is how many recent batches the expectation remembers;
// siblingIdle is how long the committer may sit without a request before
// it forgets them (the clients of a burst that long ago are gone).
const (
	siblingWindow = 16
	siblingIdle   = time.Second
)

// siblings expects as many requests per batch as the largest of the last
// siblingWindow batches held (at least 1).
type siblings struct {
	recent [siblingWindow]int
	next   int
}

// observe records a committed batch of n requests.
func (s *siblings) observe(n int) {
	s.recent[s.next] = n
	s.next = (s.next + 1) % siblingWindow
}

// idle records that the committer waited d for a batch's first request.
func (s *siblings) idle(d time.Duration) {
	if d > siblingIdle {
		*s = siblings{}
	}
}

// expect is how many requests the next batch should wait for.
func (s *siblings) expect() int { return max(1, slices.Max(s.recent[:])) }

// lingerFor is how long a batch may wait for siblings after a COMMIT that
// took lastCommit.
func lingerFor(lastCommit time.Duration) time.Duration {
	return min(max(lastCommit, minLinger), maxLinger)
}

// gather completes a batch that starts with batch[0]: it takes every
// request already waiting on creates, then, while fewer than expect are in
// hand, waits for more until linger fires (or closing closes), and hands
// each request it takes to add as it comes. It never takes more than
// maxCreateBatch.
func gather(batch []*createRequest, creates <-chan *createRequest, expect int, linger func() <-chan time.Time, closing <-chan struct{}, add func(*createRequest)) []*createRequest {
	expect = min(expect, maxCreateBatch)
drain:
	for len(batch) < maxCreateBatch {
		select {
		case req := <-creates:
			batch = append(batch, req)
			add(req)
		default:
			break drain
		}
	}
	if len(batch) >= expect {
		return batch
	}
	deadline := linger()
	for len(batch) < expect {
		select {
		case req := <-creates:
			batch = append(batch, req)
			add(req)
		case <-deadline:
			return batch
		case <-closing:
			return batch
		}
	}
	return batch
}
