package testutil

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildGooni builds the gooni binary of this repository into a new temporary
// directory and returns its path and a function that removes it. For
// TestMain, once per package: the e2e packages run the real binary, and their
// test cache cannot see changes outside their own directory, so they always
// build afresh.
func BuildGooni() (bin string, cleanup func(), err error) {
	root, err := repoRoot()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "gooni-test-bin-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "gooni")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building gooni: %w", err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// BaseEnv is the test process's environment without any GG_ variable or
// FRONTEND_ORIGINS, so a developer's settings cannot change a test.
func BaseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GG_") || strings.HasPrefix(kv, "FRONTEND_ORIGINS=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Process is one run of a binary that can be killed, stopped and started
// again with the same arguments and environment. Its output (all runs) goes
// to Logs, which the test prints only when it fails.
type Process struct {
	Name string
	Bin  string
	Args []string
	Env  []string // added to BaseEnv
	Logs *LogBuffer
	// Prefix is a command the binary runs under (for example prlimit and
	// its flags), or none.
	Prefix []string

	t      testing.TB
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// NewProcess prepares a process; it is killed (SIGKILL) when the test ends,
// and its output is logged (the last 64 KiB) if the test failed.
func NewProcess(t testing.TB, name, bin string, args, env []string) *Process {
	p := &Process{Name: name, Bin: bin, Args: args, Env: env, Logs: &LogBuffer{}, t: t}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			out := p.Logs.String()
			if len(out) > 64<<10 {
				out = "...\n" + out[len(out)-64<<10:]
			}
			t.Logf("---- %s output ----\n%s", p.Name, out)
		}
	})
	return p
}

// Start launches the process; it fails the test if it cannot be started or
// is already running.
func (p *Process) Start() {
	p.t.Helper()
	if err := p.TryStart(); err != nil {
		p.t.Fatal(err)
	}
}

// TryStart is Start returning the error.
func (p *Process) TryStart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s: already running", p.Name)
	}
	cmd := exec.Command(p.Bin, p.Args...)
	if len(p.Prefix) > 0 {
		cmd = exec.Command(p.Prefix[0], append(append(p.Prefix[1:len(p.Prefix):len(p.Prefix)], p.Bin), p.Args...)...)
	}
	cmd.Env = append(BaseEnv(), p.Env...)
	cmd.Stdout, cmd.Stderr = p.Logs, p.Logs
	// Own process group, so a Ctrl-C of go test does not reach it before cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start: %w", p.Name, err)
	}
	p.starts++
	fmt.Fprintf(p.Logs, "==== %s start #%d pid %d ====\n", p.Name, p.starts, cmd.Process.Pid)
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	return nil
}

// Kill sends SIGKILL and waits until the process is gone; a no-op when it is not running.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.exited
	fmt.Fprintf(p.Logs, "==== %s killed (SIGKILL) ====\n", p.Name)
	p.cmd = nil
}

// Stop sends SIGTERM and waits up to timeout for the process to exit, then
// kills it. The error says whether it did not exit in time or exited with a
// failure status.
func (p *Process) Stop(timeout time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-p.exited:
		if st := p.cmd.ProcessState; st != nil && !st.Success() {
			err = fmt.Errorf("%s exited with %v after SIGTERM", p.Name, st)
		}
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.exited
		err = fmt.Errorf("%s did not exit within %v of SIGTERM", p.Name, timeout)
	}
	fmt.Fprintf(p.Logs, "==== %s stopped (SIGTERM) ====\n", p.Name)
	p.cmd = nil
	return err
}

// Running reports whether the process is alive.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// WaitHTTP polls GET url until ready(status) holds, and returns an error when
// the process exits first or timeout passes. A connection error counts as
// not ready.
func (p *Process) WaitHTTP(url string, timeout time.Duration, ready func(status int) bool) error {
	client := &http.Client{Timeout: 2 * time.Second}
	exited := false
	err := Poll(timeout, func() bool {
		if !p.Running() {
			exited = true
			return true
		}
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return ready(resp.StatusCode)
	})
	switch {
	case exited:
		return fmt.Errorf("%s exited before %s answered", p.Name, url)
	case err != nil:
		return fmt.Errorf("%s: no ready answer from %s within %s", p.Name, url, timeout)
	}
	return nil
}
