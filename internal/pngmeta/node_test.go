package pngmeta_test

import (
	"context"
	"gooni/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The UI's PNG import (ui/src/pngimport.ts) reads the same committed PNGs
// this package builds; its tests run under Node (ui/test/pngimport.test.mjs),
// so `go test ./...` covers both sides of the format. Skipped only when node
// is not installed (a failure under GG_REQUIRE_TOOLS=1); ui/node_modules (npm ci) must be there when it is.
func TestUIImportUnderNode(t *testing.T) {
	node := testutil.NeedTool(t, "node", "the UI's PNG import, ui/test/pngimport.test.mjs (Node 20)")
	ui, err := filepath.Abs("../../ui")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ui, "node_modules", "esbuild")); err != nil {
		t.Fatalf("ui/node_modules/esbuild is missing: run `npm ci` in ui/ (%v)", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "test/pngimport.test.mjs")
	cmd.Dir = ui
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test test/pngimport.test.mjs: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("%s", out)
	}
}
