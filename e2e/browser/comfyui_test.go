package browser

import (
	"fmt"
	"gooni/internal/testutil"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startComfySim runs `gooni comfy-sim` on a free loopback port (the ComfyUI
// API subset the comfyui driver speaks, with synthetic media) and waits for
// its GET /queue; it is stopped when the test ends.
func startComfySim(t *testing.T, args ...string) string {
	t.Helper()
	addr := testutil.FreeAddr(t)
	p := testutil.NewProcess(t, "comfy-sim", gooniBin, append([]string{"comfy-sim", "--addr", addr}, args...), nil)
	p.Start()
	if err := p.WaitHTTP("http://"+addr+"/queue", 20*time.Second, func(code int) bool { return code == http.StatusOK }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	return addr
}

// TestComfyUIAccountFromAdmin: an admin adds a ComfyUI server on the Admin
// page (Driver comfyui, its base URL, no credentials), its health check lists
// the catalog models the box has the files for, and a person generates
// through it from the Generate page: with the demo workspace disabled, the
// result can only have come from the ComfyUI box.
func TestComfyUIAccountFromAdmin(t *testing.T) {
	t.Parallel()
	comfy := startComfySim(t, "--duration", "1s")
	srv := startServer(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	p.signIn()

	demo := demoAccountID(t, p)
	p.click(rowButton(demo, "Disable"))
	p.waitFor("the demo account disabled", statusOf(demo)+` === "disabled"`, 10*time.Second)

	// The form: a ComfyUI account needs its base URL and takes no credentials.
	p.chooseOption(`#acc-driver`, "comfyui")
	if n := eval[int](p, `document.querySelectorAll('#acc-token_id, #acc-token_secret').length`); n != 0 {
		t.Errorf("the ComfyUI form still asks for %d Modal credential fields", n)
	}
	p.typeInto(`#acc-name`, "Comfy box")
	p.typeInto(`#acc-workspace`, "comfy-box")
	p.click(`//button[normalize-space()="Add account"]`)
	p.waitFor("the base URL demanded", `document.body.innerText.includes("needs the base URL")`, 5*time.Second)
	p.typeInto(`#acc-base_url`, "http://"+comfy)
	p.click(`//button[normalize-space()="Add account"]`)
	p.waitFor("the new account's row", `[...document.querySelectorAll("tr[data-account-id]")].some((r) => r.innerText.includes("Comfy box"))`, 5*time.Second)
	id := eval[int64](p, `Number([...document.querySelectorAll("tr[data-account-id]")].find((r) => r.innerText.includes("Comfy box")).dataset.accountId)`)
	row := func() string {
		return eval[string](p, fmt.Sprintf(`document.querySelector('tr[data-account-id="%d"]').innerText`, id))
	}
	if r := row(); !strings.Contains(r, "comfyui") || !strings.Contains(r, "http://"+comfy) {
		t.Errorf("the row does not show the driver and base URL: %q", r)
	}
	if !eval[bool](p, fmt.Sprintf(`document.evaluate('//tr[@data-account-id="%d"]//button[normalize-space()="Deploy"]', document, null, 9, null).singleNodeValue.disabled`, id)) {
		t.Error("Deploy is offered for a ComfyUI account")
	}

	p.click(rowButton(id, "Health check"))
	p.waitFor("the ComfyUI account ready", statusOf(id)+` === "ready"`, 20*time.Second)
	chips := eval[string](p, fmt.Sprintf(`[...document.querySelectorAll('tr[data-account-id="%d"] .models .chip')].map((c) => c.textContent).join(",")`, id))
	for _, m := range []string{"flux", "pony"} {
		if !strings.Contains(chips, m) {
			t.Errorf("the Models column lacks %s: %q", m, chips)
		}
	}
	p.screenshot("admin-comfyui-ready")

	p.click(`//nav//a[normalize-space()="Generate"]`)
	p.waitForm()
	p.chooseOption(modelSelect, "FLUX")
	p.typeInto(promptField, "a lighthouse rendered by ComfyUI")
	p.click(generateBtn)
	p.waitFor("the result image", resultImage, 40*time.Second)
	p.screenshot("generate-through-comfyui")

	var dispatched []string
	for _, line := range strings.Split(srv.proc.Logs.String(), "\n") {
		if strings.Contains(line, `"msg":"task dispatched"`) {
			dispatched = append(dispatched, line)
		}
	}
	if len(dispatched) != 1 || !strings.Contains(dispatched[0], `"account":"Comfy box"`) {
		t.Errorf("want one dispatch, to the ComfyUI account; got %q", dispatched)
	}
}
