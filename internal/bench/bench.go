// Package bench is the load tool behind `gooni bench`: submit, status, result
// and gallery workloads against a running server on loopback, side by side
// with the raw SQLite insert floor on the same disk, and seeding of done tasks.
package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"gooni/internal/config"
	"gooni/store"
)

// Bench bounds: a load run is a measurement, never an open-ended flood.
const (
	benchMaxClients  = 256
	benchMaxDuration = 10 * time.Minute
	benchMaxSeed     = 5_000_000
)

// benchConfig is what `gooni bench` was asked to do.
type benchConfig struct {
	URL         string
	APIKey      string
	Clients     int
	Duration    time.Duration
	Workload    string // mixed | submit | status | gallery
	InFlight    int
	MaxRequests int64
	Model, Mode string
	RawDir      string
	DataDir     string
	RawDuration time.Duration
	SeedDone    int
	Timeout     time.Duration
	// Compare runs each workload next to its reference (compare.go) in
	// Rounds alternating rounds; Nginx names the nginx binary for media.
	Compare bool
	Rounds  int
	Nginx   string
	// Repeat runs the whole comparison this many times and summarises
	// each ratio as its median and spread (repeat.go).
	Repeat int
	// The streams workload (streams.go): how many streams on how many
	// tasks, and the server process whose memory is read (0 = none).
	Streams, Tasks, ServerPID int
}

// Env is what the bench takes from outside its flags.
type Env struct {
	APIKey string // GG_API_KEY, the last place an API key is looked for
	Schema string // schema.sql, to create a data dir for --seed-done
}

// Main runs `gooni bench` with args and returns the exit code (0 ok, 1 the
// run failed, 2 bad arguments).
func Main(args []string, env Env, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gooni bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := benchConfig{}
	var keyFile string
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "base URL of the gooni server (loopback only)")
	fs.StringVar(&cfg.APIKey, "api-key", "", "API key (or --api-key-file, or GG_API_KEY)")
	fs.StringVar(&keyFile, "api-key-file", "", "file holding the API key, e.g. DATA_DIR/secrets/api_key")
	fs.IntVar(&cfg.Clients, "clients", 10, "concurrent clients")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "length of the HTTP phase")
	fs.StringVar(&cfg.Workload, "workload", "mixed", "mixed (submit, poll status, fetch results) | submit (POST /generate only) | status | gallery | "+
		"streams (open --streams event streams on --tasks new tasks; /health latency and, with --server-pid, memory)")
	fs.IntVar(&cfg.InFlight, "inflight", 2, "tasks each client polls at once in the mixed workload (further submits are not polled)")
	fs.Int64Var(&cfg.MaxRequests, "max-requests", 2_000_000, "stop after this many HTTP requests in total")
	fs.StringVar(&cfg.Model, "model", "flux", "model of the submitted tasks")
	fs.StringVar(&cfg.Mode, "mode", "t2i", "mode of the submitted tasks")
	fs.StringVar(&cfg.RawDir, "raw-dir", "", "directory for the raw-insert floor (default: a temp dir next to --data-dir, else in $TMPDIR)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "the server's data directory (puts the raw floor on the same disk; the target of --seed-done)")
	fs.DurationVar(&cfg.RawDuration, "raw-duration", 5*time.Second, "length of the raw-insert floor phase (0 = skip it)")
	fs.IntVar(&cfg.SeedDone, "seed-done", 0, "instead of a run: insert N done tasks into --data-dir (server stopped) and exit")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "limit of one HTTP request, its answer included (0 = none)")
	fs.BoolVar(&cfg.Compare, "compare", false, "measure each workload next to its reference in one run and print the ratios "+
		"(submit vs raw inserts; status, error, route, gallery vs GET /config; media vs nginx); --workload is then a comma list of "+
		strings.Join(compareWorkloads, ",")+" (default all) and --duration the time of each side")
	fs.IntVar(&cfg.Streams, "streams", 2000, "with --workload streams: event streams to open")
	fs.IntVar(&cfg.Tasks, "tasks", 1000, "with --workload streams: tasks to submit and watch")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "with --workload streams: the server's process id, to read its memory (same machine)")
	fs.IntVar(&cfg.Rounds, "rounds", 4, "with --compare: alternating rounds each side's time is split into")
	fs.IntVar(&cfg.Repeat, "repeat", 1, "with --compare: run the comparison this many times (1-9) and print each ratio's median and spread")
	fs.StringVar(&cfg.Nginx, "nginx", "", "with --compare: the nginx binary for the media reference (default: nginx on $PATH or /usr/sbin/nginx)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gooni bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if cfg.SeedDone > 0 {
		if cfg.DataDir == "" || cfg.SeedDone > benchMaxSeed {
			fmt.Fprintf(stderr, "gooni bench: --seed-done needs --data-dir and at most %d tasks\n", benchMaxSeed)
			return 2
		}
		start := time.Now()
		if err := seedDoneTasks(cfg.DataDir, env.Schema, cfg.SeedDone); err != nil {
			fmt.Fprintln(stderr, "gooni bench:", err)
			return 1
		}
		fmt.Fprintf(stdout, "seeded %d done tasks into %s in %s\n", cfg.SeedDone, cfg.DataDir, time.Since(start).Round(time.Millisecond))
		return 0
	}
	if cfg.Compare {
		workloadSet := false
		fs.Visit(func(f *flag.Flag) { workloadSet = workloadSet || f.Name == "workload" })
		if !workloadSet {
			cfg.Workload = "all"
		}
		workloads, err := parseCompareWorkloads(cfg.Workload)
		if err == nil {
			cfg.Workload = "submit" // the shared checks below know the mode names
			err = cfg.check(keyFile, env.APIKey)
		}
		if err == nil && (cfg.Rounds < 1 || cfg.Rounds > 20) {
			err = errors.New("--rounds must be 1..20")
		}
		if err == nil && (cfg.Repeat < 1 || cfg.Repeat > 9) {
			err = errors.New("--repeat must be 1..9")
		}
		if err != nil {
			fmt.Fprintln(stderr, "gooni bench:", err)
			return 2
		}
		var reps []*compareReport
		for i := 0; i < cfg.Repeat; i++ {
			if cfg.Repeat > 1 {
				fmt.Fprintf(stdout, "== run %d of %d\n", i+1, cfg.Repeat)
			}
			rep, err := runCompare(context.Background(), &cfg, workloads)
			if err != nil {
				fmt.Fprintln(stderr, "gooni bench:", err)
				return 1
			}
			rep.print(stdout)
			reps = append(reps, rep)
		}
		if len(reps) > 1 {
			printRepeatSummary(stdout, reps)
		}
		return 0
	}
	if err := cfg.check(keyFile, env.APIKey); err != nil {
		fmt.Fprintln(stderr, "gooni bench:", err)
		return 2
	}
	if cfg.Workload == "streams" {
		rep, err := runStreams(context.Background(), &cfg)
		if err != nil {
			fmt.Fprintln(stderr, "gooni bench:", err)
			return 1
		}
		rep.print(stdout)
		return 0
	}
	rep, err := runBenchLoad(context.Background(), &cfg)
	if err != nil {
		fmt.Fprintln(stderr, "gooni bench:", err)
		return 1
	}
	rep.print(stdout)
	return 0
}

func (c *benchConfig) check(keyFile, envKey string) error {
	if c.APIKey == "" && keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return fmt.Errorf("api key file: %w", err)
		}
		c.APIKey = strings.TrimSpace(string(b))
	}
	if c.APIKey == "" {
		c.APIKey = envKey
	}
	if c.APIKey == "" {
		return errors.New("an API key is needed: --api-key-file DATA_DIR/secrets/api_key, --api-key or GG_API_KEY")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--url %q is not an http(s) URL", c.URL)
	}
	if !benchLoopback(u.Hostname()) {
		return fmt.Errorf("--url must point at a loopback address (this is a load generator), not %q", u.Hostname())
	}
	c.URL = strings.TrimRight(c.URL, "/")
	switch {
	case c.Clients < 1 || c.Clients > benchMaxClients:
		return fmt.Errorf("--clients must be 1..%d", benchMaxClients)
	case c.Duration <= 0 || c.Duration > benchMaxDuration:
		return fmt.Errorf("--duration must be > 0 and <= %s", benchMaxDuration)
	case c.RawDuration < 0 || c.RawDuration > benchMaxDuration:
		return fmt.Errorf("--raw-duration must be 0..%s", benchMaxDuration)
	case c.InFlight < 1 || c.InFlight > 64:
		return errors.New("--inflight must be 1..64")
	case c.MaxRequests < 1:
		return errors.New("--max-requests must be positive")
	case c.Timeout < 0:
		return errors.New("--timeout must be 0 (none) or positive")
	}
	switch c.Workload {
	case "mixed", "submit", "status", "gallery":
	case "streams":
		if c.Streams < 1 || c.Streams > benchMaxStreams || c.Tasks < 1 || c.Tasks > benchMaxTasks {
			return fmt.Errorf("--streams must be 1..%d and --tasks 1..%d", benchMaxStreams, benchMaxTasks)
		}
	default:
		return fmt.Errorf("--workload %q: want mixed, submit, status, gallery or streams", c.Workload)
	}
	return nil
}

func benchLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ---- measurement ----

// opStats collects the latencies and outcomes of one kind of request.
type opStats struct {
	mu     sync.Mutex
	name   string
	lat    []time.Duration
	errors map[string]int // "503 queue_full" -> count
}

func newOp(name string) *opStats { return &opStats{name: name, errors: map[string]int{}} }

func (o *opStats) add(d time.Duration, errKey string) {
	o.mu.Lock()
	o.lat = append(o.lat, d)
	if errKey != "" {
		o.errors[errKey]++
	}
	o.mu.Unlock()
}

func (o *opStats) errCount() int {
	n := 0
	for _, v := range o.errors {
		n += v
	}
	return n
}

// percentile of sorted latencies, nearest-rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

type benchReport struct {
	cfg       *benchConfig
	elapsed   time.Duration
	ops       []*opStats
	accepted  int64
	raw       *rawResult
	transport string
}

type rawResult struct {
	dir     string
	rows    int64
	elapsed time.Duration
	lat     []time.Duration
	err     error
}

func (r *rawResult) rate() float64 { return float64(r.rows) / r.elapsed.Seconds() }

func ms3(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func (rep *benchReport) print(w io.Writer) {
	c := rep.cfg
	fmt.Fprintf(w, "gooni bench: %s workload, %d clients, %s against %s (model %s, mode %s)\n",
		c.Workload, c.Clients, rep.elapsed.Round(time.Millisecond), c.URL, c.Model, c.Mode)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\trequests\terrors\tp50\tp95\tp99\tmax\treq/s\t")
	total := 0
	for _, o := range rep.ops {
		if len(o.lat) == 0 {
			continue
		}
		s := slices.Clone(o.lat)
		slices.Sort(s)
		total += len(s)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%.1f\t\n", o.name, len(s), o.errCount(),
			ms3(percentile(s, .50)), ms3(percentile(s, .95)), ms3(percentile(s, .99)), ms3(s[len(s)-1]),
			float64(len(s))/rep.elapsed.Seconds())
	}
	if r := rep.raw; r != nil && r.err == nil && r.rows > 0 {
		s := slices.Clone(r.lat)
		slices.Sort(s)
		fmt.Fprintf(tw, "raw insert\t%d\t0\t%s\t%s\t%s\t%s\t%.1f\t\n", r.rows,
			ms3(percentile(s, .50)), ms3(percentile(s, .95)), ms3(percentile(s, .99)), ms3(s[len(s)-1]), r.rate())
	}
	tw.Flush()
	fmt.Fprintf(w, "throughput: %.1f req/s over all HTTP requests; %.1f accepted submits/s (%d tasks created)\n",
		float64(total)/rep.elapsed.Seconds(), float64(rep.accepted)/rep.elapsed.Seconds(), rep.accepted)
	if r := rep.raw; r != nil {
		switch {
		case r.err != nil:
			fmt.Fprintf(w, "raw floor: failed: %v\n", r.err)
		case r.rows > 0:
			fmt.Fprintf(w, "raw floor: %d one-row transactions in %s (%d goroutines, WAL, synchronous=FULL, modernc.org/sqlite) in %s\n",
				r.rows, r.elapsed.Round(time.Millisecond), c.Clients, r.dir)
			if rep.accepted > 0 {
				fmt.Fprintf(w, "submit/raw ratio: %.2f (accepted submits/s %.1f vs raw inserts/s %.1f)\n",
					float64(rep.accepted)/rep.elapsed.Seconds()/r.rate(), float64(rep.accepted)/rep.elapsed.Seconds(), r.rate())
			}
		}
	}
	var errs []string
	for _, o := range rep.ops {
		for k, v := range o.errors {
			errs = append(errs, fmt.Sprintf("  %s %s: %d", o.name, k, v))
		}
	}
	printErrors(w, "errors by code:", errs)
}

// printErrors prints "errors: none", or header and errs sorted, one a line.
func printErrors(w io.Writer, header string, errs []string) {
	sort.Strings(errs)
	if len(errs) == 0 {
		fmt.Fprintln(w, "errors: none")
		return
	}
	fmt.Fprintln(w, header)
	for _, e := range errs {
		fmt.Fprintln(w, e)
	}
}

// ---- the HTTP phase ----

type benchClient struct {
	cfg  *benchConfig
	http *http.Client
	body []byte
	left atomic.Int64 // request budget shared by all clients
}

// errKey names a failed answer by status and contract code.
// preflightErr says why the first GET /gallery of a run did not answer 200
// (status 0: no answer), with a hint for the usual causes.
func preflightErr(cfg *benchConfig, status int, body []byte) error {
	switch {
	case status == 0 && cfg.Timeout > 0:
		return fmt.Errorf("%s does not answer within --timeout %s", cfg.URL, cfg.Timeout)
	case status == 0:
		return fmt.Errorf("%s does not answer", cfg.URL)
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Errorf("GET /gallery answered %s; is the API key right?", errKey(status, body))
	case status == http.StatusNotFound:
		return fmt.Errorf("GET /gallery answered %s; is --url the server's root (%s)?", errKey(status, body), cfg.URL)
	}
	return fmt.Errorf("GET /gallery answered %s", errKey(status, body))
}

func errKey(status int, body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return fmt.Sprintf("%d %s", status, e.Error.Code)
	}
	return fmt.Sprintf("%d", status)
}

// do sends one request, reads the whole answer, and records its latency.
func (b *benchClient) do(ctx context.Context, op *opStats, method, path string, body []byte, ok int) (int, []byte, bool) {
	if b.left.Add(-1) < 0 {
		return 0, nil, false
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.cfg.URL+path, rd)
	if err != nil {
		return 0, nil, false
	}
	req.Header.Set("X-API-Key", b.cfg.APIKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := b.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, false // the run ended mid-request: not a server error
		}
		op.add(time.Since(start), "transport "+transportReason(err))
		return 0, nil, true
	}
	var data []byte
	if path[:8] == "/results" && resp.StatusCode == ok {
		_, err = io.Copy(io.Discard, resp.Body)
	} else {
		data, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	}
	resp.Body.Close()
	d := time.Since(start)
	if err != nil && ctx.Err() != nil {
		return 0, nil, false
	}
	key := ""
	switch {
	case err != nil:
		key = "transport " + transportReason(err)
	case resp.StatusCode != ok:
		key = errKey(resp.StatusCode, data)
	}
	op.add(d, key)
	return resp.StatusCode, data, true
}

func transportReason(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "eof"
	}
	return "error"
}

func runBenchLoad(ctx context.Context, cfg *benchConfig) (*benchReport, error) {
	rep := &benchReport{cfg: cfg}
	body, err := json.Marshal(map[string]any{"model": cfg.Model, "mode": cfg.Mode,
		"prompt": "gooni bench: a lighthouse on a rocky coast at dusk"})
	if err != nil {
		return nil, err
	}
	hc, tr := newBenchHTTP(cfg)
	defer tr.CloseIdleConnections()
	bc := &benchClient{cfg: cfg, http: hc, body: body}
	bc.left.Store(cfg.MaxRequests)

	// Preflight: the server answers and the key works, before any load.
	probe := newOp("probe")
	if st, data, _ := bc.do(ctx, probe, http.MethodGet, "/gallery?limit=100", nil, http.StatusOK); st != http.StatusOK {
		return nil, preflightErr(cfg, st, data)
	} else {
		rep.transport = "ok"
		_ = data
	}
	done, err := bc.collectDone(ctx, 1000)
	if err != nil {
		return nil, err
	}
	bc.left.Add(int64(len(done))/100 + 1)

	// The raw floor runs first, alone, so neither phase steals the other's disk.
	if cfg.RawDuration > 0 && (cfg.Workload == "mixed" || cfg.Workload == "submit") {
		rep.raw = runRawFloor(ctx, cfg)
	}

	submit, status, result, gallery := newOp("submit"), newOp("status"), newOp("result"), newOp("gallery")
	rep.ops = []*opStats{submit, status, result, gallery}

	// Status workload: a fixed pool of ids, the done ones from the gallery plus
	// one fresh (pending) task per client.
	pool := slices.Clone(done)
	if cfg.Workload == "status" {
		for i := 0; i < cfg.Clients; i++ {
			if st, data, _ := bc.do(ctx, submit, http.MethodPost, "/generate", body, http.StatusAccepted); st == http.StatusAccepted {
				if id := taskIDOf(data); id != "" {
					pool = append(pool, id)
					rep.accepted++
				}
			}
		}
		if len(pool) == 0 {
			return nil, errors.New("no task to read: the gallery is empty and no submit was accepted")
		}
		submit.lat = nil
	}

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var accepted atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
			switch cfg.Workload {
			case "mixed", "submit":
				bc.submitLoop(runCtx, rng, submit, status, result, done, &accepted)
			case "status":
				for runCtx.Err() == nil {
					id := pool[rng.IntN(len(pool))]
					if _, _, ok := bc.do(runCtx, status, http.MethodGet, "/status/"+id, nil, http.StatusOK); !ok {
						return
					}
				}
			case "gallery":
				bc.galleryLoop(runCtx, gallery)
			}
		}(uint64(i) + 1)
	}
	wg.Wait()
	rep.elapsed = time.Since(start)
	rep.accepted += accepted.Load()
	return rep, nil
}

func taskIDOf(data []byte) string {
	var v struct {
		TaskID string `json:"task_id"`
		Status string `json:"status"`
	}
	json.Unmarshal(data, &v)
	return v.TaskID
}

// collectDone pages the gallery for up to n done task ids (results to fetch).
func (b *benchClient) collectDone(ctx context.Context, n int) ([]string, error) {
	op := newOp("probe")
	var ids []string
	cursor := ""
	for len(ids) < n {
		path := "/gallery?limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		st, data, _ := b.do(ctx, op, http.MethodGet, path, nil, http.StatusOK)
		if st != http.StatusOK {
			return nil, fmt.Errorf("GET /gallery answered %s", errKey(st, data))
		}
		var page struct {
			Items []struct {
				TaskID string `json:"task_id"`
			} `json:"items"`
			Next *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(data, &page); err != nil {
			return nil, fmt.Errorf("GET /gallery: %w", err)
		}
		for _, it := range page.Items {
			ids = append(ids, it.TaskID)
		}
		if page.Next == nil || *page.Next == "" {
			break
		}
		cursor = *page.Next
	}
	return ids, nil
}

// submitLoop: submit; poll up to InFlight of this client's tasks; fetch a
// result once one is done. Tasks beyond InFlight stay queued unpolled, so
// the submit rate is not throttled by how fast workspaces finish. When none
// of ours finished this round, one already-done task's result is fetched
// instead (mixed workload), so result latency is measured even when the
// workers are far behind the queue.
func (b *benchClient) submitLoop(ctx context.Context, rng *rand.Rand, submit, status, result *opStats, done []string, accepted *atomic.Int64) {
	var tracked []string
	for ctx.Err() == nil {
		st, data, ok := b.do(ctx, submit, http.MethodPost, "/generate", b.body, http.StatusAccepted)
		if !ok {
			return
		}
		if st == http.StatusAccepted {
			accepted.Add(1)
			// Only the mixed workload follows its tasks: the others do not
			// decode the answer (about a tenth of the client's CPU).
			if b.cfg.Workload == "mixed" && len(tracked) < b.cfg.InFlight {
				if id := taskIDOf(data); id != "" {
					tracked = append(tracked, id)
				}
			}
		}
		if b.cfg.Workload != "mixed" {
			continue
		}
		fetched := false
		for i := 0; i < len(tracked); i++ {
			id := tracked[i]
			st, data, ok := b.do(ctx, status, http.MethodGet, "/status/"+id, nil, http.StatusOK)
			if !ok {
				return
			}
			if st != http.StatusOK {
				continue
			}
			switch taskStatus(data) {
			case store.StatusDone:
				if _, _, ok := b.do(ctx, result, http.MethodGet, "/results/"+id, nil, http.StatusOK); !ok {
					return
				}
				fetched = true
				tracked = slices.Delete(tracked, i, i+1)
				i--
			case store.StatusFailed:
				tracked = slices.Delete(tracked, i, i+1)
				i--
			}
		}
		if !fetched && len(done) > 0 {
			if _, _, ok := b.do(ctx, result, http.MethodGet, "/results/"+done[rng.IntN(len(done))], nil, http.StatusOK); !ok {
				return
			}
		}
	}
}

func taskStatus(data []byte) string {
	var v struct {
		Status string `json:"status"`
	}
	json.Unmarshal(data, &v)
	return v.Status
}

// galleryLoop walks the gallery page by page (limit 50), starting over at the end.
func (b *benchClient) galleryLoop(ctx context.Context, op *opStats) {
	cursor := ""
	for ctx.Err() == nil {
		path := "/gallery?limit=50"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		st, data, ok := b.do(ctx, op, http.MethodGet, path, nil, http.StatusOK)
		if !ok {
			return
		}
		cursor = ""
		if st == http.StatusOK {
			var page struct {
				Next *string `json:"next_cursor"`
			}
			if json.Unmarshal(data, &page) == nil && page.Next != nil {
				cursor = *page.Next
			}
		}
	}
}

// ---- the raw floor ----

// rawTableSQL is shaped like the tasks table so a row costs what a task row costs.
const rawTableSQL = `CREATE TABLE IF NOT EXISTS raw_tasks (
	id TEXT PRIMARY KEY, type TEXT NOT NULL, model TEXT NOT NULL, mode TEXT NOT NULL, prompt TEXT NOT NULL,
	negative_prompt TEXT NOT NULL DEFAULT '', params TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL,
	progress INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, has_image INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS raw_tasks_status_id ON raw_tasks (status, id);`

// benchRawDir picks the floor's directory: the same disk as the data when known.
func benchRawDir(cfg *benchConfig) (dir string, cleanup func(), err error) {
	if cfg.RawDir != "" {
		if err := os.MkdirAll(cfg.RawDir, 0o700); err != nil {
			return "", nil, err
		}
		dir, err = os.MkdirTemp(cfg.RawDir, "gooni-bench-raw-")
	} else if cfg.DataDir != "" {
		abs, aerr := filepath.Abs(cfg.DataDir)
		if aerr != nil {
			return "", nil, aerr
		}
		dir, err = os.MkdirTemp(filepath.Dir(abs), ".gooni-bench-raw-")
	} else {
		dir, err = os.MkdirTemp("", "gooni-bench-raw-")
	}
	if err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// rawFloor is the raw-insert floor's database, open for one or more phases.
type rawFloor struct {
	cfg     *benchConfig
	db      *sql.DB
	dir     string
	cleanup func()
}

// openRawFloor creates the floor's table in a fresh directory (benchRawDir)
// behind one writer connection with the store's writer pragmas.
func openRawFloor(ctx context.Context, cfg *benchConfig) (*rawFloor, error) {
	dir, cleanup, err := benchRawDir(cfg)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "raw.db")+
		"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		cleanup()
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, rawTableSQL); err != nil {
		db.Close()
		cleanup()
		return nil, err
	}
	return &rawFloor{cfg: cfg, db: db, dir: dir, cleanup: cleanup}, nil
}

func (f *rawFloor) close() {
	f.db.Close()
	f.cleanup()
}

// run adds one phase of d to res: cfg.Clients goroutines each insert one
// row per transaction, through the one writer connection (as the store
// writes).
func (f *rawFloor) run(ctx context.Context, d time.Duration, res *rawResult) {
	cfg := f.cfg
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for runCtx.Err() == nil {
				t0 := time.Now()
				now := t0.UnixMilli()
				tx, err := f.db.BeginTx(context.Background(), nil)
				if err == nil {
					_, err = tx.Exec(`INSERT INTO raw_tasks (id, type, model, mode, prompt, params, status, created_at, updated_at)
						VALUES (?, 'image', ?, ?, ?, '{"steps":28,"width":1024}', 'pending', ?, ?)`,
						store.NewID(), cfg.Model, cfg.Mode, "gooni bench: a lighthouse on a rocky coast at dusk", now, now)
					if err == nil {
						err = tx.Commit()
					} else {
						tx.Rollback()
					}
				}
				if err != nil {
					mu.Lock()
					res.err = err
					mu.Unlock()
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed += time.Since(start)
	res.rows = int64(len(res.lat))
	res.dir = f.dir
}

// runRawFloor: cfg.Clients goroutines each insert one row per transaction
// for RawDuration, through one writer connection (as the store writes),
// with the store's writer pragmas.
func runRawFloor(ctx context.Context, cfg *benchConfig) *rawResult {
	res := &rawResult{}
	f, err := openRawFloor(ctx, cfg)
	if err != nil {
		res.err = err
		return res
	}
	defer f.close()
	f.run(ctx, cfg.RawDuration, res)
	return res
}

// ---- seeding ----

// seedDoneTasks fills a stopped server's data dir with n done tasks that all
// share one small result and preview file, for the scale measurements
// (gallery paging, startup, memory at 100k tasks).
func seedDoneTasks(dataDir, schema string, n int) error {
	dir := config.DataDir(dataDir)
	unlock, err := dir.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	db, err := store.Open(dir.Path(), schema, store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := os.MkdirAll(dir.Media(), 0o700); err != nil {
		return err
	}
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for y := 0; y < 64; y++ {
		for x := 0; x < 64; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 4), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	for _, name := range []string{"bench-seed.png", "bench-seed.preview.png"} {
		if err := os.WriteFile(filepath.Join(dir.Media(), name), buf.Bytes(), 0o600); err != nil {
			return err
		}
	}
	proto := store.Task{Type: "image", Model: "flux", Mode: "t2i", Prompt: "seeded task: a lighthouse on a rocky coast",
		Params:     []byte(`{"guidance":3.5,"height":1024,"seed":7,"steps":28,"width":1024}`),
		ResultPath: "media/bench-seed.png", ResultType: "image/png",
		PreviewPath: "media/bench-seed.preview.png", PreviewType: "image/png"}
	return db.SeedDone(context.Background(), proto, time.Now().Add(-time.Duration(n)*time.Second), n)
}
