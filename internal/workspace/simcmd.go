package workspace

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
)

// RunSimCommand runs `gooni workspace-sim` with args (after the subcommand name)
// until SIGINT/SIGTERM; it returns the process exit code (2 = bad flags).
func RunSimCommand(args []string, stdout, stderr io.Writer) int {
	cfg, code, ok := parseSimFlags(args, stderr)
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
		return fmt.Sprintf("workspace-sim listening on http://%s (duration %s, capacity %d, fault %s, fault rate %g, key required %t)",
			a, c.Duration, c.Capacity, c.Fault, c.FaultRate, c.RequireKey != "")
	}
	return RunSimProcess("workspace-sim", c.Addr, banner, sim.Serve, stdout, stderr)
}

// parseSimFlags returns the config, or ok=false with the exit code to use.
func parseSimFlags(args []string, stderr io.Writer) (cfg SimConfig, code int, ok bool) {
	fs := flag.NewFlagSet("workspace-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: gooni workspace-sim [flags]\n\nServes Workspace API v1 with synthetic media, for tests and the demo.\n\nFlags:")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Addr, "addr", simDefaultAddr, "listen address")
	fs.DurationVar(&cfg.Duration, "duration", simDefaultDuration, "time a task takes")
	fs.IntVar(&cfg.Capacity, "capacity", simDefaultCapacity, "concurrent tasks accepted")
	fs.StringVar(&cfg.Fault, "fault", FaultNone, "fault to inject: none|refuse|drop|hang|corrupt|error|5xx")
	rate := fs.Float64("fault-rate", 1, "share of tasks the fault hits, 0-1")
	requireKey := fs.String("require-key", "", "answer 401 unless Modal-Key/Modal-Secret match `KEY:SECRET`")
	fs.Int64Var(&cfg.Seed, "seed", 0, "varies which task ids a partial fault rate hits")
	models := fs.String("models", strings.Join(SimModels, ","), "comma-separated model ids GET /health reports served")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, 0, false
		}
		return cfg, 2, false
	}
	fail := func(msg string) (SimConfig, int, bool) {
		fmt.Fprintf(stderr, "workspace-sim: %s\n", msg)
		fs.Usage()
		return cfg, 2, false
	}
	if fs.NArg() > 0 {
		return fail("unexpected arguments: " + strings.Join(fs.Args(), " "))
	}
	if cfg.Duration <= 0 {
		return fail("--duration must be positive")
	}
	if cfg.Capacity < 1 {
		return fail("--capacity must be at least 1")
	}
	if !validFault(cfg.Fault) {
		return fail(fmt.Sprintf("--fault %q is not one of none|refuse|drop|hang|corrupt|error|5xx", cfg.Fault))
	}
	if *rate != *rate || *rate < 0 || *rate > 1 {
		return fail("--fault-rate must be within 0 and 1")
	}
	cfg.FaultRate = *rate
	cfg.Models = []string{}
	for _, m := range strings.Split(*models, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Models = append(cfg.Models, m)
		}
	}
	if cfg.FaultRate == 0 {
		// An explicit 0 share means no task is hit; SimConfig reads 0 as "default 1".
		cfg.Fault = FaultNone
	}
	if cfg.Fault == FaultNone {
		cfg.FaultRate = 0
	}
	if *requireKey != "" {
		k, s, found := strings.Cut(*requireKey, ":")
		if !found || k == "" || s == "" {
			// The value is a credential: never echo it.
			return fail("--require-key must be KEY:SECRET with both parts non-empty")
		}
		cfg.RequireKey, cfg.RequireSecret = k, s
	}
	return cfg, 0, true
}
