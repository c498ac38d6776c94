package dispatch

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"syscall"
	"time"

	"gooni/internal/workspace"
	"gooni/store"
)

// failKind separates a workspace that refused one task from one that is down.
type failKind int

const (
	failRefused failKind = iota // this task was refused or dropped: try another account
	failDown                    // the account does not answer usably: mark it failed
	failTimeout                 // the call timed out: a run of them marks the account failed
)

// classify sorts a workspace call's error and names it in plain words, with no
// response body and no credential in it.
func classify(err error) (failKind, string) {
	var se *workspace.StatusError
	var ne net.Error
	var busy *workspace.BusyError
	var refused *workspace.RefusedError
	var incompatible *workspace.IncompatibleError
	switch {
	case errors.As(err, &incompatible):
		return failDown, "the workspace cannot serve Gooni: " + incompatible.Reason
	case errors.Is(err, workspace.ErrTargetInvalid):
		return failDown, "the workspace address is not a valid target"
	case errors.As(err, &busy):
		return failRefused, "the workspace is busy (" + strconv.Itoa(busy.Status) + ")"
	case errors.As(err, &refused):
		return failRefused, "the workspace refused the task: " + refused.Message
	case errors.As(err, &se):
		switch {
		case se.Code == http.StatusServiceUnavailable || se.Code == http.StatusTooManyRequests:
			return failRefused, "the workspace is busy and refused (" + strconv.Itoa(se.Code) + ")"
		case se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden:
			return failDown, "the workspace rejected the credentials (" + strconv.Itoa(se.Code) + ")"
		case se.Code >= 500:
			return failDown, "the workspace answered with a server error (" + strconv.Itoa(se.Code) + ")"
		default:
			return failRefused, "the workspace answered " + strconv.Itoa(se.Code)
		}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) ||
		(errors.As(err, &ne) && ne.Timeout()):
		return failTimeout, "the workspace did not answer in time"
	case errors.Is(err, syscall.ECONNREFUSED):
		return failDown, "the workspace refused the connection"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return failDown, "the workspace host is unreachable"
	case isDNSError(err):
		return failDown, "the workspace host name does not resolve"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		return failRefused, "the workspace dropped the connection"
	}
	return failRefused, "the workspace gave an unusable answer"
}

func isDNSError(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de)
}

// clientErrorReason names why Client could not build a client.
func clientErrorReason(err error) string {
	if errors.Is(err, workspace.ErrTargetInvalid) {
		return "the workspace address is not a valid target (https, or http to loopback only)"
	}
	return "its credentials could not be opened"
}

// HealthCheck calls the account's workspace /health and records the outcome:
// ready on success, failed with a plain reason otherwise. A disabled account
// is left as it is (only an admin enables it) and returned unchanged.
func (d *Dispatcher) HealthCheck(ctx context.Context, accountID int64) (*store.Account, error) {
	return d.HealthCheckAudited(ctx, accountID, nil)
}

// healthCheckTries bounds the probes of one check whose account keeps being
// edited while it probes.
const healthCheckTries = 3

// HealthCheckAudited is HealthCheck whose verdict commits together with the
// audit event ev builds from the account as it then is (nil: none): if the
// row cannot be written, nothing changes and the error is returned (fail
// closed). A disabled account is not probed; ev is still appended.
//
// The verdict is about the settings the check read: if an edit replaced
// them while it probed, it probes again with the new ones (up to
// healthCheckTries times in all), so its answer is about what the account
// now is; past that it writes nothing but the event, and the account stays
// pending until the edit's own check.
func (d *Dispatcher) HealthCheckAudited(ctx context.Context, accountID int64, ev store.AuditOf[*store.Account]) (*store.Account, error) {
	var (
		acc            *store.Account
		ok             bool
		reason         string
		models         []string
		err            error
		replacedMidway bool
	)
	for try := 1; ; try++ {
		if acc, err = d.db.GetAccount(ctx, accountID); err != nil {
			return nil, err
		}
		if acc.Status == store.AccountDisabled {
			if ev == nil {
				return acc, nil
			}
			return d.db.SetHealthAudited(ctx, accountID, acc.ConfigRev, nil, "", "", time.Time{}, ev)
		}
		ok, reason, models = d.probe(ctx, acc)
		now, gerr := d.db.GetAccount(ctx, accountID)
		if gerr != nil {
			return nil, gerr
		}
		if replacedMidway = now.ConfigRev != acc.ConfigRev; !replacedMidway || try == healthCheckTries || ctx.Err() != nil {
			break
		}
	}
	if replacedMidway {
		d.log.Info("health: settings edited during every check; left for the edit's own check", "account_id", accountID)
	}
	status := store.AccountReady
	if !ok {
		status = store.AccountFailed
		models = nil // what it serves is kept until it answers again
	} else if len(models) == 0 {
		// It answers, but can serve nothing of the catalog: ready, and said
		// so, so an admin sees why no task goes there.
		reason = "the workspace serves none of the catalog's models"
	}
	if ok && models == nil {
		models = []string{}
	}
	// An admin may have disabled the account while the check ran: that wins.
	updated, err := d.db.SetHealthAudited(ctx, accountID, acc.ConfigRev, models, status, reason, d.cfg.Now(), ev)
	if err != nil {
		return nil, err
	}
	if ok && updated.Status == store.AccountReady {
		d.pollOK(accountID)
		d.Wake()
	}
	return updated, nil
}

// probe runs one /health call; reason is empty on success.
func (d *Dispatcher) probe(ctx context.Context, acc *store.Account) (bool, string, []string) {
	c, err := d.Driver(ctx, acc)
	if err != nil {
		return false, "health check failed: " + clientErrorReason(err), nil
	}
	cctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	h, err := c.Health(cctx)
	if err != nil {
		_, reason := classify(err)
		return false, "health check failed: " + reason, nil
	}
	if h.Status != "" && h.Status != "ok" {
		return false, "health check failed: the workspace reports status " + strconv.Quote(h.Status), nil
	}
	return true, "", d.servedModels(h.Models)
}

// servedModels keeps the catalog's ids among what a workspace says it
// serves, in catalog order (a Workspace API v1 workspace may list names the
// catalog does not know; the ComfyUI driver already answers in catalog ids).
func (d *Dispatcher) servedModels(reported []string) []string {
	if d.cfg.Models == nil {
		return reported
	}
	out := []string{}
	for _, m := range d.cfg.Models {
		if slices.Contains(reported, m) {
			out = append(out, m)
		}
	}
	return out
}

// healthPass re-checks ready and failed accounts; a change of status is audited.
func (d *Dispatcher) healthPass(ctx context.Context) {
	accounts, err := d.db.ListAccounts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("health: list accounts", "err", err)
		}
		return
	}
	for _, acc := range accounts {
		if ctx.Err() != nil {
			return
		}
		if acc.Status != store.AccountReady && acc.Status != store.AccountFailed {
			continue
		}
		updated, err := d.HealthCheck(ctx, acc.ID)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, store.ErrNotFound) {
				d.log.Error("health: check account", "account_id", acc.ID, "err", err)
			}
			continue
		}
		if updated.Status == acc.Status {
			continue
		}
		outcome := "success"
		if updated.Status != store.AccountReady {
			outcome = "failure"
		}
		d.audit(ctx, "account.health_check", acc.ID, outcome, map[string]any{
			"name": acc.Name, "previous_status": acc.Status, "status": updated.Status, "reason": updated.StatusReason,
		})
	}
}

// checkUnknownModels health-checks, in the background, the ready accounts
// that have no models recorded (an account from before model-aware routing,
// or one whose target changed): until then no task can be routed to them.
func (d *Dispatcher) checkUnknownModels(ctx context.Context) {
	accounts, err := d.db.ListAccounts(ctx)
	if err != nil {
		return
	}
	for _, acc := range accounts {
		if acc.Status == store.AccountReady && len(acc.Models) == 0 {
			d.HealthCheckInBackground(acc.ID, "models unknown")
		}
	}
}

// RemoveAccount fails the account's unfinished tasks with worker_removed and
// deletes the account, with the audit event ev builds (nil: none), in one
// transaction: if the event cannot be written nothing changes. Only after the
// commit are its processing tasks cancelled on the workspace (best-effort, in
// the background). Done tasks and their media stay.
func (d *Dispatcher) RemoveAccount(ctx context.Context, accountID int64, ev store.AuditOf[*store.Account]) error {
	acc, err := d.db.GetAccount(ctx, accountID)
	if err != nil {
		return err
	}
	d.claimMu.Lock()
	d.removing[accountID] = true
	d.claimMu.Unlock()
	defer func() {
		d.claimMu.Lock()
		delete(d.removing, accountID)
		d.claimMu.Unlock()
	}()

	// The client (and the credentials it opens) must be built before the row goes.
	c, cerr := d.Driver(ctx, acc)
	failed, err := d.db.RemoveAccountAudited(ctx, accountID, "worker_removed", "the worker account running this task was deleted", ev)
	if err != nil {
		return err
	}
	for _, t := range failed {
		d.forget(t.ID)
		d.log.Warn("task failed", "task_id", t.ID, "type", t.Type, "code", "worker_removed", "message", "the worker account running this task was deleted")
		if cerr == nil && t.Status == store.StatusProcessing {
			d.cancelRemote(c, t.ID)
		}
	}
	d.mu.Lock()
	delete(d.pollFails, accountID)
	delete(d.busyUntil, accountID)
	d.mu.Unlock()
	d.dropDriver(accountID)
	d.log.Info("worker account removed", "account_id", accountID, "account", acc.Name, "failed_tasks", len(failed))
	return nil
}

// audit records an event about an account as the actor ctx carries (the
// system when none).
func (d *Dispatcher) audit(ctx context.Context, action string, accountID int64, outcome string, details map[string]any) {
	if d.cfg.Audit == nil {
		return
	}
	_ = d.cfg.Audit.Record(ctx, action, "account:"+strconv.FormatInt(accountID, 10), outcome, details)
}

// HealthCheckInBackground checks an account at once in a goroutine the
// dispatcher owns (and awaits at shutdown), and records the outcome as an
// account.health_check event by the system, naming what triggered it.
func (d *Dispatcher) HealthCheckInBackground(accountID int64, trigger string) {
	d.workers.Add(1)
	go func() {
		defer d.workers.Done()
		acc, err := d.HealthCheck(d.life, accountID)
		if err != nil {
			if d.life.Err() == nil && !errors.Is(err, store.ErrNotFound) {
				d.log.Error("health: check account", "account_id", accountID, "err", err)
			}
			return
		}
		outcome := "success"
		if acc.Status != store.AccountReady {
			outcome = "failure"
		}
		d.audit(context.WithoutCancel(d.life), "account.health_check", accountID, outcome,
			map[string]any{"status": acc.Status, "trigger": trigger})
	}()
}
