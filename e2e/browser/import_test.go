package browser

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"gooni/internal/testutil"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const importField = `input[aria-label="Load settings from image"]`

// formState reads the Generate form as a person sees it.
func (p *page) formState() map[string]string {
	p.t.Helper()
	return eval[map[string]string](p, `(() => {
		const v = (sel) => { const e = document.querySelector(sel); return e ? String(e.value) : "(none)"; };
		return {
			model: v('select[aria-label="Model"]'), mode: v('select[aria-label="Mode"]'),
			prompt: v('textarea[aria-label="Prompt"]'), negative: v('textarea[aria-label="Negative prompt"]'),
			width: v('input[aria-label="Width"]'), height: v('input[aria-label="Height"]'),
			steps: v('input[aria-label="Steps"]'), guidance: v('input[aria-label="Guidance"]'), seed: v('input[aria-label="Seed"]'),
			random: String(document.querySelector('input[aria-label="Random seed"]').checked),
		};
	})()`)
}

// dropFile drops a file on the page (on the Result panel, away from the
// form) the way a file dragged from the desktop arrives: a drop event whose
// DataTransfer holds it.
func (p *page) dropFile(name string, content []byte) {
	p.t.Helper()
	js := fmt.Sprintf(`(() => {
		const bin = atob(%q);
		const bytes = new Uint8Array(bin.length);
		for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
		const dt = new DataTransfer();
		dt.items.add(new File([bytes], %q, {type: "image/png"}));
		const target = document.getElementById("output-title");
		for (const type of ["dragenter", "dragover", "drop"]) {
			target.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
		}
		return true;
	})()`, base64.StdEncoding.EncodeToString(content), name)
	eval[bool](p, js)
}

// TestGenerateImportSettings: each committed test PNG (Gooni's own chunks,
// AUTOMATIC1111's parameters, a ComfyUI prompt graph dropped on the page,
// and parameters naming a model Gooni does not offer) fills the Generate
// form; what could not be mapped is listed in the notice; nothing is sent.
func TestGenerateImportSettings(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := openBrowser(t, srv, desktop)
	p.open("/")
	p.waitForm()
	if !eval[bool](p, `!!document.querySelector('input[type="file"][aria-label="Load settings from image"]')`) {
		t.Fatal("no file input named Load settings from image")
	}
	dir := "testdata/import"
	cases := []struct {
		file     string
		drop     bool
		before   func()
		want     map[string]string
		source   string   // in the notice
		notes    []string // each must be in the notice
		noNotes  bool
		shotName string
	}{
		{
			file: "gooni-flux.png", source: "Gooni settings", noNotes: true,
			want: map[string]string{"model": "flux", "mode": "t2i", "prompt": "富士山の上の猫、夕焼け — a cat on Mount Fuji at sunset 🌅", "negative": "(none)",
				"width": "1024", "height": "768", "steps": "28", "guidance": "3.5", "seed": "1234", "random": "false"},
		},
		{
			file: "a1111-pony.png", source: "AUTOMATIC1111 parameters",
			want: map[string]string{"model": "pony", "mode": "t2i", "prompt": "score_9, score_8_up, a red fox in a snowy forest, detailed fur",
				"negative": "blurry, lowres, bad anatomy", "width": "832", "height": "1216", "steps": "30", "guidance": "6.5", "seed": "987654321", "random": "false"},
			notes: []string{"ponyDiffusionV6XL_v6StartWithThisOne", "was taken to be Pony", "DPM++ 2M Karras", "Model hash"},
		},
		{
			file: "comfyui-pony.png", drop: true, source: "a ComfyUI prompt graph",
			before: func() { p.chooseOption(modelSelect, "FLUX") },
			want: map[string]string{"model": "pony", "mode": "t2i", "prompt": "score_9, a lighthouse on a cliff at dawn, café terrace, oil painting",
				"negative": "text, watermark, blurry", "width": "896", "height": "1152", "steps": "25", "guidance": "7.5", "seed": "424242", "random": "false"},
			notes: []string{"euler_ancestral", "was taken to be Pony"},
		},
		{
			file: "a1111-unknown-model.png", source: "AUTOMATIC1111 parameters", shotName: "generate-import-unknown-model",
			before: func() { p.chooseOption(modelSelect, "FLUX") },
			want: map[string]string{"model": "flux", "mode": "t2i", "prompt": "a watercolor map of an imaginary island", "negative": "(none)",
				"width": "1024", "height": "1024", "steps": "20", "guidance": "7", "seed": "3141592", "random": "false"},
			notes: []string{"“sd_xl_base_1.0” is not one Gooni offers", "applied to FLUX.1", "Euler a"},
		},
	}
	for _, c := range cases {
		if c.before != nil {
			c.before()
		}
		// a new notice must appear for this file
		eval[bool](p, `(() => { const n = document.querySelector(".import-note"); if (n) n.remove(); return true; })()`)
		if c.drop {
			p.dropFile(c.file, testutil.ReadRepoFile(t, filepath.Join("e2e/browser", dir, c.file)))
		} else {
			p.do("pick "+c.file, chromedp.SetUploadFiles(chromedp.CSS(importField), []string{mustAbs(t, filepath.Join(dir, c.file))}))
		}
		p.waitFor(c.file+": the notice", fmt.Sprintf(`(() => { const n = document.querySelector('[role="status"] .import-note'); return n && n.innerText.includes(%q); })()`, c.file), 10*time.Second)
		notice := eval[string](p, `document.querySelector(".import-note").innerText`)
		if !strings.Contains(notice, "Settings loaded from "+c.file+" ("+c.source+")") {
			t.Errorf("%s: the notice says %q", c.file, notice)
		}
		items := eval[int](p, `document.querySelectorAll(".import-note li").length`)
		if c.noNotes && items != 0 {
			t.Errorf("%s: %d notes, want none: %q", c.file, items, notice)
		}
		for _, n := range c.notes {
			if !strings.Contains(notice, n) {
				t.Errorf("%s: the notice does not mention %q: %q", c.file, n, notice)
			}
		}
		got := p.formState()
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", c.file, k, got[k], v)
			}
		}
		if c.shotName != "" {
			p.do("top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
			p.screenshot(c.shotName)
		}
	}
	// nothing was sent: the server has no task, the form waits for Generate
	r := p.fetch("GET", "/tasks", nil, nil)
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	json.Unmarshal(r.Body, &list)
	if r.Status != 200 || len(list.Items) != 0 {
		t.Fatalf("after the imports GET /tasks: %d with %d tasks, want none", r.Status, len(list.Items))
	}
	// and Generate sends what the form shows
	p.click(generateBtn)
	p.waitFor("the task", `(JSON.parse(localStorage.getItem("gooni.tasks.v1") || "[]")).length === 1`, 10*time.Second)
	id := eval[string](p, `JSON.parse(localStorage.getItem("gooni.tasks.v1"))[0]`)
	st := p.fetch("GET", "/status/"+id, nil, nil)
	var v taskView
	json.Unmarshal(st.Body, &v)
	if v.Model != "flux" || v.Prompt != "a watercolor map of an imaginary island" || v.Params["seed"] != float64(3141592) || v.Params["steps"] != float64(20) {
		t.Errorf("the sent task: %s", st.Body)
	}
	// a file that is not a PNG says so and changes nothing
	before := p.formState()
	p.dropFile("notes.png", []byte("just some text, not an image"))
	p.waitFor("the not-a-PNG notice", `(() => { const n = document.querySelector(".import-note"); return n && /No settings were loaded from notes.png/.test(n.innerText) && /not a PNG/.test(n.innerText); })()`, 5*time.Second)
	if after := p.formState(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a file that is not a PNG changed the form:\n%v\n%v", before, after)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
