package server

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"gooni/internal/dispatch"
	"gooni/internal/workspace"
	"gooni/store"
)

// rawFile opens the server's database file behind its back, as someone who
// holds the file (but not the audit key) could.
func rawFile(t *testing.T, dir string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, store.FileName)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	t.Cleanup(func() { raw.Close() })
	return raw
}

func rawExec(t *testing.T, raw *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := raw.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

type verifyAnswer struct {
	OK         bool    `json:"ok"`
	Checked    int     `json:"checked"`
	FirstBadID *int64  `json:"first_bad_id"`
	Reason     *string `json:"reason"`
}

func (e *testEnv) verify(t *testing.T, ac *http.Cookie) verifyAnswer {
	t.Helper()
	w := e.do(req{method: "GET", path: "/admin/logs/verify", cookies: []*http.Cookie{ac}})
	var v verifyAnswer
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &v) != nil {
		t.Fatalf("verify: %d %s", w.Code, w.Body.String())
	}
	return v
}

// TestLogsVerifyReportsTampering: each tampering of the live server's
// database file or anchor makes GET /admin/logs/verify answer ok false with
// its reason. The wiped table, the older head put back over a truncated tail,
// and the removed anchor all answered {"ok":true} before anchoring.
func TestLogsVerifyReportsTampering(t *testing.T) {
	type old struct {
		lastID, count int64
		lastMAC, mac  []byte
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, raw *sql.DB, dir string, o old)
		reason string
		bad    int64
	}{
		{"edited row", func(t *testing.T, raw *sql.DB, _ string, _ old) {
			rawExec(t, raw, `UPDATE audit_events SET details = '{"name":"someone else"}' WHERE id = 2`)
		}, "row_edited", 2},
		{"removed middle row", func(t *testing.T, raw *sql.DB, _ string, _ old) {
			rawExec(t, raw, `DELETE FROM audit_events WHERE id = 3`)
		}, "row_removed", 3},
		{"removed tail", func(t *testing.T, raw *sql.DB, _ string, _ old) {
			rawExec(t, raw, `DELETE FROM audit_events WHERE id >= 4`)
		}, "tail_removed", 4},
		{"swapped rows", func(t *testing.T, raw *sql.DB, _ string, _ old) {
			rawExec(t, raw, `CREATE TEMP TABLE s AS SELECT * FROM audit_events WHERE id IN (2, 3);
				UPDATE audit_events SET (ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac) =
				(SELECT ts, actor, source, action, target, outcome, correlation_id, details, prev_mac, mac FROM s WHERE s.id = 5 - audit_events.id)
				WHERE id IN (2, 3)`)
		}, "rows_reordered", 2},
		{"wiped table", func(t *testing.T, raw *sql.DB, _ string, _ old) {
			rawExec(t, raw, `DELETE FROM audit_events; DELETE FROM audit_head`)
		}, "table_wiped", 1},
		{"tail removed and an older head put back", func(t *testing.T, raw *sql.DB, _ string, o old) {
			rawExec(t, raw, `DELETE FROM audit_events WHERE id > ?`, o.lastID)
			rawExec(t, raw, `UPDATE audit_head SET last_id = ?, last_mac = ?, mac = ?, event_count = ?`, o.lastID, o.lastMAC, o.mac, o.count)
		}, "head_replayed", 4},
		{"older head put back over every row", func(t *testing.T, raw *sql.DB, _ string, o old) {
			rawExec(t, raw, `UPDATE audit_head SET last_id = ?, last_mac = ?, mac = ?, event_count = ?`, o.lastID, o.lastMAC, o.mac, o.count)
		}, "rows_beyond_head", 4},
		{"head seal invalid", func(t *testing.T, raw *sql.DB, _ string, _ old) {
			rawExec(t, raw, `UPDATE audit_head SET event_count = 99`)
		}, "head_invalid", 5},
		{"anchor removed", func(t *testing.T, _ *sql.DB, dir string, _ old) {
			if err := os.Remove(filepath.Join(dir, store.AnchorFile)); err != nil {
				t.Fatal(err)
			}
		}, "anchor_missing", 0},
		{"anchor edited", func(t *testing.T, _ *sql.DB, dir string, _ old) {
			p := filepath.Join(dir, store.AnchorFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"count":5`, `"count":50`, 1)), 0o600)
		}, "anchor_invalid", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ac := e.adminSession() // event 1
			create := func(name string) {
				w := e.do(req{method: "POST", path: "/admin/accounts", cookies: []*http.Cookie{ac},
					body: `{"name":"` + name + `","workspace":"gpu-one","credentials":{}}`})
				if w.Code != 201 {
					t.Fatalf("create %s: %d %s", name, w.Code, w.Body.String())
				}
			}
			create("a") // 2
			create("b") // 3
			var o old
			rawR := rawFile(t, e.dataDir)
			if err := rawR.QueryRow(`SELECT last_id, last_mac, mac, event_count FROM audit_head`).Scan(&o.lastID, &o.lastMAC, &o.mac, &o.count); err != nil || o.count != 3 {
				t.Fatalf("head after 3 events: %+v %v", o, err)
			}
			create("c") // 4
			create("d") // 5
			if v := e.verify(t, ac); !v.OK || v.Checked != 5 || v.Reason != nil {
				t.Fatalf("before tampering: %+v", v)
			}
			rawExec(t, rawR, "DROP TRIGGER audit_events_no_update")
			rawExec(t, rawR, "DROP TRIGGER audit_events_no_delete")
			tc.tamper(t, rawR, e.dataDir, o)

			v := e.verify(t, ac)
			bad := int64(0)
			if v.FirstBadID != nil {
				bad = *v.FirstBadID
			}
			if v.OK || v.Reason == nil || *v.Reason != tc.reason || bad != tc.bad {
				t.Fatalf("verify = ok %v reason %v first bad %d, want reason %q first bad %d", v.OK, strOf(v.Reason), bad, tc.reason, tc.bad)
			}
			// More admin work does not make the break go away.
			create("e")
			if v := e.verify(t, ac); v.OK {
				t.Fatalf("an append healed the break: %+v", v)
			}
		})
	}
}

func strOf(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// metricValue reads one sample of a Prometheus text exposition.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return v
		}
	}
	return 0
}

// TestRepeatedDenialsDoNotFloodTheAuditLog: over a real listener and a real
// SQLite file, 1,000 requests with random bad Origins from one client write
// one audit row per minute (the clock is advanced to see the next), and
// /metrics counts the rest; so do a throttled client and a replayed logout
// with a valid-MAC cookie of an ended session. Before, each request wrote a
// row (the CORS loop ~550 rows a second).
func TestRepeatedDenialsDoNotFloodTheAuditLog(t *testing.T) {
	e := newEnv(t)
	hs := httptest.NewServer(e.h)
	defer hs.Close()
	client := hs.Client()
	send := func(method, path string, hdr map[string]string, cookies ...*http.Cookie) *http.Response {
		t.Helper()
		r, _ := http.NewRequest(method, hs.URL+path, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		for _, c := range cookies {
			r.AddCookie(c)
		}
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	count := func(action, outcome string) int {
		t.Helper()
		items, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: action, Outcome: outcome, Limit: 500})
		if err != nil {
			t.Fatal(err)
		}
		return len(items)
	}
	resp := send("POST", "/admin/session", map[string]string{"X-Admin-Key": e.sec.AdminKey})
	var ac *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == adminCookie {
			ac = c
		}
	}
	if ac == nil {
		t.Fatalf("admin login: %d", resp.StatusCode)
	}
	suppressed := func(action string) float64 {
		t.Helper()
		r, _ := http.NewRequest("GET", hs.URL+"/metrics", nil)
		r.AddCookie(ac)
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		if resp.StatusCode != 200 {
			t.Fatalf("/metrics: %d", resp.StatusCode)
		}
		return metricValue(t, b.String(), `gooni_audit_suppressed_total{action="`+action+`"}`)
	}

	// CORS: random bad Origins from one client.
	for i := 0; i < 1000; i++ {
		origin := fmt.Sprintf("https://%x.evil.example", rand.Uint64())
		if resp := send("GET", "/health", map[string]string{"Origin": origin}); resp.StatusCode != 403 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if n := count("security.cors_blocked", ""); n != 1 {
		t.Fatalf("%d cors rows after 1,000 blocked requests, want 1", n)
	}
	if got := suppressed("security.cors_blocked"); got != 999 {
		t.Fatalf("suppressed cors metric %v, want 999", got)
	}

	// Throttling: POST /auth/session allows 10 a minute per client.
	for i := 0; i < 60; i++ {
		send("POST", "/auth/session", nil)
	}
	if n := count("security.throttled", ""); n != 1 {
		t.Fatalf("%d throttle rows after 50 rejections, want 1", n)
	}
	if got := suppressed("security.throttled"); got != 49 {
		t.Fatalf("suppressed throttle metric %v, want 49", got)
	}

	// A logout replayed with the cookie of a session that has ended.
	user := e.userSession()
	if resp := send("DELETE", "/auth/session", nil, user); resp.StatusCode != 204 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	for i := 0; i < 100; i++ {
		if resp := send("DELETE", "/auth/session", nil, user); resp.StatusCode != 204 {
			t.Fatalf("replayed logout: %d", resp.StatusCode)
		}
	}
	if ok, denied := count("session.revoke", "success"), count("session.revoke", "denied"); ok != 1 || denied != 1 {
		t.Fatalf("session.revoke rows: %d success, %d denied; want 1 and 1", ok, denied)
	}
	if got := suppressed("session.revoke"); got != 99 {
		t.Fatalf("suppressed logout metric %v, want 99", got)
	}

	// A minute later each of them is worth one more row, which says how many were folded.
	e.clock.Advance(time.Minute)
	send("GET", "/health", map[string]string{"Origin": "https://again.evil.example"})
	send("DELETE", "/auth/session", nil, user)
	if n := count("security.cors_blocked", ""); n != 2 {
		t.Fatalf("%d cors rows in the second window, want 2", n)
	}
	items, _, _ := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "security.cors_blocked", Limit: 1})
	if items[0].Details["origin"] != "https://again.evil.example" || items[0].Details["repeats_suppressed"] != float64(999) {
		t.Errorf("second window row details %v", items[0].Details)
	}
	if n := count("session.revoke", "denied"); n != 2 {
		t.Fatalf("%d denied logout rows in the second window, want 2", n)
	}
	if v := e.verify(t, ac); !v.OK {
		t.Fatalf("verify: %+v", v)
	}
}

// adminDBState is what an admin route may change.
type adminDBState struct {
	Accounts []*store.Account
	Tasks    []string
	Sessions int
	Audit    int
}

func (e *testEnv) adminState(t *testing.T) adminDBState {
	t.Helper()
	var s adminDBState
	var err error
	if s.Accounts, err = e.db.ListAccounts(context.Background()); err != nil {
		t.Fatal(err)
	}
	raw := rawFile(t, e.dataDir)
	rows, err := raw.Query(`SELECT id || ' ' || status || ' ' || error_code || ' ' || coalesce(account_id, '') FROM tasks ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r string
		rows.Scan(&r)
		s.Tasks = append(s.Tasks, r)
	}
	rows.Close()
	raw.QueryRow(`SELECT count(*) FROM sessions`).Scan(&s.Sessions)
	raw.QueryRow(`SELECT count(*) FROM audit_events`).Scan(&s.Audit)
	raw.Close()
	return s
}

// TestAdminActionsFailClosedWhenAuditFails (FR-023): when the audit row
// cannot be written, each admin route answers 500 internal and changes
// nothing: no account, no edit, no delete (its tasks stay as they were), no
// deploy started, no admin session. Before, the action succeeded and only a
// log line said the audit row was missing. The same requests succeed when
// the audit log works.
func TestAdminActionsFailClosedWhenAuditFails(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(map[bool]string{false: "audit works", true: "audit refused"}[refuse], func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "deployed")
			e := newDispatchEnv(t, workspace.SimConfig{}, "touch "+marker)
			ac := e.adminSession()
			acc := e.account("gpu-one", e.sim.URL, map[string]string{"token_id": "t"})
			if _, err := e.db.SetAccountStatus(context.Background(), acc.ID, "ready", "", e.clock.Now()); err != nil {
				t.Fatal(err)
			}
			running := e.task("processing", acc.ID)
			if refuse {
				rawExec(t, rawFile(t, e.dataDir), `CREATE TRIGGER audit_refused BEFORE INSERT ON audit_events
					BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END`)
			}
			id := strconv.FormatInt(acc.ID, 10)
			for _, r := range []struct {
				name string
				r    req
				ok   int
			}{
				{"create", req{method: "POST", path: "/admin/accounts", body: `{"name":"new","workspace":"gpu-two","credentials":{"token_id":"x"}}`}, 201},
				{"patch", req{method: "PATCH", path: "/admin/accounts/" + id, body: `{"name":"renamed","capacity":3}`}, 200},
				{"disable", req{method: "PATCH", path: "/admin/accounts/" + id, body: `{"status":"disabled"}`}, 200},
				{"deploy", req{method: "POST", path: "/admin/accounts/" + id + "/deploy"}, 202},
				{"delete", req{method: "DELETE", path: "/admin/accounts/" + id}, 204},
				{"login", req{method: "POST", path: "/admin/session", header: map[string]string{"X-Admin-Key": e.sec.AdminKey}}, 200},
			} {
				if r.name != "login" {
					r.r.cookies = []*http.Cookie{ac}
				}
				if r.name == "delete" && !refuse {
					waitDeploy(t, e.testEnv, acc.ID) // let the deploy end before its account goes
				}
				before := e.adminState(t)
				w := e.do(r.r)
				after := e.adminState(t)
				if !refuse {
					if w.Code != r.ok || reflect.DeepEqual(before, after) {
						t.Fatalf("%s with audit working: %d %s (changed: %v)", r.name, w.Code, w.Body.String(), !reflect.DeepEqual(before, after))
					}
					continue
				}
				if w.Code != 500 || errCode(t, w) != "internal" {
					t.Errorf("%s: %d %s, want 500 internal", r.name, w.Code, w.Body.String())
				}
				if !reflect.DeepEqual(before, after) {
					t.Errorf("%s changed the database:\nbefore %+v\nafter  %+v", r.name, before, after)
				}
				if r.name == "login" && cookieOf(w, adminCookie) != nil {
					t.Error("login set an admin cookie")
				}
			}
			if refuse {
				if _, err := os.Stat(marker); err == nil {
					t.Error("the deploy command ran")
				}
				if got, _ := e.db.GetTask(context.Background(), running.ID); got.Status != "processing" {
					t.Errorf("the account's task is %s", got.Status)
				}
			}
		})
	}
}

// TestHealthCheckFailsClosedWhenAuditFails (FR-023): an admin's health check
// commits its verdict with its audit row; when the row cannot be written the
// answer is 500 internal and the account keeps its status, reason and check
// time. Before, the check changed the account (ready -> failed) and the
// missing row was only logged. Inputs tried: a failed account whose
// workspace is healthy, with the audit insert refused, then allowed.
func TestHealthCheckFailsClosedWhenAuditFails(t *testing.T) {
	e := newDispatchEnv(t, workspace.SimConfig{}, "")
	ac := e.adminSession()
	acc := e.account("gpu-one", e.sim.URL, map[string]string{"token_id": "t"})
	if _, err := e.db.SetAccountStatus(context.Background(), acc.ID, "failed", "down earlier", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	path := "/admin/accounts/" + strconv.FormatInt(acc.ID, 10) + "/health-check"
	rawExec(t, rawFile(t, e.dataDir), `CREATE TRIGGER audit_refused BEFORE INSERT ON audit_events
		BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END`)
	before := e.adminState(t)
	w := e.do(req{method: "POST", path: path, cookies: []*http.Cookie{ac}})
	if w.Code != 500 || errCode(t, w) != "internal" {
		t.Fatalf("health check with the audit refused: %d %s, want 500 internal", w.Code, w.Body.String())
	}
	got, err := e.db.GetAccount(context.Background(), acc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "failed" || got.StatusReason != "down earlier" || len(got.Models) != 0 {
		t.Fatalf("the refused health check changed the account: %s %q models %v", got.Status, got.StatusReason, got.Models)
	}
	if after := e.adminState(t); !reflect.DeepEqual(before, after) {
		t.Fatalf("the refused health check changed the database:\nbefore %+v\nafter  %+v", before, after)
	}
	rawExec(t, rawFile(t, e.dataDir), `DROP TRIGGER audit_refused`)
	w = e.do(req{method: "POST", path: path, cookies: []*http.Cookie{ac}})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"status":"ready"`) {
		t.Fatalf("health check with the audit working: %d %s", w.Code, w.Body.String())
	}
	rows, _, err := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "account.health_check", Limit: 10})
	if err != nil || len(rows) != 1 || rows[0].Outcome != "success" {
		t.Fatalf("health check audit rows: %d (%v), want one success", len(rows), err)
	}
}

// TestDeployOnlyWhereItCanWork (issue 16 point 4): deploy runs the Modal app
// with the account's Modal token, so the server refuses it, with 400
// validation_failed naming the field and an audit row, for a ComfyUI account
// (a deploy overwrote its base URL with the Modal app's) and for an account
// without credentials; nothing runs and nothing changes. An account with the
// gooni driver and credentials deploys. Inputs tried: those three accounts.
func TestDeployOnlyWhereItCanWork(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "deployed")
	e := newDispatchEnv(t, workspace.SimConfig{}, "touch "+marker+"; echo 'Created web function web => https://x--gooni-inference.modal.run'")
	ac := e.adminSession()
	comfy := &store.Account{Name: "box", Workspace: "box", BaseURL: "http://127.0.0.1:8188", Capacity: 1, Status: "pending", Driver: store.DriverComfyUI}
	if err := e.db.CreateAccount(context.Background(), comfy, map[string]string{"proxy_key": "k"}); err != nil {
		t.Fatal(err)
	}
	bare := e.account("bare", e.sim.URL, map[string]string{})
	for _, c := range []struct {
		acc   *store.Account
		field string
	}{{comfy, "driver"}, {bare, "credentials"}} {
		before, _ := e.db.GetAccount(context.Background(), c.acc.ID)
		w := e.do(req{method: "POST", path: fmt.Sprintf("/admin/accounts/%d/deploy", c.acc.ID), cookies: []*http.Cookie{ac}})
		if w.Code != 400 || errCode(t, w) != "validation_failed" || !strings.Contains(w.Body.String(), `"field":"`+c.field+`"`) {
			t.Fatalf("deploy of %s: %d %s, want 400 validation_failed on %s", c.acc.Name, w.Code, w.Body.String(), c.field)
		}
		after, _ := e.db.GetAccount(context.Background(), c.acc.ID)
		if after.BaseURL != before.BaseURL || after.DeployStatus != "" {
			t.Fatalf("a refused deploy changed %s: base_url %q -> %q, deploy_status %q", c.acc.Name, before.BaseURL, after.BaseURL, after.DeployStatus)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the deploy command ran for a refused deploy")
	}
	rows, _, _ := e.db.ListAudit(context.Background(), store.AuditFilter{Action: "account.deploy", Limit: 10})
	if len(rows) != 2 || rows[0].Outcome != "failure" || rows[1].Outcome != "failure" {
		t.Fatalf("account.deploy audit rows: %+v, want two failures", rows)
	}
	good := e.account("good", e.sim.URL, map[string]string{"token_id": "t", "token_secret": "s"})
	if w := e.do(req{method: "POST", path: fmt.Sprintf("/admin/accounts/%d/deploy", good.ID), cookies: []*http.Cookie{ac}}); w.Code != 202 {
		t.Fatalf("deploy of a gooni account with credentials: %d %s", w.Code, w.Body.String())
	}
	waitDeploy(t, e.testEnv, good.ID)
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the deploy command did not run for the good account")
	}
}

// deployThatEndsFirst is the real dispatcher, except that Deploy returns only
// once the deploy it started has ended, a minute later by the test's clock:
// the order a quick GG_DEPLOY_COMMAND and a slow answer can take. The
// command waits for gate, opened once the start has committed.
type deployThatEndsFirst struct {
	*dispatch.Dispatcher
	t    *testing.T
	e    *testEnv
	gate string
}

func (d deployThatEndsFirst) Deploy(ctx context.Context, id int64, ev store.AuditOf[*store.Account]) (*store.Account, error) {
	a, err := d.Dispatcher.Deploy(ctx, id, ev)
	if err == nil {
		d.e.clock.Advance(time.Minute)
		if err := os.WriteFile(d.gate, nil, 0o600); err != nil {
			d.t.Fatal(err)
		}
		waitDeploy(d.t, d.e, id)
	}
	return a, err
}

// TestDeployAnswerShowsTheDeployItStarted: the 202 of POST .../deploy shows
// deploy_status running and the last_deploy_at of the deploy it started, as
// the contract's "running -> succeeded/failed" has it, even when the command
// has already ended before the answer is written; GET then shows how it
// ended, and when (last_deploy_at moves to the end). Input tried: a command
// that ends at once, with the answer held until it has (this once answered
// "succeeded", seen in CI).
func TestDeployAnswerShowsTheDeployItStarted(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	e := newDispatchEnv(t, workspace.SimConfig{}, fmt.Sprintf("until [ -e %q ]; do sleep 0.01; done; echo deployed", gate))
	cfg := e.srv.cfg
	cfg.Dispatcher = deployThatEndsFirst{Dispatcher: e.d, t: t, e: e.testEnv, gate: gate}
	srv := New(cfg)
	e.srv, e.h = srv, srv.Handler()
	ac := []*http.Cookie{e.adminSession()}
	acc := e.account("fast", e.sim.URL, map[string]string{"token_id": "t", "token_secret": "s"})
	start := e.clock.Now().UTC().Format(time.RFC3339)
	end := e.clock.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	w := e.do(req{method: "POST", path: fmt.Sprintf("/admin/accounts/%d/deploy", acc.ID), cookies: ac})
	if w.Code != 202 {
		t.Fatalf("deploy: %d %s", w.Code, w.Body.String())
	}
	m := decodeMap(t, w)
	if m["deploy_status"] != "running" || m["last_deploy_at"] != start {
		t.Fatalf("the 202 of a deploy that has since ended: deploy_status %v, last_deploy_at %v; want running from %s", m["deploy_status"], m["last_deploy_at"], start)
	}
	g := e.do(req{method: "GET", path: fmt.Sprintf("/admin/accounts/%d", acc.ID), cookies: ac})
	if got := decodeMap(t, g); got["deploy_status"] != "succeeded" || got["last_deploy_at"] != end {
		t.Fatalf("GET after the deploy ended: deploy_status %v, last_deploy_at %v; want succeeded at %s", got["deploy_status"], got["last_deploy_at"], end)
	}
}
