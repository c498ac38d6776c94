package dispatch

import (
	"net/url"
	"regexp"
	"strings"
)

// webAppLabel and webFunctionTag name Gooni's web endpoint in `modal deploy`
// output: the app's asgi label (modal/modal_app.py WEB_LABEL) ends the host
// label, and the function is called "web".
const (
	webAppLabel    = "--gooni-inference"
	webFunctionTag = "web"
)

// Bounds on the work DeployURL does: how many wrapped lines one URL may span,
// how much of a line is read (Modal's lines are under 200 characters), and how
// much of the output's end is read (the endpoint lines come last; the deploy
// runner keeps 64 KiB anyway).
const (
	maxURLLines   = 4
	maxLineBytes  = 4 << 10
	maxOutputTail = 256 << 10
)

// ansiEscape matches terminal control sequences: CSI (colours, cursor moves),
// OSC (hyperlinks, titles) and two-byte escapes.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]`)

// createdWebLine matches the line Modal's CLI prints for a web endpoint:
// "Created web function TAG => URL" (modal >= 0.50, py/modal/_output/status.py),
// "Created Web Function URL for METHOD => URL" / "Created web endpoint for
// METHOD => URL" (class endpoints) and the 2022-2023 "Created TAG => URL".
// Custom-domain lines ("Custom domain for TAG => ...") do not match.
var createdWebLine = regexp.MustCompile(`Created (?:web function |Web Function URL for |web endpoint for )?([A-Za-z0-9_.*-]+) =>(.*)$`)

// modalRunHost is a single DNS label under modal.run: at most 63 characters
// (Modal truncates longer labels and says "(label truncated)").
var modalRunHost = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.modal\.run$`)

// DeployURL finds the web endpoint's URL (https://HOST.modal.run, no path) in
// the combined output of `modal deploy`, as printed by Modal's CLI (tree lines
// like "└── 🔨 Created web function web => https://ws--gooni-inference.modal.run 🔑",
// see modal-client py/modal/_output/status.py). It copes with ANSI colour
// codes, carriage-return redraws, Rich wrapping a long URL over several lines
// at the terminal width (80 columns when not a terminal), environments
// ("ws-dev--..."), truncated labels and the older "Created web => URL" form.
// Of several endpoints it picks the gooni-inference one (host label ending in
// "--gooni-inference", else the function tagged "web"), or the only one.
// It reports false when the output names no such URL or the choice is
// ambiguous. Only the last 256 KiB of output and 4 KiB of each line are read.
func DeployURL(output string) (string, bool) {
	if len(output) > maxOutputTail {
		output = output[len(output)-maxOutputTail:]
	}
	lines := deployLines(output)
	type candidate struct{ tag, url string }
	var found []candidate
	for i, line := range lines {
		if !strings.Contains(line, "=>") {
			continue
		}
		m := createdWebLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if u, ok := joinURL(m[2], lines[i+1:]); ok {
			found = append(found, candidate{m[1], u})
		}
	}
	// Score each distinct URL by how surely it is Gooni's endpoint.
	score := map[string]int{}
	for _, c := range found {
		s := 0
		if label, _, _ := strings.Cut(strings.TrimPrefix(c.url, "https://"), "."); strings.HasSuffix(label, webAppLabel) {
			s += 2
		}
		if c.tag == webFunctionTag {
			s++
		}
		score[c.url] = max(score[c.url], s)
	}
	best, bestScore, tie := "", -1, false
	for u, s := range score {
		switch {
		case s > bestScore:
			best, bestScore, tie = u, s, false
		case s == bestScore:
			tie = true
		}
	}
	if best == "" || tie {
		return "", false
	}
	return best, true
}

// deployLines is the output as a terminal would show it: escapes removed,
// each line reduced to what its last carriage return left visible.
func deployLines(output string) []string {
	output = ansiEscape.ReplaceAllString(output, "")
	lines := strings.Split(output, "\n")
	for i, line := range lines {
		line = strings.TrimRight(line, "\r")
		if j := strings.LastIndexByte(line, '\r'); j >= 0 {
			line = line[j+1:]
		}
		if len(line) > maxLineBytes {
			line = line[:maxLineBytes]
		}
		lines[i] = line
	}
	return lines
}

// joinURL reads the URL that starts in rest (the text after "=>") and may
// continue on the following lines when Rich wrapped or folded it.
func joinURL(rest string, next []string) (string, bool) {
	var b strings.Builder
	text := strings.TrimLeft(rest, " \t")
	for n := 0; n < maxURLLines; n++ {
		if text != "" {
			tok, after, cut := strings.Cut(text, " ")
			b.WriteString(tok)
			u := b.String()
			if strings.HasSuffix(u, ".modal.run") || strings.HasSuffix(u, ".modal.run/") {
				return validModalRunURL(u)
			}
			if cut && strings.TrimSpace(after) != "" || b.Len() > 512 {
				return "", false // the URL ended on this line without reaching .modal.run
			}
		}
		if len(next) == 0 {
			break
		}
		text, next = stripTreeGuides(next[0]), next[1:]
	}
	return "", false
}

// stripTreeGuides removes the guide columns Rich draws before a tree node's
// wrapped lines ("│   ", "├── ", "└── ", or their ASCII forms).
func stripTreeGuides(line string) string {
	for {
		line = strings.TrimLeft(line, " \t")
		trimmed := line
		for _, guide := range []string{"│", "├──", "└──", "|", "+--", "`--"} {
			trimmed = strings.TrimPrefix(trimmed, guide)
		}
		if trimmed == line {
			return line
		}
		line = trimmed
	}
}

// validModalRunURL accepts https://LABEL.modal.run with an optional "/" and nothing else.
func validModalRunURL(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" ||
		(u.Path != "" && u.Path != "/") || !modalRunHost.MatchString(u.Host) {
		return "", false
	}
	return "https://" + u.Host, true
}
