package workspace

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// ServeSim serves h on ln until ctx is done or serving fails, then calls
// release (which ends the calls a simulator holds open), shuts the server
// down within 5 s and closes ln. Errors are prefixed with name, for example
// "comfy-sim: serve: ...". Both simulators (workspace-sim and comfy-sim) use it.
func ServeSim(ctx context.Context, ln net.Listener, h http.Handler, release func(), name string) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		release()
		return fmt.Errorf("%s: serve: %w", name, err)
	case <-ctx.Done():
	}
	release()
	shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shCtx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// RunSimProcess is the body of a simulator subcommand: it listens on addr,
// prints banner(the bound address) to stdout and serves until SIGINT or
// SIGTERM. It returns the exit code: 0 after a signal, 1 when listening or
// serving fails (the reason goes to stderr, prefixed with name).
func RunSimProcess(name, addr string, banner func(net.Addr) string, serve func(context.Context, net.Listener) error, stdout, stderr io.Writer) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: listen: %v\n", name, err)
		return 1
	}
	fmt.Fprintln(stdout, banner(ln.Addr()))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, ln); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// SimFlags is the flag set of a simulator subcommand (`gooni NAME`): the
// usage text, the parse rules (no positional arguments, -h exits 0, a bad
// flag exits 2) and the refusal format are the same for every simulator.
type SimFlags struct {
	*flag.FlagSet
	name   string
	stderr io.Writer
}

// NewSimFlags returns an empty flag set for `gooni name`; about is the
// sentence the usage text prints under the command line.
func NewSimFlags(name, about string, stderr io.Writer) *SimFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gooni %s [flags]\n\n%s\n\nFlags:\n", name, about)
		fs.PrintDefaults()
	}
	return &SimFlags{FlagSet: fs, name: name, stderr: stderr}
}

// ParseArgs parses args; when the command must stop it returns ok=false and
// the exit code (0 after -h, 2 for a bad flag or a positional argument).
func (f *SimFlags) ParseArgs(args []string) (code int, ok bool) {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if f.NArg() > 0 {
		return f.Fail("unexpected arguments: " + strings.Join(f.Args(), " ")), false
	}
	return 0, true
}

// Fail prints "NAME: msg" and the usage to stderr and returns the exit code 2.
func (f *SimFlags) Fail(msg string) int {
	fmt.Fprintf(f.stderr, "%s: %s\n", f.name, msg)
	f.Usage()
	return 2
}

// SplitList is the non-empty, trimmed items of a comma-separated flag value.
func SplitList(s string) []string {
	out := []string{}
	for _, m := range strings.Split(s, ",") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// RunSim is the body of a simulator subcommand once its flags are read: it
// builds the simulator (an error exits 2) and runs it as RunSimProcess does.
func RunSim[S interface {
	Serve(context.Context, net.Listener) error
}](name, addr string, build func() (S, error), banner func(S, net.Addr) string, stdout, stderr io.Writer) int {
	sim, err := build()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	return RunSimProcess(name, addr, func(a net.Addr) string { return banner(sim, a) }, sim.Serve, stdout, stderr)
}
