package browser

import (
	"testing"
	"time"
)

// TestPhoneWalk runs the main walk at a phone's size: generate, gallery and
// admin must fit the screen without sideways scrolling.
func TestPhoneWalk(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	seedGallery(t, srv)

	p := openBrowser(t, srv, phone)
	p.open("/")
	p.waitForm()
	p.noHorizontalScroll("Generate on a phone")
	p.chooseOption(modelSelect, "FLUX")
	p.typeInto(promptField, "a city skyline at night")
	p.typeInto(widthField, "768")
	p.typeInto(`input[aria-label="Height"]`, "512")
	p.click(generateBtn)
	p.waitFor("the result on a phone", resultImage, 20*time.Second)
	// the result sits below the form; it must be on screen once done
	p.waitFor("the result scrolled into view", `(() => { const r = document.getElementById("output-title").getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight; })()`, 5*time.Second)
	p.noHorizontalScroll("Generate result on a phone")
	p.screenshot("generate")

	p.openGallery()
	p.waitFor("5 gallery cards", `document.querySelectorAll("main article[data-task-id]").length === 5 &&
		[...document.querySelectorAll("main article img")].every((i) => i.complete && i.naturalWidth > 0)`, 10*time.Second)
	p.noHorizontalScroll("Gallery on a phone")
	p.screenshot("gallery")
	p.screenshotFull("gallery")

	p.signIn()
	p.waitFor("the audit log", `document.querySelectorAll(".table-log tbody tr").length > 0`, 5*time.Second)
	p.noHorizontalScroll("Admin on a phone")
	p.screenshot("admin")
	p.screenshotFull("admin")
}
