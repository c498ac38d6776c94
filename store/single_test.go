package store

import (
	"context"
	"database/sql"
)

// createTaskSingle is CreateTask without group commit: one transaction per
// task. It is the reference the group committer is tested and benchmarked
// against (same results, higher cost), not a production path.
func (db *DB) createTaskSingle(ctx context.Context, t *Task, opts CreateOptions) error {
	db.prepareTask(t)
	db.pendingAdds.Add(1) // outside the committer: its bound must grow too
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		pending, err := countPending(ctx, tx)
		if err != nil {
			return err
		}
		if opts.QueueMax > 0 && pending >= opts.QueueMax {
			return ErrQueueFull
		}
		return db.insertTask(ctx, tx, t)
	})
}
