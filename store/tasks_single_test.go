package store

import (
	"context"
	"database/sql"
)

// createTaskSingle is CreateTask without batching, one transaction per task:
// the tests' reference for what the group committer must be equivalent to
// (same rows, same queue limit), and its baseline in the submit benchmark.
// Like RequeueTask it adds pending rows outside the committer, so it bumps
// db.pendingAdds first.
func (db *DB) createTaskSingle(ctx context.Context, t *Task, image []byte, queueMax int) error {
	db.prepareTask(t, image)
	db.pendingAdds.Add(1) // outside the committer: its bound must grow too
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		pending, err := countPending(ctx, tx)
		if err != nil {
			return err
		}
		if queueMax > 0 && pending >= queueMax {
			return ErrQueueFull
		}
		return db.insertTask(ctx, tx, t, image)
	})
}
