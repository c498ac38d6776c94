package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The streams workload (`gooni bench --workload streams`): many open
// GET /events/{id} streams on tasks that keep changing, and what they cost
// the server: /health latency before and while they are open, the events
// they get, and, given --server-pid, the server's resident memory before
// and with them (so the memory of one stream).
//
// The contract's stream limits (CONTRACT section 18: 8 per session, 32 per
// client IP) are kept the way real clients would: each session holds at
// most 8 streams and each loopback source address (127.0.0.2, 127.0.0.3,
// ...) at most 4 sessions, so 2,000 streams come from 63 addresses.
const (
	streamsPerSessionMax = 8
	sessionsPerAddress   = 4
	benchMaxStreams      = 20_000
	benchMaxTasks        = 10_000
)

// streamsReport is what the streams workload measured.
type streamsReport struct {
	cfg           *benchConfig
	tasks         int
	opened        int
	refused       map[string]int
	events        int64
	ended         int64
	elapsed       time.Duration
	healthBefore  []time.Duration
	healthDuring  []time.Duration
	rssBefore     int64 // bytes, 0 = unknown
	rssDuring     int64
	openedIn      time.Duration
	loadBefore    string
	loadAfter     string
	healthErrors  int
	healthProbeMS int
}

// rssOf reads VmRSS of a process from /proc (bytes).
func rssOf(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS line")
}

// addrClient is an HTTP client whose connections leave from one loopback address.
func addrClient(cfg *benchConfig, local net.IP) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: local}}
	return &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext, MaxIdleConnsPerHost: 64},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// probeHealth GETs /health back to back for d and returns each latency.
func probeHealth(ctx context.Context, c *http.Client, url string, d time.Duration) (lat []time.Duration, errs int) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				errs++
			}
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			errs++
			continue
		}
		lat = append(lat, time.Since(start))
		// A steady probe, not a flood: the streams are what is measured.
		time.Sleep(10 * time.Millisecond)
	}
	return lat, errs
}

// runStreams submits the tasks, opens the streams and measures.
func runStreams(ctx context.Context, cfg *benchConfig) (*streamsReport, error) {
	rep := &streamsReport{cfg: cfg, refused: map[string]int{}, loadBefore: loadAverage(), healthProbeMS: 10}
	bc, cleanup, err := newBenchClient(cfg)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if u, err := url.Parse(cfg.URL); err != nil || net.ParseIP(u.Hostname()).To4() == nil {
		return nil, errors.New("--workload streams needs --url on an IPv4 loopback address (it connects from several 127.0.0.0/8 addresses)")
	}
	// 1. The tasks, in batches of 8.
	var ids []string
	body := func(n int) []byte {
		return []byte(fmt.Sprintf(`{"model":%q,"mode":%q,"prompt":"gooni bench: streams","count":%d}`, cfg.Model, cfg.Mode, n))
	}
	probe := newOp("submit")
	for len(ids) < cfg.Tasks {
		st, data, _ := bc.do(ctx, probe, http.MethodPost, "/generate", body(min(8, cfg.Tasks-len(ids))), http.StatusAccepted)
		if st != http.StatusAccepted {
			return nil, fmt.Errorf("POST /generate answered %s after %d tasks", errKey(st, data), len(ids))
		}
		var a struct {
			TaskIDs []string `json:"task_ids"`
		}
		if err := json.Unmarshal(data, &a); err != nil || len(a.TaskIDs) == 0 {
			return nil, fmt.Errorf("POST /generate: no task_ids in the answer")
		}
		ids = append(ids, a.TaskIDs...)
	}
	rep.tasks = len(ids)
	// 2. The server without streams.
	health := &http.Client{Transport: &http.Transport{Proxy: nil}}
	rep.healthBefore, _ = probeHealth(ctx, health, cfg.URL, cfg.Duration/4)
	if cfg.ServerPID > 0 {
		rep.rssBefore, _ = rssOf(cfg.ServerPID)
	}
	// 3. Sessions and streams.
	sessions := (cfg.Streams + streamsPerSessionMax - 1) / streamsPerSessionMax
	type session struct {
		client *http.Client
		cookie string
	}
	var sess []session
	for i := 0; len(sess) < sessions; i++ {
		ip := net.IPv4(127, 0, byte((i+2)>>8), byte((i+2)&0xff))
		c := addrClient(cfg, ip)
		for j := 0; j < sessionsPerAddress && len(sess) < sessions; j++ {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL+"/auth/session", nil)
			req.Header.Set("X-API-Key", cfg.APIKey) // needed in key mode, ignored in open mode
			resp, err := c.Do(req)
			if err != nil {
				return nil, fmt.Errorf("POST /auth/session from %s: %w", ip, err)
			}
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			var cookie string
			for _, ck := range resp.Cookies() {
				if ck.Name == "gg_session" {
					cookie = ck.Name + "=" + ck.Value
				}
			}
			if resp.StatusCode != http.StatusOK || cookie == "" {
				return nil, fmt.Errorf("POST /auth/session from %s answered %s", ip, errKey(resp.StatusCode, data))
			}
			sess = append(sess, session{client: c, cookie: cookie})
		}
	}
	streamCtx, stop := context.WithCancel(ctx)
	defer stop()
	var events, ended atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	opened := make(chan bool, cfg.Streams)
	start := time.Now()
	for i := 0; i < cfg.Streams; i++ {
		s := sess[i/streamsPerSessionMax]
		id := ids[i%len(ids)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(streamCtx, http.MethodGet, cfg.URL+"/events/"+id, nil)
			req.Header.Set("Cookie", s.cookie)
			resp, err := s.client.Do(req)
			if err != nil {
				mu.Lock()
				rep.refused["transport "+transportReason(err)]++
				mu.Unlock()
				opened <- false
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
				mu.Lock()
				rep.refused[errKey(resp.StatusCode, data)]++
				mu.Unlock()
				opened <- false
				return
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 0, 4096), 1<<20)
			first := true
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "event: task") {
					if first {
						opened <- true
						first = false
					} else {
						events.Add(1)
					}
				}
			}
			if first {
				opened <- false
			} else if streamCtx.Err() == nil {
				ended.Add(1) // the task finished (or the server ended the stream)
			}
		}()
	}
	for range cfg.Streams {
		select {
		case ok := <-opened:
			if ok {
				rep.opened++
			}
		case <-time.After(60 * time.Second):
			return nil, fmt.Errorf("only %d of %d streams opened in 60 s", rep.opened, cfg.Streams)
		}
	}
	rep.openedIn = time.Since(start)
	// 4. The server with the streams open and the tasks changing.
	base := events.Load()
	measured := time.Now()
	var errs int
	rep.healthDuring, errs = probeHealth(ctx, health, cfg.URL, cfg.Duration)
	rep.healthErrors = errs
	rep.elapsed = time.Since(measured)
	rep.events = events.Load() - base
	rep.ended = ended.Load()
	if cfg.ServerPID > 0 {
		rep.rssDuring, _ = rssOf(cfg.ServerPID)
	}
	rep.loadAfter = loadAverage()
	stop()
	wg.Wait()
	return rep, nil
}

func latencyLine(lat []time.Duration) string {
	if len(lat) == 0 {
		return "no answers"
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return fmt.Sprintf("%d requests, p50 %s, p95 %s, p99 %s, max %s", len(s),
		ms3(percentile(s, .5)), ms3(percentile(s, .95)), ms3(percentile(s, .99)), ms3(s[len(s)-1]))
}

func (r *streamsReport) print(w io.Writer) {
	c := r.cfg
	fmt.Fprintf(w, "gooni bench: streams workload against %s (%s)\n", c.URL, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "load average %s at start, %s at end\n", orNA(r.loadBefore), orNA(r.loadAfter))
	fmt.Fprintf(w, "tasks: %d submitted (%s %s); streams: %d of %d open in %s (GET /events/{id}, %d per session, %d sessions per address)\n",
		r.tasks, c.Model, c.Mode, r.opened, c.Streams, r.openedIn.Round(time.Millisecond), streamsPerSessionMax, sessionsPerAddress)
	if len(r.refused) > 0 {
		var ks []string
		for k, v := range r.refused {
			ks = append(ks, fmt.Sprintf("%s: %d", k, v))
		}
		slices.Sort(ks)
		fmt.Fprintf(w, "streams refused: %s\n", strings.Join(ks, ", "))
	}
	fmt.Fprintf(w, "events: %d task events in %s (%.0f/s) on the open streams; %d streams ended (their task finished)\n",
		r.events, r.elapsed.Round(time.Millisecond), float64(r.events)/r.elapsed.Seconds(), r.ended)
	fmt.Fprintf(w, "/health without streams: %s\n", latencyLine(r.healthBefore))
	fmt.Fprintf(w, "/health with the streams: %s (one probe every ~%d ms; %d failed)\n", latencyLine(r.healthDuring), r.healthProbeMS, r.healthErrors)
	if len(r.healthBefore) > 0 && len(r.healthDuring) > 0 {
		b, d := slices.Clone(r.healthBefore), slices.Clone(r.healthDuring)
		slices.Sort(b)
		slices.Sort(d)
		fmt.Fprintf(w, "/health p99 with the streams / without (same run): %s; p50: %s\n",
			ratio(float64(percentile(d, .99)), float64(percentile(b, .99))), ratio(float64(percentile(d, .5)), float64(percentile(b, .5))))
	}
	if r.rssBefore > 0 && r.rssDuring > 0 {
		per := float64(r.rssDuring-r.rssBefore) / float64(max(r.opened, 1))
		fmt.Fprintf(w, "server RSS: %.1f MB before the streams, %.1f MB with them: %.1f KB per stream\n",
			float64(r.rssBefore)/(1<<20), float64(r.rssDuring)/(1<<20), per/1024)
	}
}
