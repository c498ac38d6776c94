package dispatch

import (
	"gooni/internal/audit"

	"context"
	"errors"
	"fmt"
	"gooni/internal/workspace"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"gooni/store"
)

// deployOutputMax is how much of a deploy's output is kept (its tail).
const deployOutputMax = 64 << 10

// serverSecretEnv names the server's own secrets, which a deploy command has no use for.
var serverSecretEnv = map[string]bool{
	"GG_API_KEY": true, "GG_ADMIN_KEY": true, "GG_ACCOUNT_KEY": true, "GG_AUDIT_KEY": true,
}

// Deploy starts GG_DEPLOY_COMMAND for one account in the background. Only one
// deploy per account runs at a time (ErrDeployRunning). The deploy is marked
// running with the audit event ev builds (nil: none) in one transaction; if
// that event cannot be written, nothing starts. The audit event written when
// it ends names the actor ctx carries (audit.WithActor), or the system.
// It returns the account as the start committed it (deploy_status running):
// a fast command may already have ended by the time Deploy returns.
func (d *Dispatcher) Deploy(ctx context.Context, accountID int64, ev store.AuditOf[*store.Account]) (*store.Account, error) {
	acc, err := d.db.GetAccount(ctx, accountID)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(d.cfg.DeployCommand) == "" {
		return nil, errors.New("dispatch: no deploy command is configured")
	}
	d.mu.Lock()
	if d.deploys[accountID] {
		d.mu.Unlock()
		return nil, ErrDeployRunning
	}
	d.deploys[accountID] = true
	d.mu.Unlock()
	release := func() {
		d.mu.Lock()
		delete(d.deploys, accountID)
		d.mu.Unlock()
	}
	creds := map[string]string{}
	if acc.HasCredentials {
		if creds, err = d.db.AccountCredentials(ctx, accountID); err != nil {
			release()
			return nil, fmt.Errorf("dispatch: open credentials of account %d: %w", accountID, err)
		}
	}
	started, err := d.db.StartDeployAudited(ctx, accountID, d.cfg.Now(), ev)
	if err != nil {
		release()
		return nil, err
	}
	who := audit.ActorFrom(ctx)
	d.workers.Add(1)
	go func() {
		defer d.workers.Done()
		defer release()
		d.runDeploy(started, creds, who)
	}()
	return started, nil
}

func (d *Dispatcher) runDeploy(acc *store.Account, creds map[string]string, who audit.Actor) {
	ctx, cancel := context.WithTimeout(d.life, d.cfg.DeployTimeout)
	defer cancel()
	start := d.cfg.Now()

	slack := 0
	for _, v := range creds {
		slack = max(slack, len(v))
	}
	out := &tailBuffer{max: deployOutputMax + slack}
	cmd := exec.CommandContext(ctx, "sh", "-c", d.cfg.DeployCommand)
	cmd.Env = deployEnv(acc.Workspace, creds)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so a timeout kills the children of sh too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	runErr := cmd.Run()
	if cmd.Process != nil {
		// Background children left behind by the command go with it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}

	status, outcome, last := store.DeploySucceeded, "success", ""
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		status, outcome = store.DeployFailed, "failure"
		last = "deploy failed: it ran longer than " + d.cfg.DeployTimeout.String() + " and was killed"
	case d.life.Err() != nil:
		status, outcome = store.DeployFailed, "failure"
		last = "deploy failed: the server shut down while it ran"
	case runErr != nil:
		status, outcome = store.DeployFailed, "failure"
		var ee *exec.ExitError
		if errors.As(runErr, &ee) {
			last = "deploy failed: the command ended with " + ee.ProcessState.String()
		} else {
			last = "deploy failed: the command could not run: " + redact(runErr.Error(), creds)
		}
	}
	output := redactTail(out.Bytes(), out.Truncated(), creds, slack)
	if last != "" {
		if output != "" && !strings.HasSuffix(output, "\n") {
			output += "\n"
		}
		output += last
	}
	bg := context.WithoutCancel(d.life)
	if err := d.db.SetDeploy(bg, acc.ID, status, output, d.cfg.Now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		d.log.Error("deploy: store outcome", "account_id", acc.ID, "err", err)
	}
	d.log.Info("deploy finished", "account_id", acc.ID, "account", acc.Name, "status", status,
		"duration", d.cfg.Now().Sub(start).Round(time.Millisecond).String())
	details := map[string]any{"name": acc.Name, "deploy_status": status}
	if last != "" {
		details["reason"] = last
	}
	if status == store.DeploySucceeded {
		// Where the app really lives (CONTRACT section 15): Modal truncates
		// long host labels and prefixes other environments, so the URL the
		// deploy printed replaces the derived one; an output that names no
		// URL keeps the old base_url.
		// An admin's edit of the account during the deploy wins: its
		// settings are newer than what this deploy ran with.
		if u, ok := DeployURL(output); ok && u != acc.BaseURL && CheckBaseURL(u) == nil {
			_, err := d.db.UpdateAccount(bg, acc.ID, store.AccountPatch{BaseURL: &u, IfConfigRev: acc.ConfigRev})
			switch {
			case errors.Is(err, store.ErrConflict):
				details["base_url_not_recorded"] = u
				details["note"] = "the account was edited during the deploy; its settings were kept"
				d.log.Info("deploy: the account was edited meanwhile; workspace URL not recorded", "account_id", acc.ID, "base_url", u)
			case errors.Is(err, store.ErrNotFound):
				details["note"] = "the account was deleted during the deploy"
			case err != nil:
				d.log.Error("deploy: store the workspace URL", "account_id", acc.ID, "err", err)
			default:
				details["base_url"] = u
				d.log.Info("deploy: workspace URL recorded", "account_id", acc.ID, "base_url", u)
			}
		}
	}
	d.audit(audit.WithActor(bg, who), "account.deploy", acc.ID, outcome, details)
	if status == store.DeploySucceeded && d.life.Err() == nil {
		if _, err := d.HealthCheck(bg, acc.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			d.log.Error("deploy: health check after deploy", "account_id", acc.ID, "err", err)
		}
	}
}

// deployEnv is the server's environment, without its own secrets, plus the
// workspace name and the Modal token of the account.
func deployEnv(workspaceName string, creds map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if serverSecretEnv[name] || name == "MODAL_TOKEN_ID" || name == "MODAL_TOKEN_SECRET" || name == "GG_WORKSPACE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"GG_WORKSPACE="+workspaceName,
		"MODAL_TOKEN_ID="+creds["token_id"],
		"MODAL_TOKEN_SECRET="+creds["token_secret"],
	)
}

// redactTail replaces every credential value in the kept output and trims it to
// deployOutputMax. When the start was cut, the first slack bytes are dropped
// too: they could hold the end of a secret whose beginning was cut away.
func redactTail(b []byte, truncated bool, creds map[string]string, slack int) string {
	s := redact(string(b), creds)
	if truncated {
		s = s[min(slack, len(s)):]
	}
	if len(s) > deployOutputMax {
		s = s[len(s)-deployOutputMax:]
	}
	return strings.ToValidUTF8(s, "")
}

// redact replaces each credential value longer than 3 characters, longest first
// (so a secret containing another is replaced whole).
func redact(s string, creds map[string]string) string {
	vals := make([]string, 0, len(creds))
	for _, v := range creds {
		vals = append(vals, v)
	}
	return workspace.NewRedactor(vals...).Redact(s)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		t.truncated = true
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.truncated = true
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.buf...)
}

func (t *tailBuffer) Truncated() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.truncated
}

// resumeDeploys marks deploys left "running" by a previous process as failed:
// nothing runs them any more.
func (d *Dispatcher) resumeDeploys(ctx context.Context) {
	accounts, err := d.db.ListAccounts(ctx)
	if err != nil {
		return
	}
	for _, acc := range accounts {
		if acc.DeployStatus != store.DeployRunning {
			continue
		}
		d.mu.Lock()
		mine := d.deploys[acc.ID]
		d.mu.Unlock()
		if mine {
			continue
		}
		out := acc.DeployOutput
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		out += "deploy failed: the server restarted while it ran"
		if err := d.db.SetDeploy(ctx, acc.ID, store.DeployFailed, out, d.cfg.Now()); err != nil {
			d.log.Error("deploy: mark interrupted deploy failed", "account_id", acc.ID, "err", err)
		}
	}
}
