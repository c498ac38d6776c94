package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gooni/internal/audit"
	"gooni/internal/testutil"
	"gooni/internal/workspace"
	"gooni/store"
)

func slogJSON(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

const (
	testTokenID     = "ak-token-id-1234"
	testTokenSecret = "as-token-secret-very-private-5678"
)

func (e *env) waitDeploy(id int64) *store.Account {
	e.t.Helper()
	var a *store.Account
	testutil.WaitFor(e.t, 10*time.Second, "deploy to finish", func() bool {
		a = e.getAccount(id)
		return a.DeployStatus != "running"
	})
	return a
}

func TestDeploy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		command     string
		timeout     time.Duration
		from        string // account status before
		wantDeploy  string
		wantStatus  string // account status after
		wantOutput  []string
		wantLast    string // the output's last line contains this
		maxDuration time.Duration
	}{
		{
			name:       "success redacts and health-checks",
			command:    `printenv MODAL_TOKEN_SECRET; echo "id=$MODAL_TOKEN_ID ws=$GG_WORKSPACE"; echo ok`,
			from:       "pending",
			wantDeploy: "succeeded", wantStatus: "ready",
			wantOutput: []string{"[redacted]\n", "id=[redacted] ws=deploy-me\n", "ok"},
		},
		{
			name:       "exit code fails and keeps the status",
			command:    `echo starting; exit 3`,
			from:       "failed",
			wantDeploy: "failed", wantStatus: "failed",
			wantOutput: []string{"starting\n"},
			wantLast:   "exit status 3",
		},
		{
			name:       "timeout kills the process group",
			command:    `echo going; sleep 30 & sleep 30; echo never`,
			timeout:    time.Second, // the second Deploy must come before it ends
			from:       "ready",
			wantDeploy: "failed", wantStatus: "ready",
			wantOutput: []string{"going\n"},
			wantLast:   "longer than 1s and was killed",
			// The background sleep holds the output pipe; the group kill must end it too.
			maxDuration: 8 * time.Second,
		},
		{
			name:       "long output keeps the redacted tail",
			command:    `head -c 100000 /dev/zero | tr '\0' a; echo; printenv MODAL_TOKEN_SECRET`,
			from:       "pending",
			wantDeploy: "succeeded", wantStatus: "ready",
			wantOutput: []string{"aaaa", "[redacted]"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			srv := e.sim(workspace.SimConfig{})
			acc := e.account("deploy-me", srv.URL, 1, tc.from, map[string]string{
				"token_id": testTokenID, "token_secret": testTokenSecret,
			})
			cfg := e.config()
			cfg.DeployCommand = tc.command
			// A quick command waits for the gate, opened once the second
			// Deploy has been refused: otherwise the first could end before
			// it and let it start. One with a timeout runs past it anyway.
			gate := filepath.Join(t.TempDir(), "gate")
			if tc.timeout == 0 {
				cfg.DeployCommand = fmt.Sprintf("until [ -e %q ]; do sleep 0.01; done; ", gate) + tc.command
			}
			cfg.Logger = slogJSON(&e.logs)
			if tc.timeout > 0 {
				cfg.DeployTimeout = tc.timeout
			}
			d := New(cfg)
			ctx := audit.WithActor(context.Background(), audit.Actor{Name: "admin:abcd", Source: "127.0.0.1", CorrelationID: "corr-1"})
			start := time.Now()
			started, err := d.Deploy(ctx, acc.ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			if started.DeployStatus != store.DeployRunning || started.LastDeployAt.IsZero() {
				t.Errorf("Deploy returned deploy_status %q, last_deploy_at %v; want running from now", started.DeployStatus, started.LastDeployAt)
			}
			if _, err := d.Deploy(ctx, acc.ID, nil); !errors.Is(err, ErrDeployRunning) {
				t.Errorf("second deploy: %v, want ErrDeployRunning", err)
			}
			if err := os.WriteFile(gate, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			got := e.waitDeploy(acc.ID)
			took := time.Since(start)
			d.workers.Wait() // the health check after a success runs before the goroutine ends
			got = e.getAccount(acc.ID)

			if got.DeployStatus != tc.wantDeploy {
				t.Errorf("deploy_status %q, want %q; output:\n%s", got.DeployStatus, tc.wantDeploy, got.DeployOutput)
			}
			if got.Status != tc.wantStatus {
				t.Errorf("account status %q, want %q", got.Status, tc.wantStatus)
			}
			if got.LastDeployAt.IsZero() {
				t.Error("last_deploy_at not set")
			}
			out := got.DeployOutput
			if strings.Contains(out, testTokenSecret) || strings.Contains(out, testTokenID) {
				t.Fatal("deploy output contains a credential value")
			}
			if logs := e.logs.String(); strings.Contains(logs, testTokenSecret) || strings.Contains(logs, testTokenID) {
				t.Fatal("the log contains a credential value")
			}
			if len(out) > deployOutputMax+200 {
				t.Errorf("output is %d bytes, want at most 64 KiB plus the reason", len(out))
			}
			for _, want := range tc.wantOutput {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%.300s", want, out)
				}
			}
			if tc.wantLast != "" {
				lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
				if last := lines[len(lines)-1]; !strings.Contains(last, tc.wantLast) {
					t.Errorf("last line %q, want it to mention %q", last, tc.wantLast)
				}
			}
			if strings.Contains(out, "never") {
				t.Error("the command ran past its timeout")
			}
			if tc.maxDuration > 0 && took > tc.maxDuration {
				t.Errorf("deploy took %v, want under %v", took, tc.maxDuration)
			}

			var deployEvents []*store.AuditEvent
			for _, ev := range e.audits() {
				if ev.Action == "account.deploy" {
					deployEvents = append(deployEvents, ev)
				}
			}
			wantOutcome := "success"
			if tc.wantDeploy == "failed" {
				wantOutcome = "failure"
			}
			if len(deployEvents) != 1 || deployEvents[0].Outcome != wantOutcome ||
				deployEvents[0].Actor != "admin:abcd" || deployEvents[0].CorrelationID != "corr-1" {
				t.Errorf("deploy audit events %+v, want one %s by admin:abcd", deployEvents, wantOutcome)
			}
		})
	}
}

func TestDeployUnknownAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.DeployCommand = "true"
	d := New(cfg)
	if _, err := d.Deploy(context.Background(), 4242, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Deploy = %v, want ErrNotFound", err)
	}
}

func TestRedactTail(t *testing.T) {
	t.Parallel()
	creds := map[string]string{"token_secret": "s3cr3t-value", "short": "abc"}
	for _, tc := range []struct {
		name, in  string
		truncated bool
		want      string
	}{
		{"whole secret", "x s3cr3t-value y abc", false, "x [redacted] y abc"},
		// The buffer start cut a secret in half: its tail must not survive.
		{"cut secret at the start", "3cr3t-value\nrest", true, "rest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := redactTail([]byte(tc.in), tc.truncated, creds, len("s3cr3t-value"))
			if !strings.HasSuffix(got, tc.want) || strings.Contains(got, "cr3t") {
				t.Errorf("redactTail = %q, want suffix %q", got, tc.want)
			}
		})
	}
}

// TestDeployRecordsTheWorkspaceURL (issue 13 point 6, CONTRACT section 15):
// after a successful deploy the web function's real URL, read from the
// deploy output, becomes the account's base_url (Modal truncates long host
// labels, so the derived one can be wrong); an output naming no URL keeps
// the old base_url. Inputs tried: Modal's tree line with a URL, a failing
// deploy that prints one, and a success that prints none.
func TestDeployRecordsTheWorkspaceURL(t *testing.T) {
	const url = "https://a-very-long-workspace-name-for-gooni-x--gooni-inferen-3f2a.modal.run"
	for _, tc := range []struct {
		name, command, want string
	}{
		{"named", `echo "✓ App deployed!"; echo "└── 🔨 Created web function web => ` + url + ` 🔑"`, url},
		{"failed deploy keeps the old", `echo "Created web function web => ` + url + `"; exit 1`, ""},
		{"none named keeps the old", `echo deployed`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			acc := e.account("long-workspace", "", 1, "pending", map[string]string{"token_id": testTokenID, "token_secret": testTokenSecret})
			cfg := e.config()
			cfg.DeployCommand = tc.command
			d := New(cfg)
			if _, err := d.Deploy(context.Background(), acc.ID, nil); err != nil {
				t.Fatal(err)
			}
			e.waitDeploy(acc.ID)
			d.workers.Wait()
			got := e.getAccount(acc.ID)
			if got.BaseURL != tc.want {
				t.Fatalf("base_url %q, want %q (deploy %s: %s)", got.BaseURL, tc.want, got.DeployStatus, got.DeployOutput)
			}
			if tc.want != "" && got.ConfigRev == acc.ConfigRev {
				t.Error("a new base_url did not change the account's config revision (its driver would be stale)")
			}
		})
	}
}

// TestDeployKeepsAnEditMadeWhileItRan: an admin's edit of the account's
// settings while its deploy runs is newer than what the deploy ran with,
// so the URL the deploy prints is not recorded over it (the audit event
// says so); a delete while it runs ends it without an error logged.
// Inputs tried: a base_url edit during a deploy that prints a Modal URL;
// a delete during one.
func TestDeployKeepsAnEditMadeWhileItRan(t *testing.T) {
	const printed = "https://ws--gooni-inference.modal.run"
	for _, tc := range []struct {
		name   string
		change func(e *env, id int64) error
	}{
		{"edited", func(e *env, id int64) error {
			u := "http://127.0.0.1:9"
			_, err := e.db.UpdateAccount(context.Background(), id, store.AccountPatch{BaseURL: &u})
			return err
		}},
		{"deleted", func(e *env, id int64) error {
			_, err := e.db.RemoveAccountAudited(context.Background(), id, "worker_removed", "deleted", nil)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			acc := e.account("ws", "", 1, "pending", map[string]string{"token_id": testTokenID, "token_secret": testTokenSecret})
			gate := filepath.Join(t.TempDir(), "gate")
			cfg := e.config()
			cfg.DeployCommand = fmt.Sprintf(`until [ -e %q ]; do sleep 0.01; done; echo "Created web function web => %s"`, gate, printed)
			cfg.Logger = slogJSON(&e.logs)
			d := New(cfg)
			if _, err := d.Deploy(context.Background(), acc.ID, nil); err != nil {
				t.Fatal(err)
			}
			if err := tc.change(e, acc.ID); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(gate, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 10*time.Second, "the deploy's audit event", func() bool {
				for _, ev := range e.audits() {
					if ev.Action == "account.deploy" {
						return true
					}
				}
				return false
			})
			d.workers.Wait()
			if strings.Contains(e.logs.String(), `"level":"ERROR"`) {
				t.Errorf("an ERROR was logged:\n%s", e.logs.String())
			}
			if tc.name != "edited" {
				return
			}
			if got := e.getAccount(acc.ID); got.BaseURL != "http://127.0.0.1:9" {
				t.Fatalf("base_url %q after the deploy, want the admin's edit kept", got.BaseURL)
			}
			for _, ev := range e.audits() {
				if ev.Action == "account.deploy" && ev.Details["base_url_not_recorded"] != printed {
					t.Errorf("the deploy's audit event does not name the URL it did not record: %s", ev.Details)
				}
			}
		})
	}
}
