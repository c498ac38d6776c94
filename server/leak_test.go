package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gooni/internal/dispatch"
	"gooni/internal/testutil"
	"gooni/internal/workspace"
)

// headerLog keeps every response header block the server wrote.
type headerLog struct {
	mu   sync.Mutex
	seen []string
}

func (h *headerLog) add(hd http.Header) {
	var b strings.Builder
	hd.Write(&b)
	h.mu.Lock()
	h.seen = append(h.seen, b.String())
	h.mu.Unlock()
}

// TestNoSecretLeaks (SC-008) runs a broad scenario (user sessions, the API
// key in header and query, admin logins right and wrong, an account with
// distinctive credentials, a health check and tasks against a simulator that
// demands the proxy credentials, a deploy whose command prints its
// environment, throttling and a CORS denial) and then searches every response
// body and header, every log line, every audit row and the raw database files
// for every secret value. A hit names the secret and the place, never the value.
func TestNoSecretLeaks(t *testing.T) {
	t.Parallel()
	creds := map[string]string{
		"token_id":     "tokid-9f1c2e7a5b3d4c8e",
		"token_secret": "toksec-2b7e151628aed2a6abf7158809cf4f3c",
		"proxy_key":    "pxkey-3243f6a8885a308d313198a2e0370734",
		"proxy_secret": "pxsec-a4093822299f31d0082efa98ec4e6c89",
	}
	sim, err := workspace.NewSim(workspace.SimConfig{Duration: 200 * time.Millisecond, Capacity: 4,
		RequireKey: creds["proxy_key"], RequireSecret: creds["proxy_secret"]})
	if err != nil {
		t.Fatal(err)
	}
	simHS := httptest.NewServer(sim.Handler())
	defer simHS.Close()

	e := newEnv(t, func(c *Config) { c.FrontendOrigins = []string{"https://app.example.com"} })
	e.clock.FollowReal() // the dispatcher runs
	d := dispatch.New(dispatch.Config{
		DB: e.db, DataDir: e.dataDir, WorkspaceURL: "https://{workspace}.invalid",
		// Prints everything a careless command could: its whole environment and the tokens once more.
		DeployCommand: `env; echo "id=$MODAL_TOKEN_ID secret=$MODAL_TOKEN_SECRET ws=$GG_WORKSPACE"; echo "to stderr $MODAL_TOKEN_SECRET" >&2`,
		DeployTimeout: 5 * time.Second, TTLImage: time.Minute, TTLVideo: time.Minute,
		PollInterval: 20 * time.Millisecond, ReapInterval: 50 * time.Millisecond,
		Logger: e.srv.log, Now: e.clock.Now, Audit: e.srv.auditLog,
	})
	cfg := e.srv.cfg
	cfg.Dispatcher = d
	cfg.Audit = e.srv.auditLog
	srv := New(cfg)
	headers := &headerLog{}
	e.srv = srv
	e.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.Handler().ServeHTTP(w, r)
		headers.add(w.Header())
	})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { d.Run(ctx); close(stopped) }()
	stop := func() { cancel(); <-stopped }
	defer func() {
		select {
		case <-stopped:
		default:
			stop()
		}
	}()

	apiKey := map[string]string{"X-API-Key": e.sec.APIKey}
	ok := func(w *httptest.ResponseRecorder, want int, what string) {
		t.Helper()
		if w.Code != want {
			t.Fatalf("%s: %d %.300s", what, w.Code, w.Body.String())
		}
	}

	// User sessions and wrong keys.
	user := e.userSession()
	ok(e.do(req{method: "GET", path: "/auth/session", cookies: []*http.Cookie{user}}), 200, "GET /auth/session")
	e.do(req{method: "GET", path: "/gallery", header: map[string]string{"X-API-Key": "not-the-key"}})
	e.do(req{method: "GET", path: "/gallery?api_key=also-not-the-key"})
	e.do(req{method: "GET", path: "/nope?api_key=" + e.sec.APIKey})
	e.do(req{method: "GET", path: "/status/nosuch?api_key=" + e.sec.APIKey})

	// Admin: a wrong key, the right key, then an account with credentials.
	e.do(req{method: "POST", path: "/admin/session", header: map[string]string{"X-Admin-Key": "guess-" + e.sec.AdminKey[:4]}})
	e.do(req{method: "POST", path: "/admin/session?admin_key=" + e.sec.AdminKey})
	e.do(req{method: "POST", path: "/admin/session", body: `{"admin_key":"` + e.sec.AdminKey + `"}`})
	admin := e.adminSession()
	ac := []*http.Cookie{admin}
	body, _ := json.Marshal(map[string]any{"name": "leaky", "workspace": "leaky-ws", "base_url": simHS.URL, "credentials": creds, "capacity": 2})
	w := e.do(req{method: "POST", path: "/admin/accounts", cookies: ac, body: string(body)})
	ok(w, 201, "create account")
	var acc AccountView
	json.Unmarshal(w.Body.Bytes(), &acc)
	// A rejected create echoes nothing of what it was given.
	bad, _ := json.Marshal(map[string]any{"name": "bad", "workspace": "bad-ws", "base_url": "http://gpu.example.com", "credentials": creds})
	e.do(req{method: "POST", path: "/admin/accounts", cookies: ac, body: string(bad)})
	bad, _ = json.Marshal(map[string]any{"name": "bad", "workspace": "bad-ws", "credentials": map[string]any{"token_secret": creds["token_secret"], "x": 1}})
	e.do(req{method: "POST", path: "/admin/accounts", cookies: ac, body: string(bad)})
	bad, _ = json.Marshal(map[string]any{"name": "bad", "workspace": "bad-ws", "credentials": map[string]any{creds["proxy_secret"]: "v"}})
	e.do(req{method: "POST", path: "/admin/accounts", cookies: ac, body: string(bad)})
	bad, _ = json.Marshal(map[string]any{"name": "bad", "workspace": "bad-ws", "credentials": map[string]any{"token_id": creds["token_id"] + "\n"}})
	e.do(req{method: "POST", path: "/admin/accounts", cookies: ac, body: string(bad)})
	// An unknown field named after a secret value.
	e.do(req{method: "PATCH", path: fmt.Sprintf("/admin/accounts/%d", acc.ID), cookies: ac, body: `{"` + creds["token_secret"] + `":1}`})

	accPath := fmt.Sprintf("/admin/accounts/%d", acc.ID)
	w = e.do(req{method: "POST", path: accPath + "/health-check", cookies: ac})
	ok(w, 200, "health check")
	if !strings.Contains(w.Body.String(), `"status":"ready"`) {
		t.Fatalf("the sim refused the proxy credentials: %s", w.Body.String())
	}
	ok(e.do(req{method: "PATCH", path: accPath, cookies: ac, body: `{"name":"leaky renamed","capacity":3}`}), 200, "patch")
	ok(e.do(req{method: "GET", path: "/admin/accounts", cookies: ac}), 200, "list accounts")

	// Deploy: the output shown to admins has every credential redacted.
	ok(e.do(req{method: "POST", path: accPath + "/deploy", cookies: ac}), 202, "deploy")
	deployed := waitDeploy(t, e, acc.ID)
	if deployed.DeployStatus != "succeeded" {
		t.Fatalf("deploy: %s", deployed.DeployStatus)
	}
	w = e.do(req{method: "GET", path: accPath, cookies: ac})
	var got AccountView
	json.Unmarshal(w.Body.Bytes(), &got)
	if got.DeployOutput == nil || strings.Count(*got.DeployOutput, "[redacted]") < 4 || !strings.Contains(*got.DeployOutput, "ws=leaky-ws") {
		t.Errorf("deploy output lacks the redactions (%d) or the workspace", strings.Count(fmt.Sprint(got.DeployOutput), "[redacted]"))
	}

	// Tasks: submitted with the key in the header and in the query, followed
	// with a cookie, an event stream and the media routes.
	gen := `{"model":"flux","mode":"t2i","prompt":"a quiet harbour","params":{"width":256,"height":256,"steps":2}}`
	var ids []string
	for _, r := range []req{
		{method: "POST", path: "/generate", header: apiKey, body: gen},
		{method: "POST", path: "/generate?api_key=" + e.sec.APIKey, body: gen},
		{method: "POST", path: "/generate", cookies: []*http.Cookie{user}, body: gen},
	} {
		w := e.do(r)
		ok(w, 202, "generate")
		var a generateAccepted
		json.Unmarshal(w.Body.Bytes(), &a)
		ids = append(ids, a.TaskID)
	}
	hs := httptest.NewServer(e.h)
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/events/" + ids[0] + "?api_key=" + e.sec.APIKey)
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	e.bodies = append(e.bodies, string(stream))
	headers.add(resp.Header)
	for _, id := range ids {
		testutil.WaitFor(t, 10*time.Second, "task "+id+" done", func() bool {
			w := e.do(req{method: "GET", path: "/status/" + id, cookies: []*http.Cookie{user}})
			if strings.Contains(w.Body.String(), `"status":"failed"`) {
				t.Fatalf("task %s: %s", id, w.Body.String())
			}
			return strings.Contains(w.Body.String(), `"status":"done"`)
		})
		ok(e.do(req{method: "GET", path: "/results/" + id + "?download=1", header: apiKey}), 200, "result")
		ok(e.do(req{method: "GET", path: "/preview/" + id, header: apiKey}), 200, "preview")
	}
	ok(e.do(req{method: "GET", path: "/gallery", cookies: []*http.Cookie{user}}), 200, "gallery")
	ok(e.do(req{method: "DELETE", path: "/gallery/" + ids[2], header: apiKey}), 204, "gallery delete")

	// Throttling and CORS denials.
	for i := 0; i < 12; i++ {
		e.do(req{method: "POST", path: "/auth/session", remote: "198.51.100.99:4000"})
	}
	for i := 0; i < 31; i++ {
		e.do(req{method: "POST", path: "/admin/session", remote: "198.51.100.98:4000", header: map[string]string{"X-Admin-Key": e.sec.AdminKey}})
	}
	e.do(req{method: "POST", path: "/generate", header: map[string]string{"Origin": "https://evil.example", "X-API-Key": e.sec.APIKey}, body: gen})
	e.do(req{method: "OPTIONS", path: "/admin/accounts", header: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}})

	// Admin reads, then everything is taken down.
	ok(e.do(req{method: "GET", path: "/admin/logs?limit=500", cookies: ac}), 200, "logs")
	ok(e.do(req{method: "GET", path: "/admin/logs/verify", cookies: ac}), 200, "verify")
	ok(e.do(req{method: "GET", path: "/admin/health", cookies: ac}), 200, "admin health")
	ok(e.do(req{method: "DELETE", path: accPath, cookies: ac}), 204, "delete account")
	ok(e.do(req{method: "DELETE", path: "/admin/session", cookies: ac}), 204, "admin logout")
	ok(e.do(req{method: "DELETE", path: "/auth/session", cookies: []*http.Cookie{user}}), 204, "user logout")
	stop()

	// The secrets, by name: each as it is (a text key is its own text; the
	// session keys are raw bytes) and in every encoding a careless line could
	// carry it in (base64 std/URL, padded or not, hex, URL-escaped).
	values := map[string][]byte{
		"API key":           []byte(e.sec.APIKey),
		"admin key":         []byte(e.sec.AdminKey),
		"session hash key":  e.sec.SessionHashKey,
		"session block key": e.sec.SessionBlockKey,
		"audit key":         e.sec.AuditKey,
	}
	rawSecrets := map[string][]byte{} // searched only in the binary database files
	for i, k := range e.sec.AccountKeys {
		values[fmt.Sprintf("account key %d", i)] = []byte(k)
		if raw, err := base64.URLEncoding.DecodeString(k); err == nil {
			rawSecrets[fmt.Sprintf("account key %d (raw)", i)] = raw
		}
	}
	for k, v := range creds {
		values["credential "+k] = []byte(v)
	}
	for i, c := range []*http.Cookie{user, admin} {
		codec, name := srv.cookies, userCookie
		if i == 1 {
			codec, name = srv.admin, adminCookie
		}
		if tok, ok := decodeToken(codec, name, c.Value); ok {
			values[name+" session token"] = []byte(tok)
		} else {
			t.Errorf("%s cookie does not decode", name)
		}
	}
	secrets := map[string]string{}
	for name, v := range values {
		if len(v) < 8 {
			t.Fatalf("secret %s is too short to search for", name)
		}
		for form, enc := range encodedForms(v) {
			secrets[name+" ("+form+")"] = enc
		}
	}

	// Where to look.
	places := map[string]string{"logs": e.logs.String()}
	for i, b := range e.bodies {
		places[fmt.Sprintf("response body %d", i)] = b
	}
	headers.mu.Lock()
	for i, h := range headers.seen {
		places[fmt.Sprintf("response headers %d", i)] = h
	}
	headers.mu.Unlock()
	rows := checkAuditRows(t, e, nil)
	for _, ev := range rows {
		b, _ := json.Marshal(auditView(ev))
		places[fmt.Sprintf("audit row %d (%s)", ev.ID, ev.Action)] = string(b)
	}
	if len(rows) < 20 {
		t.Errorf("only %d audit rows: the scenario did not run", len(rows))
	}

	var hits []string
	for place, text := range places {
		for name, v := range secrets {
			if strings.Contains(text, v) {
				hits = append(hits, name+" in "+place)
			}
		}
	}

	// The raw database files, after a clean close (and as they were before it).
	dbFiles := map[string][]byte{}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if b, err := os.ReadFile(filepath.Join(e.dataDir, "gooni.db"+suffix)); err == nil {
			dbFiles["gooni.db"+suffix+" (open)"] = b
		}
	}
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if b, err := os.ReadFile(filepath.Join(e.dataDir, "gooni.db"+suffix)); err == nil {
			dbFiles["gooni.db"+suffix] = b
		}
	}
	if len(dbFiles["gooni.db"]) == 0 {
		t.Fatal("no database file to scan")
	}
	for file, b := range dbFiles {
		for name, v := range secrets {
			if bytes.Contains(b, []byte(v)) {
				hits = append(hits, name+" in "+file)
			}
		}
		for name, v := range rawSecrets {
			if len(v) >= 16 && bytes.Contains(b, v) {
				hits = append(hits, name+" in "+file)
			}
		}
	}
	sort.Strings(hits)
	for _, h := range hits {
		t.Errorf("secret leaked: %s", h)
	}
	t.Logf("searched %d places and %d database files for %d secrets in %d forms", len(places), len(dbFiles), len(values), len(secrets)+len(rawSecrets))
}

// encodedForms is a secret as it is and as each encoding a log line, URL or
// JSON string could carry it in; a form that comes out the same as an earlier
// one (a URL-escaped key with nothing to escape is the key as it is) is listed
// once, under the earlier name.
func encodedForms(v []byte) map[string]string {
	hexed := hex.EncodeToString(v)
	forms := map[string]string{}
	seen := map[string]bool{}
	for _, f := range []struct{ name, enc string }{
		{"as is", string(v)},
		{"base64", base64.StdEncoding.EncodeToString(v)},
		{"base64 unpadded", base64.RawStdEncoding.EncodeToString(v)},
		{"base64url", base64.URLEncoding.EncodeToString(v)},
		{"base64url unpadded", base64.RawURLEncoding.EncodeToString(v)},
		{"hex", hexed},
		{"HEX", strings.ToUpper(hexed)},
		{"URL query-escaped", url.QueryEscape(string(v))},
		{"URL path-escaped", url.PathEscape(string(v))},
	} {
		if !seen[f.enc] {
			seen[f.enc] = true
			forms[f.name] = f.enc
		}
	}
	return forms
}
