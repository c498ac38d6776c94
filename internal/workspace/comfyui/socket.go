package comfyui

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

const (
	// maxSocketText bounds one JSON frame the driver parses; larger ones are skipped.
	maxSocketText = 1 << 20
	// maxSocketFrame bounds any frame; binary preview frames are read and
	// discarded without being held, but a peer may not stream one without end.
	maxSocketFrame    = 64 << 20
	socketDialTimeout = 15 * time.Second
	backoffMin        = 250 * time.Millisecond
	backoffMax        = 15 * time.Second
	// socketPingEvery is how often an up socket is pinged, and socketPongWait
	// how long its pong may take (RFC 6455 section 5.5.2; ComfyUI's aiohttp
	// WebSocketResponse answers pings itself while server.py reads the
	// socket). A socket that goes silent without closing (a NAT or proxy
	// dropped it) is then taken down and dialled again, instead of counting
	// as up while nothing comes.
	socketPingEvery = 30 * time.Second
	socketPongWait  = 20 * time.Second
)

// socketURL is the /ws address for this driver's client_id.
func (d *Driver) socketURL() string {
	u := "ws" + strings.TrimPrefix(d.base, "http") // http -> ws, https -> wss
	return u + "/ws?clientId=" + url.QueryEscape(d.clientID)
}

// runSocket keeps one socket open, reconnecting with capped, jittered
// exponential backoff; while it is down Status polls /queue and /history.
func (d *Driver) runSocket(ctx context.Context) {
	defer close(d.done)
	backoff := backoffMin
	for ctx.Err() == nil {
		start := time.Now()
		err := d.socketOnce(ctx)
		d.tr.socketDown()
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 30*time.Second {
			backoff = backoffMin // it was up for a while: this is a fresh failure
		}
		d.log.Info("comfyui: socket down, polling until it is back", "err", err, "retry_in", backoff)
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, backoffMax)
	}
}

// socketOnce dials /ws and feeds its frames to the tracker until it fails.
func (d *Driver) socketOnce(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, socketDialTimeout)
	h := http.Header{}
	d.authHeaders(h)
	conn, _, err := websocket.Dial(dctx, d.socketURL(), &websocket.DialOptions{HTTPClient: d.hc, HTTPHeader: h})
	cancel()
	if err != nil {
		return d.cleanErr(http.MethodGet, "/ws", err)
	}
	ctx, stop := context.WithCancel(ctx) // ends keepAlive with this socket
	defer stop()
	defer conn.CloseNow()
	conn.SetReadLimit(maxSocketFrame)
	// ComfyUI answers the handshake before it registers the socket under
	// our client_id (server.py's websocket_handler: ws.prepare, then
	// sockets[sid]), and a frame sent in between goes to no one. Its first
	// frame, the "status" greeting with our sid, comes after the
	// registration: only then is the socket up and polling stopped.
	up := false
	var lastRead atomic.Int64 // unix ns of the last bytes read: a frame still coming is a live socket
	for {
		typ, fr, err := conn.Reader(ctx)
		if err != nil {
			return d.cleanErr(http.MethodGet, "/ws", err)
		}
		r := &aliveReader{r: fr, last: &lastRead}
		if !up {
			up = true
			d.tr.socketUp()
			d.log.Info("comfyui: socket up", "client_id", d.clientID)
			go d.keepAlive(ctx, conn, &lastRead)
		}
		if typ == websocket.MessageBinary {
			// Preview images ([event type][image type][JPEG/PNG bytes]): not ours to keep.
			var w io.Writer = io.Discard
			var kept bytes.Buffer
			if d.hooks.frame != nil {
				w = &kept
			}
			if _, err := io.Copy(w, r); err != nil {
				return d.cleanErr(http.MethodGet, "/ws", err)
			}
			if d.hooks.frame != nil {
				d.hooks.frame(true, kept.Bytes())
			}
			continue
		}
		b, err := io.ReadAll(io.LimitReader(r, maxSocketText+1))
		if err != nil {
			return d.cleanErr(http.MethodGet, "/ws", err)
		}
		if len(b) > maxSocketText {
			if _, err := io.Copy(io.Discard, r); err != nil {
				return d.cleanErr(http.MethodGet, "/ws", err)
			}
			continue
		}
		if d.hooks.frame != nil {
			d.hooks.frame(false, b)
		}
		d.tr.handle(b)
	}
}

// aliveReader notes when bytes last came in on a socket.
type aliveReader struct {
	r    io.Reader
	last *atomic.Int64
}

func (a *aliveReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// keepAlive pings conn every socketPingEvery until ctx ends. A pong that
// does not come within socketPongWait, with no bytes read meanwhile (a pong
// waits behind a frame still coming, up to maxSocketFrame), closes conn:
// socketOnce's read then fails, and runSocket logs the socket down and
// dials again. Pings need socketOnce's concurrent Reader to see their pongs.
func (d *Driver) keepAlive(ctx context.Context, conn *websocket.Conn, lastRead *atomic.Int64) {
	every, wait := socketPingEvery, socketPongWait
	if d.hooks.pingEvery > 0 {
		every = d.hooks.pingEvery
	}
	if d.hooks.pongWait > 0 {
		wait = d.hooks.pongWait
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		err := conn.Ping(pctx)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded):
			return // the socket ended some other way: socketOnce says why
		case time.Since(time.Unix(0, lastRead.Load())) < wait:
			// No pong yet, but a frame is coming: the socket is alive.
		default:
			d.log.Warn("comfyui: socket silent, no pong; dialling again", "waited", wait.String())
			conn.CloseNow()
			return
		}
	}
}
