package browser

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// statusOf is the status badge text of an account row.
func statusOf(id int64) string {
	return fmt.Sprintf(`(document.querySelector('tr[data-account-id="%d"] .badge') || {textContent: ""}).textContent.trim()`, id)
}

func rowButton(id int64, name string) string {
	return fmt.Sprintf(`//tr[@data-account-id="%d"]//button[normalize-space()=%q]`, id, name)
}

// signIn types the admin key into the sign-in form and waits for the console.
func (p *page) signIn() {
	p.t.Helper()
	p.click(`//nav//a[normalize-space()="Admin"]`)
	p.waitFor("the sign-in form", `document.querySelector('input[aria-label="Admin key"]')`, 5*time.Second)
	if typ := eval[string](p, `document.querySelector('input[aria-label="Admin key"]').type`); typ != "password" {
		p.t.Errorf("the Admin key field is type %q, want password", typ)
	}
	p.typeInto(`input[aria-label="Admin key"]`, adminKey)
	p.click(`//button[normalize-space()="Sign in"]`)
	p.waitFor("the accounts table", `document.querySelector("tr[data-account-id]")`, 5*time.Second)
}

func TestAdminConsole(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()

	// a wrong key is refused in plain words
	p.click(`//nav//a[normalize-space()="Admin"]`)
	p.waitFor("the sign-in form", `document.querySelector('input[aria-label="Admin key"]')`, 5*time.Second)
	// A first visit shows the form without asking the server (no 401 in the console).
	if eval[bool](p, `performance.getEntriesByType("resource").some((e) => e.name.includes("/admin/accounts"))`) {
		t.Error("the Admin page asked /admin/accounts before anyone signed in")
	}
	p.typeInto(`input[aria-label="Admin key"]`, "not-the-key")
	p.click(`//button[normalize-space()="Sign in"]`)
	p.waitFor("the refusal", `[...document.querySelectorAll('[role="alert"]')].some((a) => a.textContent.trim() !== "")`, 5*time.Second)
	if eval[bool](p, `!!document.querySelector("tr[data-account-id]")`) {
		t.Fatal("a wrong admin key showed the accounts table")
	}

	p.typeInto(`input[aria-label="Admin key"]`, adminKey)
	p.click(`//button[normalize-space()="Sign in"]`)
	p.waitFor("the accounts table", `document.querySelector("tr[data-account-id]")`, 5*time.Second)
	demo := demoAccountID(t, p)
	p.waitFor("demo ready", statusOf(demo)+` === "ready"`, 5*time.Second)
	row := eval[string](p, fmt.Sprintf(`document.querySelector('tr[data-account-id="%d"]').innerText`, demo))
	if !strings.Contains(row, "demo") {
		t.Errorf("the demo row reads %q", row)
	}
	for _, b := range []string{"Health check", "Disable", "Deploy", "Delete"} {
		if !eval[bool](p, fmt.Sprintf(`[...document.querySelectorAll('tr[data-account-id="%d"] button')].some((b) => b.textContent.trim() === %q)`, demo, b)) {
			t.Errorf("the demo row has no %q button", b)
		}
	}
	// the add-account form keeps credentials in password fields
	creds := eval[string](p, `["Token ID", "Token secret", "Proxy key", "Proxy secret"].map((n) => {
		const f = document.querySelector('input[aria-label="' + n + '"]');
		return f ? f.type : "missing";
	}).join(",")`)
	if creds != "password,password,password,password" {
		t.Errorf("credential fields are %s, want all password", creds)
	}

	// Health check runs and shows its outcome
	before := eval[string](p, fmt.Sprintf(`document.querySelector('tr[data-account-id="%d"] td[data-label="Last health check"]').innerText`, demo))
	p.click(rowButton(demo, "Health check"))
	p.waitFor("the health check result", `document.querySelector(".note-ok") && document.querySelector(".note-ok").textContent.includes("Health check of demo finished")`, 5*time.Second)
	if before == "" || before == "—" {
		t.Errorf("last health check before = %q, want the time of the start-up check", before)
	}
	p.waitFor("demo still ready", statusOf(demo)+` === "ready"`, 5*time.Second)

	// Disable shows at once; Enable brings the account back to ready
	p.click(rowButton(demo, "Disable"))
	p.waitFor("disabled within 5 s", statusOf(demo)+` === "disabled"`, 5*time.Second)
	p.click(rowButton(demo, "Enable"))
	p.waitFor("ready again within 5 s of Enable", statusOf(demo)+` === "ready"`, 5*time.Second)

	// a change made elsewhere shows within 5 s without a reload (SC-004)
	p.fetch("PATCH", fmt.Sprintf("/admin/accounts/%d", demo), nil, map[string]string{"status": "disabled"})
	p.waitFor("an outside change to show within 5 s", statusOf(demo)+` === "disabled"`, 5*time.Second)
	p.fetch("PATCH", fmt.Sprintf("/admin/accounts/%d", demo), nil, map[string]string{"status": "pending"})
	p.waitFor("the outside enable to show within 5 s", statusOf(demo)+` === "ready"`, 5*time.Second)

	// the health panel and the audit log with its chain check
	health := eval[string](p, `document.querySelector('section[aria-labelledby="health-title"]').textContent`)
	for _, s := range []string{"Database", "OK", "Queue depth", "Accounts"} {
		if !strings.Contains(health, s) {
			t.Errorf("the health panel lacks %q: %q", s, health)
		}
	}
	p.waitFor("the audit log and chain verdict", `document.querySelectorAll(".table-log tbody tr").length > 0 && /Chain intact/.test(document.querySelector(".chain").textContent)`, 5*time.Second)
	actions := eval[string](p, `[...document.querySelectorAll(".table-log tbody tr code")].map((c) => c.textContent).join(" ")`)
	for _, a := range []string{"admin.login", "account.health_check", "account.update"} {
		if !strings.Contains(actions, a) {
			t.Errorf("the audit log lacks %s: %s", a, actions)
		}
	}
	p.noHorizontalScroll("Admin")
	// every row button is visible without scrolling the accounts table sideways
	if over := eval[int](p, `(() => { const w = document.querySelector(".table-accounts").closest(".table-wrap"); return w.scrollWidth - w.clientWidth; })()`); over > 0 {
		t.Errorf("the accounts table is %d px wider than its frame at %dx%d", over, p.vp.w, p.vp.h)
	}
	p.screenshot("admin")
	p.screenshotFull("admin")

	// Sign out ends the admin session
	p.click(`//button[normalize-space()="Sign out"]`)
	p.waitFor("the sign-in form after Sign out", `document.querySelector('input[aria-label="Admin key"]') && !document.querySelector("tr[data-account-id]")`, 5*time.Second)
	if r := p.fetch("GET", "/admin/accounts", nil, nil); r.Status != 401 {
		t.Errorf("GET /admin/accounts after Sign out: %d, want 401", r.Status)
	}
	p.do("reload", chromedp.Reload())
	p.waitFor("the sign-in form after reload", `document.querySelector('input[aria-label="Admin key"]')`, 5*time.Second)
}
