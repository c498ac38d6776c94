package store

import (
	"context"
	"database/sql"
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
// them: when the previous batch held more than one request (its callers
// are likely to submit again), it waits until as many requests are in hand
// or until a short linger has passed, whichever is first. A lone caller
// (previous batch of one) never waits. Durability is unchanged: every
// caller still returns only after the COMMIT that holds its rows.
const (
	// maxLinger caps the wait for siblings; the wait is also at most the
	// previous COMMIT's duration (waiting longer than a commit takes costs
	// more than the shared fsync saves).
	maxLinger = 2 * time.Millisecond
	minLinger = 100 * time.Microsecond
)

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
