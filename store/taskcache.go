package store

import (
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// finishedCacheSize bounds the finished tasks GetTask keeps in memory. A
// row is usually under 2 KB and at most about 20 KB (two prompts of 2,000
// characters of up to 4 bytes, the params), so at most about 40 MB.
const finishedCacheSize = 2048

// finishedTasks keeps the rows of finished tasks (done or failed) that
// GetTask read, so a client polling a finished task's status does not cost
// a SQLite read each time (docs/PERFORMANCE.md, "The status path").
//
// A finished row changes only by a delete or by its account's removal (ON
// DELETE SET NULL on account_id); every commit that changes a task's row
// calls taskChanged, which drops that id here before any listener hears of
// it, and an account's removal drops everything. gen orders a read against
// those drops: a row read before a drop is not put in after it.
type finishedTasks struct {
	mu   sync.Mutex
	gen  uint64
	rows *simplelru.LRU[string, Task]
}

func newFinishedTasks() *finishedTasks {
	rows, err := simplelru.NewLRU[string, Task](finishedCacheSize, nil)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return &finishedTasks{rows: rows}
}

// get returns a copy of the cached row of id, if there is one.
func (c *finishedTasks) get(id string) (*Task, bool) {
	c.mu.Lock()
	t, ok := c.rows.Get(id)
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	return &t, true
}

// generation is taken before a read whose row may go in with put.
func (c *finishedTasks) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put keeps a copy of t if it is finished and nothing was dropped since
// gen was taken (the row may be older than that drop).
func (c *finishedTasks) put(gen uint64, t *Task) {
	if t.Status != StatusDone && t.Status != StatusFailed {
		return
	}
	c.mu.Lock()
	if c.gen == gen {
		c.rows.Add(t.ID, *t)
	}
	c.mu.Unlock()
}

// drop forgets the rows of ids, after a commit changed them.
func (c *finishedTasks) drop(ids ...string) {
	c.mu.Lock()
	c.gen++
	for _, id := range ids {
		c.rows.Remove(id)
	}
	c.mu.Unlock()
}

// dropAll forgets every row, after a commit that may have changed rows
// without naming them (an account's removal).
func (c *finishedTasks) dropAll() {
	c.mu.Lock()
	c.gen++
	c.rows.Purge()
	c.mu.Unlock()
}
