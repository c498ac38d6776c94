package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The prompt index behind the submit.
//
// Indexing a prompt in the transaction that creates its task made FTS5
// write a new index segment at every COMMIT: with 10 clients, 7 of the 22
// pages a group-commit transaction of 9 submits wrote to the WAL, and a
// third of the committer's CPU (docs/PERFORMANCE.md, "The prompt index in
// every batch").
// So a new task's id only goes into search_pending in its own transaction
// (the insert trigger of schema step 8), and indexSearchTx moves every
// waiting id into task_search and tasks_fts at once, one segment for many
// tasks:
//   - inside a submit's transaction, once about searchBatch tasks wait;
//   - on its own when no submit has come for searchIdle;
//   - before a search reads the index (searchReady), so a search still sees
//     every task created before it, as when each was indexed at once.
//
// search_pending is the truth about what waits (it survives a crash or a
// restore); searchWaiting, an estimate, only decides when to index. A
// failure of the background runs is not reported where it happens: the
// tasks keep waiting, and the next search, which must index them first,
// fails with that error.

// searchBatch is how many created tasks may wait before a submit's
// transaction indexes them: about 7 group-commit batches of 10 clients,
// and about 0.7 ms of CPU for the batch that does it (a profile under
// gooni bench: 0.28 s in about 400 runs).
const searchBatch = 64

// searchIdle is how long the committer waits for a submit before it indexes
// the tasks that wait.
const searchIdle = 50 * time.Millisecond

// The statements of indexSearchTx. The tasks of one run get their docids
// in id order, and each run's are above every earlier run's: the index's
// order (ListTasks with a query) is the order of the COMMITs that created
// the tasks, and within one run the order of their ids.
const (
	searchMapSQL    = `INSERT INTO task_search (task_id) SELECT task_id FROM search_pending ORDER BY task_id`
	searchFillSQL   = `INSERT INTO tasks_fts (rowid, prompt) SELECT s.docid, t.prompt FROM search_pending p JOIN task_search s ON s.task_id = p.task_id JOIN tasks t ON t.id = p.task_id`
	searchClearSQL  = `DELETE FROM search_pending`
	searchWaitsSQL  = `SELECT EXISTS (SELECT 1 FROM search_pending)`
	searchSavepoint = `SAVEPOINT search_index`
)

// indexSearchTx indexes the prompts of every task waiting in search_pending
// within tx and empties it; n is how many it indexed.
func (db *DB) indexSearchTx(ctx context.Context, tx *sql.Tx) (n int64, err error) {
	if !db.searchLater {
		return 0, nil
	}
	res, err := tx.ExecContext(ctx, searchMapSQL)
	if err != nil {
		return 0, err
	}
	if n, err = res.RowsAffected(); err != nil || n == 0 {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, searchFillSQL); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, searchClearSQL); err != nil {
		return 0, err
	}
	return n, nil
}

// indexSearchIn is indexSearchTx for a transaction that should commit even
// when indexing fails (a batch of submits): the index's statements run
// under a savepoint, undone on failure, and the tasks keep waiting
// (indexed is false). fail is set only when the savepoint itself cannot be
// undone or released: the transaction must not commit then (it could hold
// a task_search row without its index entry).
func (db *DB) indexSearchIn(ctx context.Context, tx *sql.Tx) (indexed bool, fail error) {
	if !db.searchLater {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, searchSavepoint); err != nil {
		return false, nil
	}
	_, err := db.indexSearchTx(ctx, tx)
	if err != nil {
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO search_index"); rerr != nil {
			return false, rerr
		}
	}
	if _, rerr := tx.ExecContext(ctx, "RELEASE search_index"); rerr != nil {
		return false, rerr
	}
	return err == nil, nil
}

// indexSearch indexes every waiting task in a transaction of its own.
func (db *DB) indexSearch(ctx context.Context) error {
	// Cleared before the transaction begins: a task committed after that
	// begin adds itself again after its COMMIT, so none is forgotten.
	db.searchWaiting.Store(0)
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := db.indexSearchTx(ctx, tx)
		return err
	})
	if err != nil {
		db.searchWaiting.Add(1)
		return fmt.Errorf("store: index prompts: %w", err)
	}
	return nil
}

// searchWaits reports whether any task waits for the prompt index. It
// first learns whether the schema has search_pending (step 8 on): the
// tests also open older schemas, whose triggers index prompts at once.
func (db *DB) searchWaits(ctx context.Context) (bool, error) {
	if !db.searchLater {
		err := db.reader.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'search_pending')`).Scan(&db.searchLater)
		if err != nil || !db.searchLater {
			return false, err
		}
	}
	var waits bool
	if err := db.reader.QueryRowContext(ctx, searchWaitsSQL).Scan(&waits); err != nil {
		return false, fmt.Errorf("store: read the prompt index: %w", err)
	}
	return waits, nil
}

// searchReady makes the prompt index complete before a search reads it:
// every task committed before this call is in it when it returns nil.
// Concurrent searches take turns: the first indexes what waits, and the
// others find nothing left (one write, not one per search). A failed
// indexing fails the search: its answer could otherwise miss tasks.
func (db *DB) searchReady(ctx context.Context) error {
	if !db.searchLater {
		return nil
	}
	waits, err := db.searchWaits(ctx)
	if err != nil || !waits {
		return err
	}
	db.searchMu.Lock()
	defer db.searchMu.Unlock()
	if waits, err = db.searchWaits(ctx); err != nil || !waits {
		return err
	}
	return db.indexSearch(ctx)
}
