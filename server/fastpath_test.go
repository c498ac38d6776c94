package server

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gooni/store"
)

// TestValidCorrelationIDMatchesTheContract: the loop that replaced the
// regexp accepts exactly what CONTRACT section 2 allows, on chosen edges
// and on random strings over a small alphabet around the allowed set.
func TestValidCorrelationIDMatchesTheContract(t *testing.T) {
	contract := regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	cases := []string{"", "a", "Z", "0", ".", "_", "-", strings.Repeat("a", 64), strings.Repeat("a", 65),
		"a b", "a/b", "a+b", "a\x00", "é", "\xff", "abc-123_X.y", "a\n", "`", "@", "[", "{", ":"}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := "aZ09._-/ +:@[`{\x00\xffé"
	for i := 0; i < 5000; i++ {
		b := make([]byte, rng.IntN(70))
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		if got, want := validCorrelationID(c), contract.MatchString(c); got != want {
			t.Errorf("validCorrelationID(%q) = %v, want %v", c, got, want)
		}
	}
}

// TestSharedHeaderValuesStayPerResponse: the security and JSON headers are
// shared slices; a handler or middleware adding to one response's header
// must not change what the next response carries.
func TestSharedHeaderValuesStayPerResponse(t *testing.T) {
	e := newEnv(t)
	first := e.do(req{method: "GET", path: "/status/" + store.IDAt(time.Now()), header: map[string]string{"X-API-Key": e.sec.APIKey}})
	for _, k := range []string{"X-Frame-Options", "Content-Security-Policy", "Content-Type", "Cache-Control"} {
		first.Header().Add(k, "changed")
	}
	second := e.do(req{method: "GET", path: "/status/" + store.IDAt(time.Now()), header: map[string]string{"X-API-Key": e.sec.APIKey}})
	want := map[string][]string{"X-Frame-Options": {"DENY"}, "Content-Security-Policy": {contentSecurityPolicy},
		"Content-Type": {"application/json; charset=utf-8"}, "Cache-Control": {"no-store"}, "X-Content-Type-Options": {"nosniff"}}
	for k, v := range want {
		if got := second.Header().Values(k); !slices.Equal(got, v) {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// TestWriteJSONIsMarshalAndANewline: answers are json.Marshal's bytes plus
// a newline, also when a pooled buffer held a longer answer before.
func TestWriteJSONIsMarshalAndANewline(t *testing.T) {
	long := map[string]any{"items": strings.Repeat("<&>", 5000)}
	short := TaskView{TaskID: "t", Prompt: "a <b> & \u2028 \xff", Params: json.RawMessage(`{"seed":1}`)}
	for _, v := range []any{long, short, long, short} {
		w := httptest.NewRecorder()
		writeJSON(w, 201, v)
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Body.Bytes(); !bytes.Equal(got, append(want, '\n')) {
			t.Fatalf("writeJSON wrote %.200q, want %.200q", got, want)
		}
		if w.Code != 201 {
			t.Errorf("status %d", w.Code)
		}
	}
	w := httptest.NewRecorder()
	writeJSON(w, 200, map[string]any{"bad": func() {}})
	if w.Code != 500 || !strings.Contains(w.Body.String(), `"code":"internal"`) {
		t.Errorf("an unencodable value: %d %s", w.Code, w.Body.String())
	}
}

// TestMissesAreNotLoggedAtInfo: an unknown task id, an unknown route and a
// wrong method are answered without a log line (a client probing ids or
// paths would otherwise write one per request); other refusals still are.
func TestMissesAreNotLoggedAtInfo(t *testing.T) {
	e := newEnv(t)
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	for _, r := range []req{
		{method: "GET", path: "/status/" + store.IDAt(time.Now()), header: key},
		{method: "GET", path: "/no/such/route", header: key},
		{method: "DELETE", path: "/config"},
	} {
		w := e.do(r)
		if w.Code != 404 && w.Code != 405 {
			t.Fatalf("%s %s: %d", r.method, r.path, w.Code)
		}
	}
	if strings.Contains(e.logs.String(), `"msg":"request failed"`) {
		t.Errorf("a miss was logged:\n%s", e.logs.String())
	}
	if w := e.do(req{method: "GET", path: "/status/x", header: map[string]string{"X-API-Key": "wrong"}}); w.Code != 401 {
		t.Fatalf("wrong key: %d", w.Code)
	}
	if !strings.Contains(e.logs.String(), `"code":"invalid_api_key"`) {
		t.Errorf("a refused key was not logged:\n%s", e.logs.String())
	}
}

// TestBackPressureIsNotLoggedAsAnError: a 503 that is the server working as
// designed (queue_full, no_workers) is logged at Warn, so retrying clients
// do not raise Error alarms; a 500 is still logged at Error. Inputs tried:
// a submit with no ready worker, a submit into a full queue.
func TestBackPressureIsNotLoggedAsAnError(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.QueueMax = 1 })
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	body := `{"model":"flux","mode":"t2i","prompt":"x"}`
	if w := e.do(req{method: "POST", path: "/generate", header: key, body: body}); w.Code != 503 || errCode(t, w) != "no_workers" {
		t.Fatalf("no worker: %d %s", w.Code, w.Body.String())
	}
	e.readyAccount()
	for i, want := range []int{202, 503} {
		if w := e.do(req{method: "POST", path: "/generate", header: key, body: body}); w.Code != want {
			t.Fatalf("submit %d into a queue of 1: %d %s, want %d", i, w.Code, w.Body.String(), want)
		}
	}
	logs := e.logs.String()
	for _, code := range []string{"no_workers", "queue_full"} {
		if !strings.Contains(logs, `"level":"WARN","msg":"request failed","code":"`+code+`"`) {
			t.Errorf("%s was not logged at Warn:\n%s", code, logs)
		}
	}
	if strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("back-pressure was logged at Error:\n%s", logs)
	}
}
