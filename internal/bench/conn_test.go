package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer serves handler on loopback and counts the connections
// clients opened to it; edit changes its http.Server before it starts.
func countingServer(t *testing.T, tlsOn bool, handler http.HandlerFunc, edit ...func(*http.Server)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused TLS handshake
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	for _, e := range edit {
		e(srv.Config)
	}
	if tlsOn {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, &conns
}

// roundTrip sends one request through tr and reads the whole answer.
func roundTrip(ctx context.Context, tr http.RoundTripper, method, url string, body []byte) (int, string, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, "", err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	data, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return resp.StatusCode, string(data), err
}

// The load generator keeps one connection per client open across requests,
// as wrk does: 50 POSTs and GETs in a row open one connection, each answer
// arrives whole, and each request body reaches the server.
func TestConnTransportKeepsTheConnectionOpen(t *testing.T) {
	var got atomic.Int64
	srv, conns := countingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Add(int64(len(b)))
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"task_id":"`+r.Method+`"}`)
	})
	tr := newConnTransport(5*time.Second, 4)
	defer tr.CloseIdleConnections()
	body := []byte(`{"model":"flux","mode":"t2i","prompt":"p"}`)
	for i := 0; i < 50; i++ {
		method, b := http.MethodPost, body
		if i%2 == 1 {
			method, b = http.MethodGet, nil
		}
		st, data, err := roundTrip(context.Background(), tr, method, srv.URL+"/generate", b)
		if err != nil || st != http.StatusAccepted || data != `{"task_id":"`+method+`"}` {
			t.Fatalf("request %d: %d %q %v", i, st, data, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("50 requests in a row opened %d connections, want 1", n)
	}
	if want := int64(25 * len(body)); got.Load() != want {
		t.Errorf("the server read %d body bytes, want %d", got.Load(), want)
	}
}

// A connection the server closes ("Connection: close"), or whose answer was
// not read to its end, is not used again: the next request opens a new one
// and succeeds.
func TestConnTransportDropsConnectionsItCannotReuse(t *testing.T) {
	srv, conns := countingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		if r.URL.Path == "/big" {
			w.Write(bytes.Repeat([]byte("x"), 1<<20))
			return
		}
		io.WriteString(w, "ok")
	})
	tr := newConnTransport(5*time.Second, 4)
	defer tr.CloseIdleConnections()
	for i, path := range []string{"/close", "/a", "/close", "/b"} {
		if st, data, err := roundTrip(context.Background(), tr, http.MethodGet, srv.URL+path, nil); err != nil || st != 200 || data != "ok" {
			t.Fatalf("request %d (%s): %d %q %v", i, path, st, data, err)
		}
	}
	// /close on the first, /a and /close on the second, /b on a third.
	if n := conns.Load(); n != 3 {
		t.Errorf("two answers with Connection: close: %d connections, want 3", n)
	}
	// Read 10 bytes of a 1 MiB answer, then close it: the rest is read
	// off the connection (or it is dropped), never taken for the next answer.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/big", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 10))
	resp.Body.Close()
	if st, data, err := roundTrip(context.Background(), tr, http.MethodGet, srv.URL+"/a", nil); err != nil || st != 200 || data != "ok" {
		t.Fatalf("after a half-read answer: %d %q %v", st, data, err)
	}
}

// A request whose context ends while the server has not answered fails at
// once, with the context already done (so a run's end is never counted as
// a server error); a request that outlasts the transport's timeout fails
// as a timeout. The server here never answers /stall.
func TestConnTransportEndsWithTheContextAndTheTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv, _ := countingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, "ok")
	})
	tr := newConnTransport(time.Minute, 4)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := roundTrip(ctx, tr, http.MethodPost, srv.URL+"/stall", []byte(`{}`))
	if err == nil || ctx.Err() == nil {
		t.Fatalf("stalled request: err %v, context err %v", err, ctx.Err())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the request ended %v after its context's deadline of 150ms", d)
	}
	// The connection the context aborted is gone; the next request works.
	if st, data, err := roundTrip(context.Background(), tr, http.MethodGet, srv.URL+"/a", nil); err != nil || st != 200 || data != "ok" {
		t.Fatalf("after an aborted request: %d %q %v", st, data, err)
	}

	short := newConnTransport(150*time.Millisecond, 4)
	defer short.CloseIdleConnections()
	_, _, err = roundTrip(context.Background(), short, http.MethodGet, srv.URL+"/stall", nil)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || transportReason(err) != "timeout" {
		t.Fatalf("request past the timeout: %v, want a timeout", err)
	}
}

// An https URL is spoken over TLS, with the server's certificate checked
// against the transport's roots; an unknown certificate is refused.
func TestConnTransportSpeaksTLS(t *testing.T) {
	srv, conns := countingServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})
	tr := newConnTransport(5*time.Second, 4)
	defer tr.CloseIdleConnections()
	if _, _, err := roundTrip(context.Background(), tr, http.MethodGet, srv.URL+"/", nil); err == nil {
		t.Fatal("a certificate no root signs was accepted")
	}
	tr.tls = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	for i := 0; i < 3; i++ {
		if st, data, err := roundTrip(context.Background(), tr, http.MethodGet, srv.URL+"/", nil); err != nil || st != 200 || data != "HTTP/1.1" {
			t.Fatalf("request %d over TLS: %d %q %v", i, st, data, err)
		}
	}
	if n := conns.Load(); n != 2 { // the refused handshake, then one kept open
		t.Errorf("%d connections, want 2", n)
	}
}

// A whole run against a server that answers every submit after 20 ms:
// the requests still in flight when the run ends are not counted as
// errors, and each client keeps its one connection.
func TestBenchRunEndIsNotAnError(t *testing.T) {
	srv, conns := countingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/gallery" {
			io.WriteString(w, `{"items":[],"next_cursor":null}`)
			return
		}
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"task_id":"x","status":"pending"}`)
	})
	var out, errb bytes.Buffer
	code := Main([]string{"--url", srv.URL, "--api-key", "k", "--clients", "4", "--duration", "300ms", "--raw-duration", "0",
		"--workload", "submit"}, Env{}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	r := benchRows(out.String())["submit"]
	if r[0] == "" || r[0] == "0" || r[1] != "0" {
		t.Errorf("submit row %v, want requests and no errors:\n%s", r, out.String())
	}
	if strings.Contains(out.String(), "transport") {
		t.Errorf("transport errors reported:\n%s", out.String())
	}
	if n := conns.Load(); n > 4 {
		t.Errorf("4 clients opened %d connections", n)
	}
}

// A connection the server closed while it sat idle (here after 100 ms;
// Gooni's own IdleTimeout is 2 minutes, nginx's 75 s, while a comparison
// runs the other side for up to minutes) is noticed before it is used:
// the next request opens a new one and succeeds, even a POST, which is
// never sent twice.
func TestConnTransportDropsConnectionsTheServerClosed(t *testing.T) {
	srv, conns := countingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}, func(s *http.Server) { s.IdleTimeout = 100 * time.Millisecond })
	tr := newConnTransport(5*time.Second, 4)
	defer tr.CloseIdleConnections()
	if st, _, err := roundTrip(context.Background(), tr, http.MethodGet, srv.URL+"/a", nil); err != nil || st != 200 {
		t.Fatalf("first request: %d %v", st, err)
	}
	time.Sleep(checkIdle + 200*time.Millisecond)
	if st, data, err := roundTrip(context.Background(), tr, http.MethodPost, srv.URL+"/generate", []byte(`{}`)); err != nil || st != 200 || data != "ok" {
		t.Fatalf("POST after the server closed the idle connection: %d %q %v", st, data, err)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// --timeout 0 sets no deadline (a 300 ms answer arrives whole); an
// informational answer (103 Early Hints) before the real one is skipped,
// and the connection stays in step for the next request.
func TestConnTransportWithoutTimeoutAndPastEarlyHints(t *testing.T) {
	srv, conns := countingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hints" {
			w.Header().Set("Link", "</app.js>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		}
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		io.WriteString(w, "ok "+r.URL.Path)
	})
	tr := newConnTransport(0, 4)
	defer tr.CloseIdleConnections()
	for _, path := range []string{"/slow", "/hints", "/a", "/hints", "/b"} {
		if st, data, err := roundTrip(context.Background(), tr, http.MethodGet, srv.URL+path, nil); err != nil || st != 200 || data != "ok "+path {
			t.Fatalf("%s: %d %q %v", path, st, data, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// An https URL whose listener accepts the connection and never answers
// the TLS handshake fails within the transport's timeout, not never.
func TestConnTransportBoundsTheTLSHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	tr := newConnTransport(200*time.Millisecond, 4)
	done := make(chan error, 1)
	go func() {
		_, _, err := roundTrip(context.Background(), tr, http.MethodGet, "https://"+ln.Addr().String()+"/", nil)
		done <- err
	}()
	select {
	case err := <-done:
		if transportReason(err) != "timeout" {
			t.Errorf("silent TLS server: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the TLS handshake with a silent server was not cut off")
	}
}
