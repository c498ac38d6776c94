package cli

import (
	"io"

	"gooni/internal/bench"
	"gooni/internal/config"
)

// runBench is `gooni bench`: load against a running server (see docs/PERFORMANCE.md).
func runBench(args []string, a Assets, getenv func(string) string, stdout, stderr io.Writer) int {
	o, err := config.LoadOffline(getenv)
	if err != nil {
		io.WriteString(stderr, "gooni bench: configuration: "+err.Error()+"\n")
		return 2
	}
	return bench.Main(args, bench.Env{APIKey: o.Secrets.APIKey.Value, Schema: a.Schema}, stdout, stderr)
}
