package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"gooni/internal/testutil"
)

// crashTTL is the stale-processing limit the crash tests run with: short
// enough that a stuck task would be reaped while the test still watches.
const crashTTL = 20 * time.Second

func parseTime(t testing.TB, s string) time.Time {
	t.Helper()
	if s == "" {
		return time.Time{}
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return v
}

// checkWithinTTL fails for a terminal task whose last run lasted longer than
// the TTL plus the reaper's slack: that task stayed processing past its limit.
func checkWithinTTL(t testing.TB, views map[string]*taskView, ttl time.Duration) (longest time.Duration) {
	t.Helper()
	const slack = 5 * time.Second // reaper pass interval (2 s) + second-precision timestamps
	for id, v := range views {
		if v.StartedAt == "" || v.CompletedAt == "" {
			continue
		}
		run := parseTime(t, v.CompletedAt).Sub(parseTime(t, v.StartedAt))
		if run > longest {
			longest = run
		}
		if run > ttl+slack {
			t.Errorf("task %s stayed processing %v, past its %v TTL (status %s)", id, run, ttl, v.Status)
		}
	}
	return longest
}

// notResent is the ids the server's log never shows dispatched a second time
// ('task dispatched' with attempt >= 2).
func notResent(srv *server, ids []string) []string {
	resent := map[string]bool{}
	for _, rec := range srv.Logs.Records("task dispatched") {
		if a, _ := rec["attempt"].(float64); a >= 2 {
			resent[fmt.Sprint(rec["task_id"])] = true
		}
	}
	var out []string
	for _, id := range ids {
		if !resent[id] {
			out = append(out, id)
		}
	}
	return out
}

// TestKill9UnderLoad proves SC-002: kill -9 at random moments under load
// loses no acknowledged task, leaves none stuck, and keeps the database sound.
func TestKill9UnderLoad(t *testing.T) {
	w := startSim(t, "sim", "--capacity", "4", "--duration", "1s")
	srv := startServer(t, "GG_TTL_IMAGE="+crashTTL.String(), "GG_TTL_VIDEO="+crashTTL.String(), "GG_HEALTH_INTERVAL=1s")
	srv.adminLogin(t)
	srv.mustAddReady(t, "sim-crash", w, 4)

	load := startLoad(srv, 3, jitter(250*time.Millisecond, 700*time.Millisecond))
	const kills = 5
	var gaps []time.Duration
	var lastInstant []string // acknowledged immediately before a kill
	for i := range kills {
		time.Sleep(400*time.Millisecond + time.Duration(rand.Int64N(int64(1200*time.Millisecond))))
		// "A 202 means the task survives kill -9 the next instant": kill right after one.
		if id, err := srv.generate("image", 100000+i); err == nil {
			lastInstant = append(lastInstant, id)
		}
		srv.Kill()
		down := time.Now()
		time.Sleep(time.Duration(rand.Int64N(int64(300 * time.Millisecond))))
		srv.start()
		gaps = append(gaps, time.Since(down))
		t.Logf("kill %d: acknowledged so far %d, server back after %v", i+1, len(load.snapshot()), gaps[i].Round(time.Millisecond))
	}
	time.Sleep(time.Second)
	acked, errs := load.finish()
	stopped := time.Now()
	if len(lastInstant) < kills-1 {
		t.Errorf("only %d of %d submits right before a kill were acknowledged", len(lastInstant), kills)
	}
	acked = append(acked, lastInstant...)
	if len(acked) < 10 {
		t.Fatalf("only %d tasks acknowledged under load (%d client errors): the load did not run", len(acked), errs)
	}

	views := srv.waitTerminal(t, acked, 90*time.Second)
	drained := time.Since(stopped)
	longest := checkWithinTTL(t, views, crashTTL)
	failed := map[string]int{}
	for id, v := range views {
		if v.Status != "done" {
			failed[v.errCode()]++
			t.Errorf("task %s ended %s (%s) against a healthy workspace", id, v.Status, v.errCode())
			continue
		}
		srv.checkMedia(t, v)
	}
	t.Logf("RESULT kills=%d acknowledged=%d (%d the instant before a kill) client_errors=%d all_terminal_after=%v longest_run=%v failed=%v",
		kills, len(acked), len(lastInstant), errs, drained.Round(time.Millisecond), longest, failed)

	if err := srv.Stop(15 * time.Second); err != nil {
		t.Errorf("graceful stop after the run: %v", err)
	}
	db := integrityCheck(t, filepath.Join(srv.dataDir, "gooni.db"))
	var processing, total int
	if err := db.QueryRow(`SELECT COUNT(*), COALESCE(SUM(status = 'processing'), 0) FROM tasks`).Scan(&total, &processing); err != nil {
		t.Fatal(err)
	}
	if processing != 0 || total < len(acked) {
		t.Errorf("database holds %d tasks (%d processing); %d were acknowledged", total, processing, len(acked))
	}
	// A kill between writing a temp media file and renaming it leaves the temp
	// file behind; the window is milliseconds wide, so this is reported, not asserted.
	entries, _ := os.ReadDir(filepath.Join(srv.dataDir, "media"))
	leftovers := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			leftovers++
		}
	}
	t.Logf("RESULT media files %d, leftover temp files %d", len(entries), leftovers)
}

// TestSimKill9MidTask kills the workspace while it runs tasks and brings it
// back empty on the same port: the dispatcher re-sends what it forgot and
// every task finishes; the account comes back to ready.
func TestSimKill9MidTask(t *testing.T) {
	// 4 s a task: the kill comes well before any can finish, even on a
	// machine that stalls this test for a moment after they all start.
	w := startSim(t, "sim", "--capacity", "4", "--duration", "4s")
	srv := startServer(t, "GG_HEALTH_INTERVAL=1s")
	srv.adminLogin(t)
	acc := srv.mustAddReady(t, "sim-dies", w, 4)

	var ids []string
	for i := range 4 {
		ids = append(ids, srv.mustGenerate(t, []string{"image", "video"}[i%2], i))
	}
	testutil.WaitFor(t, 10*time.Second, "all tasks running on the workspace", func() bool {
		for _, id := range ids {
			v, _, err := srv.status(id)
			if err != nil || v.Status != "processing" || v.Progress == 0 {
				return false
			}
		}
		return true
	})
	w.Kill()
	killed := time.Now()
	// Long enough for the poller to give up on the account (3 polls at 500 ms).
	time.Sleep(2 * time.Second)
	w.start()

	views := srv.waitTerminal(t, ids, 30*time.Second)
	t.Logf("RESULT sim kill: %d tasks terminal %v after the kill", len(ids), time.Since(killed).Round(time.Millisecond))
	for id, v := range views {
		if v.Status != "done" {
			t.Errorf("task %s ended %s (%s), want done after the workspace came back", id, v.Status, v.errCode())
			continue
		}
		srv.checkMedia(t, v)
	}
	for _, id := range notResent(srv, ids) {
		t.Errorf("task %s was not sent again to the restarted workspace", id)
	}
	testutil.WaitFor(t, 10*time.Second, "account ready again", func() bool { return srv.getAccount(t, acc.ID).Status == "ready" })
}

// TestReaperFailsStale: a task that runs on its workspace longer than its
// TTL (the clock starts when the workspace reports it running) ends failed
// with code timeout within a few seconds of its TTL, and the log says why.
func TestReaperFailsStale(t *testing.T) {
	const ttl = 3 * time.Second
	w := startSim(t, "sim-slow", "--duration", "10m")
	srv := startServer(t, "GG_TTL_IMAGE="+ttl.String())
	srv.adminLogin(t)
	srv.mustAddReady(t, "sim-hang", w, 2)

	submitted := time.Now()
	id := srv.mustGenerate(t, "image", 1)
	v := srv.waitTerminal(t, []string{id}, ttl+15*time.Second)[id]
	took := time.Since(submitted)
	if v.Status != "failed" || v.errCode() != "timeout" {
		t.Fatalf("task ended %s (%s), want failed with timeout", v.Status, v.errCode())
	}
	if took > ttl+6*time.Second {
		t.Errorf("task failed %v after submission; TTL %v (want within a few seconds of it)", took, ttl)
	}
	// Bounded from below too: a reaper that fires early (at half the TTL, say)
	// fails a task that was still within its limit.
	if took < ttl {
		t.Errorf("task failed %v after submission, before its %v TTL had passed", took, ttl)
	}
	// The view's times have second precision; a run of at least 3 s still
	// shows at least 3 s between them.
	if run := parseTime(t, v.CompletedAt).Sub(parseTime(t, v.StartedAt)); run < ttl {
		t.Errorf("task ran %v (started_at %s, completed_at %s), less than its %v TTL", run, v.StartedAt, v.CompletedAt, ttl)
	}
	t.Logf("RESULT reaper: timeout after %v (ttl %v): %s", took.Round(time.Millisecond), ttl, v.Error.Message)

	// The reaper logs after its commit, and the line still has to come
	// through the process's stderr: the failed status can be seen first.
	var line map[string]any
	testutil.WaitFor(t, 10*time.Second, "the reaper's log line for task "+id, func() bool {
		for _, rec := range srv.Logs.Records("stale task failed") {
			if rec["task_id"] == id {
				line = rec
				return true
			}
		}
		return false
	})
	if line["type"] != "image" || line["ttl"] != ttl.String() || line["runtime"] == nil || line["runtime"] == "" {
		t.Errorf("reaper log lacks type/runtime/ttl: %v", line)
	}
	if run, err := time.ParseDuration(fmt.Sprint(line["runtime"])); err != nil || run <= ttl {
		t.Errorf("reaper logged runtime %v (%v): not past the %v TTL", line["runtime"], err, ttl)
	}
}

// TestRestartResumes: a graceful restart mid-run neither fails nor re-sends
// processing tasks; they are polled again and finish done.
func TestRestartResumes(t *testing.T) {
	w := startSim(t, "sim", "--capacity", "4", "--duration", "3s")
	srv := startServer(t)
	srv.adminLogin(t)
	srv.mustAddReady(t, "sim-resume", w, 4)

	var ids []string
	for i := range 4 {
		ids = append(ids, srv.mustGenerate(t, []string{"image", "video"}[i%2], i))
	}
	started := map[string]string{}
	testutil.WaitFor(t, 10*time.Second, "all tasks running on the workspace", func() bool {
		for _, id := range ids {
			v, _, err := srv.status(id)
			if err != nil || v.Status != "processing" || v.Progress == 0 {
				return false
			}
			started[id] = v.StartedAt
		}
		return true
	})
	if err := srv.Stop(15 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	srv.start()
	for _, id := range ids {
		v, _, err := srv.status(id)
		if err != nil {
			t.Fatal(err)
		}
		if v.Status == "failed" {
			t.Errorf("task %s failed across the restart: %s", id, v.errCode())
		}
	}
	views := srv.waitTerminal(t, ids, 20*time.Second)
	for id, v := range views {
		if v.Status != "done" {
			t.Errorf("task %s ended %s (%s), want done", id, v.Status, v.errCode())
		} else {
			srv.checkMedia(t, v)
		}
		if v.StartedAt != started[id] {
			t.Errorf("task %s started_at %s -> %s: it was run again instead of resumed", id, started[id], v.StartedAt)
		}
	}
	for _, rec := range srv.Logs.Records("task dispatched") {
		if a, _ := rec["attempt"].(float64); a >= 2 {
			t.Errorf("task %v was dispatched again after a graceful restart", rec["task_id"])
		}
	}
}

// TestBackupUnderLoad: `gooni backup` of a live, busy server is a sound
// database holding every task acknowledged before it began, and a server
// started on it (with the secrets) serves those tasks.
func TestBackupUnderLoad(t *testing.T) {
	w := startSim(t, "sim", "--capacity", "4", "--duration", "500ms")
	srv := startServer(t)
	srv.adminLogin(t)
	srv.mustAddReady(t, "sim-backup", w, 4)

	load := startLoad(srv, 3, jitter(50*time.Millisecond, 200*time.Millisecond))
	testutil.WaitFor(t, 10*time.Second, "some acknowledged tasks", func() bool { return len(load.snapshot()) >= 10 })
	before := load.snapshot()
	backupPath := filepath.Join(t.TempDir(), "backup.db")
	cmd := exec.Command(gooniBin, "backup", backupPath)
	cmd.Env = append(testutil.BaseEnv(), "GG_DATA_DIR="+srv.dataDir)
	began := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(began)
	time.Sleep(300 * time.Millisecond)
	acked, _ := load.finish()
	if err != nil {
		t.Fatalf("gooni backup: %v\n%s", err, out)
	}
	t.Logf("RESULT backup under load: %v; %d tasks acknowledged before it, %d in all", took.Round(time.Millisecond), len(before), len(acked))

	db := integrityCheck(t, backupPath)
	have := map[string]bool{}
	rows, err := db.Query(`SELECT id FROM tasks`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		have[id] = true
	}
	rows.Close()
	var missing []string
	for _, id := range before {
		if !have[id] {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("backup lacks %d tasks acknowledged before it began: %s", len(missing), strings.Join(missing, ", "))
	}

	restored := t.TempDir()
	copyDir(t, filepath.Join(srv.dataDir, "secrets"), filepath.Join(restored, "secrets"))
	b, err := os.ReadFile(backupPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(restored, "gooni.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	srv2 := startServerOn(t, restored)
	for _, id := range []string{before[0], before[len(before)-1]} {
		if _, code, err := srv2.status(id); err != nil {
			t.Errorf("restored server: status of backed-up task %s: %d %v", id, code, err)
		}
	}
}

// TestProgressNeverGoesDown: the contract's task view has a progress that
// never goes down. A workspace that forgets its tasks (killed and back at
// once) makes the dispatcher send them again; the user must not see the bar
// jump back.
func TestProgressNeverGoesDown(t *testing.T) {
	w := startSim(t, "sim", "--capacity", "2", "--duration", "2s")
	// On a loaded machine the restart can outlast three polls, which marks
	// the account failed; a short health interval brings it back at once
	// (what is tested is the progress across the re-send, not the failover).
	srv := startServer(t, "GG_HEALTH_INTERVAL=1s")
	srv.adminLogin(t)
	srv.mustAddReady(t, "sim-progress", w, 2)

	ids := []string{srv.mustGenerate(t, "image", 1), srv.mustGenerate(t, "video", 2)}
	seen := map[string]int{}
	reported := map[string]bool{}
	var regressions []string
	sample := func() bool {
		all := true
		for _, id := range ids {
			v, _, err := srv.status(id)
			if err != nil {
				return false
			}
			if v.Progress < seen[id] && !reported[id] {
				reported[id] = true // the first drop says it all
				regressions = append(regressions, fmt.Sprintf("%s %d%% -> %d%% (%s)", id, seen[id], v.Progress, v.Status))
			}
			seen[id] = max(seen[id], v.Progress)
			if !v.terminal() {
				all = false
			}
		}
		return all
	}
	// Both tasks must be mid-run when the workspace dies: a done task (100%)
	// is not sent again, and the case would prove nothing.
	testutil.WaitFor(t, 10*time.Second, "both tasks processing with progress", func() bool {
		sample()
		for _, id := range ids {
			v, _, err := srv.status(id)
			if err != nil || v.terminal() {
				if v != nil {
					t.Fatalf("task %s ended %s before the workspace was killed: the case proves nothing", id, v.Status)
				}
				return false
			}
			if v.Status != "processing" || v.Progress < 30 || v.Progress >= 100 {
				return false
			}
		}
		return true
	})
	w.Kill()
	w.start() // back at once, empty: polls now get 404 and the tasks are sent again
	testutil.WaitFor(t, 30*time.Second, "every task terminal", sample)
	for _, id := range ids {
		if v, _, _ := srv.status(id); v == nil || v.Status != "done" {
			t.Errorf("task %s did not end done", id)
		} else {
			srv.checkMedia(t, v)
		}
	}
	for _, id := range notResent(srv, ids) {
		t.Errorf("task %s was not sent again after the workspace forgot it: the case proves nothing", id)
	}
	if len(regressions) > 0 {
		t.Errorf("progress went down (contract 6: never going down): %s", strings.Join(regressions, "; "))
	}
}
