package comfyui

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// ComfyUI answers the /ws handshake before it registers the socket under
// the client_id; frames sent in between are lost. The driver takes its
// socket as up, and stops polling, only once the first frame (ComfyUI's
// status greeting) has come. Here a fake ComfyUI accepts the socket and
// holds the greeting back until the test releases it.
func TestDriverSocketIsUpOnlyAfterTheGreeting(t *testing.T) {
	accepted, greet := make(chan struct{}, 1), make(chan struct{})
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
		accepted <- struct{}{}
		select {
		case <-greet:
		case <-r.Context().Done():
			return
		}
		sid := r.URL.Query().Get("clientId")
		c.Write(r.Context(), websocket.MessageText, []byte(`{"type":"status","data":{"status":{"exec_info":{"queue_remaining":0}},"sid":"`+sid+`"}}`))
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	d := startDriver(t, srv.URL, hooks{}, nil)
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
