package dispatch

import (
	"context"
	"errors"

	"gooni/store"
)

// CancelRemote asks the workspace of a task that was processing on
// accountID to stop it (Workspace API v1: DELETE /tasks/{id}; ComfyUI:
// remove it from the queue or interrupt it), in the background and
// best-effort: the caller has already committed the task as failed with
// code canceled, so whatever the workspace answers (or reports later) the
// task stays canceled and its media are never copied.
func (d *Dispatcher) CancelRemote(ctx context.Context, taskID string, accountID int64) {
	if accountID == 0 {
		return
	}
	acc, err := d.db.GetAccount(ctx, accountID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			d.log.Warn("cancel: read account", "task_id", taskID, "account_id", accountID, "err", err)
		}
		return
	}
	c, err := d.Driver(ctx, acc)
	if err != nil {
		d.log.Warn("cancel: no client for the account", "task_id", taskID, "account_id", accountID, "reason", clientErrorReason(err))
		return
	}
	d.forget(taskID)
	d.cancelRemote(c, taskID)
	d.Wake() // its place on the account is free
}
