package dispatch

import (
	"context"
	"errors"
	"time"

	"gooni/internal/workspace"
	"gooni/store"
)

// pollPass polls every task on a workspace (handed or processing) that no
// goroutine owns yet, at most pollWorkers at a time, without waiting for slow ones.
func (d *Dispatcher) pollPass(ctx context.Context) {
	tasks, err := d.db.ListInFlight(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("poll: list processing", "err", err)
		}
		return
	}
	for _, t := range tasks {
		if ctx.Err() != nil {
			return
		}
		if !d.claimInflight(t.ID) {
			continue
		}
		select {
		case d.sem <- struct{}{}:
		default:
			// All poll slots busy: this task waits for the next pass.
			d.releaseInflight(t.ID)
			continue
		}
		d.workers.Add(1)
		go func(t *store.Task) {
			defer d.workers.Done()
			defer func() { <-d.sem }()
			defer d.releaseInflight(t.ID)
			d.poll(ctx, t)
		}(t)
	}
}

// poll asks the workspace about one task and acts on the answer.
func (d *Dispatcher) poll(ctx context.Context, listed *store.Task) {
	// The list may be stale: the task may have ended, or moved to another account.
	t, err := d.db.GetTask(ctx, listed.ID)
	if err != nil || !(t.Status == store.StatusProcessing || t.Handed()) {
		return
	}
	if t.AccountID == 0 {
		d.retryOrFail(ctx, t, "the task had no worker account")
		d.Wake()
		return
	}
	acc, err := d.db.GetAccount(ctx, t.AccountID)
	if errors.Is(err, store.ErrNotFound) {
		d.retryOrFail(ctx, t, "its worker account no longer exists")
		d.Wake()
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("poll: read account", "account_id", t.AccountID, "err", err)
		}
		return
	}
	c, err := d.Driver(ctx, acc)
	if err != nil {
		d.accountDown(ctx, acc, "cannot reach the workspace: "+clientErrorReason(err), err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	st, err := c.Status(cctx, t.ID)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if errors.Is(err, workspace.ErrNotFound) {
		d.pollOK(acc.ID)
		d.retryOrFail(ctx, t, "account "+acc.Name+": the workspace lost the task")
		d.Wake()
		return
	}
	if err != nil {
		_, reason := classify(err)
		d.pollFailed(ctx, acc, reason, err)
		return
	}
	d.pollOK(acc.ID)
	switch st.Status {
	case workspace.StatusDone:
		if t = d.started(ctx, t, st); t == nil {
			return
		}
		d.finish(ctx, t, c, acc)
	case workspace.StatusFailed:
		msg := st.Error
		if msg == "" {
			msg = "the workspace reported a failure without a message"
		}
		d.fail(ctx, t, "worker_error", msg)
		d.cancelRemote(c, t.ID)
	case workspace.StatusPending:
		// Still in the workspace's own queue (a cold start, a busy box):
		// the task stays pending, and GG_TTL_QUEUED bounds the wait.
	default:
		if t = d.started(ctx, t, st); t == nil {
			return
		}
		if st.Progress > t.Progress {
			if err := d.db.SetProgress(ctx, t.ID, st.Progress); err != nil {
				if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
					d.log.Error("poll: store progress", "task_id", t.ID, "err", err)
				}
				return
			}
		}
	}
}

// started moves a handed task to processing once its workspace reports it
// running (or done): its TTL clock starts now. It returns the task as it now
// is, or nil when it ended or moved on meanwhile.
func (d *Dispatcher) started(ctx context.Context, t *store.Task, st *workspace.TaskState) *store.Task {
	if !t.Handed() {
		return t
	}
	nt, err := d.db.StartTask(ctx, t.ID, t.AccountID)
	if err != nil {
		if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
			d.log.Error("poll: mark started", "task_id", t.ID, "err", err)
		}
		return nil
	}
	d.log.Info("task started on its workspace", "task_id", t.ID, "account_id", t.AccountID, "workspace_status", st.Status)
	return nt
}

// timedOut counts a workspace call that timed out like an unanswered poll:
// a run of them, not one slow cold start, marks the account failed.
func (d *Dispatcher) timedOut(ctx context.Context, acc *store.Account, reason string, cause error) {
	d.pollFailed(ctx, acc, reason, cause)
}

// pollOK resets an account's run of unanswered polls.
func (d *Dispatcher) pollOK(accountID int64) {
	d.mu.Lock()
	delete(d.pollFails, accountID)
	d.mu.Unlock()
}

// pollRun counts an account's unanswered polls in a row, of the settings
// of one config_rev.
type pollRun struct {
	rev int64
	n   int
}

// pollFailed counts an unanswered poll; a run of them marks the account failed.
func (d *Dispatcher) pollFailed(ctx context.Context, acc *store.Account, reason string, cause error) {
	d.cfg.Observer.WorkspaceError(acc.Name)
	d.mu.Lock()
	run := d.pollFails[acc.ID]
	if run.rev != acc.ConfigRev {
		run = pollRun{rev: acc.ConfigRev} // an edit starts a new run
	}
	run.n++
	d.pollFails[acc.ID] = run
	n := run.n
	d.mu.Unlock()
	d.log.Warn("workspace poll failed", "account_id", acc.ID, "account", acc.Name, "reason", reason, "in_a_row", n)
	if n >= pollFailLimit {
		d.accountDown(ctx, acc, reason, cause)
	}
}

// fail ends a task with a code and message (the store tells the event streams).
func (d *Dispatcher) fail(ctx context.Context, t *store.Task, code, msg string) bool {
	if err := d.db.FailTask(ctx, t.ID, code, msg); err != nil {
		if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
			d.log.Error("fail task", "task_id", t.ID, "err", err)
		}
		return false
	}
	d.forget(t.ID)
	d.log.Warn("task failed", "task_id", t.ID, "type", t.Type, "code", code, "message", msg)
	return true
}

// cancelRemote asks the workspace to drop a task, in the background and best-effort.
func (d *Dispatcher) cancelRemote(c workspace.Driver, taskID string) {
	d.workers.Add(1)
	go func() {
		defer d.workers.Done()
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.RequestTimeout)
		defer cancel()
		if err := c.Cancel(ctx, taskID); err != nil && !errors.Is(err, workspace.ErrNotFound) {
			d.log.Debug("remote cancel failed", "task_id", taskID, "err", err)
		}
	}()
}

// finish copies a done task's media into DataDir/media and marks it done.
func (d *Dispatcher) finish(ctx context.Context, t *store.Task, c workspace.Driver, acc *store.Account) {
	res, err := d.fetchMedia(ctx, c, t, false)
	if err != nil {
		d.mediaProblem(ctx, t, acc, err)
		return
	}
	prev, err := d.fetchMedia(ctx, c, t, true)
	if err != nil && !errors.Is(err, errNoPreview) {
		removeQuietly(d.mediaDir(), res.name)
		d.mediaProblem(ctx, t, acc, err)
		return
	}
	var prevPath, prevType string
	if prev != nil {
		prevPath, prevType = "media/"+prev.name, prev.contentType
	}
	if err := d.db.CompleteTask(ctx, t.ID, "media/"+res.name, res.contentType, prevPath, prevType); err != nil {
		// The task ended another way meanwhile (reaped, removed): its files must not linger.
		removeQuietly(d.mediaDir(), res.name)
		if prev != nil {
			removeQuietly(d.mediaDir(), prev.name)
		}
		if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
			d.log.Error("complete task", "task_id", t.ID, "err", err)
		}
		return
	}
	d.forget(t.ID)
	runtime := time.Duration(0)
	if !t.StartedAt.IsZero() {
		runtime = d.cfg.Now().Sub(t.StartedAt)
	}
	d.log.Info("task done", "task_id", t.ID, "type", t.Type, "account_id", acc.ID,
		"result_type", res.contentType, "runtime", runtime.String())
	d.cancelRemote(c, t.ID)
}

// mediaProblem sorts a failed copy: bad bytes and local disk trouble end the
// task; an unanswered download counts as an unanswered poll and is retried.
func (d *Dispatcher) mediaProblem(ctx context.Context, t *store.Task, acc *store.Account, err error) {
	if ctx.Err() != nil {
		return
	}
	var ce *corruptError
	var se *storageError
	switch {
	case errors.As(err, &ce):
		d.fail(ctx, t, "corrupt_result", ce.msg)
	case errors.As(err, &se):
		d.log.Error("storing media failed", "task_id", t.ID, "err", se.err)
		d.fail(ctx, t, "storage_failed", "the result could not be stored on the server")
	default:
		_, reason := classify(err)
		d.pollFailed(ctx, acc, "downloading the result: "+reason, err)
	}
}
