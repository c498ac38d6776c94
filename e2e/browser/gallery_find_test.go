package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"gooni/internal/testutil"
	"gooni/store"
)

const (
	searchBox     = `main input[aria-label="Search prompts"]`
	filterModel   = `main .filters select[aria-label="Model"]`
	filterType    = `main .filters select[aria-label="Type"]`
	galleryCount  = `((document.querySelector("main .gallery-count") || {}).textContent || "")`
	viewOpen      = `document.querySelector("dialog[open] .view-grid")`
	viewTaskID    = `((document.querySelector("dialog[open] .view-grid") || {dataset: {}}).dataset.taskId || "")`
	openDialogTxt = `((document.querySelector("dialog[open]") || {}).innerText || "")`
)

// seedItem is one done task written straight into a running server's database.
type seedItem struct {
	prompt, model, typ, mode string
}

// seedItems writes done tasks oldest first, each with its own result and
// preview file (a real PNG), and returns their ids: faster than the demo
// workspace's 3 s a task, and free to choose prompts and models. The rows
// are inserted as done (store.SeedTasks), never pending, so the running
// server's dispatcher cannot take one of them meanwhile.
func seedItems(t *testing.T, srv *server, items []seedItem) []string {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(srv.DataDir, testutil.Schema(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pic := testutil.ReadRepoFile(t, "docs/screenshots/admin.png")
	start := time.Now().Add(-time.Duration(len(items)) * time.Second)
	ids := make([]string, len(items))
	for i := range items {
		ids[i] = store.IDAt(start.Add(time.Duration(i) * time.Second))
		for _, name := range []string{ids[i] + ".png", ids[i] + ".preview.png"} {
			if err := os.WriteFile(filepath.Join(srv.DataDir, "media", name), pic, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = db.SeedTasks(ctx, len(items), func(i int) store.Task {
		it := items[i]
		typ, mode := it.typ, it.mode
		if typ == "" {
			typ, mode = "image", "t2i"
		}
		c := start.Add(time.Duration(i) * time.Second)
		return store.Task{ID: ids[i], Type: typ, Model: it.model, Mode: mode, Prompt: it.prompt, Status: "done", Progress: 100,
			Params:    []byte(`{"width":1024,"height":768,"steps":28,"guidance":3.5,"seed":42}`),
			CreatedAt: c, StartedAt: c, CompletedAt: c.Add(time.Second),
			ResultPath: "media/" + ids[i] + ".png", ResultType: "image/png", PreviewPath: "media/" + ids[i] + ".preview.png", PreviewType: "image/png"}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// cardAction picks an entry of a card's Actions menu.
func (p *page) cardAction(id, action string) {
	p.t.Helper()
	p.click(fmt.Sprintf(`//article[@data-task-id=%q]//button[@aria-label="Actions"]`, id))
	p.waitFor("the card's menu", fmt.Sprintf(`document.querySelector('article[data-task-id=%q] [role="menu"]')`, id), 3*time.Second)
	p.click(fmt.Sprintf(`//article[@data-task-id=%q]//*[@role="menu"]//*[@role="menuitem"][normalize-space()=%q]`, id, action))
}

// waitCards waits until the gallery shows exactly ids, in this order.
func (p *page) waitCards(what string, ids []string) {
	p.t.Helper()
	want, _ := json.Marshal(ids)
	p.waitFor(what, fmt.Sprintf(`JSON.stringify(%s) === %q`, articleIDs, string(want)), 10*time.Second)
}

func newestFirst(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Reverse(out)
	return out
}

// TestGallerySearchFiltersAndLink: Search prompts (whole words, any case,
// accents ignored), Model and Type narrow the cards and say how many match;
// the filters are in the address, so a reload and a link opened in another
// browser show the same; Clear filters shows everything again.
func TestGallerySearchFiltersAndLink(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ids := seedItems(t, srv, []seedItem{
		{prompt: "a red fox in snow", model: "flux"},
		{prompt: "a blue mountain lake", model: "pony"},
		{prompt: "a green hill with a red barn", model: "flux"},
		{prompt: "Crème brûlée on a RED plate", model: "pony"},
		{prompt: "a redwood forest", model: "flux"},
	})
	fox, lake, barn, creme, redwood := ids[0], ids[1], ids[2], ids[3], ids[4]
	boat := srv.client(t).generate("phr00t", "t2v", "a paper boat on a red river", map[string]any{"width": 640, "height": 368})
	srv.client(t).waitDone(boat)

	p := openBrowser(t, srv, desktop)
	p.open("/#/gallery")
	p.waitCards("all six cards", newestFirst(fox, lake, barn, creme, redwood, boat))
	p.waitFor("the count of all items", galleryCount+` === "6 items"`, 5*time.Second)

	// a whole word, any case; "redwood" is another word
	p.typeInto(searchBox, "Red")
	p.waitCards("the cards whose prompt has the word red", newestFirst(fox, barn, creme, boat))
	p.waitFor("the count of matches", galleryCount+` === "4 matches"`, 5*time.Second)
	p.waitFor("q in the address", `location.hash === "#/gallery?q=Red"`, 5*time.Second)

	p.chooseOption(filterModel, "FLUX")
	p.waitCards("red and FLUX", newestFirst(fox, barn))
	p.waitFor("q and model in the address", `location.hash === "#/gallery?q=Red&model=flux"`, 5*time.Second)
	p.waitFor("the count of 2 matches", galleryCount+` === "2 matches"`, 5*time.Second)
	p.screenshot("gallery-filtered")

	// the same after a reload: fields and cards
	p.do("reload", chromedp.Reload())
	p.waitCards("red and FLUX after a reload", newestFirst(fox, barn))
	fields := eval[map[string]string](p, fmt.Sprintf(`({q: document.querySelector(%q).value, model: document.querySelector(%q).value, type: document.querySelector(%q).value})`, searchBox, filterModel, filterType))
	if fields["q"] != "Red" || fields["model"] != "flux" || fields["type"] != "" {
		t.Errorf("after a reload the filters read %v", fields)
	}
	shared := eval[string](p, `location.href`)

	// Type, and a filter that matches nothing
	p.chooseOption(filterType, "Video")
	p.waitFor("no card and the no-match count", `document.querySelectorAll("main article[data-task-id]").length === 0 && `+galleryCount+` === "No matches" && /No finished item matches/.test(document.querySelector("main").innerText)`, 10*time.Second)
	p.chooseOption(filterModel, "All models")
	p.waitCards("red videos", []string{boat})
	p.waitFor("type in the address", `location.hash === "#/gallery?q=Red&type=video"`, 5*time.Second)

	// accents and case do not matter
	p.chooseOption(filterType, "All types")
	p.typeInto(searchBox, "creme BRULEE")
	p.waitCards("the crème brûlée card", []string{creme})
	p.waitFor("1 match", galleryCount+` === "1 match"`, 5*time.Second)

	p.click(`//main//button[normalize-space()="Clear filters"]`)
	p.waitCards("all cards again", newestFirst(fox, lake, barn, creme, redwood, boat))
	p.waitFor("no filters in the address", `location.hash === "#/gallery" && document.querySelector(`+fmt.Sprintf("%q", searchBox)+`).value === ""`, 5*time.Second)

	// a link opened in another browser shows what the first one showed
	other := openBrowser(t, srv, desktop)
	other.do("open the shared link", chromedp.Navigate(shared))
	other.waitCards("the shared link's cards", newestFirst(fox, barn))
	if got := eval[string](other, fmt.Sprintf(`document.querySelector(%q).value + "|" + document.querySelector(%q).value`, searchBox, filterModel)); got != "Red|flux" {
		t.Errorf("the shared link's filters read %q", got)
	}
	// and what the API says for the same filters
	var page struct {
		Items []taskView `json:"items"`
		Total int        `json:"total"`
	}
	r := other.fetch("GET", "/gallery?q=Red&model=flux&total=1", nil, nil)
	json.Unmarshal(r.Body, &page)
	if r.Status != 200 || page.Total != 2 || len(page.Items) != 2 {
		t.Errorf("GET /gallery with the same filters: %d %s", r.Status, r.Body)
	}
}

// TestGalleryBrowse: the large view steps with Previous/Next and the arrow
// keys (loading the next page at the end of the first), has an address of
// its own that opens it directly, closes with Escape back to the list, and
// deletes from the view, moving on to the next item.
func TestGalleryBrowse(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	var items []seedItem
	for i := range 30 {
		items = append(items, seedItem{prompt: fmt.Sprintf("picture number %d", i), model: []string{"flux", "pony"}[i%2]})
	}
	ids := newestFirst(seedItems(t, srv, items)...) // as the gallery shows them
	p := openBrowser(t, srv, desktop)
	p.open("/#/gallery")
	p.waitFor("the first page", `document.querySelectorAll("main article[data-task-id]").length >= 24`, 10*time.Second)

	shows := func(what string, i int) {
		t.Helper()
		p.waitFor(what, fmt.Sprintf(`%s === %q && location.hash === "#/gallery/%s" && %s.includes("picture number %d")`, viewTaskID, ids[i], ids[i], openDialogTxt, 29-i), 10*time.Second)
	}
	p.click(fmt.Sprintf(`//article[@data-task-id=%q]//button[contains(@class, "thumb")]`, ids[1]))
	shows("the second item's view", 1)
	p.do("ArrowRight", chromedp.KeyEvent(kb.ArrowRight))
	shows("ArrowRight: the third item", 2)
	p.click(`//dialog[@open]//button[normalize-space()="Next"]`)
	shows("Next: the fourth item", 3)
	p.do("ArrowLeft", chromedp.KeyEvent(kb.ArrowLeft))
	shows("ArrowLeft: the third item", 2)
	p.click(`//dialog[@open]//button[normalize-space()="Previous"]`)
	p.click(`//dialog[@open]//button[normalize-space()="Previous"]`)
	shows("Previous twice: the first item", 0)
	if !eval[bool](p, `[...document.querySelectorAll("dialog[open] button")].find((b) => b.textContent.trim() === "Previous").disabled`) {
		t.Error("Previous is not disabled on the first item")
	}
	p.do("ArrowLeft on the first item", chromedp.KeyEvent(kb.ArrowLeft))
	shows("still the first item", 0)
	view := eval[string](p, openDialogTxt)
	for _, s := range []string{"Download", "Use these settings", "Delete", "Close"} {
		if !strings.Contains(view, s) && !eval[bool](p, fmt.Sprintf(`!!document.querySelector('dialog[open] [aria-label=%q]')`, s)) {
			t.Errorf("the large view has no %q", s)
		}
	}
	if href := eval[string](p, `document.querySelector('dialog[open] a[download]').getAttribute("href")`); href != "/results/"+ids[0]+"?download=1" {
		t.Errorf("Download links to %q", href)
	}
	p.screenshot("gallery-view")

	// Escape closes it, back to the list's address, the card focused
	p.do("Escape", chromedp.KeyEvent(kb.Escape))
	p.waitFor("the list again", fmt.Sprintf(`!document.querySelector("dialog[open]") && location.hash === "#/gallery" &&
		document.activeElement && document.activeElement.closest('article[data-task-id=%q]')`, ids[1]), 5*time.Second)

	// at the end of the first page, Next brings the next page in
	p.click(fmt.Sprintf(`//article[@data-task-id=%q]//button[contains(@class, "thumb")]`, ids[23]))
	shows("the last card of the first page", 23)
	p.do("ArrowRight past the first page", chromedp.KeyEvent(kb.ArrowRight))
	shows("the first item of the second page", 24)

	// Delete in the view asks, deletes, and shows the next item
	p.click(`//dialog[@open]//button[normalize-space()="Delete"]`)
	p.waitFor("the confirmation over the view", `document.querySelector("dialog[open].modal-small")`, 3*time.Second)
	p.click(`//dialog[@open][contains(@class, "modal-small")]//button[normalize-space()="Delete"]`)
	shows("the item after the deleted one", 25)
	if r := p.fetch("GET", "/status/"+ids[24], nil, nil); r.Status != 404 {
		t.Errorf("the deleted item still answers %d", r.Status)
	}
	p.waitFor("29 items", galleryCount+` === "29 items"`, 5*time.Second)

	// an item's own address opens it directly, in a fresh browser too:
	// one on the first page, and the oldest, which is not
	for _, c := range []struct {
		i  int
		vp viewport
	}{{5, phone}, {29, desktop}} {
		i := c.i
		q := openBrowser(t, srv, c.vp)
		q.open("/#/gallery/" + ids[i])
		q.waitFor(fmt.Sprintf("item %d opened by its address", i), fmt.Sprintf(`%s === %q && %s.includes("picture number %d") &&
			[...document.querySelectorAll("dialog[open] img")].some((im) => im.src.includes("/results/%s") && im.complete && im.naturalWidth > 0)`,
			viewTaskID, ids[i], openDialogTxt, 29-i, ids[i]), 10*time.Second)
		if c.vp.mobile {
			q.noHorizontalScroll("the large view on a phone")
			if over := eval[float64](q, `document.querySelector("dialog[open]").scrollWidth - document.querySelector("dialog[open]").clientWidth`); over > 0 {
				t.Errorf("the large view on a phone is %.0f px wider than itself", over)
			}
			q.screenshot("gallery-view")
		}
		q.click(`//dialog[@open]//button[@aria-label="Close"]`)
		q.waitFor("the list under it", `!document.querySelector("dialog[open]") && location.hash === "#/gallery" && document.querySelectorAll("main article[data-task-id]").length > 0`, 5*time.Second)
	}
	q := openBrowser(t, srv, desktop)
	q.open("/#/gallery/" + ids[24])
	q.waitFor("a deleted item's address says so", `/not in the gallery/.test(`+openDialogTxt+`)`, 10*time.Second)
}

// TestGalleryLiveArrival: a task that finishes while the gallery is open
// appears at the top, once, without moving what the person was looking at;
// one that does not match the search does not appear.
func TestGalleryLiveArrival(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	var items []seedItem
	for i := range 20 {
		items = append(items, seedItem{prompt: fmt.Sprintf("an old fox picture %d", i), model: "flux"})
	}
	seedItems(t, srv, items)
	c := srv.client(t)
	p := openBrowser(t, srv, desktop)
	p.countStreams()
	p.open("/#/gallery")
	p.waitFor("20 cards", `document.querySelectorAll("main article[data-task-id]").length === 20`, 10*time.Second)
	// scroll so that the 9th card is near the top of the window; it is then the first card in view
	eval[bool](p, `(() => { const a = document.querySelectorAll("main article[data-task-id]")[8]; window.scrollTo(0, a.getBoundingClientRect().top + window.scrollY - 10); return true; })()`)
	before := eval[map[string]any](p, `(() => { const a = [...document.querySelectorAll("main article[data-task-id]")].find((c) => c.getBoundingClientRect().bottom > 0);
		return {id: a.dataset.taskId, top: a.getBoundingClientRect().top, y: window.scrollY}; })()`)
	if before["y"].(float64) < 100 {
		t.Fatalf("the page did not scroll (scrollY %v): the test needs a scrolled gallery", before["y"])
	}

	id := c.generate("flux", "t2i", "a fox that just finished", map[string]any{"width": 512, "height": 512})
	p.waitFor("the finished task's card", fmt.Sprintf(`document.querySelector('article[data-task-id=%q]')`, id), 30*time.Second)
	got := eval[[]string](p, articleIDs)
	if len(got) != 21 || got[0] != id {
		t.Fatalf("after the arrival the cards are %d, first %v; want 21 with the new one first", len(got), got[:1])
	}
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g] {
			t.Errorf("card %s shows twice", g)
		}
		seen[g] = true
	}
	after := eval[map[string]any](p, fmt.Sprintf(`(() => { const a = document.querySelector('article[data-task-id=%q]'); return {top: a.getBoundingClientRect().top, y: window.scrollY}; })()`, before["id"]))
	if d := after["top"].(float64) - before["top"].(float64); d > 2 || d < -2 {
		t.Errorf("the card in view moved by %.0f px when the new one arrived (scroll %v -> %v)", d, before["y"], after["y"])
	}
	p.waitFor("21 items", galleryCount+` === "21 items"`, 5*time.Second)
	if n := eval[int](p, `window.__streams.opened`); n != 1 {
		t.Errorf("the gallery opened %d event streams, want the tab's one", n)
	}

	// with a search, only matching tasks arrive
	p.do("top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	p.typeInto(searchBox, "fox")
	p.waitFor("the fox cards", `location.hash === "#/gallery?q=fox" && `+galleryCount+` === "21 matches"`, 10*time.Second)
	lake := c.generate("flux", "t2i", "a lake that just finished", map[string]any{"width": 512, "height": 512})
	fox := c.generate("flux", "t2i", "a second fox, just finished", map[string]any{"width": 512, "height": 512})
	c.waitDone(lake, fox)
	p.waitFor("the matching arrival", fmt.Sprintf(`document.querySelector('article[data-task-id=%q]')`, fox), 15*time.Second)
	if eval[bool](p, fmt.Sprintf(`!!document.querySelector('article[data-task-id=%q]')`, lake)) {
		t.Error("a task that does not match the search arrived in the filtered gallery")
	}
	if got := eval[[]string](p, articleIDs); len(got) != 22 || got[0] != fox {
		t.Errorf("filtered cards after the arrivals: %d, first %v", len(got), got[:1])
	}
}

// writePNG writes a w x h PNG of varied pixels and returns its bytes.
func writePNG(t *testing.T, path string, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(i*7 + i/13)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestGalleryImageToVideoInput: the large view of an i2v item shows the
// image it was made from; Use these settings brings that image back to the
// Generate form with the rest, and Generate sends it again.
func TestGalleryImageToVideoInput(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	pic := writePNG(t, filepath.Join(t.TempDir(), "start.png"), 64, 48)
	c := srv.client(t)
	code, body := c.do("POST", "/generate", map[string]any{"model": "anisora", "mode": "i2v", "prompt": "the harbour comes alive",
		"params": map[string]any{"width": 832, "height": 480, "steps": 12}, "image": pic}, nil)
	if code != 202 {
		t.Fatalf("i2v: %d %s", code, body)
	}
	var a struct {
		TaskID string `json:"task_id"`
	}
	json.Unmarshal(body, &a)
	c.waitDone(a.TaskID)

	p := openBrowser(t, srv, desktop)
	p.open("/#/gallery/" + a.TaskID)
	p.waitFor("the input image beside the result", `(() => { const i = document.querySelector('dialog[open] img[alt="Input image"]');
		return i && i.complete && i.naturalWidth === 64 && i.naturalHeight === 48 && document.querySelector("dialog[open] video"); })()`, 10*time.Second)
	p.screenshot("gallery-view-i2v")
	p.click(`//dialog[@open]//button[normalize-space()="Use these settings"]`)
	p.waitFor("Generate with the task's settings and its image", `location.hash === "#/" &&
		document.querySelector('select[aria-label="Model"]').value === "anisora" &&
		document.querySelector('select[aria-label="Mode"]').value === "i2v" &&
		document.querySelector('textarea[aria-label="Prompt"]').value === "the harbour comes alive" &&
		(() => { const i = document.querySelector(".image-preview img"); return i && i.complete && i.naturalWidth === 64; })()`, 10*time.Second)
	if w := eval[string](p, `document.querySelector('input[aria-label="Width"]').value + "x" + document.querySelector('input[aria-label="Steps"]').value`); w != "832x12" {
		t.Errorf("width x steps on the form: %s", w)
	}
	if n := eval[int](p, `document.querySelector('input[aria-label="Image"]').files.length`); n != 1 {
		t.Errorf("the Image field holds %d files, want the restored one", n)
	}
	p.screenshot("generate-restored-i2v")
	p.click(generateBtn)
	p.waitFor("a second task", `(JSON.parse(localStorage.getItem("gooni.tasks.v1") || "[]")).length === 1`, 10*time.Second)
	again := eval[string](p, `JSON.parse(localStorage.getItem("gooni.tasks.v1"))[0]`)
	_, in1 := c.do("GET", "/inputs/"+a.TaskID, nil, nil)
	code2, in2 := c.do("GET", "/inputs/"+again, nil, nil)
	if code2 != 200 || !bytes.Equal(in1, in2) || !bytes.Equal(in1, pic) {
		t.Errorf("the new task's input (%d, %d bytes) is not the first task's (%d bytes)", code2, len(in2), len(in1))
	}
}

// TestGalleryMultiDelete: Select mode deletes several items with one
// confirmation and one request each; when one of them cannot be deleted
// (its file is a directory: the disk refuses) the others go, the page says
// which one failed, and it stays selected.
func TestGalleryMultiDelete(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ids := seedItems(t, srv, []seedItem{
		{prompt: "first to go", model: "flux"}, {prompt: "second to go", model: "flux"},
		{prompt: "a keeper", model: "pony"}, {prompt: "third to go", model: "flux"},
		{prompt: "the stubborn one", model: "pony"}, {prompt: "another keeper", model: "flux"},
	})
	first, second, keeper, third, stubborn, keeper2 := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]
	// the stubborn item's result path is a directory with a file in it: removing it fails
	res := filepath.Join(srv.DataDir, "media", stubborn+".png")
	if err := os.Remove(res); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(res, "held"), 0o700); err != nil {
		t.Fatal(err)
	}

	p := openBrowser(t, srv, desktop)
	p.open("/#/gallery")
	p.waitCards("six cards", newestFirst(ids...))
	eval[bool](p, `(() => { window.__deletes = 0; const f = window.fetch; window.fetch = (u, o) => { if (o && o.method === "DELETE") window.__deletes++; return f(u, o); }; return true; })()`)
	selectCard := func(id string) {
		p.click(fmt.Sprintf(`//article[@data-task-id=%q]//button[contains(@class, "thumb")]`, id))
		p.waitFor("the card selected", fmt.Sprintf(`document.querySelector('article[data-task-id=%q]').classList.contains("selected")`, id), 3*time.Second)
	}
	p.click(`//main//button[normalize-space()="Select"]`)
	p.waitFor("select mode", `document.querySelector("main .gallery-grid.selecting")`, 3*time.Second)
	for _, id := range []string{first, second, third} {
		selectCard(id)
	}
	if location := eval[string](p, `location.hash`); location != "#/gallery" {
		t.Errorf("a click in select mode opened %q", location)
	}
	p.click(`//main//button[normalize-space()="Delete selected"]`)
	p.waitFor("one confirmation for three", `document.querySelector("dialog[open]") && /Delete 3 items\?/.test(`+openDialogTxt+`)`, 3*time.Second)
	p.click(`//dialog[@open]//button[normalize-space()="Delete"]`)
	p.waitCards("the three gone", newestFirst(keeper, stubborn, keeper2))
	if n := eval[int](p, `window.__deletes`); n != 3 {
		t.Errorf("%d DELETE requests for 3 items", n)
	}
	p.waitFor("3 items left and select mode over", galleryCount+` === "3 items" && !document.querySelector("main .gallery-grid.selecting")`, 5*time.Second)
	for _, id := range []string{first, second, third} {
		if r := p.fetch("GET", "/status/"+id, nil, nil); r.Status != 404 {
			t.Errorf("deleted %s answers %d", id, r.Status)
		}
	}

	// a half-failed batch
	p.click(`//main//button[normalize-space()="Select"]`)
	selectCard(keeper2)
	selectCard(stubborn)
	p.click(`//main//button[normalize-space()="Delete selected"]`)
	p.waitFor("the confirmation", `/Delete 2 items\?/.test(`+openDialogTxt+`)`, 3*time.Second)
	p.click(`//dialog[@open]//button[normalize-space()="Delete"]`)
	p.waitFor("the failure named", fmt.Sprintf(`(() => { const a = document.querySelector('main [role="alert"]');
		return a && /Deleted 1 of 2 items/.test(a.innerText) && /the stubborn one/.test(a.innerText) && !/another keeper/.test(a.innerText) &&
			a.querySelector('li[data-task-id=%q]'); })()`, stubborn), 10*time.Second)
	p.waitCards("the stubborn one stays", newestFirst(keeper, stubborn))
	if !eval[bool](p, fmt.Sprintf(`document.querySelector('article[data-task-id=%q]').classList.contains("selected") && !!document.querySelector("main .gallery-grid.selecting")`, stubborn)) {
		t.Error("the item that failed is not still selected")
	}
	p.screenshot("gallery-delete-failed")
	if r := p.fetch("GET", "/status/"+stubborn, nil, nil); r.Status != 200 {
		t.Errorf("the stubborn item answers %d, want it kept", r.Status)
	}
	if r := p.fetch("GET", "/status/"+keeper2, nil, nil); r.Status != 404 {
		t.Errorf("the deletable item of the half-failed batch answers %d", r.Status)
	}
}
