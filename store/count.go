package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// CountTasks counts the tasks matching f's filters (Statuses, Model, Type,
// Query as ListTasks reads them; Cursor and Limit are ignored), reading at
// most upTo+1 matching rows: n is the exact count when it is at most upTo,
// else n is upTo and more is true. upTo <= 0 counts them all. The bound keeps
// the cost of a count near that of a page whatever the table holds (GET
// /gallery?total=1 counts up to 500: docs/PERFORMANCE.md).
func (db *DB) CountTasks(ctx context.Context, f TaskFilter, upTo int) (n int, more bool, err error) {
	var conds []string
	var args []any
	from := `tasks t`
	if words := QueryWords(f.Query); len(words) > 0 {
		if err := db.searchReady(ctx); err != nil {
			return 0, false, fmt.Errorf("store: count tasks: %w", err)
		}
		from = `tasks_fts f JOIN task_search s ON s.docid = f.rowid JOIN tasks t ON t.id = s.task_id`
		conds = append(conds, `tasks_fts MATCH ?`)
		args = append(args, ftsMatch(words))
	}
	var statuses []string
	for _, s := range f.Statuses {
		if !slices.Contains(statuses, s) {
			statuses = append(statuses, s)
		}
	}
	if len(statuses) > 0 {
		conds = append(conds, `t.status IN (?`+strings.Repeat(", ?", len(statuses)-1)+`)`)
		for _, s := range statuses {
			args = append(args, s)
		}
	}
	if f.Model != "" {
		conds = append(conds, `t.model = ?`)
		args = append(args, f.Model)
	}
	if f.Type != "" {
		conds = append(conds, `t.type = ?`)
		args = append(args, f.Type)
	}
	where := ""
	if len(conds) > 0 {
		where = ` WHERE ` + strings.Join(conds, ` AND `)
	}
	query := `SELECT count(*) FROM ` + from + where
	if upTo > 0 {
		query = `SELECT count(*) FROM (SELECT 1 FROM ` + from + where + ` LIMIT ?)`
		args = append(args, upTo+1)
	}
	if err := db.reader.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, false, fmt.Errorf("store: count tasks: %w", err)
	}
	if upTo > 0 && n > upTo {
		return upTo, true, nil
	}
	return n, false, nil
}
