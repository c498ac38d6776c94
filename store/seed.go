package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// SeedDone inserts n done tasks for load and scale measurements (`gooni
// bench --seed-done`): copies of proto with ids whose time part runs from
// first, one second apart, so they sort in creation order like real ones.
// Their result and preview are proto's (one shared file). It commits every
// 10,000 rows, their prompts indexed; the server must be stopped.
func (db *DB) SeedDone(ctx context.Context, proto Task, first time.Time, n int) error {
	for done := 0; done < n; {
		err := db.writeTx(ctx, func(tx *sql.Tx) error {
			stmt, err := tx.PrepareContext(ctx, `INSERT INTO tasks (id, type, model, mode, prompt, params, status, progress,
				attempts, created_at, started_at, completed_at, updated_at, result_path, result_type, preview_path, preview_type)
				VALUES (?, ?, ?, ?, ?, ?, 'done', 100, 1, ?, ?, ?, ?, ?, ?, ?, ?)`)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for end := min(done+10_000, n); done < end; done++ {
				created := first.Add(time.Duration(done) * time.Second)
				c := created.UnixMilli()
				if _, err := stmt.ExecContext(ctx, IDAt(created), proto.Type, proto.Model, proto.Mode,
					fmt.Sprintf("%s (%d)", proto.Prompt, done), string(proto.Params), c, c+100, c+3100, c+3100,
					proto.ResultPath, proto.ResultType, proto.PreviewPath, proto.PreviewType); err != nil {
					return err
				}
			}
			_, err = db.indexSearchTx(ctx, tx)
			return err
		})
		if err != nil {
			return fmt.Errorf("store: seed done tasks: %w", err)
		}
	}
	return nil
}
