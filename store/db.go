// Package store keeps Gooni's durable state in one SQLite file: tasks,
// sessions, worker accounts (credentials sealed with Fernet) and the
// append-only audit chain.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fernet/fernet-go"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors the server maps to contract codes; anything else is a wrapped driver error.
var (
	ErrNotFound     = errors.New("store: not found")
	ErrQueueFull    = errors.New("store: queue full")
	ErrConflict     = errors.New("store: state conflict") // a transition not allowed from the current state
	ErrDuplicate    = errors.New("store: duplicate")      // unique name taken
	ErrSchemaTooNew = errors.New("store: database schema is newer than this binary")
	ErrAppendOnly   = errors.New("store: audit rows are append-only")
	ErrClosed       = errors.New("store: database is closed")
)

// FileName is the database file inside the data directory.
const FileName = "gooni.db"

// Options carries the keys and knobs Open needs; keys come from internal/secrets.
type Options struct {
	AccountKeys []string // Fernet keys, base64url, newest first (seal with [0], open with any)
	AuditKey    []byte   // HMAC-SHA256 key of the audit chain (>= 32 bytes)
	// RetiredAuditKeys are earlier audit keys, oldest first, to verify the
	// chain's segments written before each key rotation.
	RetiredAuditKeys [][]byte
	Now              func() time.Time // nil = time.Now
	ReadConns        int              // read pool size, 0 = 4
}

// DB is the opened database: one writer connection for every write, a pool for reads.
type DB struct {
	path             string
	writer           *sql.DB
	reader           *sql.DB
	now              func() time.Time
	accountKeys      []*fernet.Key
	auditKey         []byte
	retiredAuditKeys [][]byte

	creates chan *createRequest
	pending pendingBound // committer-only
	// Statements of the submit and status paths, prepared once (parsing a
	// statement cost about as much as running it).
	stmtInsertTask, stmtGetTask, stmtListAccounts *sql.Stmt
	// pendingAdds counts pending rows added outside the committer (requeues).
	pendingAdds atomic.Int64
	// searchLater is set when the schema indexes prompts after their
	// task's COMMIT (step 8); searchWaiting then estimates the tasks
	// waiting for the prompt index (searchindex.go).
	searchLater   bool
	searchWaiting atomic.Int64
	searchIdle    atomic.Int64 // time.Duration: searchIdle; tests raise it
	searchMu      sync.Mutex   // one indexing run for concurrent searches
	closing       chan struct{}
	committed     sync.WaitGroup
	// queue mirrors the pending tasks (queue.go); commitMu is held from
	// each write's COMMIT until its queue edits are applied.
	queue     *queueIndex
	commitMu  sync.Mutex
	listeners changeListeners
	finished  *finishedTasks
	// accounts keeps the accounts table between writes (accountcache.go).
	accounts  accountRows
	closeOnce sync.Once
	closeErr  error

	// anchorMu serializes writes of DATA_DIR/audit.anchor; anchored is the
	// count of the last anchor this process put in place. headMu guards
	// latest, the newest committed head an append was allowed to anchor.
	anchorMu sync.Mutex
	anchored int64
	headMu   sync.Mutex
	latest   headPos
}

// schemaTooNewError keeps both versions in the message while matching ErrSchemaTooNew.
type schemaTooNewError struct{ file, binary int }

func (e *schemaTooNewError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than this binary (%d); use a newer gooni or restore a backup", e.file, e.binary)
}

func (e *schemaTooNewError) Is(target error) bool { return target == ErrSchemaTooNew }

// Open creates dataDir (0700) if needed and opens dataDir/gooni.db (0600) in WAL
// mode (busy_timeout, synchronous=FULL for the writer, foreign_keys on), applying
// the embedded schema's migration steps. One writer *sql.DB with MaxOpenConns 1,
// one read pool (query_only). Refuses (ErrSchemaTooNew) a file whose user_version is
// above the newest step.
func Open(dataDir string, schema string, opts Options) (*DB, error) {
	steps, err := parseMigrations(schema)
	if err != nil {
		return nil, err
	}
	var keys []*fernet.Key
	if len(opts.AccountKeys) > 0 {
		keys, err = fernet.DecodeKeys(opts.AccountKeys...)
		if err != nil {
			// The fernet error never contains key material, but say nothing of it anyway.
			return nil, errors.New("store: an account key is not a valid Fernet key")
		}
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("store: chmod data dir: %w", err)
	}
	path := filepath.Join(dataDir, FileName)
	// Create the file ourselves so SQLite never creates it with the umask's mode;
	// SQLite gives -wal and -shm the main file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: create database file: %w", err)
	}
	f.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, fmt.Errorf("store: chmod database file: %w", err)
	}

	db := &DB{
		path:             path,
		now:              opts.Now,
		accountKeys:      keys,
		auditKey:         append([]byte(nil), opts.AuditKey...),
		retiredAuditKeys: opts.RetiredAuditKeys,
		creates:          make(chan *createRequest),
		closing:          make(chan struct{}),
		queue:            newQueueIndex(),
		finished:         newFinishedTasks(),
	}
	if db.now == nil {
		db.now = time.Now
	}

	db.writer, err = sql.Open("sqlite", writerDSN(path))
	if err != nil {
		return nil, fmt.Errorf("store: open writer: %w", err)
	}
	db.writer.SetMaxOpenConns(1)
	db.writer.SetMaxIdleConns(1)
	db.writer.SetConnMaxLifetime(0)
	db.writer.SetConnMaxIdleTime(0)
	if err := db.writer.Ping(); err != nil {
		db.writer.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Chmod(path+suffix, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			db.writer.Close()
			return nil, fmt.Errorf("store: chmod %s: %w", suffix, err)
		}
	}
	if err := db.migrate(steps); err != nil {
		db.writer.Close()
		return nil, err
	}
	if err := db.moveInputBlobs(dataDir); err != nil {
		db.writer.Close()
		return nil, err
	}
	if err := db.upgradeAuditHead(context.Background()); err != nil {
		db.writer.Close()
		return nil, err
	}
	db.removeStaleAnchorTemps()
	if err := db.queue.load(context.Background(), db.writer); err != nil {
		db.writer.Close()
		return nil, fmt.Errorf("store: read the queue: %w", err)
	}

	n := opts.ReadConns
	if n <= 0 {
		n = 4
	}
	db.reader, err = sql.Open("sqlite", readerDSN(path))
	if err != nil {
		db.writer.Close()
		return nil, fmt.Errorf("store: open read pool: %w", err)
	}
	db.reader.SetMaxOpenConns(n)
	db.reader.SetMaxIdleConns(n)
	if err := db.reader.Ping(); err != nil {
		db.reader.Close()
		db.writer.Close()
		return nil, fmt.Errorf("store: open read pool: %w", err)
	}

	if db.stmtInsertTask, err = db.writer.Prepare(insertTaskSQL); err == nil {
		db.stmtGetTask, err = db.reader.Prepare(`SELECT ` + taskColumns + ` FROM tasks WHERE id = ?`)
	}
	if err == nil {
		// The dispatcher lists the accounts on every wake-up (every submit).
		db.stmtListAccounts, err = db.reader.Prepare(`SELECT ` + accountColumns + ` FROM accounts ORDER BY id`)
	}
	if err != nil {
		db.reader.Close()
		db.writer.Close()
		return nil, fmt.Errorf("store: prepare: %w", err)
	}

	// Whether prompts are indexed behind the submit (schema step 8). Tasks
	// a crash or a restored backup left waiting are indexed by the first
	// search or with the next batches: Open itself never writes for them
	// (the offline commands, a backup among them, open the store too).
	if _, err := db.searchWaits(context.Background()); err != nil {
		db.reader.Close()
		db.writer.Close()
		return nil, err
	}
	db.searchIdle.Store(int64(searchIdle))

	db.committed.Add(1)
	go db.runCommitter()
	return db, nil
}

// sqliteURIPath escapes the characters that would end the path part of a file: URI.
func sqliteURIPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

func writerDSN(path string) string {
	return "file:" + sqliteURIPath(path) +
		"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
}

func readerDSN(path string) string {
	return "file:" + sqliteURIPath(path) +
		"?_pragma=busy_timeout(5000)&_pragma=query_only(1)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
}

var migrateMarker = regexp.MustCompile(`^--\s*migrate:\s*(\d+)\s*$`)

// parseMigrations splits schema into steps 1..N at "-- migrate: N" lines.
func parseMigrations(schema string) ([]string, error) {
	var steps []string
	var cur *strings.Builder
	for i, line := range strings.Split(schema, "\n") {
		trimmed := strings.TrimSpace(line)
		if m := migrateMarker.FindStringSubmatch(trimmed); m != nil {
			n, err := strconv.Atoi(m[1])
			if err != nil || n != len(steps)+1 {
				return nil, fmt.Errorf("store: schema line %d: migration step %s out of order (want %d)", i+1, m[1], len(steps)+1)
			}
			steps = append(steps, "")
			cur = &strings.Builder{}
			continue
		}
		if cur == nil {
			if trimmed != "" && !strings.HasPrefix(trimmed, "--") {
				return nil, fmt.Errorf("store: schema line %d: SQL before the first \"-- migrate: 1\" marker", i+1)
			}
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		steps[len(steps)-1] = cur.String()
	}
	if len(steps) == 0 {
		return nil, errors.New("store: schema has no \"-- migrate: 1\" step")
	}
	return steps, nil
}

// migrate applies every step above the file's user_version, each in its own transaction.
func (db *DB) migrate(steps []string) error {
	ctx := context.Background()
	var version int
	if err := db.writer.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("store: read schema version: %w", err)
	}
	if version > len(steps) {
		return &schemaTooNewError{file: version, binary: len(steps)}
	}
	for n := version + 1; n <= len(steps); n++ {
		err := db.writeTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, steps[n-1]); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(n))
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migration step %d: %w", n, err)
		}
	}
	return nil
}

// Close stops the task committer and closes both connection pools.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		close(db.closing)
		db.committed.Wait()
		db.stmtInsertTask.Close()
		db.stmtGetTask.Close()
		db.stmtListAccounts.Close()
		errR := db.reader.Close()
		errW := db.writer.Close()
		db.closeErr = errors.Join(errR, errW)
	})
	return db.closeErr
}

// Ping proves the database is readable with a real query, not just an open handle.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	err := db.reader.QueryRowContext(ctx, "SELECT 1 FROM tasks LIMIT 1").Scan(&one)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Path is the database file, for logs and the backup command.
func (db *DB) Path() string { return db.path }

// Backup writes a consistent copy of the live database to dest, which must not exist.
func (db *DB) Backup(ctx context.Context, dest string) error {
	// VACUUM INTO reads a "file:" name as an SQLite URI, so "file:x.db"
	// would write x.db (with the umask's mode) instead of the file made
	// below; such names, and URI query parts, are refused.
	if len(dest) >= 5 && strings.EqualFold(dest[:5], "file:") {
		return fmt.Errorf("store: backup: %q looks like an SQLite URI; give a plain file path", dest)
	}
	// Pre-create the empty file (VACUUM INTO accepts an empty file) so the copy
	// of sealed credentials and session hashes is never world-readable.
	f, err := os.OpenFile(dest, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	f.Close()
	if _, err := db.writer.ExecContext(ctx, "VACUUM INTO ?", dest); err != nil {
		os.Remove(dest)
		return fmt.Errorf("store: backup: %w", err)
	}
	return os.Chmod(dest, 0o600)
}

// queryRows runs a query and scans every row with scan.
func queryRows[T any](ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// countBy runs a `SELECT key, count(*) ... GROUP BY key` query into a map.
func countBy[K comparable](ctx context.Context, q *sql.DB, query string, args ...any) (map[K]int, error) {
	type pair struct {
		k K
		n int
	}
	pairs, err := queryRows(ctx, q, func(r rowScanner) (pair, error) {
		var p pair
		return p, r.Scan(&p.k, &p.n)
	}, query, args...)
	out := make(map[K]int, len(pairs))
	for _, p := range pairs {
		out[p.k] = p.n
	}
	return out, err
}

// one checks that a write touched a row; none says what it means when it did not.
func one(res sql.Result, err error, none func() error) error {
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return none()
	}
	return nil
}

func notFound() error { return ErrNotFound }

// writeTx runs fn in one transaction on the writer and commits it.
func (db *DB) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return db.writeTasksTx(ctx, func(tx *sql.Tx, _ *queueEdits) error { return fn(tx) })
}

// writeTasksTx is writeTx for a write that moves tasks into, out of or
// within the queue: fn records each move in q, and they reach the queue
// index after COMMIT, before any later write can commit (queue.go).
func (db *DB) writeTasksTx(ctx context.Context, fn func(tx *sql.Tx, q *queueEdits) error) error {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	var q queueEdits
	if err := fn(tx, &q); err != nil {
		tx.Rollback()
		return err
	}
	return db.commitTasksTx(tx, &q)
}

// commitTasksTx commits tx and applies its queue edits before any later
// write can commit.
func (db *DB) commitTasksTx(tx *sql.Tx, q *queueEdits) error {
	// Holding the writer connection, this cannot wait on a later write.
	db.commitMu.Lock()
	defer db.commitMu.Unlock()
	if err := tx.Commit(); err != nil {
		return err
	}
	db.queue.apply(q.list)
	return nil
}

// isUniqueViolation reports a UNIQUE or PRIMARY KEY constraint failure.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return true
		}
	}
	return false
}

// isConstraint reports a failure that belongs to the rows written, not to
// the transaction: a taken id or Idempotency-Key, or another constraint
// (SQLite undoes only that statement).
func isConstraint(err error) bool {
	if errors.Is(err, ErrDuplicate) || errors.Is(err, ErrIdempotencyKeyUsed) {
		return true
	}
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// ms converts a time to the stored form; the zero time is NULL.
func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// fromMS converts a stored time back; NULL is the zero time.
func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

func (db *DB) nowMS() int64 { return db.now().UnixMilli() }
