package browser

import (
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
)

const (
	modelSelect  = `select[aria-label="Model"]`
	modeSelect   = `select[aria-label="Mode"]`
	promptField  = `textarea[aria-label="Prompt"]`
	widthField   = `input[aria-label="Width"]`
	generateBtn  = `//form//button[normalize-space()="Generate"]`
	downloadLink = `//a[normalize-space()="Download"]`
	// resultImage is the finished task's picture, loaded and decoded.
	resultImage = `[...document.querySelectorAll("main img")].find((i) => i.src.includes("/results/") && i.complete && i.naturalWidth > 0)`
)

// waitForm waits until the catalog arrived and the Generate form is usable.
func (p *page) waitForm() {
	p.t.Helper()
	p.waitFor("the Generate form", `document.querySelector('select[aria-label="Model"]') && document.querySelector('select[aria-label="Model"]').options.length > 0`, 10*time.Second)
}

// recordProgress remembers every aria-valuenow the progress bar shows.
func (p *page) recordProgress() {
	p.t.Helper()
	eval[bool](p, `(() => {
		window.__progress = [];
		const seen = () => {
			const b = document.querySelector('[role="progressbar"][aria-label="Generation progress"]');
			if (b && b.hasAttribute("aria-valuenow")) window.__progress.push(Number(b.getAttribute("aria-valuenow")));
		};
		new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ["aria-valuenow"]});
		seen();
		return true;
	})()`)
}

// currentTask is the id of the task the Generate page follows.
func (p *page) currentTask() string {
	return eval[string](p, `localStorage.getItem("gooni.task.v1") || ""`)
}

func TestGenerateImage(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()

	// every named control has a visible label with the same text
	labels := eval[string](p, `["Model", "Mode", "Prompt"].filter((n) => {
		const c = document.querySelector('[aria-label="' + n + '"]');
		const l = c && document.querySelector('label[for="' + c.id + '"]');
		return !(l && l.textContent.trim() === n && l.offsetParent !== null);
	}).join(",")`)
	if labels != "" {
		t.Errorf("controls without a visible matching label: %s", labels)
	}

	// the model is offered with its type, inside its type's group
	group := eval[string](p, `(() => {
		const o = [...document.querySelector('select[aria-label="Model"]').options].find((o) => o.textContent.startsWith("FLUX"));
		return o ? o.textContent.trim() + " | " + (o.parentElement.label || "") : "";
	})()`)
	// the label is the catalog's (GET /config), which the catalog may change
	var cat struct {
		Models []struct{ ID, Label string }
	}
	json.Unmarshal(p.fetch("GET", "/config", nil, nil).Body, &cat)
	wantGroup := ""
	for _, m := range cat.Models {
		if m.ID == "flux" {
			wantGroup = m.Label + " (image) | Image"
		}
	}
	if !strings.HasPrefix(wantGroup, "FLUX") || group != wantGroup {
		t.Errorf("FLUX option and group = %q, want %q", group, wantGroup)
	}
	p.chooseOption(modelSelect, "FLUX")

	// the Width field carries the catalog's bounds, step and default
	width := eval[map[string]string](p, `(() => {
		const w = document.querySelector('input[aria-label="Width"]');
		return {min: w.min, max: w.max, step: w.step, value: w.value, type: w.type};
	})()`)
	want := map[string]string{"min": "256", "max": "2048", "step": "16", "value": "1024", "type": "number"}
	for k, v := range want {
		if width[k] != v {
			t.Errorf("Width field %s = %q, want %q (catalog)", k, width[k], v)
		}
	}

	p.typeInto(promptField, "a lighthouse at dusk")
	p.typeInto(widthField, "512")
	p.typeInto(`input[aria-label="Height"]`, "320")
	if v := eval[string](p, `document.querySelector('input[aria-label="Width"]').value`); v != "512" {
		t.Fatalf("Width field holds %q after typing 512", v)
	}
	p.recordProgress()
	p.click(generateBtn)

	p.waitFor("the progress bar", `document.querySelector('[role="progressbar"][aria-valuenow]')`, 5*time.Second)
	p.waitFor("the result image", resultImage, 20*time.Second)
	seen := eval[[]float64](p, `window.__progress`)
	if len(seen) == 0 {
		t.Error("the progress bar never showed an aria-valuenow")
	}
	for _, v := range seen {
		if v < 0 || v > 100 {
			t.Errorf("aria-valuenow %v outside 0..100", v)
		}
	}
	// The bar rises while the task runs and never falls back (contract 6:
	// progress never goes down).
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Errorf("the progress bar fell from %v to %v: %v", seen[i-1], seen[i], seen)
			break
		}
	}
	if distinct := len(slices.Compact(slices.Clone(seen))); distinct < 3 || seen[len(seen)-1] <= seen[0] {
		t.Errorf("the progress bar did not rise while the task ran (%d distinct values): %v", distinct, seen)
	}
	t.Logf("progress bar values: %v", seen)

	id := p.currentTask()
	st := p.fetch("GET", "/status/"+id, nil, nil)
	var task taskView
	json.Unmarshal(st.Body, &task)
	if st.Status != 200 || task.Model != "flux" || task.Prompt != "a lighthouse at dusk" || task.Params["width"] != float64(512) || task.Params["height"] != float64(320) {
		t.Errorf("the server got %d %s; want the FLUX task, 512x320, with the typed prompt", st.Status, st.Body)
	}
	if w := eval[int](p, resultImage+`.naturalWidth`); w != 512 {
		t.Errorf("result image is %d px wide, want 512", w)
	}

	href := eval[string](p, `(() => {
		const a = [...document.querySelectorAll("a")].find((a) => a.textContent.trim() === "Download");
		return a && a.hasAttribute("download") ? a.getAttribute("href") : "";
	})()`)
	if !strings.Contains(href, "/results/"+id) || !strings.Contains(href, "download=1") {
		t.Errorf("Download link href = %q, want /results/%s?download=1 with a download attribute", href, id)
	}
	disp := eval[string](p, fmt.Sprintf(`fetch(%q).then((r) => r.status + " " + r.headers.get("Content-Disposition"))`, href))
	if !strings.HasPrefix(disp, "200 attachment") {
		t.Errorf("the Download link answers %q, want 200 with Content-Disposition: attachment", disp)
	}
	p.noHorizontalScroll("Generate")
	p.screenshot("generate")
}

func TestGenerateVideoPlays(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	p.chooseOption(modelSelect, "Wan Remix")
	p.chooseOption(modeSelect, "Text to video")
	if m := eval[string](p, `document.querySelector('select[aria-label="Mode"]').value`); m != "t2v" {
		t.Fatalf("Mode = %q, want t2v", m)
	}
	p.typeInto(promptField, "a paper boat on a stream")
	p.click(generateBtn)
	p.waitFor("the progress bar", `document.querySelector('[role="progressbar"][aria-valuenow]')`, 5*time.Second)
	p.waitFor("the result video", `document.querySelector("main video[controls]")`, 20*time.Second)

	poster := eval[string](p, `document.querySelector("main video").getAttribute("poster") || ""`)
	if poster == "" {
		t.Fatal("the result video has no poster")
	}
	got := eval[string](p, fmt.Sprintf(`fetch(%q).then((r) => r.status + " " + r.headers.get("Content-Type"))`, poster))
	if !strings.HasPrefix(got, "200 image/") {
		t.Errorf("poster %s answers %q, want 200 image/*", poster, got)
	}

	eval[bool](p, `(() => {
		const v = document.querySelector("main video");
		v.muted = true;
		window.__playError = "";
		v.play().catch((e) => { window.__playError = String(e); });
		return true;
	})()`)
	p.waitFor("the video to play", `(() => {
		const v = document.querySelector("main video");
		if (window.__playError) return true;
		if (!v.__t0 && v.readyState >= 2) v.__t0 = v.currentTime + 0.000001;
		return v.readyState >= 2 && v.__t0 && v.currentTime > v.__t0 + 0.2;
	})()`, 15*time.Second)
	if e := eval[string](p, `window.__playError`); e != "" {
		t.Fatalf("video.play() was refused: %s", e)
	}
	state := eval[map[string]float64](p, `(() => { const v = document.querySelector("main video"); return {w: v.videoWidth, h: v.videoHeight, d: v.duration}; })()`)
	if state["w"] <= 0 || state["h"] <= 0 || state["d"] <= 0 {
		t.Errorf("video decoded as %v, want a size and a duration", state)
	}
	p.screenshot("generate-video")
}

func TestGenerateKeyboardReloadAndMemory(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	p.chooseOption(modelSelect, "Pony")
	p.typeInto(widthField, "768")
	p.typeInto(`input[aria-label="Steps"]`, "12")
	p.typeInto(promptField, "a quiet harbour")

	// fill both demo slots so our task queues: the run outlasts a slow reload
	busy := srv.client(t)
	busy.generate("flux", "t2i", "filler one", nil)
	busy.generate("flux", "t2i", "filler two", nil)

	// Ctrl+Enter in the prompt submits the form
	p.do("press Ctrl+Enter", ctrlEnter())
	p.waitFor("the queued task's progress bar after Ctrl+Enter", `document.querySelector('[role="progressbar"][aria-valuenow]') &&
		/Waiting/.test(document.querySelector(".status-line").textContent)`, 5*time.Second)
	id := p.currentTask()
	if id == "" {
		t.Fatal("no task is remembered after Ctrl+Enter")
	}
	if v := eval[string](p, `document.querySelector('textarea[aria-label="Prompt"]').value`); v != "a quiet harbour" {
		t.Errorf("Ctrl+Enter changed the prompt to %q", v)
	}

	// a reload during the run comes back to the running task and its progress
	p.do("reload", chromedp.Reload())
	p.waitForm()
	p.waitFor("the running task after reload", `(() => {
		const b = document.querySelector('[role="progressbar"][aria-valuenow]');
		const s = document.querySelector('.status-line');
		return b && s && /Generating|Waiting/.test(s.textContent);
	})()`, 5*time.Second)
	p.waitFor("the result after reload", resultImage, 20*time.Second)
	if src := eval[string](p, resultImage+`.src`); !strings.Contains(src, id) {
		t.Errorf("the page shows %s, want the task started before the reload (%s)", src, id)
	}

	// the last model and parameters are remembered
	p.do("reload", chromedp.Reload())
	p.waitForm()
	p.waitFor("the finished result after another reload", resultImage, 10*time.Second)
	form := eval[map[string]string](p, `({
		model: document.querySelector('select[aria-label="Model"]').value,
		width: document.querySelector('input[aria-label="Width"]').value,
		steps: document.querySelector('input[aria-label="Steps"]').value,
		prompt: document.querySelector('textarea[aria-label="Prompt"]').value,
	})`)
	want := map[string]string{"model": "pony", "width": "768", "steps": "12", "prompt": "a quiet harbour"}
	for k, v := range want {
		if form[k] != v {
			t.Errorf("after reload %s = %q, want %q", k, form[k], v)
		}
	}
}

func TestGenerateNoWorkers(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()

	// disable the only worker through the admin API, with an admin cookie
	if r := p.fetch("POST", "/admin/session", map[string]string{"X-Admin-Key": adminKey}, nil); r.Status != 200 {
		t.Fatalf("admin sign-in answered %d", r.Status)
	}
	demo := demoAccountID(t, p)
	if r := p.fetch("PATCH", fmt.Sprintf("/admin/accounts/%d", demo), nil, map[string]string{"status": "disabled"}); r.Status != 200 {
		t.Fatalf("disabling the demo account answered %d %s", r.Status, r.Body)
	}
	want := srv.client(t)
	code, body := want.do("POST", "/generate", map[string]any{"model": "flux", "mode": "t2i", "prompt": "x"}, nil)
	var apiErr struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal(body, &apiErr)
	if code != 503 || apiErr.Error.Code != "no_workers" {
		t.Fatalf("the API answers %d %s with no ready worker, want 503 no_workers", code, body)
	}

	p.chooseOption(modelSelect, "FLUX")
	p.typeInto(promptField, "a lighthouse")
	p.click(generateBtn)
	p.waitFor("the no-workers message", `[...document.querySelectorAll('[role="alert"]')].some((a) => a.textContent.trim() !== "")`, 5*time.Second)
	alert := eval[string](p, `[...document.querySelectorAll('[role="alert"]')].map((a) => a.innerText).join("\n")`)
	if !strings.Contains(strings.ToLower(alert), strings.ToLower(apiErr.Error.Message)) {
		t.Errorf("the page says %q, want the server's message %q", alert, apiErr.Error.Message)
	}
	// it shows where the result would have been, not below the form
	if !eval[bool](p, `!!document.querySelector('section[aria-labelledby="output-title"] [role="alert"]') && !document.querySelector('form [role="alert"]')`) {
		t.Error("the no-workers message is not in the result area")
	}
	if strings.Contains(alert, "no_workers") || strings.Contains(alert, "503") {
		t.Errorf("the message shows codes instead of plain words: %q", alert)
	}
	if eval[bool](p, `!!document.querySelector('[role="progressbar"]')`) {
		t.Error("a progress bar shows although no task was created")
	}
	p.screenshot("generate-no-workers")
}

// demoAccountID finds the demo worker through the admin API (the page must hold an admin cookie).
func demoAccountID(t *testing.T, p *page) int64 {
	t.Helper()
	r := p.fetch("GET", "/admin/accounts", nil, nil)
	var list struct {
		Items []struct {
			ID     int64  `json:"id"`
			Name   string `json:"name"`
			Status string `json:"status"`
		} `json:"items"`
	}
	json.Unmarshal(r.Body, &list)
	for _, a := range list.Items {
		if a.Name == "demo" {
			return a.ID
		}
	}
	t.Fatalf("no demo account in %d %s", r.Status, r.Body)
	return 0
}

func TestGenerateImageToVideo(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	input := filepath.Join(t.TempDir(), "start.png")
	img := image.NewNRGBA(image.Rect(0, 0, 64, 48))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	f, err := os.Create(input)
	if err != nil {
		t.Fatal(err)
	}
	png.Encode(f, img)
	f.Close()

	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	p.chooseOption(modelSelect, "AniSora")
	p.chooseOption(modeSelect, "Image to video")
	p.waitFor("the image picker", `document.querySelector('input[type="file"][aria-label="Image"]')`, 3*time.Second)
	p.typeInto(promptField, "the picture comes alive")

	// without an image the form asks for one instead of sending
	p.click(generateBtn)
	p.waitFor("the missing-image message", `document.querySelector('input[aria-label="Image"][aria-invalid="true"]')`, 3*time.Second)

	p.do("choose the image", chromedp.SetUploadFiles(chromedp.CSS(`input[aria-label="Image"]`), []string{input}))
	p.waitFor("the preview of the chosen image", `(() => { const i = document.querySelector(".image-preview img"); return i && i.complete && i.naturalWidth === 64; })()`, 5*time.Second)
	p.click(generateBtn)
	p.waitFor("the result video", `document.querySelector("main video[controls][poster]")`, 20*time.Second)
	p.do("top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	p.screenshot("generate-i2v")
	st := p.fetch("GET", "/status/"+p.currentTask(), nil, nil)
	var task taskView
	json.Unmarshal(st.Body, &task)
	if task.Model != "anisora" || task.Mode != "i2v" || task.Status != "done" {
		t.Errorf("the server holds %s, want a done anisora i2v task", st.Body)
	}
}
