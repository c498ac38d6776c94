package workspace

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
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
