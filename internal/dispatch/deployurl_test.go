package dispatch

import (
	"strings"
	"testing"
	"time"
)

// Outputs of `modal deploy` as Modal's CLI renders them (Rich 13, 80 columns when
// not a terminal; ANSI colours when forced), rebuilt from modal-client
// py/modal/_output/{rich,status}.py and py/modal/runner.py.
const (
	modalDeployCurrent        = "✓ Initialized. View run at \nhttps://modal.com/apps/acme/main/ap-Hx3kV9wq2LbNcT7YpQe1aZ\n✓ Created objects.\n├── 🔨 Created mount /home/op/gooni/modal/modal_app.py\n├── 🔨 Created function download.\n├── 🔨 Created function AniSora.*.\n├── 🔨 Created function Pony.*.\n├── 🔨 Created function Flux.*.\n├── 🔨 Created function sweep.\n└── 🔨 Created web function web => https://acme--gooni-inference.modal.run 🔑\n✓ App deployed in 6.201s! 🎉\n\nView Deployment: https://modal.com/apps/acme/main/deployed/gooni-inference\n"
	modalDeployColour         = "\u001b[32m✓\u001b[0m Initialized. \u001b[37mView run at \u001b[0m\n\u001b[4;37mhttps://modal.com/apps/acme/main/ap-Hx3kV9wq2LbNcT7YpQe1aZ\u001b[0m\n\u001b[32m✓\u001b[0m Created objects.\n\u001b[37m├── \u001b[0m🔨 Created mount /home/op/gooni/modal/modal_app.py\n\u001b[37m├── \u001b[0m🔨 Created function download.\n\u001b[37m├── \u001b[0m🔨 Created function AniSora.*.\n\u001b[37m├── \u001b[0m🔨 Created function Pony.*.\n\u001b[37m├── \u001b[0m🔨 Created function Flux.*.\n\u001b[37m├── \u001b[0m🔨 Created function sweep.\n\u001b[37m└── \u001b[0m🔨 Created web function web => \u001b[4;35mhttps://acme--gooni-inference.modal.run\u001b[0m 🔑\n\u001b[32m✓\u001b[0m App deployed in 6.201s! 🎉\n\nView Deployment: \u001b[35mhttps://modal.com/apps/acme/main/deployed/gooni-inference\u001b[0m\n"
	modalDeployEnvironment    = "✓ Initialized. View run at \nhttps://modal.com/apps/acme/main/ap-Hx3kV9wq2LbNcT7YpQe1aZ\n✓ Created objects.\n├── 🔨 Created mount /home/op/gooni/modal/modal_app.py\n├── 🔨 Created function download.\n├── 🔨 Created function AniSora.*.\n├── 🔨 Created function Pony.*.\n├── 🔨 Created function Flux.*.\n├── 🔨 Created function sweep.\n└── 🔨 Created web function web => https://acme-dev--gooni-inference.modal.run \n    🔑\n✓ App deployed in 6.201s! 🎉\n\nView Deployment: https://modal.com/apps/acme/main/deployed/gooni-inference\n"
	modalDeployLongWorkspace  = "✓ Initialized. View run at \nhttps://modal.com/apps/acme/main/ap-Hx3kV9wq2LbNcT7YpQe1aZ\n✓ Created objects.\n├── 🔨 Created mount /home/op/gooni/modal/modal_app.py\n├── 🔨 Created function download.\n├── 🔨 Created function AniSora.*.\n├── 🔨 Created function Pony.*.\n├── 🔨 Created function Flux.*.\n├── 🔨 Created function sweep.\n└── 🔨 Created web function web => \n    https://acme-research-and-development-group--gooni-inference.modal.run 🔑\n✓ App deployed in 6.201s! 🎉\n\nView Deployment: https://modal.com/apps/acme/main/deployed/gooni-inference\n"
	modalDeployTruncatedLabel = "✓ Initialized. View run at \nhttps://modal.com/apps/acme/main/ap-Hx3kV9wq2LbNcT7YpQe1aZ\n✓ Created objects.\n├── 🔨 Created mount /home/op/gooni/modal/modal_app.py\n├── 🔨 Created function download.\n├── 🔨 Created function AniSora.*.\n├── 🔨 Created function Pony.*.\n├── 🔨 Created function Flux.*.\n├── 🔨 Created function sweep.\n└── 🔨 Created web function web => \n    https://research-and-development-lab-workspace-staging--gooni-i-4f2a9c1.moda\n    l.run 🔑 (label truncated)\n✓ App deployed in 6.201s! 🎉\n\nView Deployment: https://modal.com/apps/acme/main/deployed/gooni-inference\n"
	modalDeployTwoEndpoints   = "✓ Initialized. View run at \nhttps://modal.com/apps/acme/main/ap-Hx3kV9wq2LbNcT7YpQe1aZ\n✓ Created objects.\n├── 🔨 Created mount /home/op/gooni/modal/modal_app.py\n├── 🔨 Created function download.\n├── 🔨 Created function AniSora.*.\n├── 🔨 Created function Pony.*.\n├── 🔨 Created function Flux.*.\n├── 🔨 Created function sweep.\n├── 🔨 Created web function ui => https://acme--comfyui-ui.modal.run\n└── 🔨 Created web function web => https://acme--gooni-inference.modal.run 🔑\n✓ App deployed in 6.201s! 🎉\n\nView Deployment: https://modal.com/apps/acme/main/deployed/gooni-inference\n"
	modalDeploySkipped        = "✓ Initialized. View run at \nhttps://modal.com/apps/acme/main/ap-Hx3kV9wq2LbNcT7YpQe1aZ\n✓ Created objects.\n├── 🔨 Created mount /home/op/gooni/modal/modal_app.py\n├── 🔨 Created function download.\n├── 🔨 Created function AniSora.*.\n├── 🔨 Created function Pony.*.\n├── 🔨 Created function Flux.*.\n├── 🔨 Created function sweep.\n└── 🔨 Created web function web => https://acme--gooni-inference.modal.run 🔑\n✓ Deployment skipped: no changes detected! ⏭️\n\nView Deployment: https://modal.com/apps/acme/main/deployed/gooni-inference\n"
	modalDeployColourWrapped  = "\u001b[32m✓\u001b[0m Initialized. \u001b[37mView run at \u001b[0m\n\u001b[4;37mhttps://modal.com/apps/acme/main/ap-Hx3kV9wq2LbNcT7YpQe1aZ\u001b[0m\n\u001b[32m✓\u001b[0m Created objects.\n\u001b[37m├── \u001b[0m🔨 Created mount /home/op/gooni/modal/modal_app.py\n\u001b[37m├── \u001b[0m🔨 Created function download.\n\u001b[37m├── \u001b[0m🔨 Created function AniSora.*.\n\u001b[37m├── \u001b[0m🔨 Created function Pony.*.\n\u001b[37m├── \u001b[0m🔨 Created function Flux.*.\n\u001b[37m├── \u001b[0m🔨 Created function sweep.\n\u001b[37m└── \u001b[0m🔨 Created web function web => \n\u001b[37m    \u001b[0m\u001b[4;35mhttps://acme-research-and-development-group--gooni-inference.modal.run\u001b[0m 🔑 \n\u001b[37m    \u001b[0m\u001b[37m(label truncated)\u001b[0m\n\u001b[32m✓\u001b[0m App deployed in 6.201s! 🎉\n\nView Deployment: \u001b[35mhttps://modal.com/apps/acme/main/deployed/gooni-inference\u001b[0m\n"
)

// Older and hand-made forms.
const (
	// modal 0.5x-0.6x: the same tree, no key for proxy auth.
	modalDeployOlder = "✓ Initialized. View run at https://modal.com/apps/ap-123\n" +
		"✓ Created objects.\n" +
		"├── 🔨 Created mount /srv/gooni/modal/modal_app.py\n" +
		"├── 🔨 Created web function web => https://acme--gooni-inference.modal.run\n" +
		"└── 🔨 Created function generate_video.\n" +
		"✓ App deployed! 🎉\n\nView Deployment: https://modal.com/apps/acme/gooni-inference\n"
	// 2022-2023: "Created TAG => URL".
	modalDeployOldest = "✓ Initialized.\n✓ Created objects.\n├── 🔨 Created web => https://acme--gooni-inference.modal.run\n" +
		"└── 🔨 Created sweep.\n✓ App deployed! 🎉\n"
	// A terminal's view: spinner frames redrawn with carriage returns and cursor moves.
	modalDeployTerminal = "\x1b[?25l\r\x1b[2K\x1b[34m⠋\x1b[0m Creating objects...\r\x1b[2K\x1b[34m⠙\x1b[0m Creating objects...\n" +
		"\x1b[37m└── \x1b[0m\x1b[34m⠙\x1b[0m Creating function web...\r\x1b[2K\x1b[1A\x1b[2K" +
		"\x1b[32m✓\x1b[0m Created objects.\r\n" +
		"\x1b[37m└── \x1b[0m🔨 Created web function web => \x1b[4;35mhttps://acme--gooni-inference.modal.run\x1b[0m 🔑\r\n" +
		"\x1b[?25h\x1b[32m✓\x1b[0m App deployed in 3.1s! 🎉\r\n"
	// A deploy that failed before creating anything.
	modalDeployFailed = "Traceback (most recent call last):\n  File \"/srv/gooni/modal/modal_app.py\", line 12\n" +
		"modal.exception.AuthError: Token missing. Could not authenticate client.\n"
)

func TestDeployURL(t *testing.T) {
	const gooni = "https://acme--gooni-inference.modal.run"
	tree := func(lines ...string) string {
		return "✓ Created objects.\n" + strings.Join(lines, "\n") + "\n✓ App deployed in 2.0s! 🎉\n"
	}
	cases := []struct {
		name, output, want string
		ok                 bool
	}{
		{"current format", modalDeployCurrent, gooni, true},
		{"ANSI colours", modalDeployColour, gooni, true},
		{"ANSI colours, wrapped, label truncated", modalDeployColourWrapped,
			"https://acme-research-and-development-group--gooni-inference.modal.run", true},
		{"non-default environment", modalDeployEnvironment, "https://acme-dev--gooni-inference.modal.run", true},
		{"long workspace: URL wrapped onto its own line", modalDeployLongWorkspace,
			"https://acme-research-and-development-group--gooni-inference.modal.run", true},
		{"label truncated by Modal, URL folded mid-word", modalDeployTruncatedLabel,
			"https://research-and-development-lab-workspace-staging--gooni-i-4f2a9c1.modal.run", true},
		{"two web endpoints: the gooni-inference one", modalDeployTwoEndpoints, gooni, true},
		{"deployment skipped: the tree still names it", modalDeploySkipped, gooni, true},
		{"older: no key mark", modalDeployOlder, gooni, true},
		{"oldest: Created TAG => URL", modalDeployOldest, gooni, true},
		{"terminal redraws and CRLF", modalDeployTerminal, gooni, true},
		{"class web method", tree("└── 🔨 Created Web Function URL for Api.serve => " + gooni), gooni, true},
		{"trailing slash", tree("└── 🔨 Created web function web => " + gooni + "/"), gooni, true},
		{"printed twice", modalDeployCurrent + modalDeployCurrent, gooni, true},
		{"only a foreign app's endpoint (a ComfyUI deploy)",
			tree("└── 🔨 Created web function ui => https://acme--comfyui-ui.modal.run 🔑"), "https://acme--comfyui-ui.modal.run", true},
		{"truncated label wins over a foreign endpoint by its tag", tree(
			"├── 🔨 Created web function ui => https://acme--comfyui-ui.modal.run",
			"└── 🔨 Created web function web => https://very-long-workspace-name-here-and-more--gooni-in-9f8e7d6.modal.run 🔑 (label truncated)"),
			"https://very-long-workspace-name-here-and-more--gooni-in-9f8e7d6.modal.run", true},

		{"empty", "", "", false},
		{"failed deploy", modalDeployFailed, "", false},
		{"only dashboard links", "✓ Initialized. View run at https://modal.com/apps/acme/main/ap-1\n\nView Deployment: https://modal.com/apps/acme/main/deployed/gooni-inference\n", "", false},
		{"custom domain is not the modal.run URL", tree("├── 🔨 Created function web.", "└── 🔨 Custom domain for web => https://gpu.example.com"), "", false},
		{"not modal.run", tree("└── 🔨 Created web function web => https://gooni-inference.example.com 🔑"), "", false},
		{"look-alike host", tree("└── 🔨 Created web function web => https://acme--gooni-inference.modal.run.evil.com"), "", false},
		{"plain http", tree("└── 🔨 Created web function web => http://acme--gooni-inference.modal.run"), "", false},
		{"path", tree("└── 🔨 Created web function web => https://acme--gooni-inference.modal.run/x"), "", false},
		{"userinfo", tree("└── 🔨 Created web function web => https://u:p@acme--gooni-inference.modal.run"), "", false},
		{"label over 63", tree("└── 🔨 Created web function web => https://" + strings.Repeat("a", 47) + "--gooni-inference.modal.run"), "", false},
		{"upper case host", tree("└── 🔨 Created web function web => https://ACME--gooni-inference.modal.run"), "", false},
		{"URL never ends", tree("└── 🔨 Created web function web => https://acme--gooni-inf", "    erence.mod", "    al.", "    r", "    u", "    n"), "", false},
		{"URL cut off at the end of the output", "└── 🔨 Created web function web => https://acme--gooni-infe", "", false},
		{"ambiguous: two foreign endpoints", tree(
			"├── 🔨 Created web function a => https://acme--app-a.modal.run",
			"└── 🔨 Created web function b => https://acme--app-b.modal.run"), "", false},
		{"ambiguous: two gooni-inference endpoints", tree(
			"├── 🔨 Created web function web => https://acme--gooni-inference.modal.run",
			"└── 🔨 Created web function web => https://acme-dev--gooni-inference.modal.run"), "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := DeployURL(c.output)
			if got != c.want || ok != c.ok {
				t.Fatalf("DeployURL = %q, %v; want %q, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

// Hostile output (megabytes without a newline, endless "=>" lines) is read in linear time.
func TestDeployURLBoundedOnHugeOutput(t *testing.T) {
	inputs := []string{
		strings.Repeat("x", 8<<20),
		strings.Repeat("Created web function web => https://a", 200000),
		strings.Repeat("└── 🔨 Created web function web => https://acme--gooni-inf\n", 100000),
		strings.Repeat("\x1b[", 1<<20),
	}
	for i, in := range inputs {
		start := time.Now()
		if u, ok := DeployURL(in); ok {
			t.Fatalf("input %d: DeployURL = %q, true; want false", i, u)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("input %d took %v", i, d)
		}
	}
	// Megabytes of image-build log before the object tree: the URL at the end is still found.
	logs := strings.Repeat("Step 3/9 : RUN uv pip install torch==2.10.0 ... Downloading\n", 40000)
	if got, ok := DeployURL(logs + modalDeployCurrent); !ok || got != "https://acme--gooni-inference.modal.run" {
		t.Fatalf("after build logs: DeployURL = %q, %v", got, ok)
	}
}
