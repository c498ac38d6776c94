package comfyui

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"gooni/internal/testutil"
)

// ComfyUI answers the /ws handshake before it registers the socket under
// the client_id; frames sent in between are lost. The driver takes its
// socket as up, and stops polling, only once the first frame (ComfyUI's
// status greeting) has come. Here a fake ComfyUI accepts the socket and
// holds the greeting back until the test releases it.
func TestDriverSocketIsUpOnlyAfterTheGreeting(t *testing.T) {
	accepted, greet := make(chan struct{}, 1), make(chan struct{})
	base, _ := fakeComfySocket(t, func(c *websocket.Conn, r *http.Request, _ int32) {
		accepted <- struct{}{}
		select {
		case <-greet:
		case <-r.Context().Done():
			return
		}
		greetSocket(c, r)
		<-r.Context().Done()
	})
	d := startDriver(t, base, hooks{}, nil)
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the driver never opened its socket")
	}
	time.Sleep(100 * time.Millisecond) // the handshake is answered; no frame yet
	if d.tr.isUp() {
		t.Fatal("the socket counts as up before ComfyUI's greeting")
	}
	close(greet)
	waitSocket(t, d)
}

// A socket that goes silent without closing (a NAT or proxy dropped it)
// must not count as up for good: the driver pings it, and when no pong
// comes it dials again. The fake ComfyUI greets, then reads nothing, so it
// never answers a ping (as a dead peer would not); one that reads (as
// ComfyUI's server.py does, with aiohttp answering pings) keeps its one
// socket. Intervals: a ping every 50 ms, 100 ms for the pong.
func TestDriverRedialsASilentSocket(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reads     bool
		wantDials func(n int32) bool
	}{
		{"peer that never answers", false, func(n int32) bool { return n >= 3 }},
		{"peer that answers pings", true, func(n int32) bool { return n == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, dials := fakeComfySocket(t, func(c *websocket.Conn, r *http.Request, _ int32) {
				greetSocket(c, r)
				if tc.reads {
					for {
						if _, _, err := c.Read(r.Context()); err != nil {
							return
						}
					}
				}
				<-r.Context().Done()
			})
			var logs testutil.LogBuffer
			d := startDriver(t, base, hooks{pingEvery: 50 * time.Millisecond, pongWait: 100 * time.Millisecond},
				func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
			waitSocket(t, d)
			if tc.reads {
				time.Sleep(time.Second) // about 20 pings answered
			} else {
				waitFor(t, "the driver to dial the silent socket again twice", func() bool { return dials.Load() >= 3 })
				if !strings.Contains(logs.String(), "socket silent") {
					t.Errorf("no log line says the socket went silent:\n%s", logs.String())
				}
			}
			if n := dials.Load(); !tc.wantDials(n) {
				t.Errorf("%d dials", n)
			}
		})
	}
}

// A pong waits behind a frame still coming (a large preview on a slow
// link): while bytes arrive the socket is alive, even past the pong's wait.
// The fake greets, then sends one binary frame in 30 pieces of 16 KiB 20 ms apart
// (600 ms, six times the 100 ms pong wait) and never answers a ping; the
// driver keeps its socket through the frame and dials again only once the
// peer has gone silent after it.
func TestDriverKeepsASocketWhileAFrameComes(t *testing.T) {
	frameDone := make(chan int32, 1)
	var dials *atomic.Int32 // set before the driver dials
	base, dials := fakeComfySocket(t, func(c *websocket.Conn, r *http.Request, n int32) {
		greetSocket(c, r)
		if n == 1 {
			fw, err := c.Writer(r.Context(), websocket.MessageBinary)
			if err != nil {
				return
			}
			for range 30 {
				time.Sleep(20 * time.Millisecond)
				if _, err := fw.Write(make([]byte, 16<<10)); err != nil { // past the writer's buffer: each piece goes out as it is written
					return
				}
			}
			fw.Close()
			frameDone <- dials.Load()
		}
		<-r.Context().Done()
	})
	d := startDriver(t, base, hooks{pingEvery: 50 * time.Millisecond, pongWait: 100 * time.Millisecond}, nil)
	waitSocket(t, d)
	select {
	case n := <-frameDone:
		if n != 1 {
			t.Fatalf("the driver dialled %d times while a frame was coming, want once", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the frame was never sent whole: the socket was closed under it")
	}
	waitFor(t, "the driver to dial again once the peer went silent", func() bool { return dials.Load() >= 2 })
}

// fakeComfySocket is a ComfyUI that serves only /ws: it accepts each
// socket, counts it in dials (n is its number, from 1) and hands it to
// serve; the socket closes when serve returns.
func fakeComfySocket(t *testing.T, serve func(c *websocket.Conn, r *http.Request, n int32)) (base string, dials *atomic.Int32) {
	dials = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			http.NotFound(w, r)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		serve(c, r, dials.Add(1))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, dials
}

// greetSocket writes ComfyUI's first frame, the status greeting with the
// socket's sid (its clientId).
func greetSocket(c *websocket.Conn, r *http.Request) {
	sid := r.URL.Query().Get("clientId")
	c.Write(r.Context(), websocket.MessageText, []byte(`{"type":"status","data":{"status":{"exec_info":{"queue_remaining":0}},"sid":"`+sid+`"}}`))
}
