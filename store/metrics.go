package store

import "context"

// TaskCount is the number of tasks of one status and type.
type TaskCount struct {
	Status, Type string
	N            int
}

// CountByStatusType counts tasks per status and type, for /metrics.
func (db *DB) CountByStatusType(ctx context.Context) ([]TaskCount, error) {
	return queryRows(ctx, db.reader, func(r rowScanner) (TaskCount, error) {
		var c TaskCount
		return c, r.Scan(&c.Status, &c.Type, &c.N)
	}, `SELECT status, type, count(*) FROM tasks GROUP BY status, type`)
}
