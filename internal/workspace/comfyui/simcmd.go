package comfyui

import (
	"errors"
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
	sim, err := NewSim(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	c := sim.Config()
	banner := func(a net.Addr) string {
		return fmt.Sprintf("comfy-sim listening on http://%s (duration %s, fault %s, %d model files)", a, c.Duration, c.Fault, len(sim.Models()))
	}
	return workspace.RunSimProcess("comfy-sim", c.Addr, banner, sim.Serve, stdout, stderr)
}

// parseComfySimFlags returns the config, or ok=false with the exit code to use.
func parseComfySimFlags(args []string, stderr io.Writer) (cfg SimConfig, code int, ok bool) {
	fs := flag.NewFlagSet("comfy-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: gooni comfy-sim [flags]\n\nServes the ComfyUI API subset Gooni's comfyui driver uses, with synthetic media, for tests and the demo.\n\nFlags:")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Addr, "addr", simDefaultAddr, "listen address")
	fs.DurationVar(&cfg.Duration, "duration", simDefaultDuration, "sampling time of one prompt")
	models := fs.String("models", "", "comma-separated model file names the loaders list (default: every file the shipped workflows need)")
	fs.StringVar(&cfg.Fault, "fault", FaultNone, "fault to inject: "+strings.Join(simFaults, "|"))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, 0, false
		}
		return cfg, 2, false
	}
	fail := func(msg string) (SimConfig, int, bool) {
		fmt.Fprintf(stderr, "comfy-sim: %s\n", msg)
		fs.Usage()
		return cfg, 2, false
	}
	if fs.NArg() > 0 {
		return fail("unexpected arguments: " + strings.Join(fs.Args(), " "))
	}
	if cfg.Duration <= 0 {
		return fail("--duration must be positive")
	}
	if !validSimFault(cfg.Fault) {
		return fail(fmt.Sprintf("--fault %q is not one of %s", cfg.Fault, strings.Join(simFaults, "|")))
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "models" {
			cfg.Models = []string{}
		}
	})
	for _, m := range strings.Split(*models, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Models = append(cfg.Models, m)
		}
	}
	return cfg, 0, true
}
