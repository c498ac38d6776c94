package comfyui

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"gooni/internal/workspace"
)

const (
	hostileToken  = "bearer-5ecr3t-Tok3n/with+chars="
	hostileKey    = "modal-key-abc123"
	hostileSecret = "modal-secret-xyz789"
)

// secretForms are the ways a credential can come back in an answer.
func secretForms() []string {
	var out []string
	for _, v := range []string{hostileToken, hostileKey, hostileSecret} {
		out = append(out, v, base64.StdEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)), url.QueryEscape(v))
	}
	return out
}

// assertNoSecrets fails the test, without printing text, when it holds a credential.
func assertNoSecrets(t *testing.T, where, text string) bool {
	t.Helper()
	clean := true
	for i, f := range secretForms() {
		if at := strings.Index(text, f); at >= 0 {
			// Never print the text: it holds the credential.
			t.Errorf("%s holds credential form #%d at byte %d", where, i, at)
			clean = false
		}
	}
	return clean
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hostileDriver runs a driver with credentials against handler, its log captured.
func hostileDriver(t *testing.T, handler http.Handler) (*Driver, *syncBuffer) {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	logs := &syncBuffer{}
	d := startDriver(t, srv.URL, hooks{}, func(c *Config) {
		c.BearerToken, c.ProxyKey, c.ProxySecret = hostileToken, hostileKey, hostileSecret
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	t.Cleanup(func() { assertNoSecrets(t, "the driver's log", logs.String()) })
	return d, logs
}

// echo is every credential form, wrapped in text a proxy might send back.
func echo() string {
	return "you sent " + strings.Join(secretForms(), " and ")
}

// endless writes n bytes of filler after prefix, without holding them.
func endless(w io.Writer, prefix string, n int64) {
	io.WriteString(w, prefix)
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	for n > 0 {
		k := min(n, int64(len(chunk)))
		if _, err := w.Write(chunk[:k]); err != nil {
			return
		}
		n -= k
	}
}

func emptyQueue(w http.ResponseWriter, _ *http.Request) {
	io.WriteString(w, `{"queue_running": [], "queue_pending": []}`)
}

func TestHostileAnswersAreBoundedAndRedacted(t *testing.T) {
	taskID := "01J9Z8K4M5N6P7Q8R9S0T1V2W3"
	pid := "01927e89-9285-a9ac-7ba3-09c8341d8b83"
	cases := []struct {
		name  string
		mux   func(m *http.ServeMux)
		call  func(d *Driver) error
		check func(t *testing.T, err error)
	}{
		{"huge queue", func(m *http.ServeMux) {
			m.HandleFunc("GET /queue", func(w http.ResponseWriter, r *http.Request) {
				endless(w, `{"queue_running": [[1, "`, 40<<20)
			})
		}, func(d *Driver) error { _, err := d.Health(context.Background()); return err },
			func(t *testing.T, err error) {
				if !errors.Is(err, workspace.ErrBadResponse) {
					t.Errorf("err %v, want ErrBadResponse", err)
				}
			}},
		{"queue not JSON", func(m *http.ServeMux) {
			m.HandleFunc("GET /queue", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>"+echo()) })
		}, func(d *Driver) error { _, err := d.Status(context.Background(), taskID); return err },
			func(t *testing.T, err error) {
				if !errors.Is(err, workspace.ErrBadResponse) {
					t.Errorf("err %v, want ErrBadResponse", err)
				}
			}},
		{"huge history", func(m *http.ServeMux) {
			m.HandleFunc("GET /queue", emptyQueue)
			m.HandleFunc("GET /history/{id}", func(w http.ResponseWriter, r *http.Request) {
				endless(w, `{"`+pid+`": {"x": "`, 6<<20)
			})
		}, func(d *Driver) error { _, err := d.Status(context.Background(), taskID); return err },
			func(t *testing.T, err error) {
				if !errors.Is(err, workspace.ErrBadResponse) || !strings.Contains(err.Error(), "over") {
					t.Errorf("err %v, want ErrBadResponse about the size", err)
				}
			}},
		{"history of another prompt", func(m *http.ServeMux) {
			m.HandleFunc("GET /queue", emptyQueue)
			m.HandleFunc("GET /history/{id}", func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"11111111-1111-1111-1111-111111111111": {"outputs": {}, "status": {"status_str": "success", "completed": true}}}`)
			})
		}, func(d *Driver) error { _, err := d.Status(context.Background(), taskID); return err },
			func(t *testing.T, err error) {
				if !errors.Is(err, workspace.ErrBadResponse) {
					t.Errorf("err %v, want ErrBadResponse", err)
				}
			}},
		{"refusal echoing the credentials", func(m *http.ServeMux) {
			m.HandleFunc("GET /queue", emptyQueue)
			m.HandleFunc("GET /history/{id}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{}`) })
			m.HandleFunc("POST /prompt", func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadRequest)
				json.NewEncoder(w).Encode(map[string]any{
					"error": map[string]any{"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
					"node_errors": map[string]any{"6": map[string]any{"class_type": "KSampler", "errors": []any{map[string]any{
						"type": "custom", "message": echo() + strings.Repeat(" padding\x07", 2000), "details": "x",
						"extra_info": map[string]any{"input_name": "cfg"}}}}},
				})
			})
		}, func(d *Driver) error {
			_, err := d.Submit(context.Background(), &workspace.TaskRequest{TaskID: taskID, Model: "pony", Mode: "t2i", Prompt: "p"})
			return err
		}, func(t *testing.T, err error) {
			var re *workspace.RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("err %v, want RefusedError", err)
			}
			if !strings.HasPrefix(re.Message, "ComfyUI refused the workflow: KSampler #6, input cfg: you sent [redacted]") || len(re.Message) > maxTaskError || strings.ContainsRune(re.Message, '\x07') {
				t.Errorf("refusal %d bytes: %.300q", len(re.Message), re.Message)
			}
		}},
		{"server error echoing the credentials", func(m *http.ServeMux) {
			m.HandleFunc("GET /queue", func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusInternalServerError)
				io.WriteString(w, echo()+strings.Repeat("x", 100000))
			})
		}, func(d *Driver) error { _, err := d.Health(context.Background()); return err },
			func(t *testing.T, err error) {
				var se *workspace.StatusError
				if !errors.As(err, &se) || se.Code != 500 || len(se.Body) > maxErrorText || !strings.Contains(se.Body, "[redacted]") {
					t.Errorf("err %v", err)
				}
			}},
		{"execution error echoing the credentials", func(m *http.ServeMux) {
			m.HandleFunc("GET /queue", emptyQueue)
			m.HandleFunc("GET /history/{id}", func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(map[string]any{pid: map[string]any{
					"prompt": []any{1, pid, map[string]any{}, map[string]any{}, []any{}}, "outputs": map[string]any{},
					"status": map[string]any{"status_str": "error", "completed": false, "messages": []any{
						[]any{"execution_start", map[string]any{"prompt_id": pid}},
						[]any{"execution_error", map[string]any{"prompt_id": pid, "node_id": "6", "node_type": "KSampler",
							"exception_type": "RuntimeError", "exception_message": "boom\r\n" + echo() + strings.Repeat("\x1b[0m", 3000),
							"traceback": []string{"  File \"/x.py\", line 1, in f\n    " + hostileToken + "\n"}}},
					}},
				}})
			})
		}, func(d *Driver) error {
			st, err := d.Status(context.Background(), taskID)
			if err != nil {
				return err
			}
			return errors.New(st.Status + ": " + st.Error)
		}, func(t *testing.T, err error) {
			msg := strings.TrimPrefix(err.Error(), "failed: ")
			if !strings.HasPrefix(err.Error(), "failed: KSampler: RuntimeError: boom you sent [redacted]") || len(msg) > maxTaskError ||
				strings.ContainsAny(msg, "\r\n\x1b") || strings.Contains(msg, "File \"") {
				t.Errorf("task error %d bytes: %.300q", len(msg), msg)
			}
		}},
		{"octet-stream media and a missing file", func(m *http.ServeMux) {
			m.HandleFunc("GET /history/{id}", func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(map[string]any{pid: map[string]any{
					"prompt":  []any{1, pid, map[string]any{}, map[string]any{"gooni": map[string]any{"task_id": taskID, "model": "phr00t", "mode": "t2v"}}, []any{}},
					"outputs": map[string]any{"8": map[string]any{"images": []any{map[string]any{"filename": "v_00001_.mp4", "subfolder": "gooni", "type": "output"}}, "animated": []any{true}}, "10": map[string]any{"images": []any{map[string]any{"filename": "gone.png", "subfolder": "", "type": "output"}}}},
					"status":  map[string]any{"status_str": "success", "completed": true, "messages": []any{}},
				}})
			})
			m.HandleFunc("GET /view", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("filename") != "v_00001_.mp4" || r.URL.Query().Get("subfolder") != "gooni" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/octet-stream")
				io.WriteString(w, "\x00\x00\x00\x18ftypmp42")
			})
		}, func(d *Driver) error {
			m, err := d.Result(context.Background(), taskID)
			if err != nil {
				return err
			}
			m.Body.Close()
			if m.ContentType != "video/mp4" {
				return fmt.Errorf("content type %q", m.ContentType)
			}
			_, err = d.Preview(context.Background(), taskID)
			return err
		}, func(t *testing.T, err error) {
			if !errors.Is(err, workspace.ErrNotFound) {
				t.Errorf("err %v; want the result typed video/mp4 and the missing poster ErrNotFound", err)
			}
		}},
		{"history naming a file outside the output folder", func(m *http.ServeMux) {
			m.HandleFunc("GET /history/{id}", func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(map[string]any{pid: map[string]any{
					"prompt":  []any{1, pid, map[string]any{}, map[string]any{"gooni": map[string]any{"model": "pony", "mode": "t2i"}}, []any{}},
					"outputs": map[string]any{"8": map[string]any{"images": []any{map[string]any{"filename": "passwd", "subfolder": "../../etc", "type": "output"}}}},
					"status":  map[string]any{"status_str": "success", "completed": true, "messages": []any{}},
				}})
			})
		}, func(d *Driver) error { _, err := d.Result(context.Background(), taskID); return err },
			func(t *testing.T, err error) {
				if !errors.Is(err, workspace.ErrBadResponse) {
					t.Errorf("err %v, want ErrBadResponse", err)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mux := http.NewServeMux()
			mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) { http.Error(w, echo(), http.StatusForbidden) })
			c.mux(mux)
			d, _ := hostileDriver(t, mux)
			start := time.Now()
			err := c.call(d)
			if err == nil {
				t.Fatal("no error")
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %s", time.Since(start))
			}
			if !assertNoSecrets(t, "the error", err.Error()) {
				return // the checks below print the error
			}
			c.check(t, err)
		})
	}
}

func TestDriverRefusesRedirects(t *testing.T) {
	var leaked []string
	var mu sync.Mutex
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		leaked = append(leaked, r.Header.Get("Authorization")+r.Header.Get("Modal-Secret"))
		mu.Unlock()
		emptyQueue(w, r)
	}))
	defer other.Close()
	d, _ := hostileDriver(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}))
	if _, err := d.Health(context.Background()); !errors.Is(err, workspace.ErrRedirect) {
		t.Errorf("Health: %v, want ErrRedirect", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) > 0 {
		t.Errorf("the redirect target was called %d times", len(leaked))
	}
}

// TestDriverSocketSkipsHostileFrames: oversized text and binary frames are
// skipped without closing the socket; the next good frame still counts.
func TestDriverSocketSkipsHostileFrames(t *testing.T) {
	clock := newStepClock() // the sim's prompt never moves on its own
	send := make(chan []byte, 1)
	var conns int
	var mu sync.Mutex
	_, base := startSim(t, SimConfig{After: clock.After}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/ws" {
				next.ServeHTTP(w, r)
				return
			}
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			defer c.CloseNow()
			ctx := r.Context()
			c.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("{"), 2<<20))
			c.Write(ctx, websocket.MessageBinary, append([]byte{0, 0, 0, 1, 0, 0, 0, 1}, bytes.Repeat([]byte{0xff}, 3<<20)...))
			c.Write(ctx, websocket.MessageText, []byte(`{"type":"status","data":{"status":"`+echo()+`"}}`))
			for {
				select {
				case b := <-send:
					c.Write(ctx, websocket.MessageText, b)
				case <-ctx.Done():
					return
				}
			}
		})
	})
	d := startDriver(t, base, hooks{}, nil)
	waitSocket(t, d)
	req := taskFor(t, "phr00t", "t2v")
	if _, err := d.Submit(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	pid := mustPromptID(t, req.TaskID)
	send <- frame("execution_start", map[string]any{"prompt_id": pid})
	send <- frame("progress", map[string]any{"value": 3, "max": 4, "node": "5", "prompt_id": pid})
	waitFor(t, "progress 75 from the socket", func() bool {
		st, ok := d.tr.fresh(pid)
		return ok && st.Progress == 75
	})
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("%d socket connections: the hostile frames closed the socket", conns)
	}
}
