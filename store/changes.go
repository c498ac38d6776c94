package store

import "sync"

// changeListeners holds the functions told about committed task changes.
type changeListeners struct {
	mu   sync.RWMutex
	next int
	fns  map[int]func(taskID string)
}

// ListenTasks registers fn to be called with a task's id after every commit
// that created, changed or deleted that task's row. fn runs on the
// committing goroutine, so it must not block or call back into the store;
// the event hub only signals a channel. stop removes fn.
func (db *DB) ListenTasks(fn func(taskID string)) (stop func()) {
	l := &db.listeners
	l.mu.Lock()
	if l.fns == nil {
		l.fns = map[int]func(string){}
	}
	id := l.next
	l.next++
	l.fns[id] = fn
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		delete(l.fns, id)
		l.mu.Unlock()
	}
}

// taskChanged tells every listener that a commit changed these tasks,
// after GetTask's cache has forgotten them.
func (db *DB) taskChanged(ids ...string) {
	db.finished.drop(ids...)
	l := &db.listeners
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, fn := range l.fns {
		for _, id := range ids {
			fn(id)
		}
	}
}
