package store

import (
	"context"
	"database/sql"
	"slices"
	"strings"
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
// hand, waits for more until linger fires (or closing closes). It never
// takes more than maxCreateBatch.
func gather(batch []*createRequest, creates <-chan *createRequest, expect int, linger func() <-chan time.Time, closing <-chan struct{}) []*createRequest {
	expect = min(expect, maxCreateBatch)
drain:
	for len(batch) < maxCreateBatch {
		select {
		case req := <-creates:
			batch = append(batch, req)
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
		case <-deadline:
			return batch
		case <-closing:
			return batch
		}
	}
	return batch
}

// maxBulkRows bounds one multi-row INSERT (15 bound values a row).
const maxBulkRows = 32

// bulkInsertSQL is insertTaskSQL with n rows of values.
func bulkInsertSQL(n int) string {
	const row = `(?, ?, ?, ?, ?, ?, ?, 'pending', 0, 0, ?, ?, ?, ?, ?)`
	var b strings.Builder
	b.WriteString(insertTaskHead)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	return b.String()
}

// bulkStatements are the prepared multi-row INSERTs of 2..maxBulkRows
// rows (parsing one anew cost a third of its run), prepared on the writer
// as batch sizes first occur; only the committer (commitBatch) uses them.
type bulkStatements struct {
	stmt [maxBulkRows + 1]*sql.Stmt
}

// prepare makes the statements of up to n rows ready; it runs outside any
// transaction (the writer has one connection). A statement that does not
// prepare stays nil, and insert then leaves its rows to the caller.
func (b *bulkStatements) prepare(writer *sql.DB, n int) {
	for k := 2; k <= min(n, maxBulkRows); k++ {
		if b.stmt[k] == nil {
			b.stmt[k], _ = writer.Prepare(bulkInsertSQL(k))
		}
	}
}

func (b *bulkStatements) close() {
	for _, s := range b.stmt {
		if s != nil {
			s.Close()
		}
	}
}

// insert writes tasks with multi-row INSERTs (maxBulkRows rows at most
// each) and returns how many it wrote: a prefix of tasks. One statement per
// batch instead of one per task saves more than parsing: the FTS5 index of
// prompts (the insert trigger) flushes its pending terms at every
// statement of a transaction, writing an index segment per row, and each
// statement keeps its own statement journal. Measured in-process with 10
// concurrent callers (a store benchmark, 5 alternating runs): 134 us of CPU
// per created task against 170 us one INSERT per task. A statement that
// fails is undone whole (SQLite's statement rollback) and insert stops
// there: the caller inserts the rest one by one, so that a bad row fails
// alone.
func (b *bulkStatements) insert(ctx context.Context, tx *sql.Tx, tasks []*Task) int {
	done := 0
	for done < len(tasks) {
		n := min(len(tasks)-done, maxBulkRows)
		if n < 2 || b.stmt[n] == nil {
			return done
		}
		args := make([]any, 0, n*12)
		for _, t := range tasks[done : done+n] {
			args = append(args, t.ID, t.Type, t.Model, t.Mode, t.Prompt, t.NegativePrompt, string(t.Params),
				t.CreatedAt.UnixMilli(), t.UpdatedAt.UnixMilli(), t.InputPath, t.InputType, t.InputBytes)
		}
		stmt := tx.StmtContext(ctx, b.stmt[n])
		_, err := stmt.ExecContext(ctx, args...)
		stmt.Close()
		if err != nil {
			return done
		}
		done += n
	}
	return done
}
