package browser

import (
	"encoding/json"
	"fmt"
	"gooni/internal/testutil"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

const (
	queueRegion = `[role="region"][aria-label="Queue"]`
	countField  = `input[aria-label="Count"]`
)

// queueItems is the JSON of the Queue's items: id, status and text.
func (p *page) queueItems() []map[string]string {
	p.t.Helper()
	return eval[[]map[string]string](p, `[...document.querySelectorAll('[role="region"][aria-label="Queue"] li[data-task-id]')].map((li) => ({
		id: li.dataset.taskId, status: li.dataset.status, text: li.innerText,
		bar: li.querySelector('[role="progressbar"]') ? li.querySelector('[role="progressbar"]').getAttribute("aria-valuenow") : "",
		cancel: [...li.querySelectorAll("button")].some((b) => b.textContent.trim() === "Cancel") ? "yes" : "",
		retry: [...li.querySelectorAll("button")].some((b) => b.textContent.trim() === "Retry") ? "yes" : ""}))`)
}

// listTasks reads GET /tasks through the API (every status).
func (c *apiClient) listTasks(query string) []struct {
	TaskID string         `json:"task_id"`
	Status string         `json:"status"`
	Prompt string         `json:"prompt"`
	Params map[string]any `json:"params"`
	Error  *struct {
		Code string `json:"code"`
	} `json:"error"`
} {
	c.t.Helper()
	code, body := c.do("GET", "/tasks?limit=100"+query, nil, nil)
	if code != http.StatusOK {
		c.t.Fatalf("GET /tasks: %d %s", code, body)
	}
	var page struct {
		Items []struct {
			TaskID string         `json:"task_id"`
			Status string         `json:"status"`
			Prompt string         `json:"prompt"`
			Params map[string]any `json:"params"`
			Error  *struct {
				Code string `json:"code"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		c.t.Fatal(err)
	}
	return page.Items
}

// countStreams makes every document of the tab count the EventSources it
// opens and has open (window.__streams: {opened, open, urls}).
func (p *page) countStreams() {
	p.t.Helper()
	js := `(() => {
		const ES = window.EventSource;
		window.__streams = {opened: 0, open: 0, urls: []};
		window.EventSource = class extends ES {
			constructor(url, init) {
				super(url, init);
				window.__streams.opened++; window.__streams.open++; window.__streams.urls.push(String(url));
			}
			close() { if (this.readyState !== ES.CLOSED) window.__streams.open--; super.close(); }
		};
	})()`
	if _, err := chromedp.Call(p.ctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: js}); err != nil {
		p.t.Fatalf("count event streams: %v", err)
	}
}

// TestQueueCountAndCancel: Count 3 makes three tasks with consecutive
// seeds; the Queue lists them live with progress, position and Cancel;
// Cancel from the panel ends the waiting one as canceled.
func TestQueueCountAndCancel(t *testing.T) {
	t.Parallel()
	// two at once, 8 s each: the third waits long enough to be canceled
	// however slow the machine is
	srv := serverWithSim(t, "--capacity", "2", "--duration", "8s")
	api := srv.client(t)
	p := openBrowser(t, srv, desktop)
	p.countStreams()
	p.open("/")
	p.waitForm()
	if !eval[bool](p, `!!document.querySelector('`+queueRegion+`')`) {
		t.Fatal("no region named Queue")
	}
	// a pointer and a keyboard: the Ctrl+Enter hint shows
	if d := eval[string](p, `getComputedStyle(document.querySelector(".kbd-hint")).display`); d == "none" {
		t.Error("the Ctrl+Enter hint is hidden on a desktop")
	}
	p.chooseOption(modelSelect, "FLUX")
	p.typeInto(promptField, "three lanterns")
	p.typeInto(countField, "3")
	p.click(generateBtn)
	p.waitFor("three tasks in the Queue", `document.querySelectorAll('[role="region"][aria-label="Queue"] li[data-task-id]').length === 3`, 10*time.Second)

	tasks := api.listTasks("")
	if len(tasks) != 3 {
		t.Fatalf("the server has %d tasks, want 3", len(tasks))
	}
	seeds := map[float64]bool{}
	for _, tk := range tasks {
		seeds[tk.Params["seed"].(float64)] = true
	}
	for _, tk := range tasks { // s, s+1, s+2 (no wrap at random seeds this small a batch: checked as a set)
		s := tk.Params["seed"].(float64)
		if s < 0 || !(seeds[s+1] || seeds[s-1]) {
			t.Errorf("seeds %v are not consecutive", seeds)
			break
		}
	}
	// the workspace runs two at once: one waits with its position
	p.waitFor("two running with a progress bar and one queued", `(() => {
		const items = [...document.querySelectorAll('[role="region"][aria-label="Queue"] li[data-task-id]')];
		const bars = items.filter((li) => li.querySelector('[role="progressbar"][aria-valuenow]')).length;
		const queued = items.filter((li) => li.dataset.status === "pending" && /position/.test(li.innerText)).length;
		return bars >= 1 && queued === 1;
	})()`, 10*time.Second)
	for _, it := range p.queueItems() {
		if (it["status"] == "pending" || it["status"] == "processing") && it["cancel"] != "yes" {
			t.Errorf("open item %s has no Cancel button: %q", it["id"], it["text"])
		}
	}
	// three live tasks, one stream: GET /events, not one per task
	streams := eval[map[string]any](p, `window.__streams`)
	if streams["open"] != float64(1) || streams["opened"] != float64(1) || fmt.Sprint(streams["urls"]) != "[/events]" {
		t.Errorf("event streams of the tab: %v, want one, GET /events, opened once", streams)
	}
	p.screenshot("queue-three")

	waiting := eval[string](p, `document.querySelector('[role="region"][aria-label="Queue"] li[data-status="pending"]').dataset.taskId`)
	p.click(fmt.Sprintf(`//li[@data-task-id=%q]//button[normalize-space()="Cancel"]`, waiting))
	p.waitFor("the canceled task shown as canceled", fmt.Sprintf(`(() => {
		const li = document.querySelector('li[data-task-id=%q]');
		return li && li.dataset.status === "failed" && /Canceled/.test(li.innerText);
	})()`, waiting), 10*time.Second)
	code, body := api.do("GET", "/status/"+waiting, nil, nil)
	if code != 200 || !strings.Contains(string(body), `"code":"canceled"`) {
		t.Errorf("the server has %d %s for the canceled task", code, body)
	}
	// the two others finish, live, without a reload
	p.waitFor("two done in the Queue", `document.querySelectorAll('[role="region"][aria-label="Queue"] li[data-status="done"]').length === 2`, 30*time.Second)
	p.screenshot("queue-after-cancel")

	// the History lists the canceled task under its Status filter
	p.open("/#/history")
	p.waitFor("the History", `document.querySelector('select[aria-label="Status"]')`, 10*time.Second)
	p.chooseOption(`select[aria-label="Status"]`, "Failed")
	p.waitFor("only the canceled task", fmt.Sprintf(`(() => {
		const items = [...document.querySelectorAll("main li[data-task-id]")];
		return items.length === 1 && items[0].dataset.taskId === %q && /canceled/i.test(items[0].innerText);
	})()`, waiting), 10*time.Second)
	p.noHorizontalScroll("History")
	p.screenshot("history-failed")
}

// TestDoubleClickCreatesOneTask: a real double click on Generate sends one task.
func TestDoubleClickCreatesOneTask(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	api := srv.client(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	p.chooseOption(modelSelect, "FLUX")
	p.typeInto(promptField, "one click only")
	eval[bool](p, `(() => { window.__posts = 0; const f = window.fetch; window.fetch = (u, o) => { if (String(u).includes("/generate")) window.__posts++; return f(u, o); }; return true; })()`)
	// a real double click: press and release twice, the second with click count 2
	xy := eval[[]float64](p, `(() => { const b = [...document.querySelectorAll("form button")].find((b) => b.textContent.trim() === "Generate"); b.scrollIntoView({block: "center"}); const r = b.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`)
	p.do("double click Generate", chromedp.MouseClickXY(xy[0], xy[1]), chromedp.MouseClickXY(xy[0], xy[1], chromedp.ClickCount(2)))
	p.waitFor("the task in the Queue", `document.querySelectorAll('[role="region"][aria-label="Queue"] li[data-task-id]').length >= 1`, 10*time.Second)
	// past the cooldown: nothing more may arrive
	p.waitFor("the Generate button enabled again", `(() => { const b = [...document.querySelectorAll("form button")].find((b) => b.textContent.trim() === "Generate"); return b && !b.disabled; })()`, 5*time.Second)
	if n := len(api.listTasks("")); n != 1 {
		t.Fatalf("a double click created %d tasks, want 1", n)
	}
	if n := eval[int](p, `window.__posts`); n != 1 {
		t.Errorf("a double click sent %d POST /generate, want 1", n)
	}
}

// TestRetriedPostKeepsItsKey: when the answer to POST /generate is lost
// (the server committed, the page saw a network error), the page's retry
// carries the same Idempotency-Key, and only one task exists.
func TestRetriedPostKeepsItsKey(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	api := srv.client(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	p.chooseOption(modelSelect, "FLUX")
	p.typeInto(promptField, "an answer lost on the way")
	eval[bool](p, `(() => {
		window.__keys = [];
		const f = window.fetch;
		window.fetch = async (u, o) => {
			if (!String(u).includes("/generate")) return f(u, o);
			window.__keys.push((o && o.headers && o.headers["Idempotency-Key"]) || "");
			const r = await f(u, o);
			if (window.__keys.length === 1) throw new TypeError("Failed to fetch"); // the answer is lost
			return r;
		};
		return true;
	})()`)
	p.click(generateBtn)
	p.waitFor("the task in the Queue", `document.querySelectorAll('[role="region"][aria-label="Queue"] li[data-task-id]').length === 1`, 10*time.Second)
	keys := eval[[]string](p, `window.__keys`)
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Fatalf("POST /generate keys %q, want the same key twice", keys)
	}
	if n := len(api.listTasks("")); n != 1 {
		t.Fatalf("%d tasks after a retried POST, want 1", n)
	}
}

// startGooni runs the built binary with args, its own data directory and
// address, and waits for /health; it is stopped (SIGTERM) when the test ends.
func startGooni(t *testing.T, dataDir, addr string, args ...string) *testutil.Process {
	t.Helper()
	needBrowser(t)
	g := testutil.NewProcess(t, strings.TrimSpace("gooni "+strings.Join(args, " ")), gooniBin, args,
		[]string{"GG_DATA_DIR=" + dataDir, "GG_ADDR=" + addr, "GG_ADMIN_KEY=" + adminKey})
	startHealthy(t, g, "http://"+addr)
	t.Cleanup(func() { g.Stop(10 * time.Second) }) // runs before the kill NewProcess registered
	return g
}

// startHealthy starts g and waits until base/health answers 200.
func startHealthy(t *testing.T, g *testutil.Process, base string) {
	t.Helper()
	g.Start()
	if err := g.WaitHTTP(base+"/health", 20*time.Second, func(code int) bool { return code == http.StatusOK }); err != nil {
		t.Fatal(err)
	}
}

// serverWithSim runs Gooni without the demo and one `gooni workspace-sim`
// with simFlags, registered and health-checked through the admin API, so a
// test controls how long tasks take and how they end.
func serverWithSim(t *testing.T, simFlags ...string) *server {
	t.Helper()
	simAddr := testutil.FreeAddr(t)
	startGooni(t, t.TempDir(), simAddr, append([]string{"workspace-sim", "--addr", simAddr}, simFlags...)...)
	dir := t.TempDir()
	addr := testutil.FreeAddr(t)
	g := startGooni(t, dir, addr)
	srv := &server{URL: "http://" + addr, DataDir: dir, proc: g}
	jar, _ := cookiejar.New(nil)
	admin := &apiClient{t: t, base: srv.URL, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	if code, body := admin.do("POST", "/admin/session", nil, map[string]string{"X-Admin-Key": adminKey}); code != 200 {
		t.Fatalf("admin session: %d %s", code, body)
	}
	code, body := admin.do("POST", "/admin/accounts", map[string]any{"name": "sim", "workspace": "sim",
		"base_url": "http://" + simAddr, "credentials": map[string]string{}, "capacity": 2}, nil)
	if code != 201 {
		t.Fatalf("add account: %d %s", code, body)
	}
	var acc struct{ ID int64 }
	json.Unmarshal(body, &acc)
	if code, body := admin.do("POST", fmt.Sprintf("/admin/accounts/%d/health-check", acc.ID), nil, nil); code != 200 || !strings.Contains(string(body), `"ready"`) {
		t.Fatalf("health check: %d %s", code, body)
	}
	return srv
}

// TestConnectionLostNotice: while the server restarts, the Generate page
// says the connection is lost, and stops saying it once it is back.
func TestConnectionLostNotice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := testutil.FreeAddr(t)
	g := startGooni(t, dir, addr, "--demo")
	srv := &server{URL: "http://" + addr, DataDir: dir, proc: g}
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	lost := `[...document.querySelectorAll('[role="status"]')].some((e) => /connection lost/i.test(e.textContent))`
	if eval[bool](p, lost) {
		t.Fatal("the connection-lost notice shows while connected")
	}
	if err := g.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the connection-lost notice", lost, 15*time.Second)
	p.screenshot("connection-lost")
	startHealthy(t, g, srv.URL)
	p.waitFor("the notice gone after the restart", `!`+lost, 20*time.Second)
	// and the page works again: a task runs to its result
	p.chooseOption(modelSelect, "FLUX")
	p.typeInto(promptField, "after the restart")
	p.click(generateBtn)
	p.waitFor("the result after the restart", resultImage, 30*time.Second)
}

// TestRetryFailedTask: a failed task shows its message and a Retry button
// in the Queue; Retry sends the same settings again as a new task.
func TestRetryFailedTask(t *testing.T) {
	t.Parallel()
	srv := serverWithSim(t, "--fault", "error", "--duration", "1s")

	api := srv.client(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	p.chooseOption(modelSelect, "Pony")
	p.typeInto(promptField, "a lighthouse that fails")
	p.typeInto(widthField, "768")
	p.click(generateBtn)
	p.waitFor("the failed task with its message and Retry", `(() => {
		const li = document.querySelector('[role="region"][aria-label="Queue"] li[data-status="failed"]');
		return li && /model crashed/.test(li.innerText) && [...li.querySelectorAll("button")].some((b) => b.textContent.trim() === "Retry");
	})()`, 20*time.Second)
	p.screenshot("queue-failed")
	first := api.listTasks("")
	if len(first) != 1 || first[0].Status != "failed" {
		t.Fatalf("tasks before Retry: %+v", first)
	}
	p.click(`//li[@data-status="failed"]//button[normalize-space()="Retry"]`)
	p.waitFor("a second task in the Queue", `document.querySelectorAll('[role="region"][aria-label="Queue"] li[data-task-id]').length === 2`, 10*time.Second)
	all := api.listTasks("")
	if len(all) != 2 {
		t.Fatalf("%d tasks after Retry, want 2", len(all))
	}
	again, orig := all[0], all[1]
	if again.Prompt != orig.Prompt || fmt.Sprint(again.Params) != fmt.Sprint(orig.Params) {
		t.Errorf("Retry sent other settings:\n%+v\n%+v", again, orig)
	}
	if again.Params["width"] != float64(768) {
		t.Errorf("Retry lost the width: %v", again.Params)
	}
}

// TestRetryImageToVideo: Retry of a failed i2v task fetches its input image
// again through GET /inputs/{id} and sends it with the same settings.
func TestRetryImageToVideo(t *testing.T) {
	t.Parallel()
	srv := serverWithSim(t, "--fault", "error", "--duration", "1s")

	api := srv.client(t)
	img := "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
	code, body := api.do("POST", "/generate", map[string]any{"model": "anisora", "mode": "i2v", "prompt": "a waving flag", "image": img}, nil)
	if code != 202 {
		t.Fatalf("i2v: %d %s", code, body)
	}
	var a struct {
		TaskID string `json:"task_id"`
	}
	json.Unmarshal(body, &a)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	// the task joins this browser's queue, as one made here would
	eval[bool](p, fmt.Sprintf(`(localStorage.setItem("gooni.tasks.v1", JSON.stringify([%q])), true)`, a.TaskID))
	p.open("/")
	p.waitFor("the failed i2v task with Retry", `(() => {
		const li = document.querySelector('[role="region"][aria-label="Queue"] li[data-status="failed"]');
		return li && [...li.querySelectorAll("button")].some((b) => b.textContent.trim() === "Retry");
	})()`, 20*time.Second)
	eval[bool](p, `(() => { window.__inputs = 0; const f = window.fetch; window.fetch = (u, o) => { if (String(u).includes("/inputs/")) window.__inputs++; return f(u, o); }; return true; })()`)
	p.click(`//li[@data-status="failed"]//button[normalize-space()="Retry"]`)
	p.waitFor("the retried task", `document.querySelectorAll('[role="region"][aria-label="Queue"] li[data-task-id]').length === 2`, 10*time.Second)
	if n := eval[int](p, `window.__inputs`); n != 1 {
		t.Errorf("Retry fetched /inputs %d times, want 1", n)
	}
	all := api.listTasks("")
	if len(all) != 2 || all[0].Prompt != "a waving flag" {
		t.Fatalf("after Retry: %+v", all)
	}
	c2, in2 := api.do("GET", "/inputs/"+all[0].TaskID, nil, nil)
	c1, in1 := api.do("GET", "/inputs/"+a.TaskID, nil, nil)
	if c1 != 200 || c2 != 200 || string(in1) != string(in2) {
		t.Errorf("the retried task's input image differs: %d %d (%d vs %d bytes)", c1, c2, len(in1), len(in2))
	}
}

// TestPhoneTaskFlow: at 390x844 the finished result and its Download link
// come into view by themselves, and no keyboard hint is shown on a touch screen.
func TestPhoneTaskFlow(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := openBrowser(t, srv, phone)
	p.open("/")
	p.waitForm()
	if d := eval[string](p, `getComputedStyle(document.querySelector(".kbd-hint")).display`); d != "none" {
		t.Errorf("the Ctrl+Enter hint shows on a phone (display %s)", d)
	}
	p.chooseOption(modelSelect, "FLUX")
	p.typeInto(promptField, "a phone-sized harbour")
	p.typeInto(widthField, "512")
	p.typeInto(`input[aria-label="Height"]`, "512")
	p.click(generateBtn)
	p.waitFor("the result on a phone", resultImage, 30*time.Second)
	// the person scrolled back up to the form meanwhile? Then finishing must
	// still bring the result in: check the final position, not the start.
	p.waitFor("the result and its Download link in view", `(() => {
		const a = [...document.querySelectorAll("a")].find((a) => a.textContent.trim() === "Download");
		if (!a) return false;
		const r = a.getBoundingClientRect();
		const img = document.querySelector("main .media-frame img").getBoundingClientRect();
		return r.top >= 0 && r.bottom <= innerHeight && img.bottom > 0 && img.top < innerHeight;
	})()`, 5*time.Second)
	p.noHorizontalScroll("Generate result on a phone")
	p.screenshot("phone-result")
}

// TestPhoneScrollsWhenDone: on a phone, a result finishing while the person
// is back at the top of the form is scrolled into view with its Download link.
func TestPhoneScrollsWhenDone(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	// fill both demo slots so our task waits long enough to scroll away
	busy := srv.client(t)
	busy.generate("flux", "t2i", "filler one", nil)
	busy.generate("flux", "t2i", "filler two", nil)
	p := openBrowser(t, srv, phone)
	p.open("/")
	p.waitForm()
	p.chooseOption(modelSelect, "FLUX")
	p.typeInto(promptField, "a late harbour")
	p.click(generateBtn)
	p.waitFor("the task in the Queue", `document.querySelectorAll('[role="region"][aria-label="Queue"] li[data-task-id]').length === 1`, 10*time.Second)
	eval[bool](p, `(window.scrollTo(0, 0), true)`)
	p.waitFor("the result scrolled into view with its Download link", `(() => {
		const a = [...document.querySelectorAll("a")].find((a) => a.textContent.trim() === "Download");
		if (!a) return false;
		const r = a.getBoundingClientRect();
		return r.top >= 0 && r.bottom <= innerHeight && scrollY > 0;
	})()`, 30*time.Second)
	p.screenshot("phone-scrolled-when-done")
}
