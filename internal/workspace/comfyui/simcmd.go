package comfyui

import (
	"flag"
	"fmt"
	"gooni/internal/workspace"
	"io"
	"net"
	"strings"
)

// RunSimCommand runs `gooni comfy-sim` with args (after the subcommand name)
// until SIGINT/SIGTERM; it returns the process exit code (2 = bad flags).
func RunSimCommand(args []string, stdout, stderr io.Writer) int {
	cfg, code, ok := parseComfySimFlags(args, stderr)
	if !ok {
		return code
	}
	return workspace.RunSim("comfy-sim", cfg.Addr, func() (*Sim, error) { return NewSim(cfg) }, func(sim *Sim, a net.Addr) string {
		c := sim.Config()
		return fmt.Sprintf("comfy-sim listening on http://%s (duration %s, fault %s, %d model files)", a, c.Duration, c.Fault, len(sim.Models()))
	}, stdout, stderr)
}

// parseComfySimFlags returns the config, or ok=false with the exit code to use.
func parseComfySimFlags(args []string, stderr io.Writer) (cfg SimConfig, code int, ok bool) {
	fs := workspace.NewSimFlags("comfy-sim", "Serves the ComfyUI API subset Gooni's comfyui driver uses, with synthetic media, for tests and the demo.", stderr)
	fs.StringVar(&cfg.Addr, "addr", simDefaultAddr, "listen address")
	fs.DurationVar(&cfg.Duration, "duration", simDefaultDuration, "sampling time of one prompt")
	models := fs.String("models", "", "comma-separated model file names the loaders list (default: every file the shipped workflows need)")
	fs.StringVar(&cfg.Fault, "fault", FaultNone, "fault to inject: "+strings.Join(simFaults, "|"))
	if code, ok := fs.ParseArgs(args); !ok {
		return cfg, code, false
	}
	switch {
	case cfg.Duration <= 0:
		return cfg, fs.Fail("--duration must be positive"), false
	case !validSimFault(cfg.Fault):
		return cfg, fs.Fail(fmt.Sprintf("--fault %q is not one of %s", cfg.Fault, strings.Join(simFaults, "|"))), false
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "models" {
			cfg.Models = workspace.SplitList(*models)
		}
	})
	return cfg, 0, true
}
