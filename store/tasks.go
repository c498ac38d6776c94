package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Task statuses.
const (
	StatusPending    = "pending"
	StatusProcessing = "processing"
	StatusDone       = "done"
	StatusFailed     = "failed"
)

// Task is one generation request and its lifecycle.
type Task struct {
	ID, Type, Model, Mode, Prompt, NegativePrompt    string
	Params                                           json.RawMessage // canonical JSON object of validated params (defaults filled)
	Status                                           string          // pending|processing|done|failed
	Progress                                         int
	AccountID                                        int64 // 0 = none
	Attempts                                         int
	ErrorCode, ErrorMessage                          string
	CreatedAt, StartedAt, CompletedAt, UpdatedAt     time.Time // zero = null
	ResultPath, ResultType, PreviewPath, PreviewType string    // paths relative to data dir media/, content types
	// InputPath is the i2v input image ("media/<id>.input.<ext>", "" = none),
	// InputType its content type and InputBytes its size; the file is written
	// before the row commits and kept until the task is deleted.
	InputPath, InputType string
	InputBytes           int64
	// HandedAt is when a workspace took the task (zero = not handed out).
	// A handed task stays pending until its workspace reports it running.
	HandedAt time.Time
}

// Handed reports whether a pending task waits in a workspace's own queue.
func (t *Task) Handed() bool { return t.Status == StatusPending && t.AccountID != 0 }

// HasImage reports whether the task has an i2v input image.
func (t *Task) HasImage() bool { return t.InputPath != "" }

const taskColumns = `id, type, model, mode, prompt, negative_prompt, params, status, progress,
	account_id, attempts, error_code, error_message, created_at, started_at, completed_at, updated_at,
	result_path, result_type, preview_path, preview_type, input_path, input_type, input_bytes, handed_at`

type rowScanner interface{ Scan(dest ...any) error }

func scanTask(r rowScanner) (*Task, error) {
	var t Task
	var params string
	var account, created, started, completed, updated, handed sql.NullInt64
	err := r.Scan(&t.ID, &t.Type, &t.Model, &t.Mode, &t.Prompt, &t.NegativePrompt, &params, &t.Status, &t.Progress,
		&account, &t.Attempts, &t.ErrorCode, &t.ErrorMessage, &created, &started, &completed, &updated,
		&t.ResultPath, &t.ResultType, &t.PreviewPath, &t.PreviewType, &t.InputPath, &t.InputType, &t.InputBytes, &handed)
	if err != nil {
		return nil, err
	}
	t.Params = json.RawMessage(params)
	t.AccountID = account.Int64
	t.CreatedAt, t.StartedAt, t.CompletedAt, t.UpdatedAt = fromMS(created), fromMS(started), fromMS(completed), fromMS(updated)
	t.HandedAt = fromMS(handed)
	return &t, nil
}

func (db *DB) queryTasks(ctx context.Context, q *sql.DB, query string, args ...any) ([]*Task, error) {
	return queryRows(ctx, q, scanTask, query, args...)
}

// createRequest is one CreateTasks call waiting for the group committer.
type createRequest struct {
	ctx   context.Context
	tasks []*Task
	opts  CreateOptions
	done  chan error
}

// maxCreateBatch bounds one group-commit transaction so a burst cannot hold the
// writer for long.
const maxCreateBatch = 256

// ErrInputQuota means the queued input images would exceed their quota
// (GG_INPUT_QUOTA); the server answers it as queue_full.
var ErrInputQuota = errors.New("store: input image quota reached")

// CreateOptions are the limits one CreateTasks call is held to.
type CreateOptions struct {
	QueueMax   int   // pending tasks allowed in all, this call's included (<= 0: no limit)
	InputQuota int64 // bytes of input images of pending and processing tasks allowed (<= 0: no limit)
	// Idempotency, when set, is stored in the same transaction as the tasks:
	// all of them and the key commit, or none. ErrIdempotencyKeyUsed when the
	// key is already stored (and younger than IdempotencyTTL).
	Idempotency *IdempotencyRecord
}

// CreateTask commits one task; see CreateTasks.
func (db *DB) CreateTask(ctx context.Context, t *Task, opts CreateOptions) error {
	return db.CreateTasks(ctx, []*Task{t}, opts)
}

// CreateTasks commits tasks (status pending) all or none, in one
// transaction: ErrQueueFull when they do not all fit under QueueMax pending
// tasks, ErrInputQuota when their input images would pass InputQuota. A
// task's input file must already be durable in media/. It returns only after
// COMMIT. Concurrent calls are group-committed into one transaction; each
// caller still returns only after the shared COMMIT succeeded, and gets its
// own error.
func (db *DB) CreateTasks(ctx context.Context, tasks []*Task, opts CreateOptions) error {
	if len(tasks) == 0 {
		return nil
	}
	for _, t := range tasks {
		db.prepareTask(t)
	}
	req := &createRequest{ctx: ctx, tasks: tasks, opts: opts, done: make(chan error, 1)}
	select {
	case db.creates <- req:
	case <-db.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Wait for the verdict even if ctx ends now: the rows may be committing, and
	// the caller must not hear "failed" about a task that is durable.
	return <-req.done
}

func (db *DB) prepareTask(t *Task) {
	if t.ID == "" {
		t.ID = NewID()
	}
	now := db.now().UTC().Truncate(time.Millisecond)
	t.Status = StatusPending
	t.Progress = 0
	t.AccountID = 0
	t.Attempts = 0
	t.ErrorCode, t.ErrorMessage = "", ""
	t.CreatedAt, t.UpdatedAt = now, now
	t.StartedAt, t.CompletedAt = time.Time{}, time.Time{}
	t.ResultPath, t.ResultType, t.PreviewPath, t.PreviewType = "", "", "", ""
	if len(t.Params) == 0 {
		t.Params = json.RawMessage("{}")
	}
}

// openInputBytes is the size of the input images of pending and processing
// tasks (a partial index makes it a walk over image tasks only).
func openInputBytes(ctx context.Context, tx *sql.Tx) (int64, error) {
	var n int64
	err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(input_bytes), 0) FROM tasks
		WHERE input_bytes > 0 AND status IN ('pending', 'processing')`).Scan(&n)
	return n, err
}

func countPending(ctx context.Context, tx *sql.Tx) (int, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM tasks WHERE status = 'pending' AND account_id IS NULL`).Scan(&n)
	return n, err
}

// pendingBound is the committer's upper bound on the number of pending tasks,
// so that a batch far below the queue limit needs no count(*) (which walks
// every pending index entry: the most expensive part of a submit with a long
// queue). Only the committer goroutine touches it.
//
// It stays an upper bound because only two things add pending rows: the
// committer's own inserts (counted after COMMIT) and paths outside it
// (RequeueTask, RequeueOrFail, ReleaseTask), which bump db.pendingAdds
// inside their transaction, while they hold the one writer connection. A
// recount runs in the committer's transaction, which holds that
// connection too, so each add it reads belongs to a write that already
// committed (its row counted) or rolled back (an over-count), and each add
// it does not read comes later and raises the bound. Bumping before the
// transaction began let a recount read an add whose row it could not yet
// see: the bound fell one short for good
// (TestQueueBoundCountsARequeueWaitingForTheWriter). Claims, failures and
// deletes only lower the real number, which a recount near the limit picks
// up.
type pendingBound struct {
	valid bool
	base  int   // exact pending count when last measured
	adds  int64 // db.pendingAdds read just before that count
}

func (b *pendingBound) upper(db *DB) int {
	return b.base + int(db.pendingAdds.Load()-b.adds)
}

// recount measures the pending count exactly in tx.
func (b *pendingBound) recount(ctx context.Context, db *DB, tx *sql.Tx) (int, error) {
	b.valid = false
	adds := db.pendingAdds.Load()
	n, err := countPending(ctx, tx)
	if err != nil {
		return 0, err
	}
	b.valid, b.base, b.adds = true, n, adds
	return n, nil
}

const insertTaskHead = `INSERT INTO tasks (id, type, model, mode, prompt, negative_prompt, params,
		status, progress, attempts, created_at, updated_at, input_path, input_type, input_bytes)
		VALUES `

const insertTaskSQL = insertTaskHead + `(?, ?, ?, ?, ?, ?, ?, 'pending', 0, 0, ?, ?, ?, ?, ?)`

func (db *DB) insertTask(ctx context.Context, tx *sql.Tx, t *Task) error {
	// The statement prepared once at Open: parsing the INSERT anew cost
	// about as much as executing it.
	stmt := tx.StmtContext(ctx, db.stmtInsertTask)
	defer stmt.Close()
	_, err := stmt.ExecContext(ctx,
		t.ID, t.Type, t.Model, t.Mode, t.Prompt, t.NegativePrompt, string(t.Params),
		t.CreatedAt.UnixMilli(), t.UpdatedAt.UnixMilli(), t.InputPath, t.InputType, t.InputBytes)
	if err != nil && isUniqueViolation(err) {
		return ErrDuplicate
	}
	return err
}

// runCommitter batches concurrent CreateTask calls: it opens a transaction
// when a request comes, checks and inserts each request of the batch as it
// arrives (and, after recent batches of several, lingers briefly for their
// callers' next requests: groupcommit.go), and answers each after the one
// COMMIT of the batch.
func (db *DB) runCommitter() {
	defer db.committed.Done()
	batch := make([]*createRequest, 0, maxCreateBatch)
	var sib siblings
	lastCommit := time.Duration(0)
	var timer *time.Timer
	linger := func() <-chan time.Time {
		timer = time.NewTimer(lingerFor(lastCommit))
		return timer.C
	}
	// idle fires searchIdle after the last batch while tasks wait for the
	// prompt index (searchindex.go).
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	for {
		waited := time.Now()
		if db.searchLater && db.searchWaiting.Load() > 0 {
			idle.Reset(time.Duration(db.searchIdle.Load()))
		}
	wait:
		select {
		case req := <-db.creates:
			batch = append(batch[:0], req)
		case <-idle.C:
			db.indexSearch(context.Background()) // on failure the tasks keep waiting; the next search retries
			goto wait
		case <-db.closing:
			return
		}
		idle.Stop()
		sib.idle(time.Since(waited))
		b := db.beginBatch()
		b.add(batch[0])
		batch = gather(batch, db.creates, sib.expect(), linger, db.closing, b.add)
		if timer != nil {
			timer.Stop()
			timer = nil
		}
		start := time.Now()
		b.commit()
		lastCommit = time.Since(start)
		sib.observe(len(batch))
	}
}

// createBatch is one group-commit transaction while its requests arrive:
// add checks each request against its limits and inserts its tasks at once
// (so that by the time the batch closes only the COMMIT is left), and
// commit answers every request after the one COMMIT. Only the committer
// goroutine (or a test in its place) uses one.
type createBatch struct {
	db   *DB
	ctx  context.Context
	tx   *sql.Tx
	fail error // the transaction's own failure: every request fails with it
	q    queueEdits

	reqs    []*createRequest
	results []error

	pending     int  // pending tasks: an upper bound (db.pending) unless exact
	exact       bool // pending was counted in this transaction
	inserted    int  // tasks inserted since the bound's last count
	inputs      int64
	inputsKnown bool
}

// beginBatch opens the transaction of a batch.
func (db *DB) beginBatch() *createBatch {
	b := &createBatch{db: db, ctx: context.Background()}
	b.tx, b.fail = db.writer.BeginTx(b.ctx, nil)
	if db.pending.valid {
		b.pending = db.pending.upper(db)
	}
	return b
}

// add takes req into the batch: its tasks are inserted now, or it gets its
// own error (its caller gave up, the queue or the input quota is full, a
// row failed) and nothing of it is written.
func (b *createBatch) add(req *createRequest) {
	b.reqs = append(b.reqs, req)
	var result error
	if b.fail == nil {
		result, b.fail = b.insert(req)
	}
	b.results = append(b.results, result)
}

// insert writes req's tasks; result is req's own answer, fail an error of
// the transaction itself.
func (b *createBatch) insert(req *createRequest) (result, fail error) {
	if err := req.ctx.Err(); err != nil {
		return err, nil
	}
	ctx, tx, db := b.ctx, b.tx, b.db
	n := len(req.tasks)
	// Count only when the bound cannot prove there is room.
	if limit := req.opts.QueueMax; limit > 0 && !b.exact && (!db.pending.valid || b.pending+n > limit) {
		c, err := db.pending.recount(ctx, db, tx)
		if err != nil {
			return nil, err
		}
		// The count sees this transaction's own inserts.
		b.pending, b.exact, b.inserted = c, true, 0
	}
	if req.opts.QueueMax > 0 && b.pending+n > req.opts.QueueMax {
		return ErrQueueFull, nil
	}
	var size int64
	for _, t := range req.tasks {
		size += t.InputBytes
	}
	if size > 0 && req.opts.InputQuota > 0 {
		if !b.inputsKnown {
			var err error
			if b.inputs, err = openInputBytes(ctx, tx); err != nil {
				return nil, err
			}
			b.inputsKnown = true
		}
		if b.inputs+size > req.opts.InputQuota {
			return ErrInputQuota, nil
		}
	}
	// One bad request fails alone, all of its tasks with it: a lone INSERT
	// that fails is undone by SQLite's statement rollback; several rows get
	// a savepoint.
	savepoint := n > 1 || req.opts.Idempotency != nil
	if savepoint {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT create_tasks"); err != nil {
			return nil, err
		}
	}
	for _, t := range req.tasks {
		if result = db.insertTask(ctx, tx, t); result != nil {
			break
		}
	}
	if result == nil && req.opts.Idempotency != nil {
		result = db.insertIdempotency(ctx, tx, req.opts.Idempotency)
	}
	if result != nil && !isConstraint(result) {
		// Not this request's own fault (an I/O error, a full disk): SQLite
		// may have rolled back the whole transaction, so the batch fails.
		return nil, result
	}
	if result != nil && savepoint {
		if _, err := tx.ExecContext(ctx, "ROLLBACK TO create_tasks"); err != nil {
			return nil, err
		}
	}
	if savepoint {
		if _, err := tx.ExecContext(ctx, "RELEASE create_tasks"); err != nil {
			return nil, err
		}
	}
	if result == nil {
		b.pending += n
		b.inserted += n
		b.inputs += size
		for _, t := range req.tasks {
			b.q.add(t.ID, kindOf(t), queueWait)
		}
	}
	return result, nil
}

// commit commits the batch (or rolls it back after a failure of its own)
// and answers every request.
func (b *createBatch) commit() {
	db := b.db
	indexed := false
	if b.fail == nil {
		// Enough tasks wait for the prompt index: index them in this
		// transaction, one FTS5 segment for all (searchindex.go).
		if db.searchWaiting.Load()+int64(len(b.q.list)) >= searchBatch {
			indexed, b.fail = db.indexSearchIn(b.ctx, b.tx)
		}
	}
	if b.fail == nil {
		b.fail = db.commitTasksTx(b.tx, &b.q)
	} else if b.tx != nil {
		b.tx.Rollback()
	}
	bound := &db.pending
	if b.fail == nil {
		if bound.valid {
			bound.base += b.inserted
		}
	} else {
		bound.valid = false
	}
	var created []string
	for i, req := range b.reqs {
		if b.fail != nil {
			if b.results[i] == nil {
				b.results[i] = fmt.Errorf("store: create task: %w", b.fail)
			}
		} else if b.results[i] == nil {
			for _, t := range req.tasks {
				created = append(created, t.ID)
			}
		}
	}
	if b.fail == nil && indexed {
		db.searchWaiting.Store(0)
	} else {
		db.searchWaiting.Add(int64(len(created)))
	}
	db.taskChanged(created...)
	for i, req := range b.reqs {
		req.done <- b.results[i]
	}
}

// GetTask returns one task; ErrNotFound when there is none. A finished
// task's row is kept in memory after its first read (taskcache.go).
func (db *DB) GetTask(ctx context.Context, id string) (*Task, error) {
	if t, ok := db.finished.get(id); ok {
		return t, nil
	}
	gen := db.finished.generation()
	t, err := scanTask(db.stmtGetTask.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	db.finished.put(gen, t)
	return t, nil
}

// QueuePosition is the 1-based place among the tasks not yet handed to a
// workspace, by id; 0 if the task is not waiting in Gooni's queue;
// ErrNotFound when there is no such task. It reads the in-memory queue
// index (queue.go): no count of the tasks ahead.
func (db *DB) QueuePosition(ctx context.Context, id string) (int, error) {
	if pos := db.queue.position(id); pos > 0 {
		return pos, nil
	}
	var one int
	err := db.reader.QueryRowContext(ctx, `SELECT 1 FROM tasks WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return 0, err
}

// QueuePositionOf is QueuePosition of a task already read: 0 unless it is
// pending and not handed out; no database read.
func (db *DB) QueuePositionOf(t *Task) int {
	if t.Status != StatusPending || t.Handed() {
		return 0
	}
	return db.queue.position(t.ID)
}

// Running lists the processing tasks (kind and start), from the in-memory
// queue index: the ETA's work in progress without a read of the rows.
func (db *DB) Running() []RunningTask { return db.queue.processing() }

// QueueLength is how many tasks wait in Gooni's queue (pending, not handed
// out), from the in-memory queue index.
func (db *DB) QueueLength() int { return db.queue.waiting() }

func kindOf(t *Task) ModelMode { return ModelMode{Model: t.Model, Mode: t.Mode} }

// CountByStatus returns a count for each of the four statuses (zero included).
func (db *DB) CountByStatus(ctx context.Context) (map[string]int, error) {
	out, err := countBy[string](ctx, db.reader, `SELECT status, count(*) FROM tasks GROUP BY status`)
	if err != nil {
		return nil, err
	}
	for _, s := range []string{StatusPending, StatusProcessing, StatusDone, StatusFailed} {
		out[s] += 0
	}
	return out, nil
}

// OldestPending returns the creation time of the task at the head of the queue.
func (db *DB) OldestPending(ctx context.Context) (time.Time, bool, error) {
	var created int64
	err := db.reader.QueryRowContext(ctx,
		`SELECT created_at FROM tasks WHERE status = 'pending' AND account_id IS NULL ORDER BY id LIMIT 1`).Scan(&created)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return time.UnixMilli(created).UTC(), true, nil
}

// ListPending returns pending tasks oldest first; limit <= 0 means all.
func (db *DB) ListPending(ctx context.Context, limit int) ([]*Task, error) {
	if limit <= 0 {
		limit = -1
	}
	return db.queryTasks(ctx, db.reader,
		`SELECT `+taskColumns+` FROM tasks WHERE status = 'pending' AND account_id IS NULL ORDER BY id LIMIT ?`, limit)
}

// ListInFlight returns every task on a workspace, oldest first: handed
// (pending with an account) and processing. Which they are comes from the
// in-memory queue index (queue.go), so a long queue costs nothing here; the
// rows are then read by id, and a row that moved on meanwhile is left out.
func (db *DB) ListInFlight(ctx context.Context) ([]*Task, error) {
	ids, _ := db.queue.inFlight()
	var out []*Task
	const chunk = 256
	for len(ids) > 0 {
		part := ids[:min(chunk, len(ids))]
		ids = ids[len(part):]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		ts, err := db.queryTasks(ctx, db.reader, `SELECT `+taskColumns+` FROM tasks
			WHERE id IN (?`+strings.Repeat(", ?", len(part)-1)+`) ORDER BY id`, args...)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if t.Status == StatusProcessing || t.Handed() {
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// ListProcessing returns every processing task, oldest first.
func (db *DB) ListProcessing(ctx context.Context) ([]*Task, error) {
	return db.queryTasks(ctx, db.reader,
		`SELECT `+taskColumns+` FROM tasks WHERE status = 'processing' ORDER BY id`)
}

// RunningByAccount counts the tasks each account holds (handed or
// processing): what its capacity is measured against. It reads the
// in-memory queue index (queue.go): the dispatcher asks on every submit,
// and the count over the rows walked every pending one. ctx is unused.
func (db *DB) RunningByAccount(ctx context.Context) (map[int64]int, error) {
	_, by := db.queue.inFlight()
	return by, nil
}

// transitionError tells a missing task (ErrNotFound) from one in the wrong state (ErrConflict).
func transitionError(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) error {
	var status string
	err := q.QueryRowContext(ctx, `SELECT status FROM tasks WHERE id = ?`, id).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return ErrConflict
}

// ClaimTask hands a queued task to accountID: it stays pending, now bound
// to the account with handed_at=now and one more attempt (CONTRACT section
// 14: a task waiting in a workspace's own queue stays pending). ErrConflict
// when it is not a queued (unhanded) pending task.
func (db *DB) ClaimTask(ctx context.Context, id string, accountID int64) (*Task, error) {
	now := db.nowMS()
	return db.moveTask(ctx, id, `UPDATE tasks SET account_id = ?, handed_at = ?,
		attempts = attempts + 1, started_at = NULL, updated_at = ?
		WHERE id = ? AND status = 'pending' AND account_id IS NULL RETURNING `+taskColumns, nullID(accountID), now, now, id)
}

// moveTask runs one state transition, an UPDATE ... RETURNING of task id's
// row, and announces the change; when no row matches it answers what
// transitionError finds (ErrNotFound or ErrConflict).
func (db *DB) moveTask(ctx context.Context, id, query string, args ...any) (*Task, error) {
	var t *Task
	err := db.writeTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) error {
		var err error
		t, err = scanTask(tx.QueryRowContext(ctx, query, args...))
		if errors.Is(err, sql.ErrNoRows) {
			return transitionError(ctx, tx, id)
		}
		if err == nil {
			q.addTask(t)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	db.taskChanged(id)
	return t, nil
}

// StartTask records that a handed task's workspace reports it running:
// pending -> processing with started_at=now, which starts its TTL clock.
// ErrConflict when it is not pending on accountID.
func (db *DB) StartTask(ctx context.Context, id string, accountID int64) (*Task, error) {
	now := db.nowMS()
	return db.moveTask(ctx, id, `UPDATE tasks SET status = 'processing', started_at = ?, updated_at = ?
		WHERE id = ? AND status = 'pending' AND account_id = ? RETURNING `+taskColumns, now, now, id, accountID)
}

// ReleaseTask takes a handed task back from a workspace that was busy (it
// answered 429 or 503): queued again, its attempt not counted, no retry
// reason recorded. ErrConflict when it is not pending on accountID.
func (db *DB) ReleaseTask(ctx context.Context, id string, accountID int64) error {
	err := db.writeTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) error {
		db.pendingAdds.Add(1) // holding the writer: see pendingBound
		var k ModelMode
		err := tx.QueryRowContext(ctx, `UPDATE tasks SET account_id = NULL, handed_at = NULL,
			attempts = max(attempts - 1, 0), updated_at = ?
			WHERE id = ? AND status = 'pending' AND account_id = ? RETURNING model, mode`, db.nowMS(), id, accountID).Scan(&k.Model, &k.Mode)
		if errors.Is(err, sql.ErrNoRows) {
			return transitionError(ctx, tx, id)
		}
		if err == nil {
			q.add(id, k, queueWait)
		}
		return err
	})
	if err != nil {
		return err
	}
	db.taskChanged(id)
	return nil
}

func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// RequeueTask: processing -> pending, account cleared, reason appended to a retry log (ErrConflict if not processing).
func (db *DB) RequeueTask(ctx context.Context, id string, reason string) error {
	err := db.writeTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) error {
		db.pendingAdds.Add(1) // holding the writer: see pendingBound
		account, err := processingAccount(ctx, tx, id)
		if err != nil {
			return err
		}
		return requeue(ctx, tx, q, id, account, reason, db.nowMS())
	})
	if err == nil {
		db.taskChanged(id)
	}
	return err
}

// processingAccount reads the account of a processing task: ErrNotFound when
// there is no such task, ErrConflict when it is not processing.
func processingAccount(ctx context.Context, tx *sql.Tx, id string) (sql.NullInt64, error) {
	var account sql.NullInt64
	var status string
	err := tx.QueryRowContext(ctx, `SELECT status, account_id FROM tasks WHERE id = ?`, id).Scan(&status, &account)
	if errors.Is(err, sql.ErrNoRows) {
		return account, ErrNotFound
	}
	if err != nil {
		return account, err
	}
	if status != StatusProcessing && !(status == StatusPending && account.Valid) {
		return account, ErrConflict
	}
	return account, nil
}

// requeue moves a processing task back to pending and records why.
func requeue(ctx context.Context, tx *sql.Tx, q *queueEdits, id string, account sql.NullInt64, reason string, now int64) error {
	// Progress is kept: a client's view never goes down (contract section 6);
	// the next workspace's progress counts only once it passes it.
	var k ModelMode
	err := tx.QueryRowContext(ctx, `UPDATE tasks SET status = 'pending', started_at = NULL, handed_at = NULL,
		updated_at = ?, account_id = NULL
		WHERE id = ? AND (status = 'processing' OR (status = 'pending' AND account_id IS NOT NULL))
		RETURNING model, mode`, now, id).Scan(&k.Model, &k.Mode)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrConflict
	}
	if err != nil {
		return err
	}
	q.add(id, k, queueWait)
	_, err = tx.ExecContext(ctx, `INSERT INTO task_retries (task_id, account_id, reason, created_at) VALUES (?, ?, ?, ?)`,
		id, account, reason, now)
	return err
}

// RetryOutcome says what RequeueOrFail did.
type RetryOutcome int

// What RequeueOrFail did with the task.
const (
	Requeued RetryOutcome = iota + 1 // back to pending for another try
	Failed                           // out of tries: failed with dispatch_failed
)

// RequeueOrFail ends one try of a processing task in one transaction, so the
// attempt count cannot change between the check and the write. When the task
// is still processing (on accountID, unless accountID is 0) and has used
// fewer than maxAttempts tries, it goes back to pending and reason is
// recorded; otherwise it fails with code dispatch_failed and the message
// describe returns for its attempts and the reasons of every try, this one
// last. ErrConflict when the task ended or moved to another account
// meanwhile; ErrNotFound when it is gone.
func (db *DB) RequeueOrFail(ctx context.Context, id string, accountID int64, reason string, maxAttempts int,
	describe func(attempts int, reasons []string) string) (RetryOutcome, *Task, error) {
	var out RetryOutcome
	var t *Task
	err := db.writeTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) error {
		// Counted before the commit, so the committer's queue bound never
		// falls below the truth (an over-count only costs a recount).
		db.pendingAdds.Add(1) // holding the writer: see pendingBound
		var err error
		t, err = scanTask(tx.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if !(t.Status == StatusProcessing || t.Handed()) || (accountID != 0 && t.AccountID != accountID) {
			return ErrConflict
		}
		now := db.nowMS()
		if t.Attempts < maxAttempts {
			out = Requeued
			return requeue(ctx, tx, q, id, sql.NullInt64{Int64: t.AccountID, Valid: t.AccountID != 0}, reason, now)
		}
		reasons, err := retryReasons(ctx, tx, id)
		if err != nil {
			return err
		}
		out = Failed
		return failTask(ctx, tx, q, id, "dispatch_failed", describe(t.Attempts, append(reasons, reason)), now)
	})
	if err != nil {
		return 0, nil, err
	}
	db.taskChanged(id)
	return out, t, nil
}

// RetryReasons returns why a task was requeued, oldest first, so a final
// failure can say what happened on each try.
func (db *DB) RetryReasons(ctx context.Context, id string) ([]string, error) {
	return retryReasons(ctx, db.reader, id)
}

func retryReasons(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, id string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT reason FROM task_retries WHERE task_id = ? ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// SetProgress stores max(old, p) clamped to 0..99 while processing (never goes down).
func (db *DB) SetProgress(ctx context.Context, id string, p int) error {
	p = min(max(p, 0), 99)
	changed := false
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tasks SET progress = ?, updated_at = ?
			WHERE id = ? AND status = 'processing' AND progress < ?`, p, db.nowMS(), id, p)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			changed = true
			return nil
		}
		// Nothing changed: fine if it is processing with progress already >= p.
		var status string
		err = tx.QueryRowContext(ctx, `SELECT status FROM tasks WHERE id = ?`, id).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if status != StatusProcessing {
			return ErrConflict
		}
		return nil
	})
	if err == nil && changed {
		db.taskChanged(id)
	}
	return err
}

// CompleteTask: processing -> done, progress 100, paths and types set, completed_at=now; deletes the input image.
func (db *DB) CompleteTask(ctx context.Context, id, resultPath, resultType, previewPath, previewType string) error {
	err := db.writeTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) error {
		now := db.nowMS()
		res, err := tx.ExecContext(ctx, `UPDATE tasks SET status = 'done', progress = 100, result_path = ?,
			result_type = ?, preview_path = ?, preview_type = ?, completed_at = ?, updated_at = ?
			WHERE id = ? AND status = 'processing'`,
			resultPath, resultType, previewPath, previewType, now, now, id)
		if err := one(res, err, func() error { return transitionError(ctx, tx, id) }); err != nil {
			return err
		}
		q.add(id, ModelMode{}, queueOut) // it ran: never in the queue, so its kind is not needed
		return nil
	})
	if err == nil {
		db.taskChanged(id)
	}
	return err
}

// FailTask: pending|processing -> failed with code/message, completed_at=now
// (ErrConflict if already terminal). The input image is dropped: nothing will use it.
func (db *DB) FailTask(ctx context.Context, id, code, message string) error {
	err := db.writeTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) error {
		return failTask(ctx, tx, q, id, code, message, db.nowMS())
	})
	if err == nil {
		db.taskChanged(id)
	}
	return err
}

func failTask(ctx context.Context, tx *sql.Tx, q *queueEdits, id, code, message string, now int64) error {
	var k ModelMode
	err := tx.QueryRowContext(ctx, `UPDATE tasks SET status = 'failed', error_code = ?, error_message = ?,
		completed_at = ?, updated_at = ?
		WHERE id = ? AND status IN ('pending', 'processing') RETURNING model, mode`, code, message, now, now, id).Scan(&k.Model, &k.Mode)
	if errors.Is(err, sql.ErrNoRows) {
		return transitionError(ctx, tx, id)
	}
	if err == nil {
		q.add(id, k, queueOut)
	}
	return err
}

// ListStale: processing tasks of type typ whose started_at is before cutoff.
// The reaper asks every few seconds, so the query reads the processing
// tasks alone (INDEXED BY): left to itself, the planner may walk
// tasks_type_id, every task of the type ever made.
func (db *DB) ListStale(ctx context.Context, typ string, cutoff time.Time) ([]*Task, error) {
	return db.queryTasks(ctx, db.reader, listStaleQuery, typ, cutoff.UnixMilli())
}

const listStaleQuery = `SELECT ` + taskColumns + ` FROM tasks INDEXED BY tasks_status_id
	WHERE status = 'processing' AND type = ? AND started_at < ? ORDER BY id`

// ListQueuedStale: tasks handed to a workspace before cutoff that it has not
// started yet (GG_TTL_QUEUED, CONTRACT section 14), oldest first. They are
// found through the in-memory queue index (ListInFlight), so the reaper's
// pass does not read the pending tasks that wait in Gooni's own queue.
func (db *DB) ListQueuedStale(ctx context.Context, cutoff time.Time) ([]*Task, error) {
	ts, err := db.ListInFlight(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Task
	for _, t := range ts {
		if t.Handed() && !t.HandedAt.IsZero() && t.HandedAt.UnixMilli() < cutoff.UnixMilli() {
			out = append(out, t)
		}
	}
	return out, nil
}

// Gallery: done tasks newest first (ORDER BY id DESC), cursor = last id seen ("" = start), limit 1..100.
func (db *DB) Gallery(ctx context.Context, cursor string, limit int) (items []*Task, next string, err error) {
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 100)
	// One row more than asked tells whether another page exists.
	if cursor == "" {
		items, err = db.queryTasks(ctx, db.reader, `SELECT `+taskColumns+` FROM tasks
			WHERE status = 'done' ORDER BY id DESC LIMIT ?`, limit+1)
	} else {
		items, err = db.queryTasks(ctx, db.reader, `SELECT `+taskColumns+` FROM tasks
			WHERE status = 'done' AND id < ? ORDER BY id DESC LIMIT ?`, cursor, limit+1)
	}
	if err != nil {
		return nil, "", err
	}
	if len(items) > limit {
		items = items[:limit]
		next = items[limit-1].ID
	}
	return items, next, nil
}

// DeleteTask removes the row (and its input image); caller removes files first.
func (db *DB) DeleteTask(ctx context.Context, id string) error {
	err := db.writeTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) error {
		var k ModelMode
		err := tx.QueryRowContext(ctx, `DELETE FROM tasks WHERE id = ? RETURNING model, mode`, id).Scan(&k.Model, &k.Mode)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err == nil {
			q.add(id, k, queueOut)
		}
		return err
	})
	if err != nil {
		return err
	}
	db.taskChanged(id)
	return nil
}

// UnfinishedTasksOfAccount: pending tasks bound to that account and its processing tasks.
func (db *DB) UnfinishedTasksOfAccount(ctx context.Context, accountID int64) ([]*Task, error) {
	return db.queryTasks(ctx, db.reader, `SELECT `+taskColumns+` FROM tasks
		WHERE account_id = ? AND status IN ('pending', 'processing') ORDER BY id`, accountID)
}
