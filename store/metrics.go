package store

import "context"

// TaskCount is the number of tasks of one status and type.
type TaskCount struct {
	Status, Type string
	N            int
}

// CountByStatusType counts tasks per status and type, for /metrics.
func (db *DB) CountByStatusType(ctx context.Context) ([]TaskCount, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT status, type, count(*) FROM tasks GROUP BY status, type`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TaskCount
	for rows.Next() {
		var c TaskCount
		if err := rows.Scan(&c.Status, &c.Type, &c.N); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
