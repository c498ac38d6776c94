package browser

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"gooni/internal/testutil"
)

// articleIDs lists the gallery cards' task ids in page order.
const articleIDs = `[...document.querySelectorAll("main article[data-task-id]")].map((a) => a.dataset.taskId)`

func (p *page) openGallery() {
	p.t.Helper()
	p.click(`//nav//a[normalize-space()="Gallery"]`)
	p.waitFor("the Gallery page", `location.hash === "#/gallery" && document.querySelector("main h1") && document.querySelector("main h1").textContent.trim() === "Gallery"`, 5*time.Second)
}

// seedGallery makes done tasks through the API, oldest first.
func seedGallery(t *testing.T, srv *server) (ids []string, c *apiClient) {
	t.Helper()
	c = srv.client(t)
	ids = []string{
		c.generate("flux", "t2i", "a red fox in snow", map[string]any{"width": 512, "height": 512}),
		c.generate("pony", "t2i", "a blue mountain lake", map[string]any{"width": 768, "height": 512, "steps": 20}),
		c.generate("flux", "t2i", "a green hill at noon", map[string]any{"width": 640, "height": 448}),
		c.generate("phr00t", "t2v", "a paper boat drifting", map[string]any{"width": 640, "height": 368}),
	}
	c.waitDone(ids...)
	return ids, c
}

func TestGalleryDeleteAndReuse(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ids, c := seedGallery(t, srv)
	fox, lake, boat := ids[0], ids[1], ids[3]

	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	p.openGallery()
	p.waitFor("4 gallery cards with loaded previews", `document.querySelectorAll("main article[data-task-id]").length === 4 &&
		[...document.querySelectorAll("main article img")].every((i) => i.complete && i.naturalWidth > 0)`, 10*time.Second)

	got := eval[[]string](p, articleIDs)
	want := slices.Clone(ids)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Errorf("cards in order %v, want newest first %v", got, want)
	}
	var api []string
	for _, it := range c.gallery() {
		api = append(api, it.TaskID)
	}
	if !slices.Equal(got, api) {
		t.Errorf("cards %v, GET /gallery %v", got, api)
	}
	card := eval[map[string]string](p, fmt.Sprintf(`(() => {
		const a = document.querySelector('article[data-task-id=%q]');
		return {text: a.innerText, time: a.querySelector("time") ? a.querySelector("time").getAttribute("datetime") : ""};
	})()`, lake))
	for _, s := range []string{"a blue mountain lake", "Pony Diffusion", "768×512"} {
		if !strings.Contains(card["text"], s) {
			t.Errorf("the lake card says %q, want it to mention %q", card["text"], s)
		}
	}
	if card["time"] == "" {
		t.Error("the card has no <time datetime>")
	}

	// a video card shows its poster and plays on hover
	p.do("hover the video card", chromedp.ScrollIntoView(chromedp.CSS(fmt.Sprintf(`article[data-task-id=%q] .thumb`, boat))))
	box := eval[map[string]float64](p, fmt.Sprintf(`(() => { const r = document.querySelector('article[data-task-id=%q] .thumb').getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()`, boat))
	p.do("hover the video card", chromedp.MouseEvent(chromedp.MouseMoved, box["x"], box["y"]))
	p.waitFor("the hovered video card to play", fmt.Sprintf(`(() => { const v = document.querySelector('article[data-task-id=%q] video'); return v && v.currentTime > 0.1; })()`, boat), 10*time.Second)
	p.do("move away", chromedp.MouseEvent(chromedp.MouseMoved, 5, 5))
	p.do("top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	p.noHorizontalScroll("Gallery")
	p.screenshot("gallery")

	// Delete sits in a card's Actions menu and asks first; Cancel keeps the item
	if n := eval[int](p, `[...document.querySelectorAll("main article button")].filter((b) => b.textContent.trim() === "Delete").length`); n != 0 {
		t.Errorf("%d Delete buttons show on the cards; Delete belongs in each card's menu", n)
	}
	p.cardAction(fox, "Delete")
	p.waitFor("the confirmation dialog", `document.querySelector("dialog[open]")`, 3*time.Second)
	p.click(`//dialog[@open]//button[normalize-space()="Cancel"]`)
	p.waitFor("the dialog to close", `!document.querySelector("dialog[open]")`, 3*time.Second)
	if n := eval[int](p, `document.querySelectorAll("main article[data-task-id]").length`); n != 4 {
		t.Fatalf("Cancel left %d cards, want 4", n)
	}
	p.cardAction(fox, "Delete")
	p.waitFor("the confirmation dialog", `document.querySelector("dialog[open]")`, 3*time.Second)
	p.click(`//dialog[@open]//button[normalize-space()="Delete"]`)
	p.waitFor("the deleted card to go", fmt.Sprintf(`!document.querySelector('article[data-task-id=%q]') && !document.querySelector("dialog[open]")`, fox), 5*time.Second)

	// it stays gone after a reload, and the API agrees
	p.do("reload", chromedp.Reload())
	p.waitFor("3 gallery cards after reload", `document.querySelectorAll("main article[data-task-id]").length === 3`, 10*time.Second)
	if got := eval[[]string](p, articleIDs); slices.Contains(got, fox) {
		t.Errorf("the deleted task %s is back after reload: %v", fox, got)
	}
	var page struct {
		Items []taskView `json:"items"`
	}
	r := p.fetch("GET", "/gallery", nil, nil)
	json.Unmarshal(r.Body, &page)
	if r.Status != 200 || len(page.Items) != 3 {
		t.Errorf("GET /gallery after delete: %d with %d items, want 3", r.Status, len(page.Items))
	}
	for _, it := range page.Items {
		if it.TaskID == fox {
			t.Errorf("GET /gallery still lists the deleted task")
		}
	}
	if r := p.fetch("GET", "/status/"+fox, nil, nil); r.Status != 404 {
		t.Errorf("GET /status of the deleted task: %d, want 404", r.Status)
	}

	// the large view closes with Escape and gives focus back to its card
	thumb := fmt.Sprintf(`//article[@data-task-id=%q]//button[contains(@class, "thumb")]`, lake)
	p.click(thumb)
	p.waitFor("the large view", `document.querySelector("dialog[open]")`, 5*time.Second)
	p.do("press Escape", chromedp.KeyEvent(kb.Escape))
	p.waitFor("Escape to close the view and refocus its card", fmt.Sprintf(`!document.querySelector("dialog[open]") &&
		document.activeElement && document.activeElement.closest('article[data-task-id=%q]')`, lake), 3*time.Second)

	// open an item, then "Use these settings" fills the Generate form
	p.click(thumb)
	p.waitFor("the large view", `document.querySelector("dialog[open] img") && document.querySelector("dialog[open]").innerText.includes("a blue mountain lake")`, 5*time.Second)
	view := eval[string](p, `document.querySelector("dialog[open]").innerText`)
	for _, s := range []string{"Pony Diffusion", "Width", "768", "Steps", "20", "Created"} {
		if !strings.Contains(view, s) {
			t.Errorf("the large view does not show %q: %q", s, view)
		}
	}
	p.click(`//dialog[@open]//button[normalize-space()="Use these settings"]`)
	p.waitFor("the Generate form with the item's settings", `location.hash === "#/" && document.querySelector('select[aria-label="Model"]') &&
		document.querySelector('select[aria-label="Model"]').value === "pony"`, 5*time.Second)
	form := eval[map[string]string](p, `({
		prompt: document.querySelector('textarea[aria-label="Prompt"]').value,
		width: document.querySelector('input[aria-label="Width"]').value,
		height: document.querySelector('input[aria-label="Height"]').value,
		steps: document.querySelector('input[aria-label="Steps"]').value,
	})`)
	for k, v := range map[string]string{"prompt": "a blue mountain lake", "width": "768", "height": "512", "steps": "20"} {
		if form[k] != v {
			t.Errorf("after Use these settings %s = %q, want %q", k, form[k], v)
		}
	}
}

// sessionCookie reads the page's gg_session (HttpOnly, so through the protocol).
func (p *page) sessionCookie() *network.Cookie {
	p.t.Helper()
	res, err := chromedp.Call(p.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{p.srv.URL + "/"}})
	if err != nil {
		p.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == "gg_session" {
			return c
		}
	}
	return nil
}

func TestSessionRenewal(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := srv.client(t)
	id := c.generate("flux", "t2i", "a kept picture", map[string]any{"width": 256, "height": 256})
	c.waitDone(id)

	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	// the form needs only the catalog; the session request may still be in flight
	var first *network.Cookie
	testutil.WaitFor(t, 5*time.Second, "the UI to obtain gg_session after loading", func() bool {
		first = p.sessionCookie()
		return first != nil
	})
	if r := p.fetch("GET", "/auth/session", nil, nil); r.Status != 200 {
		t.Fatalf("GET /auth/session after load: %d", r.Status)
	}

	cases := []struct {
		name string
		// afterRevoke leaves the browser with no cookie or with the revoked one
		afterRevoke func()
		wantCode    string
	}{
		{"revoked and cleared", func() {}, "session_required"},
		{"revoked cookie kept", func() {
			// put the revoked cookie back, as a second tab would still send it
			if _, err := chromedp.Call(p.ctx, network.SetCookie, network.SetCookieParams{
				Name: "gg_session", Value: first.Value, URL: p.srv.URL + "/", HTTPOnly: new(true), SameSite: network.CookieSameSiteLax,
			}); err != nil {
				t.Fatal(err)
			}
		}, "session_expired"},
	}
	for _, tc := range cases {
		cur := p.sessionCookie()
		if cur == nil {
			t.Fatalf("%s: no session before revoking", tc.name)
		}
		first = cur
		if r := p.fetch("DELETE", "/auth/session", nil, nil); r.Status != 204 {
			t.Fatalf("%s: DELETE /auth/session: %d", tc.name, r.Status)
		}
		tc.afterRevoke()
		r := p.fetch("GET", "/status/"+id, nil, nil)
		var e struct{ Error struct{ Code string } }
		json.Unmarshal(r.Body, &e)
		if r.Status != 401 || e.Error.Code != tc.wantCode {
			t.Fatalf("%s: a user route answers %d %s, want 401 %s", tc.name, r.Status, r.Body, tc.wantCode)
		}

		// an action that needs auth still works: the UI renews and retries once
		p.click(`//nav//a[normalize-space()="Generate"]`)
		p.waitForm()
		p.openGallery()
		p.waitFor(tc.name+": the gallery card", fmt.Sprintf(`document.querySelector('article[data-task-id=%q]')`, id), 10*time.Second)
		if n := eval[int](p, `document.querySelectorAll('main [role="alert"]').length`); n != 0 {
			t.Errorf("%s: the gallery shows an error: %s", tc.name, eval[string](p, `document.querySelector('main [role="alert"]').innerText`))
		}
		renewed := p.sessionCookie()
		if renewed == nil || renewed.Value == first.Value {
			t.Errorf("%s: no new gg_session after the renewal", tc.name)
		}
		if r := p.fetch("GET", "/auth/session", nil, nil); r.Status != 200 {
			t.Errorf("%s: GET /auth/session after renewal: %d", tc.name, r.Status)
		}
	}
}
