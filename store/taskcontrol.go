package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
)

// IdempotencyTTL is how long an Idempotency-Key of POST /generate is
// remembered (CONTRACT section 12); older keys count as unused and are purged.
const IdempotencyTTL = 24 * time.Hour

// ErrIdempotencyKeyUsed means CreateTasks found its Idempotency-Key already
// stored (within IdempotencyTTL); nothing was created.
var ErrIdempotencyKeyUsed = errors.New("store: idempotency key already used")

// IdempotencyRecord is one stored Idempotency-Key: the key (1-255 printable
// ASCII, checked by the server), the SHA-256 of the request body it came
// with, and the answer (a JSON body) that is replayed for it.
type IdempotencyRecord struct {
	Key       string
	BodyHash  []byte
	Response  []byte
	CreatedAt time.Time
}

// insertIdempotency stores rec in tx, first dropping an expired row of the same key.
func (db *DB) insertIdempotency(ctx context.Context, tx *sql.Tx, rec *IdempotencyRecord) error {
	now := db.now()
	if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE key = ? AND created_at <= ?`,
		rec.Key, now.Add(-IdempotencyTTL).UnixMilli()); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (key, body_hash, response, created_at) VALUES (?, ?, ?, ?)`,
		rec.Key, rec.BodyHash, string(rec.Response), now.UnixMilli())
	if err != nil && isUniqueViolation(err) {
		return ErrIdempotencyKeyUsed
	}
	return err
}

// IdempotentAnswer returns the stored record of key when it is younger than
// IdempotencyTTL; ErrNotFound otherwise.
func (db *DB) IdempotentAnswer(ctx context.Context, key string) (*IdempotencyRecord, error) {
	rec := &IdempotencyRecord{Key: key}
	var resp string
	var created int64
	err := db.reader.QueryRowContext(ctx, `SELECT body_hash, response, created_at FROM idempotency_keys
		WHERE key = ? AND created_at > ?`, key, db.now().Add(-IdempotencyTTL).UnixMilli()).Scan(&rec.BodyHash, &resp, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	rec.Response, rec.CreatedAt = []byte(resp), time.UnixMilli(created).UTC()
	return rec, nil
}

// SameBody reports whether hash is the body hash the key was stored with.
func (r *IdempotencyRecord) SameBody(hash []byte) bool { return bytes.Equal(r.BodyHash, hash) }

// PurgeIdempotencyKeys removes keys stored at or before before and returns how many.
func (db *DB) PurgeIdempotencyKeys(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.writer.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE created_at <= ?`, before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("store: purge idempotency keys: %w", err)
	}
	return res.RowsAffected()
}

// ErrorCanceled is the error code of a task a user canceled.
const ErrorCanceled = "canceled"

// CancelTask ends a pending or processing task as failed with code
// "canceled" and message msg, and returns the task as it was just before
// (its status and account tell the caller whether a workspace holds it).
// ErrConflict (with the task) when it had already finished; ErrNotFound.
func (db *DB) CancelTask(ctx context.Context, id, msg string) (*Task, error) {
	var was *Task
	err := db.writeTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) error {
		var err error
		was, err = scanTask(tx.QueryRowContext(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if was.Status != StatusPending && was.Status != StatusProcessing {
			return ErrConflict
		}
		return failTask(ctx, tx, q, id, ErrorCanceled, msg, db.nowMS())
	})
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return was, err
		}
		return nil, err
	}
	db.taskChanged(id)
	return was, nil
}

// TaskFilter selects tasks for ListTasks. Empty fields do not filter.
type TaskFilter struct {
	Statuses []string // any of these statuses
	Model    string   // canonical model id
	Type     string   // image|video
	// Query is the q of GET /tasks: every word (a run of letters and
	// digits) must be a word of the prompt, case- and accent-insensitive.
	Query  string
	Cursor string // the last id of the previous page ("" = start)
	Limit  int    // 1..100 (0 = 50)
}

// MaxQueryWords bounds the words of a prompt search.
const MaxQueryWords = 16

// QueryWords splits a prompt search into its words (runs of letters and
// digits, lower-cased); the server refuses more than MaxQueryWords or none.
func QueryWords(q string) []string {
	return strings.FieldsFunc(strings.ToLower(q), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// ftsMatch turns words into an FTS5 query: each word a quoted term, all
// required. Words hold only letters and digits, so nothing needs escaping.
// (Prefix terms were measured 20-50 times slower when a common word meets
// a rare one at 100k tasks, so a word matches whole words only.)
func ftsMatch(words []string) string {
	parts := make([]string, len(words))
	for i, w := range words {
		parts[i] = `"` + w + `"`
	}
	return strings.Join(parts, " ")
}

var qualifiedTaskColumns = func() string {
	cols := strings.Split(taskColumns, ",")
	for i, c := range cols {
		cols[i] = "t." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}()

// ListTasks returns one page of tasks matching f, newest first, and the
// cursor of the next page ("" when this is the last). Without Query the
// order is by id (creation order), each status read newest first from its
// own index range (several statuses are merged, never sorted whole); with
// Query it is the prompt index's order, which is the order tasks were
// stored in (the same as creation order but for tasks created within the
// same instant).
func (db *DB) ListTasks(ctx context.Context, f TaskFilter) (items []*Task, next string, err error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 100)
	var statuses []string
	for _, s := range f.Statuses {
		if !slices.Contains(statuses, s) {
			statuses = append(statuses, s)
		}
	}
	// The filters other than status and the keyset, shared by every branch.
	var where []string
	var args []any
	if f.Model != "" {
		where = append(where, `t.model = ?`)
		args = append(args, f.Model)
	}
	if f.Type != "" {
		where = append(where, `t.type = ?`)
		args = append(args, f.Type)
	}
	and := func(extra ...string) string {
		all := append(append([]string{}, extra...), where...)
		if len(all) == 0 {
			return ""
		}
		return ` WHERE ` + strings.Join(all, ` AND `)
	}
	// One row more than asked tells whether another page exists.
	var query string
	var qargs []any
	switch words := QueryWords(f.Query); {
	case len(words) > 0:
		if err := db.searchReady(ctx); err != nil {
			return nil, "", fmt.Errorf("store: list tasks: %w", err)
		}
		conds := []string{`tasks_fts MATCH ?`}
		qargs = append(qargs, ftsMatch(words))
		if f.Cursor != "" {
			// The cursor's place in the index; for a task deleted since
			// (or an id that never was), the place of the next newer task
			// by id, as the listings without q page by id: docids follow
			// ids but for tasks committed out of order.
			conds = append(conds, `f.rowid < coalesce(
				(SELECT docid FROM task_search WHERE task_id = ?),
				(SELECT docid FROM task_search WHERE task_id > ? ORDER BY task_id LIMIT 1),
				9223372036854775807)`)
			qargs = append(qargs, f.Cursor, f.Cursor)
		}
		if len(statuses) > 0 {
			conds = append(conds, `t.status IN (?`+strings.Repeat(", ?", len(statuses)-1)+`)`)
			for _, s := range statuses {
				qargs = append(qargs, s)
			}
		}
		query = `SELECT ` + qualifiedTaskColumns + ` FROM tasks_fts f JOIN task_search s ON s.docid = f.rowid
			JOIN tasks t ON t.id = s.task_id` + and(conds...) + ` ORDER BY f.rowid DESC LIMIT ?`
		qargs = append(append(qargs, args...), limit+1)
	case len(statuses) > 1:
		parts := make([]string, len(statuses))
		for i, st := range statuses {
			conds := []string{`t.status = ?`}
			qargs = append(qargs, st)
			if f.Cursor != "" {
				conds = append(conds, `t.id < ?`)
				qargs = append(qargs, f.Cursor)
			}
			parts[i] = `SELECT * FROM (SELECT ` + qualifiedTaskColumns + ` FROM tasks t` + and(conds...) + ` ORDER BY t.id DESC LIMIT ?)`
			qargs = append(append(qargs, args...), limit+1)
		}
		query = `SELECT * FROM (` + strings.Join(parts, ` UNION ALL `) + `) ORDER BY id DESC LIMIT ?`
		qargs = append(qargs, limit+1)
	default:
		var conds []string
		if len(statuses) == 1 {
			conds = append(conds, `t.status = ?`)
			qargs = append(qargs, statuses[0])
		}
		if f.Cursor != "" {
			conds = append(conds, `t.id < ?`)
			qargs = append(qargs, f.Cursor)
		}
		query = `SELECT ` + qualifiedTaskColumns + ` FROM tasks t` + and(conds...) + ` ORDER BY t.id DESC LIMIT ?`
		qargs = append(append(qargs, args...), limit+1)
	}
	items, err = db.queryTasks(ctx, db.reader, query, qargs...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list tasks: %w", err)
	}
	if len(items) > limit {
		items = items[:limit]
		next = items[limit-1].ID
	}
	return items, next, nil
}

// RecentRunTimes returns how long the last n done tasks of model and mode
// ran (completed_at - started_at), newest first: the basis of eta_seconds.
func (db *DB) RecentRunTimes(ctx context.Context, model, mode string, n int) ([]time.Duration, error) {
	return queryRows(ctx, db.reader, func(r rowScanner) (time.Duration, error) {
		var ms int64
		err := r.Scan(&ms)
		return time.Duration(ms) * time.Millisecond, err
	}, `SELECT completed_at - started_at FROM tasks INDEXED BY tasks_model_id
		WHERE model = ? AND status = 'done' AND mode = ? AND started_at IS NOT NULL AND completed_at >= started_at
		ORDER BY id DESC LIMIT ?`, model, mode, n)
}

// ModelMode names a kind of task for run-time estimates.
type ModelMode struct{ Model, Mode string }

// PendingAhead counts, by model and mode, the pending tasks (waiting in the
// queue or handed to a workspace) whose id sorts before id; kinds with none
// are absent. It reads the in-memory queue index (queue.go), so its cost
// does not grow with the tasks ahead; ctx is unused.
func (db *DB) PendingAhead(ctx context.Context, id string) (map[ModelMode]int, error) {
	return db.queue.ahead(id), nil
}

// SeedTasks inserts n tasks made by mk(i) for load and scale measurements
// (the status, times and paths are taken as given; ids should come from
// IDAt so they sort in creation order). It commits every 10,000 rows; the
// server must be stopped. Their prompts are indexed before each COMMIT.
func (db *DB) SeedTasks(ctx context.Context, n int, mk func(i int) Task) error {
	for done := 0; done < n; {
		err := db.writeTasksTx(ctx, func(tx *sql.Tx, q *queueEdits) error {
			stmt, err := tx.PrepareContext(ctx, `INSERT INTO tasks (id, type, model, mode, prompt, params, status, progress,
				attempts, error_code, error_message, created_at, started_at, completed_at, updated_at,
				result_path, result_type, preview_path, preview_type)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for end := min(done+10_000, n); done < end; done++ {
				t := mk(done)
				if len(t.Params) == 0 {
					t.Params = []byte("{}")
				}
				if _, err := stmt.ExecContext(ctx, t.ID, t.Type, t.Model, t.Mode, t.Prompt, string(t.Params), t.Status, t.Progress,
					t.ErrorCode, t.ErrorMessage, t.CreatedAt.UnixMilli(), ms(t.StartedAt), ms(t.CompletedAt), t.CreatedAt.UnixMilli(),
					t.ResultPath, t.ResultType, t.PreviewPath, t.PreviewType); err != nil {
					return err
				}
				if t.Status == StatusPending || t.Status == StatusProcessing {
					row := t // as stored: no account, times in whole ms
					row.AccountID, row.StartedAt = 0, fromMS(sql.NullInt64{Int64: t.StartedAt.UnixMilli(), Valid: !t.StartedAt.IsZero()})
					q.addTask(&row)
				}
			}
			_, err = db.indexSearchTx(ctx, tx)
			return err
		})
		if err != nil {
			return fmt.Errorf("store: seed tasks: %w", err)
		}
	}
	return nil
}
