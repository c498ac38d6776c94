package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"gooni/store"
)

// Compare mode (`gooni bench --compare`): each workload is measured next to
// a reference in the same run, as a ratio, so that a number means the same
// on any machine and under any load that both sides share:
//
//	submit   POST /generate (accepted/s)   vs  the raw insert floor (one row per
//	                                           transaction, synchronous=FULL)
//	status   GET /status/{done task}       vs  GET /config (static JSON through the
//	error    GET /status/{unknown id}          same middleware chain)
//	route    GET /no/such/route (404)
//	gallery  GET /gallery?limit=50
//	media    GET /results/{done task}      vs  nginx serving the same bytes (when an
//	                                           nginx binary is found)
//
// The phases alternate in rounds (reference and workload next to each
// other, the order flipped every round), so slow drift in the machine's
// load falls on both sides alike.

// compareWorkloads are the workloads of --compare, in print order.
var compareWorkloads = []string{"submit", "status", "error", "route", "gallery", "media"}

// phaseOp is one measured request kind of compare mode: its latencies and,
// over all its phases, the time it ran, the answers that counted and the
// bytes it read.
type phaseOp struct {
	*opStats
	label   string
	elapsed time.Duration
	good    atomic.Int64 // answers with the expected status (accepted submits)
	bytes   atomic.Int64
}

func newPhaseOp(name, label string) *phaseOp { return &phaseOp{opStats: newOp(name), label: label} }

func (p *phaseOp) rate() float64 {
	if p.elapsed <= 0 {
		return 0
	}
	return float64(p.good.Load()) / p.elapsed.Seconds()
}

func (p *phaseOp) mbps() float64 {
	if p.elapsed <= 0 {
		return 0
	}
	return float64(p.bytes.Load()) / (1 << 20) / p.elapsed.Seconds()
}

// comparePair is one line of the report: a workload and its reference.
type comparePair struct {
	name      string
	target    *phaseOp
	reference *phaseOp                                   // nil for submit (the raw floor) and media
	raw       *rawResult                                 // submit's reference
	nginx     *phaseOp                                   // media's reference
	skipped   string                                     // why the pair was not measured
	mediaSize int64                                      // media: bytes of the file
	run       func(context.Context, time.Duration) error // one phase of the workload
	runRef    func(context.Context, time.Duration) error // one phase of its reference
}

type compareReport struct {
	cfg        *benchConfig
	pairs      []*comparePair
	config     *phaseOp
	started    time.Time
	loadBefore string
	loadAfter  string
}

// loadAverage is /proc/loadavg's first three fields ("" where there is none).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// parseCompareWorkloads reads --workload in compare mode: a comma list of
// compareWorkloads, or "all".
func parseCompareWorkloads(s string) ([]string, error) {
	if s == "" || s == "all" {
		return compareWorkloads, nil
	}
	var out []string
	for _, w := range strings.Split(s, ",") {
		w = strings.TrimSpace(w)
		if !slices.Contains(compareWorkloads, w) {
			return nil, fmt.Errorf("--workload %q with --compare: want a comma list of %s, or all", w, strings.Join(compareWorkloads, ", "))
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out, nil
}

// loop runs cfg.Clients goroutines calling fn until d has passed and adds
// the phase's length to each op.
func (b *benchClient) loop(ctx context.Context, d time.Duration, fn func(ctx context.Context, rng *rand.Rand) bool, ops ...*phaseOp) {
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < b.cfg.Clients; i++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
			for runCtx.Err() == nil && fn(runCtx, rng) {
			}
		}(uint64(i) + 1)
	}
	wg.Wait()
	for _, op := range ops {
		op.elapsed += time.Since(start)
	}
}

// get is one GET of a compare phase: its latency in op, a good answer
// counted when it has the status want, the bytes of the body counted.
func (b *benchClient) get(ctx context.Context, op *phaseOp, url string, apiKey bool, want int) bool {
	if b.left.Add(-1) < 0 {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	if apiKey {
		req.Header.Set("X-API-Key", b.cfg.APIKey)
	}
	start := time.Now()
	resp, err := b.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		op.add(time.Since(start), "transport "+transportReason(err))
		return true
	}
	var n int64
	var body []byte
	if resp.StatusCode == want {
		n, err = io.Copy(io.Discard, resp.Body)
	} else {
		body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	}
	resp.Body.Close()
	d := time.Since(start)
	if err != nil && ctx.Err() != nil {
		return false
	}
	key := ""
	switch {
	case err != nil:
		key = "transport " + transportReason(err)
	case resp.StatusCode != want:
		key = errKey(resp.StatusCode, body)
	default:
		op.good.Add(1)
		op.bytes.Add(n)
	}
	op.add(d, key)
	return true
}

// runCompare measures every chosen workload against its reference.
func runCompare(ctx context.Context, cfg *benchConfig, workloads []string) (*compareReport, error) {
	rep := &compareReport{cfg: cfg, started: time.Now(), loadBefore: loadAverage()}
	bc, cleanup, err := newBenchClient(cfg)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	done, err := bc.collectDone(ctx, 1000)
	if err != nil {
		return nil, err
	}
	rep.config = newPhaseOp("config", "GET /config")
	configPhase := func(ctx context.Context, d time.Duration) error {
		bc.loop(ctx, d, func(ctx context.Context, _ *rand.Rand) bool {
			return bc.get(ctx, rep.config, cfg.URL+"/config", true, http.StatusOK)
		}, rep.config)
		return nil
	}
	readPair := func(name, label string, path func(*rand.Rand) string, want int) *comparePair {
		p := &comparePair{name: name, target: newPhaseOp(name, label), reference: rep.config, runRef: configPhase}
		p.run = func(ctx context.Context, d time.Duration) error {
			bc.loop(ctx, d, func(ctx context.Context, rng *rand.Rand) bool {
				return bc.get(ctx, p.target, cfg.URL+path(rng), true, want)
			}, p.target)
			return nil
		}
		return p
	}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for _, w := range workloads {
		switch w {
		case "submit":
			p := &comparePair{name: w, target: newPhaseOp("submit", "POST /generate (accepted/s)"), raw: &rawResult{}}
			floor, err := openRawFloor(ctx, cfg)
			if err != nil {
				p.skipped = "raw floor: " + err.Error()
				rep.pairs = append(rep.pairs, p)
				continue
			}
			closers = append(closers, floor.close)
			p.runRef = func(ctx context.Context, d time.Duration) error {
				floor.run(ctx, d, p.raw)
				return p.raw.err
			}
			p.run = func(ctx context.Context, d time.Duration) error {
				bc.loop(ctx, d, func(ctx context.Context, _ *rand.Rand) bool {
					st, _, ok := bc.do(ctx, p.target.opStats, http.MethodPost, "/generate", bc.body, http.StatusAccepted)
					if st == http.StatusAccepted {
						p.target.good.Add(1)
					}
					return ok
				}, p.target)
				return nil
			}
			rep.pairs = append(rep.pairs, p)
		case "status":
			if len(done) == 0 {
				rep.pairs = append(rep.pairs, &comparePair{name: w, skipped: "no done task to read (the gallery is empty; see --seed-done)"})
				continue
			}
			rep.pairs = append(rep.pairs, readPair(w, "GET /status/{done task}", func(rng *rand.Rand) string {
				return "/status/" + done[rng.IntN(len(done))]
			}, http.StatusOK))
		case "error":
			// Well-formed ids that name no task: the whole lookup runs, then the error answer.
			rep.pairs = append(rep.pairs, readPair(w, "GET /status/{unknown id}", func(*rand.Rand) string {
				return "/status/" + store.NewID()
			}, http.StatusNotFound))
		case "route":
			// A path no route matches: the router tries every route, then the error answer.
			rep.pairs = append(rep.pairs, readPair(w, "GET /{unknown route}", func(*rand.Rand) string {
				return "/no/such/route"
			}, http.StatusNotFound))
		case "gallery":
			rep.pairs = append(rep.pairs, readPair(w, "GET /gallery?limit=50", func(*rand.Rand) string {
				return "/gallery?limit=50"
			}, http.StatusOK))
		case "media":
			p := &comparePair{name: w}
			rep.pairs = append(rep.pairs, p)
			if len(done) == 0 {
				p.skipped = "no done task to download"
				continue
			}
			nginx, stop, size, err := startNginx(ctx, bc, cfg, done[0])
			if err != nil {
				p.skipped = err.Error()
				continue
			}
			closers = append(closers, stop)
			p.mediaSize = size
			p.target = newPhaseOp("media", "GET /results/{id}")
			p.nginx = newPhaseOp("nginx", "nginx, the same file")
			p.run = func(ctx context.Context, d time.Duration) error {
				bc.loop(ctx, d, func(ctx context.Context, _ *rand.Rand) bool {
					return bc.get(ctx, p.target, cfg.URL+"/results/"+done[0], true, http.StatusOK)
				}, p.target)
				return nil
			}
			p.runRef = func(ctx context.Context, d time.Duration) error {
				bc.loop(ctx, d, func(ctx context.Context, _ *rand.Rand) bool {
					return bc.get(ctx, p.nginx, nginx, false, http.StatusOK)
				}, p.nginx)
				return nil
			}
		}
	}
	// Each group is a reference and what is measured against it; the read
	// workloads share one /config phase per round.
	var groups [][]func(context.Context, time.Duration) error
	var reads []func(context.Context, time.Duration) error
	for _, p := range rep.pairs {
		switch {
		case p.skipped != "":
		case p.reference == rep.config:
			if reads == nil {
				reads = append(reads, configPhase)
			}
			reads = append(reads, p.run)
		default:
			groups = append(groups, []func(context.Context, time.Duration) error{p.runRef, p.run})
		}
	}
	if reads != nil {
		groups = append(groups, reads)
	}
	phase := cfg.Duration / time.Duration(cfg.Rounds)
	for round := 0; round < cfg.Rounds; round++ {
		for _, g := range groups {
			for i := range g {
				step := g[i]
				if round%2 == 1 {
					step = g[len(g)-1-i] // the order flips every round
				}
				if err := step(ctx, phase); err != nil {
					return nil, err
				}
			}
		}
	}
	rep.loadAfter = loadAverage()
	return rep, nil
}

// newBenchClient checks that the server answers and the key works.
func newBenchClient(cfg *benchConfig) (*benchClient, func(), error) {
	body := []byte(`{"model":"` + cfg.Model + `","mode":"` + cfg.Mode + `","prompt":"gooni bench: a lighthouse on a rocky coast at dusk"}`)
	hc, tr := newBenchHTTP(cfg)
	bc := &benchClient{cfg: cfg, http: hc, body: body}
	bc.left.Store(cfg.MaxRequests)
	probe := newOp("probe")
	if st, data, _ := bc.do(context.Background(), probe, http.MethodGet, "/gallery?limit=1", nil, http.StatusOK); st != http.StatusOK {
		tr.CloseIdleConnections()
		return nil, nil, preflightErr(cfg, st, data)
	}
	return bc, tr.CloseIdleConnections, nil
}

// nginxBinary finds nginx: $PATH, then /usr/sbin (Debian puts it there).
func nginxBinary(given string) (string, error) {
	if given != "" {
		p, err := exec.LookPath(given)
		if err != nil {
			return "", fmt.Errorf("no nginx binary at %s", given)
		}
		return p, nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath("/usr/sbin/nginx"); err == nil {
		return p, nil
	}
	return "", errors.New("no nginx binary found (install nginx, or give --nginx PATH)")
}

// startNginx downloads task id's result once into a temp dir and serves that
// file with nginx (sendfile on, one worker, access log off) on a free
// loopback port. It returns the file's URL, a stop function, and its size.
func startNginx(ctx context.Context, bc *benchClient, cfg *benchConfig, id string) (string, func(), int64, error) {
	bin, err := nginxBinary(cfg.Nginx)
	if err != nil {
		return "", nil, 0, err
	}
	dir, err := os.MkdirTemp("", "gooni-bench-nginx-")
	if err != nil {
		return "", nil, 0, err
	}
	remove := func() { os.RemoveAll(dir) }
	// nginx's workers run as an unprivileged user when started as root.
	if err := os.Chmod(dir, 0o755); err != nil {
		remove()
		return "", nil, 0, err
	}
	www := filepath.Join(dir, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		remove()
		return "", nil, 0, err
	}
	size, err := download(ctx, bc, cfg.URL+"/results/"+id, filepath.Join(www, "result.bin"))
	if err != nil {
		remove()
		return "", nil, 0, fmt.Errorf("download the result to serve with nginx: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		remove()
		return "", nil, 0, err
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
daemon off;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen %[2]s;
		root %[3]s;
	}
}
`, dir, addr, www)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		remove()
		return "", nil, 0, err
	}
	cmd := exec.Command(bin, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"), "-p", dir)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		remove()
		return "", nil, 0, fmt.Errorf("start nginx: %w", err)
	}
	stop := func() {
		cmd.Process.Signal(os.Interrupt) // SIGINT: nginx's fast shutdown
		waited := make(chan struct{})
		go func() { cmd.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
		remove()
	}
	url := "http://" + addr + "/result.bin"
	for i := 0; ; i++ {
		resp, err := bc.http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i > 100 {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			stop()
			return "", nil, 0, fmt.Errorf("nginx did not serve the file: %s", strings.TrimSpace(string(log)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return url, stop, size, nil
}

// download saves url's body (with the API key) to path, world-readable for nginx.
func download(ctx context.Context, bc *benchClient, url, path string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-API-Key", bc.cfg.APIKey)
	resp, err := bc.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return 0, errors.New(errKey(resp.StatusCode, b))
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

func latencies(o *opStats) (p50, p99 time.Duration) {
	if len(o.lat) == 0 {
		return 0, 0
	}
	s := slices.Clone(o.lat)
	slices.Sort(s)
	return percentile(s, .50), percentile(s, .99)
}

func (rep *compareReport) print(w io.Writer) {
	c := rep.cfg
	phase := c.Duration / time.Duration(c.Rounds)
	fmt.Fprintf(w, "gooni bench --compare: %d clients, %d rounds of %s per side, against %s (%s)\n",
		c.Clients, c.Rounds, phase, c.URL, rep.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %d CPUs (GOMAXPROCS %d), %s/%s; load average %s at start, %s at end\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, orNA(rep.loadBefore), orNA(rep.loadAfter))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\trate\tp50\tp99\t|\treference\trate\tp50\tp99\t|\tratio")
	for _, p := range rep.pairs {
		if p.skipped != "" {
			continue
		}
		t50, t99 := latencies(p.target.opStats)
		switch {
		case p.raw != nil:
			r := p.raw
			s := slices.Clone(r.lat)
			slices.Sort(s)
			rr := 0.0
			if r.elapsed > 0 {
				rr = float64(r.rows) / r.elapsed.Seconds()
			}
			fmt.Fprintf(tw, "%s %s\t%.0f/s\t%s\t%s\t|\traw insert (1 row/tx, FULL)\t%.0f/s\t%s\t%s\t|\t%s\n",
				p.name, p.target.label, p.target.rate(), ms3(t50), ms3(t99), rr,
				ms3(percentile(s, .5)), ms3(percentile(s, .99)), ratio(p.target.rate(), rr))
		case p.nginx != nil:
			n50, n99 := latencies(p.nginx.opStats)
			fmt.Fprintf(tw, "%s %s (%s)\t%.0f MB/s\t%s\t%s\t|\t%s\t%.0f MB/s\t%s\t%s\t|\t%s\n",
				p.name, p.target.label, sizeString(p.mediaSize), p.target.mbps(), ms3(t50), ms3(t99),
				p.nginx.label, p.nginx.mbps(), ms3(n50), ms3(n99), ratio(p.target.mbps(), p.nginx.mbps()))
		default:
			r50, r99 := latencies(p.reference.opStats)
			fmt.Fprintf(tw, "%s %s\t%.0f/s\t%s\t%s\t|\t%s\t%.0f/s\t%s\t%s\t|\t%s\n",
				p.name, p.target.label, p.target.rate(), ms3(t50), ms3(t99),
				p.reference.label, p.reference.rate(), ms3(r50), ms3(r99), ratio(p.target.rate(), p.reference.rate()))
		}
	}
	tw.Flush()
	for _, p := range rep.pairs {
		if p.skipped != "" {
			fmt.Fprintf(w, "%s skipped: %s\n", p.name, p.skipped)
		}
	}
	var errs []string
	seen := map[*opStats]bool{}
	add := func(o *phaseOp) {
		if o == nil || seen[o.opStats] {
			return
		}
		seen[o.opStats] = true
		for k, v := range o.errors {
			errs = append(errs, fmt.Sprintf("  %s %s: %d", o.name, k, v))
		}
	}
	for _, p := range rep.pairs {
		add(p.target)
		add(p.reference)
		add(p.nginx)
		if p.raw != nil && p.raw.err != nil {
			errs = append(errs, "  raw insert: "+p.raw.err.Error())
		}
	}
	printErrors(w, "errors by code (a ratio counts only good answers):", errs)
}

func ratio(a, b float64) string {
	if b <= 0 {
		return "n/a"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}

func orNA(s string) string {
	if s == "" {
		return "n/a"
	}
	return s
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
