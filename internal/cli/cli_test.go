package cli

import (
	"bytes"
	"strings"
	"testing"

	"gooni/internal/config"
)

// TestHelpListsEverything: `gooni --help` names every subcommand and variable.
func TestHelpListsEverything(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"--help"}, testAssets(t), &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"workspace-sim", "backup", "version", "--demo", "--fault", "--require-key"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %s", want)
		}
	}
	for _, v := range config.Vars {
		if !strings.Contains(out.String(), v.Name) {
			t.Errorf("help lacks %s", v.Name)
		}
	}
}
