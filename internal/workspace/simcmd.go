package workspace

import (
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
	return RunSim("workspace-sim", cfg.Addr, func() (*Sim, error) { return NewSim(cfg) }, func(sim *Sim, a net.Addr) string {
		c := sim.Config()
		return fmt.Sprintf("workspace-sim listening on http://%s (duration %s, capacity %d, fault %s, fault rate %g, key required %t)",
			a, c.Duration, c.Capacity, c.Fault, c.FaultRate, c.RequireKey != "")
	}, stdout, stderr)
}

// parseSimFlags returns the config, or ok=false with the exit code to use.
func parseSimFlags(args []string, stderr io.Writer) (cfg SimConfig, code int, ok bool) {
	fs := NewSimFlags("workspace-sim", "Serves Workspace API v1 with synthetic media, for tests and the demo.", stderr)
	fs.StringVar(&cfg.Addr, "addr", simDefaultAddr, "listen address")
	fs.DurationVar(&cfg.Duration, "duration", simDefaultDuration, "time a task takes")
	fs.IntVar(&cfg.Capacity, "capacity", simDefaultCapacity, "concurrent tasks accepted")
	fs.StringVar(&cfg.Fault, "fault", FaultNone, "fault to inject: none|refuse|drop|hang|corrupt|error|5xx")
	rate := fs.Float64("fault-rate", 1, "share of tasks the fault hits, 0-1")
	requireKey := fs.String("require-key", "", "answer 401 unless Modal-Key/Modal-Secret match `KEY:SECRET`")
	fs.Int64Var(&cfg.Seed, "seed", 0, "varies which task ids a partial fault rate hits")
	models := fs.String("models", strings.Join(SimModels, ","), "comma-separated model ids GET /health reports served")
	if code, ok := fs.ParseArgs(args); !ok {
		return cfg, code, false
	}
	switch {
	case cfg.Duration <= 0:
		return cfg, fs.Fail("--duration must be positive"), false
	case cfg.Capacity < 1:
		return cfg, fs.Fail("--capacity must be at least 1"), false
	case !validFault(cfg.Fault):
		return cfg, fs.Fail(fmt.Sprintf("--fault %q is not one of none|refuse|drop|hang|corrupt|error|5xx", cfg.Fault)), false
	case *rate != *rate || *rate < 0 || *rate > 1:
		return cfg, fs.Fail("--fault-rate must be within 0 and 1"), false
	}
	cfg.FaultRate = *rate
	cfg.Models = SplitList(*models)
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
			return cfg, fs.Fail("--require-key must be KEY:SECRET with both parts non-empty"), false
		}
		cfg.RequireKey, cfg.RequireSecret = k, s
	}
	return cfg, 0, true
}
