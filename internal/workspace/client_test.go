package workspace

import (
	"context"
	"encoding/json"
	"errors"
	"gooni/internal/taskid"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewClientTargets(t *testing.T) {
	tests := []struct {
		url  string
		want string // normalised BaseURL; "" = refused
	}{
		{"https://ws--gooni-inference.modal.run", "https://ws--gooni-inference.modal.run"},
		{"https://ws.example.com:8443/", "https://ws.example.com:8443"},
		{"http://127.0.0.1:9100", "http://127.0.0.1:9100"},
		{"http://127.8.9.10:9100", "http://127.8.9.10:9100"},
		{"http://[::1]:9100", "http://[::1]:9100"},
		{"http://localhost:9100", "http://localhost:9100"},
		{"http://10.0.0.1:9100", ""},
		{"http://example.com", ""},
		{"http://localhost.example.com", ""},
		{"http://127.0.0.1.nip.io", ""},
		{"https://user:pass@ws.example.com", ""},
		{"https://user@ws.example.com", ""},
		{"ftp://ws.example.com", ""},
		{"file:///etc/passwd", ""},
		{"ws.example.com", ""},
		{"//ws.example.com", ""},
		{"https://", ""},
		{"https://ws.example.com/api", ""},
		{"https://ws.example.com?x=1", ""},
		{"https://ws.example.com?", ""},
		{"https://ws.example.com#frag", ""},
		{"https://ws.example.com:0", ""},
		{"https://ws.example.com:99999", ""},
		{"https://ws.example.com:", ""},
		{"javascript:alert(1)", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := NewClient(tt.url, "k", "s")
			if tt.want == "" {
				if !errors.Is(err, ErrTargetInvalid) {
					t.Fatalf("NewClient(%q) err = %v, want ErrTargetInvalid", tt.url, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewClient(%q): %v", tt.url, err)
			}
			if c.BaseURL != tt.want {
				t.Fatalf("BaseURL = %q, want %q", c.BaseURL, tt.want)
			}
		})
	}
}

func TestBaseURLFor(t *testing.T) {
	const tmpl = "https://{workspace}--gooni-inference.modal.run"
	tests := []struct {
		template, name, want string
	}{
		{tmpl, "my-ws-1", "https://my-ws-1--gooni-inference.modal.run"},
		{"http://127.0.0.1:9100/?w={workspace}", "abc", ""},
		{"http://{workspace}.local", "abc", ""}, // plain http off loopback
		{tmpl, "ab", ""},
		{tmpl, "UPPER", ""},
		{tmpl, "a.b.c", ""},
		{tmpl, "evil.com/x", ""},
		{tmpl, "abc@evil", ""},
		{tmpl, strings.Repeat("a", 65), ""},
		{"https://fixed.example.com", "abc", ""}, // no placeholder: every name would share one host
	}
	for _, tt := range tests {
		got, err := BaseURLFor(tt.template, tt.name)
		if tt.want == "" {
			if !errors.Is(err, ErrTargetInvalid) {
				t.Errorf("BaseURLFor(%q, %q) = %q, %v; want ErrTargetInvalid", tt.template, tt.name, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("BaseURLFor(%q, %q) = %q, %v; want %q", tt.template, tt.name, got, err, tt.want)
		}
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	var leaked atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
	}))
	defer other.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}))
	defer redirector.Close()

	for _, hc := range []*http.Client{nil, {}} { // our default client, and a caller's client that would follow
		c, err := NewClient(redirector.URL, "key-abc", "secret-xyz")
		if err != nil {
			t.Fatal(err)
		}
		c.HTTP = hc
		_, err = c.Health(context.Background())
		if !errors.Is(err, ErrRedirect) {
			t.Fatalf("Health through a redirect: err = %v, want ErrRedirect", err)
		}
		if strings.Contains(err.Error(), "secret-xyz") || strings.Contains(err.Error(), "key-abc") {
			t.Fatal("error text carries a credential")
		}
	}
	if leaked.Load() != 0 {
		t.Fatalf("the redirect target was called %d times", leaked.Load())
	}
}

func TestClientHeadersAndRedaction(t *testing.T) {
	var got http.Header
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		// A hostile or careless workspace echoes the credentials back.
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "bad "+r.Header.Get("Modal-Key")+" "+r.Header.Get("Modal-Secret"))
	}))
	defer srv.Close()

	c, _ := NewClient(srv.URL, "key-abc", "secret-xyz")
	_, err := c.Health(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 500 {
		t.Fatalf("err = %v, want *StatusError 500", err)
	}
	if strings.Contains(err.Error(), "secret-xyz") || strings.Contains(err.Error(), "key-abc") {
		t.Fatal("error text carries a credential")
	}
	mu.Lock()
	if got.Get("Modal-Key") != "key-abc" || got.Get("Modal-Secret") != "secret-xyz" {
		t.Fatal("credentials were not sent as Modal-Key / Modal-Secret")
	}
	mu.Unlock()

	anon, _ := NewClient(srv.URL, "", "")
	anon.Health(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if _, ok := got["Modal-Key"]; ok {
		t.Fatal("empty Modal-Key header sent")
	}
	if _, ok := got["Modal-Secret"]; ok {
		t.Fatal("empty Modal-Secret header sent")
	}
}

func TestClientRefusesBadTaskIDs(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	c, _ := NewClient(srv.URL, "", "")
	ctx := context.Background()
	for _, id := range []string{"", "../health", "a/b", "a b", "a%2F", "ü", strings.Repeat("a", 65)} {
		if _, err := c.Status(ctx, id); !errors.Is(err, ErrTaskIDInvalid) {
			t.Errorf("Status(%q) err = %v, want ErrTaskIDInvalid", id, err)
		}
		if _, err := c.Result(ctx, id); !errors.Is(err, ErrTaskIDInvalid) {
			t.Errorf("Result(%q) err = %v", id, err)
		}
		if err := c.Cancel(ctx, id); !errors.Is(err, ErrTaskIDInvalid) {
			t.Errorf("Cancel(%q) err = %v", id, err)
		}
		if _, err := c.Submit(ctx, &TaskRequest{TaskID: id, Type: "image"}); !errors.Is(err, ErrTaskIDInvalid) {
			t.Errorf("Submit(%q) err = %v", id, err)
		}
	}
	if calls.Load() != 0 {
		t.Fatalf("%d requests went out for invalid ids", calls.Load())
	}
}

func TestClientBoundsAndChecksBodies(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"over 1 MiB", `{"task_id":"t1","status":"done","pad":"` + strings.Repeat("x", 1<<20) + `"}`},
		{"not JSON", `<html>gateway</html>`},
		{"unknown status", `{"task_id":"t1","status":"exploded"}`},
		{"another task", `{"task_id":"t2","status":"done","progress":100}`},
		{"progress as string", `{"task_id":"t1","status":"done","progress":"100"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c, _ := NewClient(srv.URL, "", "")
			if st, err := c.Status(context.Background(), "t1"); !errors.Is(err, ErrBadResponse) {
				t.Fatalf("Status = %+v, %v; want ErrBadResponse", st, err)
			}
		})
	}
}

func TestClientTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	c, _ := NewClient(srv.URL, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Health(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("call outlived its context")
	}
}

func TestParseTaskState(t *testing.T) {
	tests := []struct {
		body string
		want *TaskState // nil = error
	}{
		{`{"task_id":"a1","status":"pending"}`, &TaskState{TaskID: "a1", Status: "pending"}},
		{`{"task_id":"a1","status":"processing","progress":40,"eta":12,"extra":{"x":[1]}}`, &TaskState{TaskID: "a1", Status: "processing", Progress: 40}},
		{`{"task_id":"a1","status":"done","progress":100}`, &TaskState{TaskID: "a1", Status: "done", Progress: 100}},
		{`{"task_id":"a1","status":"failed","progress":50,"error":"oom"}`, &TaskState{TaskID: "a1", Status: "failed", Progress: 50, Error: "oom"}},
		{` {"status":"done"} `, &TaskState{Status: "done"}},
		{`{"task_id":"a1","status":"running"}`, nil},
		{`{"task_id":"a1","status":"DONE"}`, nil},
		{`{"task_id":"a1"}`, nil},
		{`{"task_id":"a1","status":null}`, nil},
		{`{"task_id":"a1","status":"done","progress":101}`, nil},
		{`{"task_id":"a1","status":"done","progress":-1}`, nil},
		{`{"task_id":"a1","status":"done","progress":"50"}`, nil},
		{`{"task_id":"a1","status":"done","progress":50.5}`, nil},
		{`{"task_id":1,"status":"done"}`, nil},
		{`{"task_id":"../x","status":"done"}`, nil},
		{`{"task_id":"a1","status":"failed","error":42}`, nil},
		{`{"task_id":"a1","status":"done"} trailing`, nil},
		{`null`, nil},
		{`[]`, nil},
		{``, nil},
		{`"done"`, nil},
	}
	for _, tt := range tests {
		got, err := ParseTaskState([]byte(tt.body))
		if tt.want == nil {
			if err == nil {
				t.Errorf("ParseTaskState(%s) = %+v, want error", tt.body, got)
			}
			continue
		}
		if err != nil || *got != *tt.want {
			t.Errorf("ParseTaskState(%s) = %+v, %v; want %+v", tt.body, got, err, tt.want)
		}
	}
}

func TestParseHealth(t *testing.T) {
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"status":"ok","models":["flux"],"capacity":2,"running":1,"gpu":"a100"}`, true},
		{`{"status":"ok"}`, true},
		{`{"status":""}`, false},
		{`{"models":[]}`, false},
		{`{"status":"ok","capacity":"2"}`, false},
		{`{"status":"ok","capacity":-1}`, false},
		{`{"status":"ok","running":1.5}`, false},
		{`{"status":"ok","models":"flux"}`, false},
		{`null`, false},
	}
	for _, tt := range tests {
		_, err := ParseHealth([]byte(tt.body))
		if (err == nil) != tt.ok {
			t.Errorf("ParseHealth(%s) err = %v, want ok=%v", tt.body, err, tt.ok)
		}
	}
}

func FuzzParseTaskState(f *testing.F) {
	f.Add([]byte(`{"task_id":"a1","status":"processing","progress":40}`))
	f.Add([]byte(`{"status":"failed","error":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseTaskState(data)
		if err != nil {
			return
		}
		switch st.Status {
		case StatusPending, StatusProcessing, StatusDone, StatusFailed:
		default:
			t.Fatalf("accepted status %q", st.Status)
		}
		if st.Progress < 0 || st.Progress > 100 {
			t.Fatalf("accepted progress %d", st.Progress)
		}
		if st.TaskID != "" && !taskid.Valid(st.TaskID) {
			t.Fatalf("accepted task id %q", st.TaskID)
		}
		// What we accept must survive a round trip unchanged.
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseTaskState(b)
		if err != nil || *again != *st {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, st)
		}
	})
}

func TestClientLiteralStillChecksTarget(t *testing.T) {
	c := &Client{BaseURL: "http://10.0.0.1:9100", Key: "k", Secret: "s"}
	if _, err := c.Health(context.Background()); !errors.Is(err, ErrTargetInvalid) {
		t.Fatalf("err = %v, want ErrTargetInvalid", err)
	}
}
