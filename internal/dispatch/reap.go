package dispatch

import (
	"context"
	"errors"
	"time"

	"gooni/store"
)

// Reap fails every processing task that ran longer than its type's TTL with
// code timeout, and asks its workspace to drop it. It returns how many it failed.
func (d *Dispatcher) Reap(ctx context.Context) (int, error) {
	now := d.cfg.Now()
	failed := 0
	for _, rule := range []struct {
		typ string
		ttl time.Duration
	}{{"image", d.cfg.TTLImage}, {"video", d.cfg.TTLVideo}} {
		stale, err := d.db.ListStale(ctx, rule.typ, now.Add(-rule.ttl))
		if err != nil {
			return failed, err
		}
		for _, t := range stale {
			// Requeued since the list was read: its clock started again.
			if cur, err := d.db.GetTask(ctx, t.ID); err != nil || cur.Status != store.StatusProcessing || !cur.StartedAt.Equal(t.StartedAt) {
				continue
			}
			msg := "task ran longer than the " + rule.ttl.String() + " limit for " + rule.typ + " tasks"
			ok, err := d.failStale(ctx, t, msg, rule.ttl, "runtime", now.Sub(t.StartedAt).Round(time.Millisecond).String())
			if err != nil {
				return failed, err
			}
			if ok {
				failed++
			}
		}
	}
	// Handed to a workspace that never started it (a cold start that never
	// ends, a box whose queue is stuck): GG_TTL_QUEUED.
	queued, err := d.db.ListQueuedStale(ctx, now.Add(-d.cfg.TTLQueued))
	if err != nil {
		return failed, err
	}
	for _, t := range queued {
		msg := "the workspace did not start the task within the " + d.cfg.TTLQueued.String() + " limit for waiting in its queue"
		ok, err := d.failStale(ctx, t, msg, d.cfg.TTLQueued, "waited", now.Sub(t.HandedAt).Round(time.Millisecond).String(),
			"state", "queued on the workspace")
		if err != nil {
			return failed, err
		}
		if ok {
			failed++
		}
	}
	d.lastReap.Store(now.UnixMilli())
	return failed, nil
}

// failStale fails t with code timeout and msg, logs it with attrs and asks
// its workspace to drop it. ok is false when the task had already moved on
// (ErrConflict: done, failed or requeued meanwhile).
func (d *Dispatcher) failStale(ctx context.Context, t *store.Task, msg string, ttl time.Duration, attrs ...any) (ok bool, err error) {
	if err := d.db.FailTask(ctx, t.ID, "timeout", msg); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return false, nil
		}
		return false, err
	}
	d.forget(t.ID)
	d.log.Warn("stale task failed", append([]any{"task_id", t.ID, "type", t.Type, "ttl", ttl.String(), "code", "timeout",
		"account_id", t.AccountID}, attrs...)...)
	d.cancelStale(ctx, t)
	return true, nil
}

// cancelStale asks the workspace that ran a reaped task to drop it, best-effort.
func (d *Dispatcher) cancelStale(ctx context.Context, t *store.Task) {
	if t.AccountID == 0 {
		return
	}
	acc, err := d.db.GetAccount(ctx, t.AccountID)
	if err != nil {
		return
	}
	c, err := d.Driver(ctx, acc)
	if err != nil {
		return
	}
	d.cancelRemote(c, t.ID)
}

// LastReap is when the reaper last finished a pass (zero before the first).
func (d *Dispatcher) LastReap() time.Time {
	ms := d.lastReap.Load()
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
