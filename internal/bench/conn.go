package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// connTransport is the load generator's http.RoundTripper: HTTP/1.1 with
// keep-alive, one request at a time per connection, run on the caller's
// goroutine. Requests are written by net/http's Request.Write and answers
// read by http.ReadResponse, so the wire format is the standard library's;
// what it leaves out of http.Transport is the background reader and writer
// goroutines per connection and the hand-offs between them and the caller,
// which cost the client about a third of its CPU per request on loopback
// (docs/PERFORMANCE.md, "`gooni bench`", "The client"). The client shares
// the machine's cores with the server it measures, so every microsecond it
// spends is one the server does not get.
//
// A request, its TLS handshake and its answer's body included, must end
// within the transport's timeout (0: no limit); when its context ends
// first (a run's end), the connection's deadline is moved to the past, so
// the request fails at once with the context already done, and that
// connection is closed. There is no proxy, no HTTP/2 and no retry: a
// request that fails is reported, never sent twice.
type connTransport struct {
	timeout time.Duration
	dialer  net.Dialer
	tls     *tls.Config // for https URLs; nil uses the system's roots

	mu   sync.Mutex
	idle map[string][]*benchConn // by scheme and host
	max  int                     // idle connections kept per host
}

// benchConn is one keep-alive connection with its buffers.
type benchConn struct {
	key  string
	net  net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	idle time.Time // when it went back to the idle ones
}

// Idle connections: one idle longer than maxIdleTime is closed (as
// http.Transport's IdleConnTimeout did); one idle longer than checkIdle is
// first checked for a close (or stray bytes) from the server, which may
// have ended it meanwhile (Gooni's IdleTimeout is 2 minutes, nginx's
// keepalive_timeout 75 s): between the phases of a comparison a client's
// connection waits while the other side runs.
const (
	maxIdleTime = 30 * time.Second
	checkIdle   = time.Second
)

// deadline is the end of a request that starts now (zero: none).
func (t *connTransport) deadline() time.Time {
	if t.timeout <= 0 {
		return time.Time{}
	}
	return time.Now().Add(t.timeout)
}

// usable reports whether an idle connection can take a request.
func (c *benchConn) usable() bool {
	idle := time.Since(c.idle)
	if idle > maxIdleTime {
		return false
	}
	if idle < checkIdle {
		return true
	}
	// Anything readable now is a close or bytes no request asked for. (A
	// deadline already past would fail the read before it looks.)
	c.net.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.r.Peek(1)
	c.net.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// newBenchHTTP is the load generator's client: a connTransport with
// cfg.Timeout per request and up to 2 idle connections per client, which
// answers redirects instead of following them.
func newBenchHTTP(cfg *benchConfig) (*http.Client, *connTransport) {
	tr := newConnTransport(cfg.Timeout, cfg.Clients*2)
	return &http.Client{Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, tr
}

// newConnTransport keeps at most maxIdle idle connections per host and
// ends each request after timeout.
func newConnTransport(timeout time.Duration, maxIdle int) *connTransport {
	return &connTransport{timeout: timeout, dialer: net.Dialer{Timeout: 5 * time.Second},
		idle: map[string][]*benchConn{}, max: maxIdle}
}

// RoundTrip sends req on an idle connection to its host (or a new one) and
// reads the answer's head; the body is read from the connection, which goes
// back to the idle ones when the body was read to its end and closed.
func (t *connTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, errors.New("bench: only http and https URLs")
	}
	c, err := t.get(req.Context(), req.URL.Scheme, req.URL.Host)
	if err != nil {
		return nil, err
	}
	c.net.SetDeadline(t.deadline())
	stop := context.AfterFunc(req.Context(), func() { c.net.SetDeadline(time.Unix(1, 0)) })
	resp, err := c.send(req)
	if err != nil {
		stop()
		c.net.Close()
		return nil, err
	}
	resp.Body = &connBody{body: resp.Body, c: c, t: t, stop: stop, reuse: !resp.Close}
	return resp, nil
}

// send writes req and reads the answer's head, past any informational
// (1xx) answer before it.
func (c *benchConn) send(req *http.Request) (*http.Response, error) {
	if err := req.Write(c.w); err != nil {
		return nil, err
	}
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(c.r, req)
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, err
		}
	}
}

// get takes an idle connection to scheme://host or dials one.
func (t *connTransport) get(ctx context.Context, scheme, host string) (*benchConn, error) {
	key := scheme + "://" + host
	for {
		t.mu.Lock()
		l := t.idle[key]
		if len(l) == 0 {
			t.mu.Unlock()
			break
		}
		c := l[len(l)-1]
		t.idle[key] = l[:len(l)-1]
		t.mu.Unlock()
		if c.usable() {
			return c, nil
		}
		c.net.Close()
	}
	addr := host
	if _, _, err := net.SplitHostPort(host); err != nil {
		if scheme == "https" {
			addr = net.JoinHostPort(host, "443")
		} else {
			addr = net.JoinHostPort(host, "80")
		}
	}
	nc, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if scheme == "https" {
		cfg := &tls.Config{}
		if t.tls != nil {
			cfg = t.tls.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(nc, cfg)
		nc.SetDeadline(t.deadline()) // the handshake is part of the request
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	return &benchConn{key: key, net: nc, r: bufio.NewReader(nc), w: bufio.NewWriter(nc)}, nil
}

// put keeps c for the next request to its host, or closes it.
func (t *connTransport) put(c *benchConn) {
	c.idle = time.Now()
	t.mu.Lock()
	if l := t.idle[c.key]; len(l) < t.max {
		t.idle[c.key] = append(l, c)
		c = nil
	}
	t.mu.Unlock()
	if c != nil {
		c.net.Close()
	}
}

// CloseIdleConnections closes every idle connection (at the end of a run).
func (t *connTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*benchConn{}
	t.mu.Unlock()
	for _, l := range idle {
		for _, c := range l {
			c.net.Close()
		}
	}
}

// connBody is an answer's body. Closing it reads what is left of it (as
// net/http's own body does), and the connection is reused only when that
// worked, the server keeps the connection open and the request's context
// did not end meanwhile.
type connBody struct {
	body  io.ReadCloser
	c     *benchConn
	t     *connTransport
	stop  func() bool // stops the context's watch; false once it fired
	reuse bool
	done  bool
}

func (b *connBody) Read(p []byte) (int, error) { return b.body.Read(p) }

func (b *connBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.body.Close()
	if b.stop() && b.reuse && err == nil {
		b.t.put(b.c)
	} else {
		b.c.net.Close()
	}
	return err
}
