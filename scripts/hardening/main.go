// Command hardening runs the full-size attacks of issue 11 against a running
// gooni on loopback and prints what the server held and how /health answered
// meanwhile: many event streams from one client, many large generate
// bodies at once, and many distinct client addresses. It is driven by
// scripts/bench-hardening.sh; its output goes to docs/RELIABILITY.md.
//
//	go run ./scripts/hardening --url http://127.0.0.1:18097 --data-dir DIR --pid PID --sim http://127.0.0.1:19100
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:18097", "gooni base URL (loopback)")
	dataDir := flag.String("data-dir", "", "the server's data directory (for its keys)")
	pid := flag.Int("pid", 0, "the server's process id (for its memory)")
	sim := flag.String("sim", "", "a workspace-sim base URL with a long --duration, registered as the account")
	streams := flag.Int("streams", 10300, "event streams per loop (two loops)")
	bodies := flag.Int("bodies", 96, "concurrent large generate bodies")
	addrs := flag.Int("addresses", 300000, "distinct client addresses")
	flag.Parse()
	key := readKey(*dataDir, "api_key")
	admin := login(*url, readKey(*dataDir, "admin_key"))
	if *sim != "" {
		addAccount(*url, admin, *sim)
	}
	h := startHealthProbe(*url)
	fmt.Printf("server RSS at start: %s\n", rss(*pid))

	id := generate(*url, key, `{"model":"flux","mode":"t2i","prompt":"hardening: a task that stays pending"}`)
	for loop := 1; loop <= 2; loop++ {
		codes, failed := openStreams(*url, key, id, *streams)
		fmt.Printf("streams loop %d: %d asked, answers %v, %d connection failures; server RSS %s; /health %s\n",
			loop, *streams, codes, failed, rss(*pid), h.report())
	}

	img := noisePNG(1600) // 9.8 MiB of incompressible pixels: just under the 10 MiB limit
	body := []byte(`{"model":"anisora","mode":"i2v","prompt":"hardening: a large body","image":"data:image/png;base64,` +
		base64.StdEncoding.EncodeToString(img) + `"}`)
	fmt.Printf("large bodies: %d at once of %.1f MB (image %.1f MiB)\n", *bodies, float64(len(body))/1e6, float64(len(img))/(1<<20))
	codes := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *bodies; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", *url+"/generate", bytes.NewReader(body))
			req.Header.Set("X-API-Key", key)
			c := 0
			if resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				c = resp.StatusCode
			}
			mu.Lock()
			codes[c]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("large bodies done in %s: answers %v; server RSS %s; /health %s\n", time.Since(start).Round(time.Millisecond), codes, rss(*pid), h.report())
	time.Sleep(3 * time.Second)
	fmt.Printf("3 s later: server RSS %s\n", rss(*pid))

	before := adminLatency(*url, admin, 200)
	sent := distinctAddresses(*url, *addrs)
	after := adminLatency(*url, admin, 200)
	fmt.Printf("distinct addresses: %d unauthenticated GET /admin/accounts from distinct X-Forwarded-For addresses; admin GET /admin/accounts p50 %s before, %s after; server RSS %s; /health %s\n",
		sent, before, after, rss(*pid), h.report())
}

func die(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...); os.Exit(1) }

func readKey(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, "secrets", name))
	if err != nil {
		die("read %s: %v", name, err)
	}
	return strings.TrimSpace(string(b))
}

func login(url, adminKey string) *http.Client {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	req, _ := http.NewRequest("POST", url+"/admin/session", nil)
	req.Header.Set("X-Admin-Key", adminKey)
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		die("admin login: %v %v", err, resp)
	}
	resp.Body.Close()
	return c
}

func addAccount(url string, admin *http.Client, sim string) {
	body := fmt.Sprintf(`{"name":"hardening","workspace":"hardening","base_url":%q,"credentials":{},"capacity":1}`, sim)
	resp, err := admin.Post(url+"/admin/accounts", "application/json", strings.NewReader(body))
	if err != nil || resp.StatusCode != 201 {
		die("add account: %v %v", err, resp)
	}
	var acc struct{ ID int64 }
	json.NewDecoder(resp.Body).Decode(&acc)
	resp.Body.Close()
	resp, err = admin.Post(fmt.Sprintf("%s/admin/accounts/%d/health-check", url, acc.ID), "", nil)
	if err != nil || resp.StatusCode != 200 {
		die("health check: %v %v", err, resp)
	}
	resp.Body.Close()
}

func generate(url, key, body string) string {
	req, _ := http.NewRequest("POST", url+"/generate", strings.NewReader(body))
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 202 {
		die("generate: %v %v", err, resp)
	}
	var v struct {
		TaskID string `json:"task_id"`
	}
	json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	// A second task keeps the first one pending behind a capacity-1 account.
	return v.TaskID
}

// openStreams opens n event streams on one task from one client and holds
// them until all were tried; it returns the answers by status.
func openStreams(url, key, id string, n int) (map[int]int, int) {
	codes := map[int]int{}
	var mu sync.Mutex
	failed := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: -1}
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			req, _ := http.NewRequestWithContext(ctx, "GET", url+"/events/"+id, nil)
			req.Header.Set("X-API-Key", key)
			resp, err := client.Do(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			codes[resp.StatusCode]++
			if resp.StatusCode == 200 {
				go func() { <-ctx.Done(); resp.Body.Close() }()
			} else {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	return codes, failed
}

func noisePNG(side int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	x := uint32(88172645)
	for i := range img.Pix {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		img.Pix[i] = byte(x)
	}
	var b bytes.Buffer
	(&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&b, img)
	return b.Bytes()
}

func adminLatency(url string, admin *http.Client, n int) time.Duration {
	var d []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		resp, err := admin.Get(url + "/admin/accounts")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		d = append(d, time.Since(start))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2].Round(10 * time.Microsecond)
}

func distinctAddresses(url string, n int) int {
	var sent atomic.Int64
	var wg sync.WaitGroup
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	per := n / 16
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				k := w*per + i
				// Unauthenticated admin requests: each new address is a new key
				// of the limiter a real admin's requests go through.
				req, _ := http.NewRequest("GET", url+"/admin/accounts", nil)
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", k>>16&255, k>>8&255, k&255))
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					sent.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	return int(sent.Load())
}

func rss(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			var kb int
			fmt.Sscan(f[1], &kb)
			out = append(out, fmt.Sprintf("%s %d MB", strings.TrimSuffix(f[0], ":"), kb/1024))
		}
	}
	return strings.Join(out, " ")
}

// healthProbe asks /health from another loopback address every 100 ms.
type healthProbe struct {
	mu   sync.Mutex
	lat  []time.Duration
	fail int
}

func startHealthProbe(url string) *healthProbe {
	h := &healthProbe{}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	go func() {
		for {
			start := time.Now()
			resp, err := client.Get(url + "/health")
			h.mu.Lock()
			if err != nil || resp.StatusCode != 200 {
				h.fail++
			} else {
				h.lat = append(h.lat, time.Since(start))
			}
			h.mu.Unlock()
			if err == nil {
				resp.Body.Close()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return h
}

// report gives p50, p99 and max of the probes since the last report.
func (h *healthProbe) report() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, fail := h.lat, h.fail
	h.lat, h.fail = nil, 0
	if len(d) == 0 {
		return fmt.Sprintf("no answer (%d failures)", fail)
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return fmt.Sprintf("p50 %s p99 %s max %s over %d probes, %d failures", d[len(d)/2].Round(100*time.Microsecond),
		d[len(d)*99/100].Round(100*time.Microsecond), d[len(d)-1].Round(100*time.Microsecond), len(d), fail)
}
