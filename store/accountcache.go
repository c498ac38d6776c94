package store

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
)

// accountRows keeps the accounts table in memory between writes to it.
// Every submit asks whether a ready account serves its model, and the
// dispatcher lists the accounts on every wake-up (every submit): two SQLite
// reads per submit of a table that changes a few times an hour, 11 % of a
// submit's CPU under load (docs/PERFORMANCE.md, "The submit path").
//
// Every method of DB that writes the accounts table calls changed once its
// transaction has ended (committed or not): gen moves on, and rows read at
// an older gen are read again. A reader takes gen before it reads, so a
// read that raced a commit is tagged with the gen before that commit's
// bump and never served after it. Only this process writes the table while
// it holds the data directory (the lock in internal/config): the commands
// that open the store without the lock (backup, sessions revoke) write no
// account row, and a migration that changed account rows would have to
// keep those commands from running it beside a live server.
type accountRows struct {
	gen atomic.Uint64

	mu   sync.Mutex
	at   uint64 // gen the rows were read at
	ok   bool   // rows hold the table as of at
	rows []*Account
}

// changed marks every cached row stale; call it after a write's transaction ends.
func (c *accountRows) changed() { c.gen.Add(1) }

// get returns the table's rows (shared: callers must not modify them),
// reading them through read when they may have changed.
func (c *accountRows) get(ctx context.Context, read func(context.Context) ([]*Account, error)) ([]*Account, error) {
	g := c.gen.Load()
	c.mu.Lock()
	if c.ok && c.at == g {
		rows := c.rows
		c.mu.Unlock()
		return rows, nil
	}
	c.mu.Unlock()
	rows, err := read(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if !c.ok || c.at < g {
		c.rows, c.at, c.ok = rows, g, true
	}
	c.mu.Unlock()
	return rows, nil
}

// clone is a copy of a that shares nothing a caller could change.
func (a *Account) clone() *Account {
	c := *a
	c.Models = slices.Clone(a.Models)
	return &c
}
