package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gooni/internal/catalog"
	"gooni/internal/config"
	"gooni/internal/dispatch"
	"gooni/internal/secrets"
	"gooni/internal/testutil"
	"gooni/internal/workspace"
	"gooni/server"
	"gooni/store"
)

// benchServer serves the real handler over a real SQLite file on a loopback
// port, with one ready worker account (no dispatcher: tasks stay pending).
func benchServer(tb testing.TB, dataDir string, opts ...func(testing.TB, *server.Config, *store.Account)) (url, apiKey string, db *store.DB) {
	tb.Helper()
	sec, err := secrets.Load(dataDir, config.Secrets{})
	if err != nil {
		tb.Fatal(err)
	}
	cat, err := catalog.Load(testutil.Catalog(tb))
	if err != nil {
		tb.Fatal(err)
	}
	db, err = store.Open(dataDir, testutil.Schema(tb), store.Options{AccountKeys: sec.AccountKeys, AuditKey: sec.AuditKey})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	os.MkdirAll(filepath.Join(dataDir, "media"), 0o700)
	acc := &store.Account{Name: "bench", Workspace: "bench", BaseURL: "http://127.0.0.1:9", Capacity: 1, Status: "ready"}
	if err := db.CreateAccount(context.Background(), acc, nil); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.SetAccountStatus(context.Background(), acc.ID, "ready", "", time.Now()); err != nil {
		tb.Fatal(err)
	}
	// As a health check of a workspace serving the whole catalog records.
	if err := db.SetAccountModels(context.Background(), acc.ID, acc.ConfigRev, []string{"anisora", "phr00t", "pony", "flux"}); err != nil {
		tb.Fatal(err)
	}
	cfg := server.Config{
		DB: db, Catalog: cat, Secrets: sec, DataDir: dataDir, Version: "test", SessionMode: "open",
		QueueMax: 1_000_000, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(tb, &cfg, acc)
	}
	srv := server.New(cfg)
	ts := httptest.NewServer(srv.Handler())
	tb.Cleanup(ts.Close)
	return ts.URL, sec.APIKey, db
}

// withDemoDispatcher runs, as `gooni --demo` does, the dispatcher and a
// simulated workspace (2 tasks at a time, 3 s each) behind the account.
func withDemoDispatcher(tb testing.TB, cfg *server.Config, acc *store.Account) {
	sim, err := workspace.NewSim(workspace.SimConfig{Addr: "127.0.0.1:0", Duration: 3 * time.Second, Capacity: 2})
	if err != nil {
		tb.Fatal(err)
	}
	ws := httptest.NewServer(sim.Handler())
	tb.Cleanup(ws.Close)
	base := ws.URL
	capacity := 2
	if _, err := cfg.DB.UpdateAccount(context.Background(), acc.ID, store.AccountPatch{BaseURL: &base, Capacity: &capacity}); err != nil {
		tb.Fatal(err)
	}
	d := dispatch.New(dispatch.Config{DB: cfg.DB, DataDir: cfg.DataDir, Logger: cfg.Logger, Models: cfg.Catalog.ModelIDs()})
	if _, err := d.HealthCheck(context.Background(), acc.ID); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	cfg.Dispatcher = d
}

var benchRow = regexp.MustCompile(`(?m)^\s*(submit|status|result|gallery|raw insert)\s+(\d+)\s+(\d+)\s`)

// rows maps an op to its request and error counts as printed.
func benchRows(out string) map[string][2]string {
	m := map[string][2]string{}
	for _, r := range benchRow.FindAllStringSubmatch(out, -1) {
		m[r[1]] = [2]string{r[2], r[3]}
	}
	return m
}

func TestBenchMixedRunMeasuresEveryOpAndTheRawFloor(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := seedDoneTasks(data, testutil.Schema(t), 300); err != nil {
		t.Fatal(err)
	}
	url, key, _ := benchServer(t, data)
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte(key+"\n"), 0o600)
	var out, errb bytes.Buffer
	code := Main([]string{"--url", url, "--api-key-file", keyFile, "--clients", "3", "--duration", "400ms",
		"--raw-duration", "200ms", "--data-dir", data}, Env{}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	t.Log(out.String())
	rows := benchRows(out.String())
	for _, op := range []string{"submit", "status", "result", "raw insert"} {
		r, ok := rows[op]
		if !ok || r[0] == "0" {
			t.Errorf("no %s row in:\n%s", op, out.String())
			continue
		}
		if r[1] != "0" {
			t.Errorf("%s had %s errors:\n%s", op, r[1], out.String())
		}
	}
	for _, want := range []string{"submit/raw ratio:", "errors: none", "accepted submits/s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The raw floor's temp dir sits next to the data dir and is gone afterwards.
	left, _ := filepath.Glob(filepath.Join(dir, ".gooni-bench-raw-*"))
	if len(left) != 0 {
		t.Errorf("raw dir left behind: %v", left)
	}
	if strings.Contains(out.String(), key) || strings.Contains(errb.String(), key) {
		t.Error("the API key appears in the output")
	}
}

func TestBenchCountsRejectionsByCode(t *testing.T) {
	url, _, _ := benchServer(t, t.TempDir())
	var out, errb bytes.Buffer
	// A wrong key is refused up front, before any load.
	if code := Main([]string{"--url", url, "--api-key", "wrong-key-wrong-key", "--duration", "100ms"}, Env{}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "401 invalid_api_key") {
		t.Fatalf("wrong key: exit %d, %q", code, errb.String())
	}
	if strings.Contains(errb.String(), "wrong-key-wrong-key") {
		t.Error("the key given appears in the error")
	}
	// An unknown model is a validation error on every submit, counted by code.
	url2, key, _ := benchServer(t, t.TempDir())
	out.Reset()
	errb.Reset()
	code := Main([]string{"--url", url2, "--api-key", key, "--clients", "2", "--duration", "200ms", "--raw-duration", "0",
		"--workload", "submit", "--model", "nope"}, Env{}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "submit 400 validation_failed:") {
		t.Errorf("validation failures not counted by code:\n%s", out.String())
	}
}

func TestBenchStatusAndGalleryWorkloads(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := seedDoneTasks(data, testutil.Schema(t), 250); err != nil {
		t.Fatal(err)
	}
	url, key, db := benchServer(t, data)
	items, _, err := db.Gallery(context.Background(), "", 100)
	if err != nil || len(items) != 100 {
		t.Fatalf("seeded gallery: %d items, %v", len(items), err)
	}
	for i := 1; i < len(items); i++ {
		if items[i].ID >= items[i-1].ID || items[i].CreatedAt.After(items[i-1].CreatedAt) {
			t.Fatalf("seeded ids are not in creation order at %d", i)
		}
	}
	for _, wl := range []string{"status", "gallery"} {
		var out, errb bytes.Buffer
		code := Main([]string{"--url", url, "--api-key", key, "--clients", "2", "--duration", "200ms", "--workload", wl}, Env{}, &out, &errb)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", wl, code, errb.String())
		}
		r := benchRows(out.String())[wl]
		if r[0] == "" || r[0] == "0" || r[1] != "0" {
			t.Errorf("%s: row %v in:\n%s", wl, r, out.String())
		}
	}
}

func TestBenchRefusesWhatItMustNotDo(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "http://10.0.0.1:8080", "--api-key", "k"},
		{"--url", "http://example.com", "--api-key", "k"},
		{"--url", "http://127.0.0.1:8080"}, // no key
		{"--url", "http://127.0.0.1:8080", "--api-key", "k", "--clients", "0"},
		{"--url", "http://127.0.0.1:8080", "--api-key", "k", "--duration", "11m"},
		{"--url", "http://127.0.0.1:8080", "--api-key", "k", "--workload", "flood"},
		{"--url", "http://127.0.0.1:8080", "--api-key", "k", "--timeout", "-1s"},
		{"--seed-done", "10"}, // no data dir
	} {
		var out, errb bytes.Buffer
		t.Setenv("GG_API_KEY", "")
		if code := Main(args, Env{}, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
}

// BenchmarkGenerateHandler drives POST /generate through the whole handler
// chain in-process; profile it with
//
//	go test ./internal/bench -run '^$' -bench GenerateHandler -benchtime 20000x -cpuprofile /tmp/submit.out
//	go tool pprof -top -cum bench.test /tmp/submit.out
//
// The "demo" variant adds what `gooni --demo` runs beside the handler: the
// dispatcher (woken by every submit) and a simulated workspace that takes
// 2 tasks at a time.
func BenchmarkGenerateHandler(b *testing.B) {
	b.Run("handler", func(b *testing.B) {
		url, key, _ := benchServer(b, b.TempDir())
		benchGenerate(b, url, key)
	})
	b.Run("demo", func(b *testing.B) {
		url, key, _ := benchServer(b, b.TempDir(), withDemoDispatcher)
		benchGenerate(b, url, key)
	})
}

func benchGenerate(b *testing.B, url, key string) {
	h := http.DefaultClient
	body := []byte(`{"model":"flux","mode":"t2i","prompt":"gooni bench: a lighthouse on a rocky coast at dusk"}`)
	b.SetParallelism(5) // 10 clients on 2 cores
	b.ResetTimer()
	defer testutil.ReportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, url+"/generate", bytes.NewReader(body))
			req.Header.Set("X-API-Key", key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := h.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

var compareRow = regexp.MustCompile(`(?m)^(submit|status|error|route|gallery|media) .*\|\s+(\d+\.\d\d|n/a)\s*$`)

// compareRatios maps each workload of a --compare report to its ratio.
func compareRatios(out string) map[string]string {
	m := map[string]string{}
	for _, r := range compareRow.FindAllStringSubmatch(out, -1) {
		m[r[1]] = r[2]
	}
	return m
}

func TestBenchCompareMeasuresEachWorkloadNextToItsReference(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := seedDoneTasks(data, testutil.Schema(t), 50); err != nil {
		t.Fatal(err)
	}
	url, key, _ := benchServer(t, data)
	var out, errb bytes.Buffer
	code := Main([]string{"--compare", "--url", url, "--api-key", key, "--clients", "2", "--duration", "400ms",
		"--rounds", "2", "--data-dir", data, "--nginx", filepath.Join(dir, "no-such-nginx")}, Env{}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	t.Log(out.String())
	ratios := compareRatios(out.String())
	for _, w := range []string{"submit", "status", "error", "route", "gallery"} {
		if r, ok := ratios[w]; !ok || r == "n/a" || r == "0.00" {
			t.Errorf("%s: ratio %q in:\n%s", w, r, out.String())
		}
	}
	for _, want := range []string{"raw insert (1 row/tx, FULL)", "GET /config", "load average", "errors: none",
		"media skipped: no nginx binary at "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".gooni-bench-raw-*")); len(left) != 0 {
		t.Errorf("raw dir left behind: %v", left)
	}
	if strings.Contains(out.String(), key) || strings.Contains(errb.String(), key) {
		t.Error("the API key appears in the output")
	}

	// One workload alone, and a wrong list.
	out.Reset()
	if code := Main([]string{"--compare", "--url", url, "--api-key", key, "--clients", "1", "--duration", "100ms",
		"--workload", "error"}, Env{}, &out, &errb); code != 0 || len(compareRatios(out.String())) != 1 {
		t.Errorf("--workload error: exit %d, %v:\n%s", code, compareRatios(out.String()), out.String())
	}
	for _, args := range [][]string{{"--workload", "mixed"}, {"--rounds", "0"}} {
		if code := Main(append([]string{"--compare", "--url", url, "--api-key", key}, args...), Env{}, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestBenchCompareMediaAgainstNginx serves a done task's result from gooni
// and the same bytes from nginx, when an nginx binary is installed.
func TestBenchCompareMediaAgainstNginx(t *testing.T) {
	if _, err := nginxBinary(""); err != nil {
		t.Skip("nginx is not installed:", err)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := seedDoneTasks(data, testutil.Schema(t), 1); err != nil {
		t.Fatal(err)
	}
	url, key, _ := benchServer(t, data)
	var out, errb bytes.Buffer
	code := Main([]string{"--compare", "--url", url, "--api-key", key, "--clients", "2", "--duration", "300ms",
		"--rounds", "1", "--workload", "media"}, Env{}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if r := compareRatios(out.String())["media"]; r == "" || r == "n/a" || !strings.Contains(out.String(), "nginx, the same file") {
		t.Errorf("media ratio %q in:\n%s", r, out.String())
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "gooni-bench-nginx-*")); len(left) != 0 {
		t.Errorf("nginx dir left behind: %v", left)
	}
}

// TestBenchStreamsOpensStreamsWithinTheLimits: 40 streams need two source
// addresses and five sessions under the limits of 8 per session and 32 per
// client; all open, /health is measured before and with them, and the
// memory line appears when the server's pid is given.
func TestBenchStreamsOpensStreamsWithinTheLimits(t *testing.T) {
	url, key, _ := benchServer(t, t.TempDir())
	var out, errb bytes.Buffer
	code := Main([]string{"--workload", "streams", "--url", url, "--api-key", key, "--streams", "40", "--tasks", "5",
		"--duration", "400ms", "--server-pid", fmt.Sprint(os.Getpid())}, Env{}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	t.Log(out.String())
	for _, want := range []string{"tasks: 5 submitted", "streams: 40 of 40 open", "/health without streams: ", "/health with the streams: ",
		"/health p99 with the streams / without (same run): ",
		"KB per stream"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "refused") || strings.Contains(out.String(), "no answers") {
		t.Errorf("streams refused or /health unanswered:\n%s", out.String())
	}
	if code := Main([]string{"--workload", "streams", "--url", url, "--api-key", key, "--streams", "0"}, Env{}, &out, &errb); code != 2 {
		t.Errorf("--streams 0: exit %d, want 2", code)
	}
}

// TestPreflightSaysWhy: the first request of a run that is not answered 200
// names the answer and the likely cause: the key only for 401 and 403, the
// URL for 404, none for a 5xx; no answer names the timeout when one is set.
// Inputs tried: 401, 403, 404 with Gooni's error body, 500, no answer with
// and without --timeout.
func TestPreflightSaysWhy(t *testing.T) {
	cfg := &benchConfig{URL: "http://127.0.0.1:8080/sub", Timeout: time.Second}
	for _, tc := range []struct {
		status  int
		body    string
		timeout time.Duration
		want    string
	}{
		{401, `{"error":{"code":"invalid_api_key"}}`, time.Second, "answered 401 invalid_api_key; is the API key right?"},
		{403, ``, time.Second, "answered 403; is the API key right?"},
		{404, `{"error":{"code":"not_found"}}`, time.Second, "answered 404 not_found; is --url the server's root (http://127.0.0.1:8080/sub)?"},
		{500, `{"error":{"code":"internal"}}`, time.Second, "GET /gallery answered 500 internal"},
		{0, ``, time.Second, "http://127.0.0.1:8080/sub does not answer within --timeout 1s"},
		{0, ``, 0, "http://127.0.0.1:8080/sub does not answer"},
	} {
		cfg.Timeout = tc.timeout
		got := preflightErr(cfg, tc.status, []byte(tc.body)).Error()
		if !strings.HasSuffix(got, tc.want) || (tc.status >= 404 && strings.Contains(got, "API key")) {
			t.Errorf("status %d: %q, want it to end %q", tc.status, got, tc.want)
		}
	}
}
