// Package dispatch moves tasks through their life: it hands pending tasks to
// ready worker accounts, polls their workspaces, copies finished media into the
// data directory, fails stale tasks, health-checks accounts and runs deploys.
//
// The database is the only truth: every decision starts from a query and ends
// with a committed row, so a restarted process resumes where the old one stopped.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gooni/internal/audit"
	"gooni/internal/workspace"
	"gooni/internal/workspace/comfyui"
	"gooni/store"
)

// Config wires a Dispatcher to its database, data directory and policies.
type Config struct {
	DB                 *store.DB
	DataDir            string // media files go to DataDir/media/<task_id>.<ext> and <task_id>.preview.<ext>
	WorkspaceURL       string // GG_WORKSPACE_URL template with {workspace}
	TTLImage, TTLVideo time.Duration
	HealthInterval     time.Duration // background re-check of ready and failed accounts (0 = off)
	DeployCommand      string
	DeployTimeout      time.Duration // 0 = 15 min
	PollInterval       time.Duration // 0 = 500 ms
	ReapInterval       time.Duration // 0 = 2 s
	MaxAttempts        int           // 0 = 3
	// RequestTimeout bounds one workspace call (submit, status, health,
	// cancel) and the wait for a download's response headers
	// (GG_WORKSPACE_TIMEOUT); 0 = 30 s. An account is marked failed only
	// after timeoutLimit timeouts in a row (cold starts are slow).
	RequestTimeout time.Duration
	// TTLQueued bounds how long a task handed to a workspace may wait in
	// that workspace's own queue before it fails with timeout (GG_TTL_QUEUED); 0 = 60 min.
	TTLQueued time.Duration
	// Models are the catalog's model ids: what a Workspace API v1 health
	// check's models are intersected with.
	Models []string
	// Workflows are the ComfyUI driver's workflows; nil = the embedded set.
	Workflows *comfyui.Workflows
	Logger    *slog.Logger
	Now       func() time.Time
	// Audit records account events (health checks, deploys, failures); nil = none.
	Audit *audit.Writer
	// Observer receives measurements for /metrics; nil = none.
	Observer Observer
}

// Observer receives the dispatcher's measurements (Prometheus in production).
type Observer interface {
	QueueWait(time.Duration)       // from a task's creation to its claim by a workspace
	DispatchLatency(time.Duration) // how long a workspace took to accept a task
	WorkspaceError(account string) // a workspace call failed
}

type noObserver struct{}

func (noObserver) QueueWait(time.Duration)       {}
func (noObserver) DispatchLatency(time.Duration) {}
func (noObserver) WorkspaceError(string)         {}

// ErrDeployRunning is returned by Deploy while a deploy of that account runs.
var ErrDeployRunning = errors.New("dispatch: a deploy of this account is already running")

const (
	defaultTTLImage       = 10 * time.Minute
	defaultTTLVideo       = 30 * time.Minute
	defaultDeployTimeout  = 15 * time.Minute
	defaultPollInterval   = 500 * time.Millisecond
	defaultReapInterval   = 2 * time.Second
	defaultMaxAttempts    = 3
	defaultRequestTimeout = 30 * time.Second
	defaultTTLQueued      = 60 * time.Minute
	// pollWorkers bounds concurrent status polls and downloads.
	pollWorkers = 8
	// pollFailLimit is how many unanswered polls in a row mark an account failed.
	pollFailLimit = 3
	// downloadTimeout bounds copying one result or preview body.
	downloadTimeout = 5 * time.Minute
)

// Dispatcher runs the task lifecycle against the worker accounts in the store.
type Dispatcher struct {
	cfg  Config
	db   *store.DB
	log  *slog.Logger
	http *http.Client
	wake chan struct{}
	sem  chan struct{} // bounds concurrent polls

	// claimMu orders claims against RemoveAccount, so a removed account gets no new task.
	claimMu  sync.Mutex
	removing map[int64]bool

	mu        sync.Mutex
	inflight  map[string]bool           // tasks a goroutine is submitting or polling right now
	tried     map[string]map[int64]bool // accounts that refused a task (preferred against next time)
	reasons   map[string][]string       // why each try of a task ended, for dispatch_failed
	pollFails map[int64]pollRun         // unanswered polls in a row per account
	deploys   map[int64]bool            // accounts with a deploy running
	busyUntil map[int64]time.Time       // accounts that said they are busy get no task until then

	drivers drivers

	lastReap  atomic.Int64 // unix ms, 0 = never
	cleanOnce sync.Once
	workers   sync.WaitGroup

	// life ends when Run returns; background deploys are bound to it, not to a request.
	life    context.Context
	endLife context.CancelFunc
}

// setDefault puts def in *v when *v is zero or negative (unset).
func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// New returns a Dispatcher with defaults filled in; Run starts it.
func New(cfg Config) *Dispatcher {
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	setDefault(&cfg.TTLImage, defaultTTLImage)
	setDefault(&cfg.TTLVideo, defaultTTLVideo)
	setDefault(&cfg.DeployTimeout, defaultDeployTimeout)
	setDefault(&cfg.PollInterval, defaultPollInterval)
	setDefault(&cfg.ReapInterval, defaultReapInterval)
	setDefault(&cfg.MaxAttempts, defaultMaxAttempts)
	setDefault(&cfg.RequestTimeout, defaultRequestTimeout)
	setDefault(&cfg.TTLQueued, defaultTTLQueued)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	life, endLife := context.WithCancel(context.Background())
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = cfg.RequestTimeout
	tr.MaxIdleConnsPerHost = 16
	return &Dispatcher{
		cfg: cfg,
		db:  cfg.DB,
		log: cfg.Logger,
		http: &http.Client{
			Transport: tr,
			// Credentials go only to the registry's base URL, so redirects are never followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		wake:      make(chan struct{}, 1),
		sem:       make(chan struct{}, pollWorkers),
		removing:  map[int64]bool{},
		inflight:  map[string]bool{},
		tried:     map[string]map[int64]bool{},
		pollFails: map[int64]pollRun{},
		deploys:   map[int64]bool{},
		busyUntil: map[int64]time.Time{},
		life:      life,
		endLife:   endLife,
	}
}

// Run resumes (processing tasks are polled again, pending ones dispatched) and
// then runs the dispatch loop, poller, reaper and health checker until ctx is done.
func (d *Dispatcher) Run(ctx context.Context) {
	d.CleanMedia(ctx)
	d.resumeDeploys(ctx)
	d.pollPass(ctx)
	d.Wake()
	d.checkUnknownModels(ctx)

	var loops sync.WaitGroup
	loop := func(every time.Duration, wakeup <-chan struct{}, pass func(context.Context)) {
		loops.Add(1)
		go func() {
			defer loops.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				case <-wakeup:
				}
				pass(ctx)
			}
		}()
	}
	loop(d.cfg.PollInterval, d.wake, d.dispatchPass)
	loop(d.cfg.PollInterval, nil, d.pollPass)
	loop(d.cfg.ReapInterval, nil, func(ctx context.Context) {
		if _, err := d.Reap(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("reaper pass failed", "err", err)
		}
	})
	if d.cfg.HealthInterval > 0 {
		loop(d.cfg.HealthInterval, nil, d.healthPass)
	}
	<-ctx.Done()
	d.endLife()
	loops.Wait()
	d.workers.Wait()
	d.closeDrivers()
}

// Wake asks for a dispatch pass now (a new pending task, or an account changed).
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// claimInflight marks a task as owned by one goroutine; false if another owns it.
func (d *Dispatcher) claimInflight(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inflight[id] {
		return false
	}
	d.inflight[id] = true
	return true
}

func (d *Dispatcher) releaseInflight(id string) {
	d.mu.Lock()
	delete(d.inflight, id)
	d.mu.Unlock()
}

// forget drops what memory holds about a task once it reached a terminal state.
func (d *Dispatcher) forget(id string) {
	d.mu.Lock()
	delete(d.tried, id)
	d.mu.Unlock()
}

// candidate is a ready account with room for more tasks.
type candidate struct {
	acc     *store.Account
	client  workspace.Driver
	running int
}

// dispatchPass hands pending tasks, oldest first, to ready accounts with free capacity.
func (d *Dispatcher) dispatchPass(ctx context.Context) {
	accounts, err := d.db.ListAccounts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("dispatch: list accounts", "err", err)
		}
		return
	}
	running, err := d.db.RunningByAccount(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("dispatch: count running tasks", "err", err)
		}
		return
	}
	free := 0
	now := d.cfg.Now()
	for _, acc := range accounts {
		if acc.Status == store.AccountReady && acc.Capacity > running[acc.ID] && !d.busy(acc.ID, now) {
			free += acc.Capacity - running[acc.ID]
		}
	}
	if free == 0 {
		return
	}
	pending, err := d.db.ListPending(ctx, free+32)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("dispatch: list pending", "err", err)
		}
		return
	}
	if len(pending) == 0 {
		return
	}
	// Clients (and so opened credentials) only when there is work to hand out.
	var cands []*candidate
	for _, acc := range accounts {
		if acc.Status != store.AccountReady || acc.Capacity <= 0 || len(acc.Models) == 0 || d.busy(acc.ID, now) {
			continue
		}
		c, err := d.Driver(ctx, acc)
		if err != nil {
			d.accountDown(ctx, acc, "cannot reach the workspace: "+clientErrorReason(err), err)
			continue
		}
		cands = append(cands, &candidate{acc: acc, client: c, running: running[acc.ID]})
	}
	for _, t := range pending {
		if ctx.Err() != nil {
			return
		}
		c := d.pick(t, cands)
		if c == nil {
			continue
		}
		if d.start(ctx, t, c) {
			c.running++
		}
	}
}

// busy reports whether an account said it was busy less than its
// Retry-After ago.
func (d *Dispatcher) busy(accountID int64, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	until, ok := d.busyUntil[accountID]
	if ok && !now.Before(until) {
		delete(d.busyUntil, accountID)
		return false
	}
	return ok
}

// pick chooses the least loaded account with room that serves the task's
// model, preferring one that has not refused this task yet. When only refusers have room but a ready account that
// has not refused is merely busy, the task waits for it.
func (d *Dispatcher) pick(t *store.Task, cands []*candidate) *candidate {
	d.mu.Lock()
	tried := d.tried[t.ID]
	d.mu.Unlock()
	d.claimMu.Lock()
	removing := make(map[int64]bool, len(d.removing))
	for id := range d.removing {
		removing[id] = true
	}
	d.claimMu.Unlock()

	var fresh, stale []*candidate
	untriedBusy := false
	for _, c := range cands {
		// Only an account whose last health check found the task's model
		// served may take it (CONTRACT section 14).
		if removing[c.acc.ID] || !c.acc.Serves(t.Model) {
			continue
		}
		hasRoom := c.running < c.acc.Capacity
		switch {
		case !tried[c.acc.ID] && hasRoom:
			fresh = append(fresh, c)
		case !tried[c.acc.ID]:
			untriedBusy = true
		case hasRoom:
			stale = append(stale, c)
		}
	}
	pool := fresh
	if len(pool) == 0 {
		if untriedBusy {
			return nil
		}
		pool = stale
	}
	if len(pool) == 0 {
		return nil
	}
	sort.SliceStable(pool, func(i, j int) bool {
		a, b := pool[i], pool[j]
		// Compare load ratios running/capacity without division.
		la, lb := a.running*b.acc.Capacity, b.running*a.acc.Capacity
		if la != lb {
			return la < lb
		}
		if a.running != b.running {
			return a.running < b.running
		}
		return a.acc.ID < b.acc.ID
	})
	return pool[0]
}

// start claims t on c's account and submits it in the background. It reports
// whether the claim committed (the account's capacity is then taken).
func (d *Dispatcher) start(ctx context.Context, t *store.Task, c *candidate) bool {
	if !d.claimInflight(t.ID) {
		return false
	}
	d.claimMu.Lock()
	// The pass read the accounts a moment ago; one may have failed or been disabled since.
	if acc, err := d.db.GetAccount(ctx, c.acc.ID); d.removing[c.acc.ID] || err != nil || acc.Status != store.AccountReady {
		d.claimMu.Unlock()
		d.releaseInflight(t.ID)
		return false
	}
	claimed, err := d.db.ClaimTask(ctx, t.ID, c.acc.ID)
	d.claimMu.Unlock()
	if err != nil {
		d.releaseInflight(t.ID)
		if !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
			d.log.Error("dispatch: claim task", "task_id", t.ID, "err", err)
		}
		return false
	}
	if !claimed.StartedAt.IsZero() && !claimed.CreatedAt.IsZero() {
		d.cfg.Observer.QueueWait(claimed.StartedAt.Sub(claimed.CreatedAt))
	}
	d.log.Info("task dispatched", "task_id", t.ID, "type", claimed.Type, "account_id", c.acc.ID,
		"account", c.acc.Name, "attempt", claimed.Attempts)
	d.workers.Add(1)
	go func() {
		defer d.workers.Done()
		defer d.releaseInflight(t.ID)
		d.submit(ctx, claimed, c)
	}()
	return true
}

// submit sends a claimed task to its workspace and sorts out a failed send.
func (d *Dispatcher) submit(ctx context.Context, t *store.Task, c *candidate) {
	req := &workspace.TaskRequest{
		TaskID:         t.ID,
		Type:           t.Type,
		Model:          t.Model,
		Mode:           t.Mode,
		Prompt:         t.Prompt,
		NegativePrompt: t.NegativePrompt,
		Params:         t.Params,
	}
	if t.HasImage() {
		img, err := d.readInput(t)
		if err != nil {
			d.log.Error("dispatch: read input image", "task_id", t.ID, "err", err)
			d.retryOrFail(ctx, t, "the input image could not be read")
			return
		}
		req.Image, req.ImageType = img, t.InputType
	}
	cctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	began := time.Now()
	st, err := c.client.Submit(cctx, req)
	cancel()
	if err == nil {
		d.cfg.Observer.DispatchLatency(time.Since(began))
		d.pollOK(c.acc.ID)
		if st != nil && (st.Status == workspace.StatusProcessing || st.Status == workspace.StatusDone) {
			d.started(ctx, t, st)
		}
		return
	}
	if ctx.Err() != nil {
		// Shutting down: the task stays handed; resume polls it and requeues it if unknown.
		return
	}
	d.cfg.Observer.WorkspaceError(c.acc.Name)
	var busy *workspace.BusyError
	if errors.As(err, &busy) {
		// Backpressure, not a failed try (CONTRACT section 14): the task
		// goes back to the queue as it was, and the account is left alone
		// for its Retry-After.
		d.mu.Lock()
		d.busyUntil[c.acc.ID] = d.cfg.Now().Add(busy.RetryAfter)
		d.mu.Unlock()
		if err := d.db.ReleaseTask(ctx, t.ID, c.acc.ID); err != nil && !errors.Is(err, store.ErrConflict) && ctx.Err() == nil {
			d.log.Error("dispatch: give a task back", "task_id", t.ID, "err", err)
		}
		d.log.Info("workspace busy: task back in the queue", "task_id", t.ID, "account_id", c.acc.ID,
			"retry_after", busy.RetryAfter.String())
		return
	}
	kind, reason := classify(err)
	reason = "account " + c.acc.Name + ": " + reason
	if kind == failTimeout {
		// The workspace may have taken the task after all (a slow cold
		// start): it stays handed and the poller finds out; only a run of
		// timeouts marks the account failed.
		d.log.Warn("workspace did not answer the submit in time", "task_id", t.ID, "account_id", c.acc.ID, "reason", reason)
		d.timedOut(ctx, c.acc, reason, err)
		return
	}
	d.log.Warn("workspace did not take the task", "task_id", t.ID, "account_id", c.acc.ID,
		"reason", reason, "account_down", kind == failDown)
	if kind == failDown {
		// Requeue this task first so its reason is recorded; accountDown moves the others.
		d.retryOrFail(ctx, t, reason)
		d.accountDown(ctx, c.acc, reason, err)
		return
	}
	d.retryOrFail(ctx, t, reason)
}

// retryOrFail puts a processing task back in the queue, or fails it with
// dispatch_failed once it used all its tries, naming what happened on each;
// one store transaction decides, so the attempt count cannot change between
// the check and the write.
func (d *Dispatcher) retryOrFail(ctx context.Context, t *store.Task, reason string) {
	out, cur, err := d.db.RequeueOrFail(ctx, t.ID, t.AccountID, reason, d.cfg.MaxAttempts, describeTries)
	if err != nil {
		// ErrConflict: it ended or moved on meanwhile, so this reason is about a try that is over.
		if ctx.Err() == nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			d.log.Error("dispatch: requeue task", "task_id", t.ID, "err", err)
		}
		return
	}
	if cur.AccountID != 0 {
		// Next time, another account is preferred for this task.
		d.mu.Lock()
		if d.tried[t.ID] == nil {
			d.tried[t.ID] = map[int64]bool{}
		}
		d.tried[t.ID][cur.AccountID] = true
		d.mu.Unlock()
	}
	if out == store.Failed {
		d.forget(t.ID)
		d.log.Warn("task failed", "task_id", t.ID, "type", cur.Type, "code", "dispatch_failed", "attempts", cur.Attempts)
		return
	}
	d.log.Info("task requeued", "task_id", t.ID, "type", cur.Type, "attempt", cur.Attempts, "reason", reason)
}

func describeTries(attempts int, reasons []string) string {
	if len(reasons) > attempts {
		reasons = reasons[len(reasons)-attempts:]
	}
	var b strings.Builder
	b.WriteString("no worker ran the task after ")
	b.WriteString(itoa(attempts))
	b.WriteString(" tries")
	for i, r := range reasons {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString("try " + itoa(i+1+attempts-len(reasons)) + ": " + r)
	}
	return b.String()
}

// accountDown marks an account failed (never a disabled one) and moves its
// processing tasks back to the queue so they are not stuck on a dead
// workspace. used is the account as the failing call saw it: if an edit has
// since replaced its target, driver or credentials, it does nothing (the
// new settings are not failed, nor their tasks moved, for the old ones'
// failure).
func (d *Dispatcher) accountDown(ctx context.Context, used *store.Account, reason string, cause error) {
	accountID := used.ID
	acc, err := d.db.GetAccount(ctx, accountID)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, store.ErrNotFound) {
			d.log.Error("dispatch: read account", "account_id", accountID, "err", err)
		}
		return
	}
	if acc.ConfigRev != used.ConfigRev {
		// Settings an edit has replaced failed: the account's tasks sent
		// since run on the new ones, and a task left on the old target is
		// sent again when the new one does not know it.
		d.log.Info("dispatch: a failure of settings since replaced; the account stays as it is",
			"account_id", accountID, "reason", reason)
		return
	}
	d.mu.Lock()
	delete(d.pollFails, accountID)
	d.mu.Unlock()
	if acc.Status != store.AccountDisabled && acc.Status != store.AccountFailed {
		// Conditional: an admin's Disable in the meantime is not overwritten.
		if _, changed, err := d.db.SetAccountStatusUnless(ctx, accountID, used.ConfigRev, store.AccountFailed, reason, time.Time{}, store.AccountDisabled, store.AccountFailed); err != nil {
			if ctx.Err() == nil {
				d.log.Error("dispatch: mark account failed", "account_id", accountID, "err", err)
			}
		} else if changed {
			d.log.Warn("worker account failed", "account_id", accountID, "account", acc.Name,
				"previous_status", acc.Status, "reason", reason)
			if errors.Is(cause, workspace.ErrTargetInvalid) {
				d.audit(ctx, "security.proxy_refused", accountID, "denied", map[string]any{"reason": reason})
			}
			// An explicit failure changes the account's status: admins see it in the audit log too.
			d.audit(ctx, "account.update", accountID, "failure", map[string]any{
				"name": acc.Name, "previous_status": acc.Status, "status": store.AccountFailed, "reason": reason})
		}
	}
	tasks, err := d.db.ListInFlight(ctx)
	if err != nil {
		return
	}
	moved := 0
	for _, t := range tasks {
		if t.AccountID != accountID {
			continue
		}
		d.retryOrFail(ctx, t, "account "+acc.Name+" failed: "+reason)
		moved++
	}
	if moved > 0 {
		d.Wake()
	}
}
