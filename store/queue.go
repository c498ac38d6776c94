package store

import (
	"context"
	"database/sql"
	"slices"
	"sort"
	"sync"
	"time"
)

// The queue index: an in-memory mirror of which tasks wait where and which
// are on a workspace, so that queue_position, the ETA's work ahead and the
// dispatcher's in-flight counts are read without counting or reading rows
// (a count of the tasks ahead grew with the queue: ~130 ms p99 at 88k; the
// dispatcher's count per account walked every pending row on each submit).
//
// The database stays the only truth. The index is built from it at Open and
// then follows every committed write: each write that moves a task into,
// out of or within the queue lists the move (a queueEdit) in its
// transaction, and writeTasksTx applies the list after COMMIT while still
// holding commitMu, which every write's COMMIT takes; so edits are applied
// in commit order and a later write never commits before an earlier one's
// edits are in. A reader may see the index a moment ahead of or behind its
// own row read (a claim between the two): the position it reports is then
// that of the newer state.

// queueState is where a pending task is, as the queue index sees it.
type queueState uint8

const (
	queueOut     queueState = iota // done, failed or deleted
	queueWait                      // pending, not handed out: in Gooni's queue
	queueHanded                    // pending on a workspace (handed out, not started)
	queueRunning                   // processing
)

// queueEdit is one task's new place, recorded by a write before COMMIT.
type queueEdit struct {
	id      string
	kind    ModelMode
	state   queueState
	account int64     // queueHanded, queueRunning: account_id (0 = none)
	started time.Time // queueRunning: started_at
}

// queueEdits collects the edits of one write transaction.
type queueEdits struct{ list []queueEdit }

func (e *queueEdits) add(id string, kind ModelMode, st queueState) {
	e.list = append(e.list, queueEdit{id: id, kind: kind, state: st})
}

// addTask records t's place as its row now stands.
func (e *queueEdits) addTask(t *Task) {
	e.list = append(e.list, queueEdit{id: t.ID, kind: kindOf(t), state: stateOf(t.Status, t.AccountID),
		account: t.AccountID, started: t.StartedAt})
}

// stateOf is where a task row with this status and account sits.
func stateOf(status string, accountID int64) queueState {
	switch {
	case status == StatusProcessing:
		return queueRunning
	case status != StatusPending:
		return queueOut
	case accountID != 0:
		return queueHanded
	default:
		return queueWait
	}
}

// RunningTask is a processing task as the ETA sees it: its kind and when
// its workspace reported it running (zero when unknown).
type RunningTask struct {
	Kind      ModelMode
	StartedAt time.Time
}

// flight is a task on a workspace: handed out or processing.
type flight struct {
	kind    ModelMode
	account int64
	started time.Time // processing only
}

// queueIndex holds the waiting tasks of each kind (model and mode) in id
// order, which is the dispatcher's order, and the handed-out and the
// processing tasks (both bounded by the accounts' capacity).
type queueIndex struct {
	mu      sync.RWMutex
	wait    map[ModelMode]*idSet
	handed  map[string]flight
	running map[string]flight
}

func newQueueIndex() *queueIndex {
	return &queueIndex{wait: map[ModelMode]*idSet{}, handed: map[string]flight{}, running: map[string]flight{}}
}

// apply moves each task to its new place; the caller holds db.commitMu.
func (q *queueIndex) apply(edits []queueEdit) {
	if len(edits) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range edits {
		q.place(e)
	}
}

func (q *queueIndex) place(e queueEdit) {
	if s := q.wait[e.kind]; s != nil {
		s.remove(e.id)
		if s.len() == 0 && e.state != queueWait {
			delete(q.wait, e.kind)
		}
	}
	delete(q.handed, e.id)
	delete(q.running, e.id)
	switch e.state {
	case queueWait:
		s := q.wait[e.kind]
		if s == nil {
			s = &idSet{}
			q.wait[e.kind] = s
		}
		s.insert(e.id)
	case queueHanded:
		q.handed[e.id] = flight{kind: e.kind, account: e.account}
	case queueRunning:
		q.running[e.id] = flight{kind: e.kind, account: e.account, started: e.started}
	}
}

// processing lists the processing tasks, in no order.
func (q *queueIndex) processing() []RunningTask {
	q.mu.RLock()
	defer q.mu.RUnlock()
	out := make([]RunningTask, 0, len(q.running))
	for _, r := range q.running {
		out = append(out, RunningTask{Kind: r.kind, StartedAt: r.started})
	}
	return out
}

// inFlight lists the ids of the tasks on a workspace (handed out or
// processing), sorted, and counts them by account (0 excluded).
func (q *queueIndex) inFlight() (ids []string, byAccount map[int64]int) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	ids = make([]string, 0, len(q.handed)+len(q.running))
	byAccount = map[int64]int{}
	for _, m := range []map[string]flight{q.handed, q.running} {
		for id, f := range m {
			ids = append(ids, id)
			if f.account != 0 {
				byAccount[f.account]++
			}
		}
	}
	slices.Sort(ids)
	return ids, byAccount
}

// position is the 1-based place of id among the waiting tasks of every
// kind, or 0 when id is not waiting.
func (q *queueIndex) position(id string) int {
	q.mu.RLock()
	defer q.mu.RUnlock()
	ahead, found := 0, false
	for _, s := range q.wait {
		r, ok := s.rank(id)
		ahead += r
		found = found || ok
	}
	if !found {
		return 0
	}
	return ahead + 1
}

// ahead counts, by kind, the pending tasks (waiting or handed out) whose
// id sorts before id.
func (q *queueIndex) ahead(id string) map[ModelMode]int {
	q.mu.RLock()
	defer q.mu.RUnlock()
	out := map[ModelMode]int{}
	for k, s := range q.wait {
		if r, _ := s.rank(id); r > 0 {
			out[k] = r
		}
	}
	for h, f := range q.handed {
		if h < id {
			out[f.kind]++
		}
	}
	return out
}

// waiting is how many tasks wait in the queue.
func (q *queueIndex) waiting() int {
	q.mu.RLock()
	defer q.mu.RUnlock()
	n := 0
	for _, s := range q.wait {
		n += s.len()
	}
	return n
}

// load replaces the index with the pending and processing tasks (at Open).
func (q *queueIndex) load(ctx context.Context, r interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) error {
	type row struct {
		id string
		f  flight
	}
	scan := func(rs rowScanner) (row, error) {
		var x row
		var account, started sql.NullInt64
		err := rs.Scan(&x.id, &x.f.kind.Model, &x.f.kind.Mode, &account, &started)
		x.f.account, x.f.started = account.Int64, fromMS(started)
		return x, err
	}
	running := map[string]flight{}
	procs, err := queryRows(ctx, r, scan, `SELECT id, model, mode, account_id, started_at FROM tasks WHERE status = 'processing'`)
	if err != nil {
		return err
	}
	for _, p := range procs {
		running[p.id] = p.f
	}
	rows, err := r.QueryContext(ctx, `SELECT id, model, mode, account_id, NULL FROM tasks WHERE status = 'pending' ORDER BY id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	wait := map[ModelMode]*idSet{}
	handed := map[string]flight{}
	for rows.Next() {
		x, err := scan(rows)
		if err != nil {
			return err
		}
		id, k := x.id, x.f.kind
		if x.f.account != 0 {
			handed[id] = x.f
			continue
		}
		s := wait[k]
		if s == nil {
			s = &idSet{}
			wait[k] = s
		}
		s.appendSorted(id)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	q.wait, q.handed, q.running = wait, handed, running
	q.mu.Unlock()
	return nil
}

// idSet is a sorted set of ids kept in blocks of at most idBlock ids, so an
// insert or removal moves at most one block's entries and a rank is a
// binary search plus a sum over the block sizes before it: about 200
// additions at 100k waiting tasks, against a count(*) over 100k index
// entries before.
type idSet struct {
	blocks [][]string // each sorted and non-empty; every id of a block sorts before the next block's
	n      int
}

const idBlock = 512

func (s *idSet) len() int { return s.n }

// block is the index of the first block whose last id is >= id (len(blocks) if none).
func (s *idSet) block(id string) int {
	return sort.Search(len(s.blocks), func(i int) bool { b := s.blocks[i]; return b[len(b)-1] >= id })
}

// rank is how many ids of the set sort before id, and whether id is in it.
func (s *idSet) rank(id string) (int, bool) {
	bi := s.block(id)
	r := 0
	for _, b := range s.blocks[:bi] {
		r += len(b)
	}
	if bi == len(s.blocks) {
		return r, false
	}
	i, found := slices.BinarySearch(s.blocks[bi], id)
	return r + i, found
}

// insert adds id (a no-op when present).
func (s *idSet) insert(id string) {
	bi := s.block(id)
	if bi == len(s.blocks) {
		// Beyond every id: the common case, a new task at the back.
		if bi == 0 || len(s.blocks[bi-1]) >= idBlock {
			s.blocks = append(s.blocks, make([]string, 0, 16))
			bi = len(s.blocks)
		}
		bi--
	}
	b := s.blocks[bi]
	i, found := slices.BinarySearch(b, id)
	if found {
		return
	}
	b = slices.Insert(b, i, id)
	s.n++
	if len(b) <= idBlock {
		s.blocks[bi] = b
		return
	}
	// Split a full block in two.
	half := len(b) / 2
	right := append(make([]string, 0, idBlock), b[half:]...)
	s.blocks[bi] = b[:half:half]
	s.blocks = slices.Insert(s.blocks, bi+1, right)
}

// remove drops id (a no-op when absent).
func (s *idSet) remove(id string) {
	bi := s.block(id)
	if bi == len(s.blocks) {
		return
	}
	b := s.blocks[bi]
	i, found := slices.BinarySearch(b, id)
	if !found {
		return
	}
	b = slices.Delete(b, i, i+1)
	s.n--
	if len(b) == 0 {
		s.blocks = slices.Delete(s.blocks, bi, bi+1)
		return
	}
	s.blocks[bi] = b
}

// appendSorted adds an id known to sort after every id in the set (load).
func (s *idSet) appendSorted(id string) {
	if k := len(s.blocks); k == 0 || len(s.blocks[k-1]) >= idBlock {
		s.blocks = append(s.blocks, make([]string, 0, idBlock))
	}
	k := len(s.blocks) - 1
	s.blocks[k] = append(s.blocks[k], id)
	s.n++
}
