package browser

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Issue 16: invite links, the sign-in screen, the base path behind a
// stripping proxy, and the Admin page's edit, deploy output and guide.

// adminAPI is a plain HTTP client of srv holding an admin session.
func adminAPI(t *testing.T, base string) *apiClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &apiClient{t: t, base: base, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	if code, body := c.do("POST", "/admin/session", nil, map[string]string{"X-Admin-Key": adminKey}); code != http.StatusOK {
		t.Fatalf("POST /admin/session: %d %s", code, body)
	}
	return c
}

type auditRow struct {
	Actor   string         `json:"actor"`
	Action  string         `json:"action"`
	Target  string         `json:"target"`
	Outcome string         `json:"outcome"`
	Details map[string]any `json:"details"`
}

// audit lists the audit rows of one action, newest first.
func (c *apiClient) audit(action string) []auditRow {
	c.t.Helper()
	code, body := c.do("GET", "/admin/logs?limit=500&action="+url.QueryEscape(action), nil, nil)
	var page struct {
		Items []auditRow `json:"items"`
	}
	if err := json.Unmarshal(body, &page); err != nil || code != http.StatusOK {
		c.t.Fatalf("GET /admin/logs: %d %s", code, body)
	}
	return page.Items
}

// suppressed reads gooni_audit_suppressed_total for an action from /metrics:
// repeated denials the one-row-a-minute rule counted instead of writing.
func (c *apiClient) suppressed(action string) int {
	c.t.Helper()
	code, body := c.do("GET", "/metrics", nil, nil)
	if code != http.StatusOK {
		c.t.Fatalf("GET /metrics: %d", code)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	prefix := `gooni_audit_suppressed_total{action="` + action + `"} `
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}

// heading is the page's main heading text.
const heading = `(document.querySelector("main h1") || {textContent: ""}).textContent.trim()`

// waitSignIn waits for the sign-in screen and checks what it must (and
// must not) offer: a heading "Sign in", how to get access, no key field.
func (p *page) waitSignIn(why string) string {
	p.t.Helper()
	p.waitFor(why+": the sign-in screen", heading+` === "Sign in"`, 10*time.Second)
	text := eval[string](p, `document.querySelector("main").innerText`)
	if !strings.Contains(text, "sign-in link") {
		p.t.Errorf("%s: the sign-in screen does not say how to get access: %q", why, text)
	}
	if n := eval[int](p, `document.querySelectorAll("main input, main textarea, main select").length`); n != 0 {
		p.t.Errorf("%s: the sign-in screen has %d input fields (never an API-key field)", why, n)
	}
	if eval[bool](p, `!!document.querySelector('select[aria-label="Model"]')`) {
		p.t.Errorf("%s: the Generate form shows without a session", why)
	}
	return text
}

// navigate loads an absolute URL in the tab.
func (p *page) navigate(u string) {
	p.t.Helper()
	p.do("navigate "+u, chromedp.Navigate(u))
}

// generateImage makes one FLUX image through the Generate form and waits for it.
func (p *page) generateImage(prompt string) {
	p.t.Helper()
	p.waitForm()
	p.chooseOption(modelSelect, "FLUX")
	p.typeInto(promptField, prompt)
	p.typeInto(widthField, "512")
	p.typeInto(`input[aria-label="Height"]`, "512")
	p.click(generateBtn)
	p.waitFor("the result image", resultImage, 30*time.Second)
}

// createInvite fills the Invites panel and returns the link it shows once.
func (p *page) createInvite(label string, uses int) string {
	p.t.Helper()
	p.typeInto(`#invite-label`, label)
	p.typeInto(`#invite-uses`, strconv.Itoa(uses))
	p.click(`//button[normalize-space()="Create invite"]`)
	p.waitFor("the new invite link", `document.querySelector('input[aria-label="Invite link"]') && document.querySelector('input[aria-label="Invite link"]').value !== ""`, 5*time.Second)
	return eval[string](p, `document.querySelector('input[aria-label="Invite link"]').value`)
}

// TestInviteFlow: in invite mode a visitor sees the sign-in screen; the
// admin creates a link and copies it; a fresh browser opens it and
// generates; a used-up and a revoked link land on the sign-in screen with
// the reason; every step is in the audit log.
func TestInviteFlow(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "GG_SESSION_MODE=invite")

	admin := openBrowser(t, srv, desktop)
	admin.open("/")
	admin.waitSignIn("a visitor without a link")
	admin.screenshot("signin-invite-mode")

	admin.signIn()
	admin.waitFor("the Invites panel", `document.querySelector('section[aria-labelledby="invites-title"]')`, 5*time.Second)
	for _, name := range []string{"Label", "Uses", "Expires in"} {
		if !eval[bool](admin, fmt.Sprintf(`[...document.querySelectorAll('section[aria-labelledby="invites-title"] label')].some((l) => l.textContent.trim() === %q && document.getElementById(l.htmlFor))`, name)) {
			t.Errorf("the Invites panel has no %q field", name)
		}
	}
	link := admin.createInvite("Bea's laptop", 1)
	if !strings.HasPrefix(link, srv.URL+"/auth/invite/") {
		t.Fatalf("invite link %q", link)
	}
	admin.click(`//button[normalize-space()="Copy link"]`)
	admin.waitFor("the copy outcome", `document.querySelector('.invite-made [role="status"]').textContent.trim() !== ""`, 5*time.Second)
	admin.waitFor("the invite in the list", `[...document.querySelectorAll(".invite-list li")].some((li) => li.textContent.includes("Bea's laptop") && li.textContent.includes("active"))`, 5*time.Second)
	admin.screenshot("invites-created")
	admin.click(`//button[normalize-space()="Done"]`)
	if eval[bool](admin, `!!document.querySelector('input[aria-label="Invite link"]')`) {
		t.Error("the link is still shown after Done")
	}
	admin.do("reload", chromedp.Reload())
	admin.waitFor("the Invites list after reload", `document.querySelectorAll(".invite-list li").length === 1`, 10*time.Second)
	if strings.Contains(eval[string](admin, `document.body.innerText`), link) {
		t.Error("the link shows again after a reload: it must be shown only once")
	}

	// A fresh browser opens the link and generates.
	guest := openBrowser(t, srv, desktop)
	guest.navigate(link)
	guest.waitForm()
	if u := eval[string](guest, `location.href`); u != srv.URL+"/" {
		t.Errorf("after the link the address is %q, want the UI's root", u)
	}
	guest.generateImage("a lighthouse seen by an invited guest")
	guest.screenshot("invite-guest-generated")

	// The one use is spent: the next browser lands on the sign-in screen with the reason.
	late := openBrowser(t, srv, desktop)
	late.navigate(link)
	text := late.waitSignIn("a used-up link")
	if !strings.Contains(text, "used as many times as it allows") {
		t.Errorf("the used-up link's reason is missing: %q", text)
	}
	if q := eval[string](late, `location.search`); q != "" {
		t.Errorf("the reason stays in the address (%q): a reload would repeat it", q)
	}
	late.screenshot("invite-used-up")

	// Revoke a fresh link from the panel; it stops working at once.
	link2 := admin.createInvite("team", 5)
	admin.click(`//button[normalize-space()="Done"]`)
	admin.waitFor("the second invite", `document.querySelectorAll(".invite-list li").length === 2`, 5*time.Second)
	admin.click(`//li[contains(., "team")]//button[normalize-space()="Revoke"]`)
	admin.waitFor("the revoke confirmation", `document.querySelector("dialog[open]")`, 5*time.Second)
	admin.click(`//dialog//button[normalize-space()="Revoke"]`)
	admin.waitFor("the revoked state", `[...document.querySelectorAll(".invite-list li")].some((li) => li.textContent.includes("team") && li.textContent.includes("revoked"))`, 5*time.Second)
	admin.screenshot("invites-revoked")
	third := openBrowser(t, srv, desktop)
	third.navigate(link2)
	if text := third.waitSignIn("a revoked link"); !strings.Contains(text, "revoked by an admin") {
		t.Errorf("the revoked link's reason is missing: %q", text)
	}

	// The audit log has each step.
	api := adminAPI(t, srv.URL)
	if n := len(api.audit("invite.create")); n != 2 {
		t.Errorf("%d invite.create rows, want 2", n)
	}
	if rows := api.audit("invite.revoke"); len(rows) != 1 || rows[0].Outcome != "success" {
		t.Errorf("invite.revoke rows %+v", rows)
	}
	var used, denied []auditRow
	for _, r := range api.audit("invite.use") {
		if r.Outcome == "success" {
			used = append(used, r)
		} else {
			denied = append(denied, r)
		}
	}
	if len(used) != 1 || !strings.HasPrefix(used[0].Actor, "user:") {
		t.Errorf("invite.use success rows %+v, want one by the new session", used)
	}
	// Both refusals came from this machine within a minute: the first is a
	// row, the second is counted (CONTRACT section 19).
	if len(denied) != 1 || denied[0].Details["reason"] != "used_up" || api.suppressed("invite.use") < 1 {
		t.Errorf("invite.use denied rows %+v and %d counted, want the used_up row and the revoked one counted", denied, api.suppressed("invite.use"))
	}
	if n := len(api.audit("session.issue")); n != 0 {
		// the visitors' pages learn the mode from GET /auth/session and never POST
		t.Errorf("%d session.issue rows from page loads in invite mode", n)
	}
}

// TestKeyModeShowsSignIn: in key mode the UI shows the sign-in screen on
// every user page, not a dead "sign in first" banner, and asks for no key.
func TestKeyModeShowsSignIn(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "GG_SESSION_MODE=key")
	p := openBrowser(t, srv, desktop)
	p.open("/")
	text := p.waitSignIn("key mode")
	if strings.Contains(strings.ToLower(text), "sign in first") || eval[int](p, `document.querySelectorAll('main [role="alert"]').length`) != 0 {
		t.Errorf("key mode shows an error banner: %q", text)
	}
	if eval[string](p, `document.title`) != "Sign in · Gooni" {
		t.Errorf("title %q", eval[string](p, `document.title`))
	}
	p.screenshot("signin-key-mode")
	p.click(`//nav//a[normalize-space()="Gallery"]`)
	p.waitSignIn("key mode, Gallery")
	p.do("reload", chromedp.Reload())
	p.waitSignIn("key mode after a reload")
	// The Admin page still works: that is where an admin makes links.
	p.signIn()
	api := adminAPI(t, srv.URL)
	if rows := api.audit("session.issue"); len(rows) != 0 {
		t.Errorf("page loads in key mode wrote %d session.issue rows: %+v", len(rows), rows)
	}
}

// TestPageLoadReusesSession: a page load with a live cookie asks GET
// /auth/session and writes no audit row; only the first load makes one.
func TestPageLoadReusesSession(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	p.waitFor("the session", `fetch("auth/session").then((r) => r.ok)`, 5*time.Second)
	p.openGallery()
	for range 3 {
		p.do("reload", chromedp.Reload())
		// the gallery asks a user route, so the page needs its session
		p.waitFor("the gallery answer", `document.querySelector("main .empty, main article")`, 10*time.Second)
	}
	api := adminAPI(t, srv.URL)
	if rows := api.audit("session.issue"); len(rows) != 1 {
		t.Errorf("%d session.issue rows after 4 page loads, want 1", len(rows))
	}
}

// strippingProxy is the reverse proxy of docs/OPERATIONS.md reduced to its
// core: it serves the UI under /gooni/, forwards /gooni/x as /x with the
// Host the browser used, and refuses everything outside the prefix.
type strippingProxy struct {
	mu      sync.Mutex
	forward []string // paths forwarded (after stripping)
	outside []string // paths asked outside /gooni/
}

func startStrippingProxy(t *testing.T, ln net.Listener, upstream string) *strippingProxy {
	t.Helper()
	target, _ := url.Parse(upstream)
	sp := &strippingProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/gooni")
			pr.Out.URL.RawPath = ""
			pr.Out.Host = pr.In.Host // nginx: proxy_set_header Host $http_host
			pr.SetXForwarded()
		},
		FlushInterval: -1, // event streams pass at once
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sp.mu.Lock()
		switch {
		case r.URL.Path == "/gooni":
			sp.mu.Unlock()
			http.Redirect(w, r, "/gooni/", http.StatusMovedPermanently)
			return
		case !strings.HasPrefix(r.URL.Path, "/gooni/"):
			sp.outside = append(sp.outside, r.URL.Path)
			sp.mu.Unlock()
			http.NotFound(w, r)
			return
		}
		sp.forward = append(sp.forward, strings.TrimPrefix(r.URL.Path, "/gooni"))
		sp.mu.Unlock()
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return sp
}

func (sp *strippingProxy) seen() (forward, outside []string) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return append([]string(nil), sp.forward...), append([]string(nil), sp.outside...)
}

// TestBasePathWalk: with GG_PUBLIC_URL=http://gooni.localhost:PORT/gooni and a
// proxy that strips /gooni, the UI loads and works entirely under the
// prefix: generate (with its event stream), result, download, gallery,
// admin, the guides, and an invite link.
func TestBasePathWalk(t *testing.T) {
	t.Parallel()
	needBrowser(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	// Chromium sends *.localhost to loopback (and trusts it as it trusts
	// localhost); for the server it is a public host name like any other.
	public := "http://gooni.localhost:" + port + "/gooni"
	srv := startServer(t, "GG_PUBLIC_URL="+public)
	proxy := startStrippingProxy(t, ln, srv.URL)

	p := openBrowser(t, srv, desktop)
	p.navigate(public) // no trailing slash: the proxy redirects, as nginx does
	p.waitForm()
	if u := eval[string](p, `location.href`); u != public+"/" {
		t.Errorf("the UI is at %q", u)
	}
	p.generateImage("a harbour under a path prefix")
	src := eval[string](p, `[...document.querySelectorAll("main img")].find((i) => i.src.includes("/results/")).src`)
	if !strings.HasPrefix(src, public+"/results/") {
		t.Errorf("result image src %q lacks the base path", src)
	}
	href := eval[string](p, `document.evaluate('//a[normalize-space()="Download"]', document, null, 9, null).singleNodeValue.href`)
	if !strings.HasPrefix(href, public+"/results/") || !strings.HasSuffix(href, "?download=1") {
		t.Errorf("Download link %q", href)
	}
	dl := eval[map[string]any](p, fmt.Sprintf(`fetch(%q).then(async (r) => ({status: r.status, cd: r.headers.get("Content-Disposition") || "", size: (await r.arrayBuffer()).byteLength}))`, href))
	if dl["status"] != float64(200) || !strings.HasPrefix(fmt.Sprint(dl["cd"]), "attachment") || dl["size"] == float64(0) {
		t.Errorf("download through the proxy: %v", dl)
	}
	p.screenshot("basepath-generate")

	p.openGallery()
	p.waitFor("the gallery card with its preview", `[...document.querySelectorAll("main article img")].some((i) => i.complete && i.naturalWidth > 0)`, 10*time.Second)
	if pv := eval[string](p, `document.querySelector("main article img").src`); !strings.HasPrefix(pv, public+"/preview/") {
		t.Errorf("gallery preview %q lacks the base path", pv)
	}
	p.screenshot("basepath-gallery")

	// The session cookie is scoped to the prefix.
	res, err := chromedp.Call(p.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{public + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	var cookiePath string
	for _, c := range res.Cookies {
		if c.Name == "gg_session" {
			cookiePath = c.Path
		}
	}
	if cookiePath != "/gooni/" {
		t.Errorf("gg_session path %q, want /gooni/", cookiePath)
	}

	// Admin under the prefix: sign in, the guides, an invite link.
	p.signIn()
	for _, doc := range []string{"modal/README.md", "docs/WORKSPACES.md"} {
		u := eval[string](p, fmt.Sprintf(`document.evaluate('//a[normalize-space()=%q]', document, null, 9, null).singleNodeValue.href`, doc))
		got := eval[map[string]any](p, fmt.Sprintf(`fetch(%q).then(async (r) => ({status: r.status, type: r.headers.get("Content-Type"), text: (await r.text()).slice(0, 40)}))`, u))
		if !strings.HasPrefix(u, public+"/docs/") || got["status"] != float64(200) || !strings.HasPrefix(fmt.Sprint(got["text"]), "#") {
			t.Errorf("guide %s at %q: %v", doc, u, got)
		}
	}
	link := p.createInvite("under the prefix", 1)
	if !strings.HasPrefix(link, public+"/auth/invite/") {
		t.Errorf("invite link %q lacks the public URL", link)
	}
	guest := openBrowser(t, srv, desktop)
	guest.navigate(link)
	guest.waitForm()
	if u := eval[string](guest, `location.href`); u != public+"/" {
		t.Errorf("after the invite link the guest is at %q, want %s/", u, public)
	}

	forward, outside := proxy.seen()
	var sawEvents bool
	for _, f := range forward {
		sawEvents = sawEvents || f == "/events" || strings.HasPrefix(f, "/events/")
	}
	if !sawEvents {
		t.Errorf("no event stream went through the prefix; forwarded: %v", forward)
	}
	if len(outside) > 0 {
		t.Errorf("the UI asked for paths outside /gooni/: %v", outside)
	}
}

// deployCommand prints what a deploy sees (credentials included, which the
// server must redact) and fails.
const deployCommand = `echo "deploying $GG_WORKSPACE"; echo "token ${MODAL_TOKEN_ID:+present} secret $MODAL_TOKEN_SECRET"; echo "Error: no such Modal workspace" >&2; exit 3`

// TestAdminEditDeployGuide: the guide with its links; adding an account
// shows the base URL Gooni will use; Deploy only where it can work, with a
// confirmation, its output (redacted) in a panel with status and time;
// Edit keeps blank credentials; a failed health check is worded once with
// its likely fix; and the audit log reads on a phone.
func TestAdminEditDeployGuide(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "GG_DEPLOY_COMMAND="+deployCommand)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	p.signIn()

	// The guide.
	guide := eval[string](p, `document.querySelector('section[aria-labelledby="guide-title"]').textContent`)
	for _, s := range []string{"What is a workspace?", "Proxy key and proxy secret", "Token ID and token secret", "modal/README.md", "docs/WORKSPACES.md"} {
		if !strings.Contains(guide, s) {
			t.Errorf("the guide lacks %q", s)
		}
	}

	// Deploy is offered only where it can work: the demo has no credentials.
	demo := demoAccountID(t, p)
	if !eval[bool](p, fmt.Sprintf(`document.evaluate('//tr[@data-account-id="%d"]//button[normalize-space()="Deploy"]', document, null, 9, null).singleNodeValue.disabled`, demo)) {
		t.Error("Deploy is enabled for an account without credentials")
	}
	if row := eval[string](p, fmt.Sprintf(`document.querySelector('tr[data-account-id="%d"]').innerText`, demo)); !strings.Contains(row, "Needs credentials") {
		t.Errorf("the demo row does not say why Deploy is off: %q", row)
	}

	// Add an account: the message names the derived base URL.
	const secret = "ts-very-secret-0123456789"
	p.typeInto(`#acc-name`, "Studio GPU")
	p.typeInto(`#acc-workspace`, "studio-gpu")
	p.typeInto(`#acc-token_id`, "tid-0123456789")
	p.typeInto(`#acc-token_secret`, secret)
	p.click(`//button[normalize-space()="Add account"]`)
	p.waitFor("the added account", `document.querySelector(".note-ok") && document.querySelector(".note-ok").textContent.includes("Studio GPU")`, 5*time.Second)
	note := eval[string](p, `document.querySelector(".note-ok").textContent`)
	if !strings.Contains(note, "https://studio-gpu--gooni-inference.modal.run") || !strings.Contains(note, "Deploy it") {
		t.Errorf("the add message does not show the derived base URL and the next step: %q", note)
	}
	p.waitFor("the new account's row", `[...document.querySelectorAll("tr[data-account-id]")].some((r) => r.innerText.includes("Studio GPU"))`, 5*time.Second)
	id := eval[int64](p, `Number([...document.querySelectorAll("tr[data-account-id]")].find((r) => r.innerText.includes("Studio GPU")).dataset.accountId)`)
	if row := eval[string](p, fmt.Sprintf(`document.querySelector('tr[data-account-id="%d"]').innerText`, id)); !strings.Contains(row, "studio-gpu--gooni-inference.modal.run") {
		t.Errorf("the row does not show the derived base URL: %q", row)
	}

	// Deploy asks first; Cancel does nothing.
	p.click(rowButton(id, "Deploy"))
	p.waitFor("the deploy confirmation", `document.querySelector("dialog[open]") && document.querySelector("dialog[open]").textContent.includes("studio-gpu")`, 5*time.Second)
	p.click(`//dialog//button[normalize-space()="Cancel"]`)
	p.waitFor("the dialog to close", `!document.querySelector("dialog[open]")`, 5*time.Second)
	if st := eval[string](p, fmt.Sprintf(`document.querySelector('tr[data-account-id="%d"] td[data-label="Deploy"]').innerText`, id)); !strings.Contains(st, "never") {
		t.Fatalf("Cancel started a deploy: %q", st)
	}
	p.click(rowButton(id, "Deploy"))
	p.waitFor("the deploy confirmation", `document.querySelector("dialog[open]")`, 5*time.Second)
	p.click(`//dialog//button[normalize-space()="Deploy"]`)

	// The output panel: status, time, and the redacted output.
	p.waitFor("the failed deploy in the panel", `document.querySelector(".deploy-panel .badge") && document.querySelector(".deploy-panel .badge").textContent.trim() === "failed"`, 15*time.Second)
	panel := eval[string](p, `document.querySelector(".deploy-panel").innerText`)
	for _, s := range []string{"Deploy output: Studio GPU", "finished", "deploying studio-gpu", "token present secret [redacted]", "Error: no such Modal workspace",
		"exit status 3", "say why it failed"} {
		if !strings.Contains(panel, s) {
			t.Errorf("the deploy panel lacks %q:\n%s", s, panel)
		}
	}
	if !eval[bool](p, `!!document.querySelector(".deploy-panel time[datetime]")`) {
		t.Error("the deploy panel has no time")
	}
	if strings.Contains(eval[string](p, `document.body.innerText`), secret) {
		t.Fatal("the token secret shows on the page")
	}
	p.screenshot("admin-deploy-output")

	// Edit: rename, new capacity and base URL, a new proxy key; the
	// credentials left blank keep their stored values.
	p.click(rowButton(id, "Edit"))
	p.waitFor("the edit form", `document.querySelector("dialog[open] #edit-name")`, 5*time.Second)
	if v := eval[string](p, `document.querySelector("#edit-name").value + "|" + document.querySelector("#edit-capacity").value + "|" + document.querySelector("#edit-driver").value`); v != "Studio GPU|1|gooni" {
		t.Errorf("the edit form starts with %q", v)
	}
	if eval[string](p, `document.querySelector("#edit-token_secret").value`) != "" {
		t.Error("the edit form shows a stored credential")
	}
	p.typeInto(`#edit-name`, "Studio GPU 2")
	p.typeInto(`#edit-capacity`, "3")
	p.typeInto(`#edit-base_url`, "https://studio-gpu.invalid")
	p.typeInto(`#edit-proxy_key`, "wk-new-proxy-key")
	p.screenshot("admin-edit")
	p.click(`//dialog//button[normalize-space()="Save"]`)
	p.waitFor("the saved row", fmt.Sprintf(`!document.querySelector("dialog[open]") && document.querySelector('tr[data-account-id="%d"]').innerText.includes("Studio GPU 2")`, id), 5*time.Second)
	row := eval[string](p, fmt.Sprintf(`document.querySelector('tr[data-account-id="%d"]').innerText`, id))
	if !strings.Contains(row, "https://studio-gpu.invalid") || !strings.Contains(row, "3") {
		t.Errorf("the row after Save: %q", row)
	}
	// The token kept: a second deploy still sees it.
	p.click(rowButton(id, "Deploy"))
	p.waitFor("the deploy confirmation", `document.querySelector("dialog[open]")`, 5*time.Second)
	p.click(`//dialog//button[normalize-space()="Deploy"]`)
	p.waitFor("the second deploy to end", `document.querySelector(".deploy-panel .badge") && document.querySelector(".deploy-panel .badge").textContent.trim() === "failed" && document.querySelector(".deploy-panel").innerText.includes("Studio GPU 2")`, 15*time.Second)
	if panel := eval[string](p, `document.querySelector(".deploy-panel").innerText`); !strings.Contains(panel, "token present secret [redacted]") {
		t.Errorf("after an edit with blank credentials the deploy lost them:\n%s", panel)
	}
	p.click(`//section[contains(@class, "deploy-panel")]//button[normalize-space()="Close"]`)

	// A failed health check, worded once with the likely fix.
	p.click(rowButton(id, "Health check"))
	p.waitFor("the failed check", statusOf(id)+` === "failed"`, 15*time.Second)
	// (the audit log below keeps the server's own words; the accounts panel says it once)
	accounts := eval[string](p, `document.querySelector('section[aria-labelledby="accounts-title"]').innerText`)
	fix := "does not resolve: deploy the workspace first, or check its name and base URL"
	if !strings.Contains(accounts, fix) {
		t.Errorf("the failure lacks its likely fix %q:\n%s", fix, accounts)
	}
	if n := strings.Count(accounts, "does not resolve"); n != 1 {
		t.Errorf("the failure is worded %d times, want once:\n%s", n, accounts)
	}
	if strings.Contains(strings.ToLower(accounts), "health check failed:") {
		t.Errorf("the reason repeats what the status says:\n%s", accounts)
	}
	p.noHorizontalScroll("Admin with the new panels")
	if over := eval[int](p, `(() => { const w = document.querySelector(".table-accounts").closest(".table-wrap"); return w.scrollWidth - w.clientWidth; })()`); over > 0 {
		t.Errorf("the accounts table is %d px wider than its frame", over)
	}
	p.screenshot("admin-health-failed")
	p.screenshotFull("admin-console")

	// The audit log at phone width: one card per event, nothing off screen.
	ph := openBrowser(t, srv, phone)
	ph.open("/")
	ph.waitForm()
	ph.signIn()
	ph.waitFor("the audit log", `document.querySelectorAll(".table-log tbody tr").length > 3`, 10*time.Second)
	ph.noHorizontalScroll("Admin on a phone")
	over := eval[int](ph, `(() => { const w = document.querySelector(".table-log").closest(".table-wrap"); return w.scrollWidth - w.clientWidth; })()`)
	if over > 0 {
		t.Errorf("the audit table is %d px wider than a phone's screen", over)
	}
	labels := eval[string](ph, `getComputedStyle(document.querySelector('.table-log td[data-label="Action"]'), "::before").content`)
	if labels != `"Action"` {
		t.Errorf("audit cells on a phone are not labelled (::before content %s)", labels)
	}
	ph.do("scroll to the audit log", chromedp.ScrollIntoView(chromedp.CSS(`section[aria-labelledby="audit-title"]`)))
	ph.screenshot("admin-audit-phone")
}
