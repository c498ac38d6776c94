package e2e

import (
	"encoding/json"
	"fmt"
	"gooni/internal/testutil"
	"net/http"
	"strings"
	"testing"
	"time"
)

// faultCase is one workspace fault and what a user and an admin must see.
type faultCase struct {
	name  string
	fault string // the faulty sim's --fault
	// faultLate starts the faulty sim healthy and turns the fault on after its
	// health check, for faults that would otherwise fail the check itself.
	faultLate bool
	healthy   bool // a second, healthy account is ready (failover is the point)
	tasks     int
	deadline  time.Duration
	// wantStatus and wantCode: every task's final status and error code.
	wantStatus, wantCode string
	wantMessage          string // substring of the error message
	// wantAccount and wantReason: the faulty account's status afterwards.
	wantAccount, wantReason string
	// logMsg and logReason: a server log line proving the fault was met.
	logMsg, logReason string
	env               []string // extra server environment
}

// TestWorkspaceFaults runs each `workspace-sim --fault` through real processes
// and checks what the user sees, what the account becomes, and that nothing
// is left unfinished.
func TestWorkspaceFaults(t *testing.T) {
	cases := []faultCase{
		// A 503 on submit is a busy workspace (CONTRACT section 14): the
		// task goes elsewhere without using a try; alone, see TestBusyWorkspaceAlone.
		{name: "refuse/failover", fault: "refuse", healthy: true, tasks: 3, deadline: 20 * time.Second,
			wantStatus: "done", wantAccount: "ready",
			logMsg: "workspace busy: task back in the queue"},
		{name: "drop/failover", fault: "drop", healthy: true, tasks: 3, deadline: 20 * time.Second,
			wantStatus: "done", wantAccount: "ready",
			logMsg: "task requeued", logReason: "lost the task"},
		{name: "drop/alone", fault: "drop", tasks: 1, deadline: 20 * time.Second,
			wantStatus: "failed", wantCode: "dispatch_failed", wantMessage: "lost the task", wantAccount: "ready"},
		// A hung workspace is failed after 3 timeouts in a row (one slow
		// cold start is not enough); 1 s calls keep the test short.
		{name: "hang/failover", fault: "hang", healthy: true, tasks: 2, deadline: 40 * time.Second,
			wantStatus: "done", wantAccount: "failed", wantReason: "did not answer in time",
			logMsg: "worker account failed", logReason: "did not answer in time", env: []string{"GG_WORKSPACE_TIMEOUT=1s"}},
		{name: "5xx/failover", fault: "5xx", faultLate: true, healthy: true, tasks: 2, deadline: 20 * time.Second,
			wantStatus: "done", wantAccount: "failed", wantReason: "server error (500)",
			logMsg: "worker account failed", logReason: "server error (500)"},
		{name: "corrupt", fault: "corrupt", tasks: 2, deadline: 20 * time.Second,
			wantStatus: "failed", wantCode: "corrupt_result", wantAccount: "ready"},
		{name: "error", fault: "error", tasks: 2, deadline: 20 * time.Second,
			wantStatus: "failed", wantCode: "worker_error", wantMessage: "simulated failure", wantAccount: "ready"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runFault(t, tc)
		})
	}
}

func runFault(t *testing.T, tc faultCase) {
	flags := []string{"--capacity", "2", "--duration", "500ms"}
	faulty := startSim(t, "sim-"+tc.fault, append(flags, "--fault", tc.fault)...)
	if tc.faultLate {
		faulty.restartWith(flags...)
	}
	// The background health check would put a failed account back to ready
	// and hide what the fault did; it is left at its 60 s default.
	srv := startServer(t, tc.env...)
	srv.adminLogin(t)
	// The faulty account is registered first: on a tie the dispatcher picks
	// the lowest id, so the first task meets the fault.
	acc := srv.mustAddReady(t, "faulty-"+strings.ReplaceAll(tc.fault, "5xx", "fivexx"), faulty, 2)
	if tc.faultLate {
		faulty.restartWith(append(flags, "--fault", tc.fault)...)
	}
	if tc.healthy {
		good := startSim(t, "sim-healthy", flags...)
		srv.mustAddReady(t, "healthy", good, 2)
	}

	var ids []string
	for i := range tc.tasks {
		ids = append(ids, srv.mustGenerate(t, "image", i))
	}
	began := time.Now()
	views := srv.waitTerminal(t, ids, tc.deadline)
	took := time.Since(began)
	for id, v := range views {
		if v.Status != tc.wantStatus || v.errCode() != tc.wantCode {
			t.Errorf("task %s ended %s/%q, want %s/%q", id, v.Status, v.errCode(), tc.wantStatus, tc.wantCode)
			continue
		}
		if tc.wantMessage != "" && !strings.Contains(v.Error.Message, tc.wantMessage) {
			t.Errorf("task %s error message %q lacks %q", id, v.Error.Message, tc.wantMessage)
		}
		if v.Status == "failed" && v.Progress == 100 {
			t.Errorf("failed task %s shows progress 100", id)
		}
		checkMediaAnswer(t, srv, id, v)
	}
	if len(views) > 0 {
		t.Logf("RESULT fault %s: %d tasks terminal in %v", tc.name, len(ids), took.Round(time.Millisecond))
		for _, v := range views {
			if v.Error != nil {
				t.Logf("RESULT fault %s: user sees %s: %s", tc.name, v.Error.Code, v.Error.Message)
				break
			}
		}
	}

	got := srv.getAccount(t, acc.ID)
	if got.Status != tc.wantAccount || !strings.Contains(got.StatusReason, tc.wantReason) {
		t.Errorf("faulty account is %s (%q), want %s with reason containing %q", got.Status, got.StatusReason, tc.wantAccount, tc.wantReason)
	}
	if tc.wantAccount == "failed" && got.StatusReason == "" {
		t.Errorf("failed account has no status_reason")
	}
	t.Logf("RESULT fault %s: account %s %q", tc.name, got.Status, got.StatusReason)
	if tc.logMsg != "" && !hasLog(srv, tc.logMsg, tc.logReason) {
		t.Errorf("no %q log line with reason %q: the fault was not met", tc.logMsg, tc.logReason)
	}
	checkNothingStuck(t, srv)
}

// checkMediaAnswer: a done task serves its result and preview (the bytes
// checked by checkMedia); a failed one answers 409 task_failed on /results
// and /preview with the failure as message.
func checkMediaAnswer(t *testing.T, srv *server, id string, v *taskView) {
	t.Helper()
	if v.Status == "done" {
		srv.checkMedia(t, v)
	}
	for _, path := range []string{"/results/", "/preview/"} {
		resp, body, err := srv.do("GET", path+id, nil)
		if err != nil {
			t.Errorf("GET %s%s: %v", path, id, err)
			continue
		}
		switch v.Status {
		case "done":
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s%s of a done task: %d", path, id, resp.StatusCode)
			}
		case "failed":
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			json.Unmarshal(body, &e)
			if resp.StatusCode != http.StatusConflict || e.Error.Code != "task_failed" || e.Error.Message == "" {
				t.Errorf("GET %s%s of a failed task: %d %s, want 409 task_failed with a message", path, id, resp.StatusCode, body)
			}
		}
	}
}

// checkNothingStuck: the server reports no pending or processing task left.
func checkNothingStuck(t *testing.T, srv *server) {
	t.Helper()
	var h map[string]any
	srv.adminCall(t, "GET", "/admin/health", nil, http.StatusOK, &h)
	if q, ok := h["queue_depth"].(float64); ok && q != 0 {
		t.Errorf("admin health queue_depth = %v after every task ended", q)
	}
}

// hasLog reports whether the server logged msg with a value containing
// want, waiting up to 5 s for it: a line written after the commit a test
// saw still has to come through the process's stderr.
func hasLog(srv *server, msg, want string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, rec := range srv.Logs.Records(msg) {
			for _, v := range rec {
				if strings.Contains(fmt.Sprint(v), want) {
					return true
				}
			}
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// TestHealthCheckOfBrokenWorkspace: an admin health check of a workspace that
// answers 500 marks the account failed with a reason, and a dispatch never
// goes to it; generating with no ready account is no_workers.
func TestHealthCheckOfBrokenWorkspace(t *testing.T) {
	t.Parallel()
	w := startSim(t, "sim-5xx", "--fault", "5xx")
	srv := startServer(t)
	srv.adminLogin(t)
	a := srv.addAccount(t, "broken", w, 2)
	if a.Status != "failed" || !strings.Contains(a.StatusReason, "500") {
		t.Fatalf("health check of a 5xx workspace: %s %q, want failed naming the 500", a.Status, a.StatusReason)
	}
	resp, body, err := srv.do("POST", "/generate", generateBody("image", 1))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"no_workers"`) {
		t.Errorf("generate with only a failed account: %d %s, want 503 no_workers", resp.StatusCode, body)
	}
}

// TestBusyWorkspaceAlone (CONTRACT section 14): a workspace that answers
// 503 to every submit is busy, not broken: with no other account the task
// stays pending without using its tries and the account stays ready; once
// the workspace takes tasks again, the task runs on its first try.
func TestBusyWorkspaceAlone(t *testing.T) {
	flags := []string{"--capacity", "2", "--duration", "500ms"}
	w := startSim(t, "sim-busy", append(flags, "--fault", "refuse")...)
	srv := startServer(t)
	srv.adminLogin(t)
	acc := srv.mustAddReady(t, "busy", w, 2)
	id := srv.mustGenerate(t, "image", 1)
	testutil.WaitFor(t, 10*time.Second, "the workspace to refuse twice", func() bool {
		return len(srv.Logs.Records("workspace busy: task back in the queue")) >= 2
	})
	v, _, err := srv.status(id)
	if err != nil || v.Status != "pending" {
		t.Fatalf("task while the workspace is busy: %+v %v, want pending", v, err)
	}
	if a := srv.getAccount(t, acc.ID); a.Status != "ready" {
		t.Fatalf("a busy workspace was marked %s (%q)", a.Status, a.StatusReason)
	}
	w.restartWith(flags...)
	v = srv.waitTerminal(t, []string{id}, 30*time.Second)[id]
	if v.Status != "done" {
		t.Fatalf("task ended %s (%s) once the workspace was free", v.Status, v.errCode())
	}
	attempts := 0
	for _, rec := range srv.Logs.Records("task dispatched") {
		if rec["task_id"] == id {
			if a, _ := rec["attempt"].(float64); int(a) > attempts {
				attempts = int(a)
			}
		}
	}
	if attempts != 1 {
		t.Errorf("the task ran on try %d, want 1: busy answers must not use tries", attempts)
	}
}
