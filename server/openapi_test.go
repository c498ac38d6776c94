package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	stdpng "image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gorilla/mux"

	"gooni/internal/config"
	"gooni/internal/dispatch"
	"gooni/internal/testutil"
	"gooni/internal/workspace"
	"gooni/server/apierr"
	"gooni/store"
)

// The OpenAPI document (docs/openapi.json) is checked three ways:
// TestOpenAPIDocument loads it with kin-openapi and validates it as
// OpenAPI 3.1; TestOpenAPIRoutes walks the mux router and the document
// both ways; checkOpenAPI validates a real request and its answer against
// it, for every case of the conformance table and for the answers of
// TestOpenAPIAnswers, which reaches every documented operation.

// reporter is what the checks need of a test: testing.TB, or a recorder
// in TestOpenAPICheckFails.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Fatal(args ...any)
}

// openAPIPath is the document in the repository.
const openAPIPath = "../" + openAPIFile

var openAPI struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadedOpenAPI loads and resolves the document once per test binary.
func loadedOpenAPI(t reporter) (*openapi3.T, routers.Router) {
	t.Helper()
	openAPI.once.Do(func() {
		b, err := os.ReadFile(openAPIPath)
		if err != nil {
			openAPI.err = err
			return
		}
		doc, err := openapi3.NewLoader().LoadFromData(b)
		if err != nil {
			openAPI.err = fmt.Errorf("load %s: %w", openAPIPath, err)
			return
		}
		openAPI.doc = doc
		openAPI.router, openAPI.err = gorillamux.NewRouter(doc)
		// Streams and metrics are text to the validator; checkOpenAPI reads
		// the events of a stream itself.
		asText := func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
			b, err := io.ReadAll(body)
			return string(b), err
		}
		openapi3filter.RegisterBodyDecoder("text/event-stream", asText)
		openapi3filter.RegisterBodyDecoder("application/openmetrics-text", asText)
		openapi3filter.RegisterBodyDecoder("text/html", asText)
	})
	if openAPI.err != nil {
		t.Fatal(openAPI.err)
	}
	return openAPI.doc, openAPI.router
}

// TestOpenAPIDocument: the document is valid OpenAPI 3.1 (kin-openapi's
// loader and validator, formats and patterns included), and the error
// codes it names are exactly the codes of server/apierr, each under its
// contract status.
func TestOpenAPIDocument(t *testing.T) {
	doc, _ := loadedOpenAPI(t)
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableSchemaFormatValidation(), openapi3.EnableSchemaPatternValidation()); err != nil {
		t.Fatalf("not valid OpenAPI 3.1: %v", err)
	}

	// Every constructor of server/apierr, so that a new code cannot be
	// added without the document naming it.
	status := map[string]int{}
	for _, e := range []*apierr.Error{
		apierr.InvalidJSON(""), apierr.Validation("", ""), apierr.PayloadTooLarge(1), apierr.InvalidAPIKey(),
		apierr.SessionRequired(), apierr.AdminSessionRequired(), apierr.SessionExpired(), apierr.InvalidAdminKey(),
		apierr.RateLimited(1), apierr.CORSBlocked(), apierr.NotFound(), apierr.MethodNotAllowed(), apierr.TaskNotFound(),
		apierr.AccountNotFound(), apierr.ResultNotReady(), apierr.TaskFailed(""), apierr.TaskNotDone(), apierr.ResultGone(),
		apierr.NoWorkers(), apierr.NoWorkersFor(""), apierr.QueueFull(), apierr.ProxyTargetInvalid(), apierr.WorkerUnavailable(),
		apierr.StorageFailed(), apierr.AuthUnavailable(), apierr.Internal(nil), apierr.TaskFinished(), apierr.IdempotencyConflict(),
		apierr.InputNotFound(), apierr.HostNotAllowed(), apierr.ServerBusy("", 1), apierr.InviteInvalid(), apierr.InviteNotFound(),
	} {
		if s, ok := status[e.Code]; ok && s != e.Status {
			t.Errorf("apierr gives %s two statuses: %d and %d", e.Code, s, e.Status)
		}
		status[e.Code] = e.Status
	}
	var documented []string
	for _, v := range doc.Components.Schemas["ErrorCode"].Value.Enum {
		documented = append(documented, fmt.Sprint(v))
	}
	if got, want := sortedKeys(setOf(documented)), sortedKeys(status); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("ErrorCode enum %v\nserver/apierr codes %v", got, want)
	}
	// Media routes answer validation_failed with the status http.ServeContent
	// chose (412 If-Match, 416 Range); every other code keeps its own status.
	otherStatus := map[string]map[int]bool{"validation_failed": {412: true, 416: true}}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code, resp := range op.Responses.Map() {
				for _, c := range errorCodesOf(resp.Value) {
					if want, ok := status[c]; !ok {
						t.Errorf("%s %s %s names %q, not a code of server/apierr", method, path, code, c)
					} else if fmt.Sprint(want) != code && !otherStatus[c][atoi(code)] {
						t.Errorf("%s %s answers %s under %s; its status is %d", method, path, c, code, want)
					}
				}
			}
		}
	}
}

// errorCodesOf lists the codes an error response narrows Error to.
func errorCodesOf(r *openapi3.Response) []string {
	mt := r.Content.Get("application/json")
	if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
		return nil
	}
	s := mt.Schema.Value
	e := s.Properties["error"]
	if e == nil || e.Value.Properties["code"] == nil {
		return nil
	}
	var out []string
	for _, v := range e.Value.Properties["code"].Value.Enum {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func setOf(list []string) map[string]bool {
	m := map[string]bool{}
	for _, s := range list {
		m[s] = true
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// prefixRoutes maps the router's PathPrefix routes to the document: a
// prefix whose files are one path segment becomes a path parameter; ""
// marks the /admin/ fallback, which answers not_found or
// method_not_allowed behind the admin throttle and session and is described
// in the document's info, not as an operation.
var prefixRoutes = map[string]string{"/assets/": "/assets/{file}", "/admin/": ""}

// fullEnv is a server with every optional route: the built UI and the
// guides and OpenAPI document of the repository.
func fullEnv(t *testing.T, mods ...func(*Config)) *testEnv {
	return newEnv(t, append([]func(*Config){func(c *Config) { c.UI, c.Docs = os.DirFS("../dist"), os.DirFS("..") }}, mods...)...)
}

// TestOpenAPIRoutes walks the router and the document both ways: every
// (method, path template) the router answers is an operation of the
// document, and every operation is a route. mux's {task_id} templates are
// OpenAPI's; HEAD is listed explicitly on both sides (a head operation
// wherever the route takes HEAD), so a route that takes GET but not HEAD
// is told apart.
func TestOpenAPIRoutes(t *testing.T) {
	doc, _ := loadedOpenAPI(t)
	e := fullEnv(t)
	routes := map[string]bool{}
	err := e.srv.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return err
		}
		if re, _ := route.GetPathRegexp(); !strings.HasSuffix(re, "$") {
			mapped, ok := prefixRoutes[tpl]
			if !ok {
				t.Errorf("prefix route %s is neither documented nor a known fallback: add it to prefixRoutes and the document", tpl)
				return nil
			}
			if mapped == "" {
				return nil
			}
			tpl = mapped
		}
		methods, err := route.GetMethods()
		if err != nil {
			t.Errorf("route %s takes every method: list them", tpl)
			return nil
		}
		for _, m := range methods {
			routes[m+" "+tpl] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for _, r := range sortedKeys(routes) {
		if !documented[r] {
			t.Errorf("route %s is not in %s", r, openAPIPath)
		}
	}
	for _, d := range sortedKeys(documented) {
		if !routes[d] {
			t.Errorf("%s describes %s, which the router does not have", openAPIPath, d)
		}
	}
	if len(routes) < 40 {
		t.Errorf("only %d routes walked: %v", len(routes), sortedKeys(routes))
	}
}

// TestOpenAPIServed: GET /openapi.json serves the repository's document
// without auth, cacheable with an ETag (304 on If-None-Match, HEAD without
// a body); with a base path in GG_PUBLIC_URL its servers name the base path
// first, and only that member differs; without the document it is
// not_found.
func TestOpenAPIServed(t *testing.T) {
	want := readFile(t, openAPIPath)
	e := fullEnv(t)
	w := e.do(req{method: "GET", path: "/openapi.json"})
	checkOpenAPI(t, "GET /openapi.json", req{method: "GET", path: "/openapi.json"}, w)
	h := w.Header()
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), want) || h.Get("Content-Type") != "application/json" ||
		h.Get("Cache-Control") != "no-cache" || h.Get("ETag") == "" {
		t.Fatalf("GET /openapi.json: %d %v (%d bytes, want %d)", w.Code, h, w.Body.Len(), len(want))
	}
	etag := h.Get("ETag")
	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		r := req{method: "GET", path: "/openapi.json", header: map[string]string{"If-None-Match": inm}}
		w := e.do(r)
		checkOpenAPI(t, "GET /openapi.json If-None-Match "+inm, r, w)
		if w.Code != 304 || w.Body.Len() != 0 || w.Header().Get("ETag") != etag {
			t.Errorf("If-None-Match %s: %d %q", inm, w.Code, w.Body.String())
		}
	}
	if w := e.do(req{method: "GET", path: "/openapi.json", header: map[string]string{"If-None-Match": `"other"`}}); w.Code != 200 {
		t.Errorf("another ETag: %d", w.Code)
	}

	srv := httptest.NewServer(e.h)
	defer srv.Close()
	resp, err := http.Head(srv.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(want)) || resp.Header.Get("ETag") != etag {
		t.Errorf("HEAD: %d %d bytes, Content-Length %d", resp.StatusCode, len(body), resp.ContentLength)
	}

	pub, err := config.ParsePublicURL("https://example.com/gooni")
	if err != nil {
		t.Fatal(err)
	}
	based := fullEnv(t, func(c *Config) { c.PublicURL = pub })
	w = based.do(req{method: "GET", path: "/openapi.json"})
	var got, orig map[string]json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || json.Unmarshal(want, &orig) != nil {
		t.Fatalf("based document: %v %.200s", err, w.Body.String())
	}
	var servers []struct{ URL string }
	json.Unmarshal(got["servers"], &servers)
	if len(servers) != 2 || servers[0].URL != "/gooni" || servers[1].URL != "/" {
		t.Errorf("servers behind /gooni: %s", got["servers"])
	}
	for k := range orig {
		if k != "servers" && !bytes.Equal(got[k], orig[k]) {
			t.Errorf("member %s changed with the base path", k)
		}
	}
	if len(got) != len(orig) || w.Header().Get("ETag") == etag {
		t.Errorf("based document: %d members, ETag %s", len(got), w.Header().Get("ETag"))
	}
	if doc, err := openapi3.NewLoader().LoadFromData(w.Body.Bytes()); err != nil {
		t.Errorf("based document does not load: %v", err)
	} else if err := doc.Validate(context.Background()); err != nil {
		t.Errorf("based document is not valid OpenAPI: %v", err)
	}

	if w := newEnv(t, func(c *Config) { c.Docs = fstest.MapFS{} }).do(req{method: "GET", path: "/openapi.json"}); w.Code != 404 || errCode(t, w) != "not_found" {
		t.Errorf("without the document: %d", w.Code)
	}
}

// presentCredential is the validator's view of security: a scheme is met
// when its header, query parameter or cookie is present. Whether it is
// right is the server's business; an answer that admits a request without
// any documented credential fails checkOpenAPI.
func presentCredential(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r, s := in.RequestValidationInput.Request, in.SecurityScheme
	switch s.In {
	case "header":
		if _, ok := r.Header[http.CanonicalHeaderKey(s.Name)]; ok {
			return nil
		}
	case "query":
		if r.URL.Query().Has(s.Name) {
			return nil
		}
	case "cookie":
		if _, err := r.Cookie(s.Name); err == nil {
			return nil
		}
	}
	return fmt.Errorf("no %s %s", s.In, s.Name)
}

// httpRequest builds the request e.do sends for r.
func httpRequest(r req) *http.Request {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	for _, c := range r.cookies {
		hr.AddCookie(c)
	}
	return hr
}

// checkOpenAPI validates one real exchange against the document:
//   - a path the document lacks may only be refused (not_found, or a check
//     that comes first: Host, CORS, throttle, admin session), never 405;
//   - a method the document lacks on a known path may only be refused,
//     never not_found;
//   - a request the document refuses (parameters, body, credential) may
//     not succeed;
//   - the answer's status must be documented for the operation, with its
//     Content-Type, headers and body schema; an error's code must be one
//     the operation lists under that status;
//   - every event of a text/event-stream answer must be a documented event
//     whose data matches its schema.
//
// CORS preflights (OPTIONS) are not operations: a 204 without a body, or
// the error envelope.
func checkOpenAPI(t reporter, name string, r req, w *httptest.ResponseRecorder) {
	t.Helper()
	doc, router := loadedOpenAPI(t)
	hr := httpRequest(r)
	if r.body != "" && hr.Header.Get("Content-Type") == "" {
		// The server reads JSON bodies whatever their Content-Type.
		hr.Header.Set("Content-Type", "application/json")
	}
	ok2xx := w.Code < 400
	if r.method == http.MethodOptions {
		if w.Code == http.StatusNoContent && w.Body.Len() == 0 {
			return
		}
		checkErrorEnvelope(t, name, doc, w, nil)
		return
	}
	route, params, err := router.FindRoute(hr)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		if ok2xx || w.Code == http.StatusMethodNotAllowed {
			t.Errorf("%s: %s %s is not in the document, yet answered %d", name, r.method, r.path, w.Code)
		}
		checkErrorEnvelope(t, name, doc, w, []string{"not_found", "host_not_allowed", "cors_origin_blocked", "rate_limited", "session_required", "session_expired", "auth_unavailable"})
		return
	case errors.Is(err, routers.ErrMethodNotAllowed):
		if ok2xx {
			t.Errorf("%s: the document has no %s on %s, yet it answered %d", name, r.method, r.path, w.Code)
		}
		checkErrorEnvelope(t, name, doc, w, []string{"method_not_allowed", "host_not_allowed", "cors_origin_blocked", "rate_limited", "session_required", "session_expired", "auth_unavailable"})
		return
	case err != nil:
		t.Errorf("%s: find the route of %s %s: %v", name, r.method, r.path, err)
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: presentCredential, RejectWhenRequestBodyNotSpecified: true,
		IncludeResponseStatus: true, SkipSettingDefaults: true}
	in := &openapi3filter.RequestValidationInput{Request: hr, PathParams: params, Route: route, Options: opts}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil && ok2xx {
		t.Errorf("%s: answered %d to a request the document refuses: %s", name, w.Code, brief(err))
	}
	op := route.Operation
	if r.method == http.MethodHead {
		// kin-openapi does not check HEAD answers: the status must be
		// documented; headers and body are GET's.
		if op.Responses.Status(w.Code) == nil {
			t.Errorf("%s: HEAD %s answered %d, not documented", name, route.Path, w.Code)
		}
		return
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: w.Code, Header: w.Header(),
		Body: io.NopCloser(bytes.NewReader(w.Body.Bytes())), Options: opts}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: %s %s answered %d, which the document does not describe: %s\n%.300s", name, r.method, route.Path, w.Code, brief(err), w.Body.String())
		return
	}
	if strings.HasPrefix(w.Header().Get("Content-Type"), "text/event-stream") {
		checkEvents(t, name, doc, op.Responses.Status(w.Code).Value, w.Body.String())
	}
}

// checkErrorEnvelope validates an answer outside the document's operations
// against the Error schema, and its code against codes (any, when nil).
func checkErrorEnvelope(t reporter, name string, doc *openapi3.T, w *httptest.ResponseRecorder, codes []string) {
	t.Helper()
	if !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Errorf("%s: %d answer is %q, not the error envelope", name, w.Code, w.Header().Get("Content-Type"))
		return
	}
	var v any
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	if err := doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("%s: not the Error schema: %s", name, brief(err))
		return
	}
	code := v.(map[string]any)["error"].(map[string]any)["code"].(string)
	if codes != nil && !setOf(codes)[code] {
		t.Errorf("%s: code %s where only %v fit", name, code, codes)
	}
}

// checkEvents parses a server-sent event stream and validates each event's
// data against the schema its name has in the response's x-sse-events.
func checkEvents(t reporter, name string, doc *openapi3.T, resp *openapi3.Response, stream string) {
	t.Helper()
	mt := resp.Content.Get("text/event-stream")
	events, _ := mt.Extensions["x-sse-events"].(map[string]any)
	if len(events) == 0 {
		t.Errorf("%s: the stream documents no x-sse-events", name)
		return
	}
	for _, ev := range parseSSE(stream) {
		schemaRef, _ := events[ev.name].(map[string]any)
		ref, _ := schemaRef["$ref"].(string)
		schema := doc.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
		if schema == nil {
			t.Errorf("%s: event %q is not documented", name, ev.name)
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(ev.data), &v); err != nil {
			t.Errorf("%s: event %s data is not JSON: %q", name, ev.name, ev.data)
			continue
		}
		if err := schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("%s: event %s does not match %s: %s", name, ev.name, ref, brief(err))
		}
	}
}

// brief is a validation error without the schema and value dumps that
// kin-openapi appends.
func brief(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\nSchema:")
	return msg
}

type streamEvent struct{ name, data string }

// parseSSE splits a stream into its events (name "message" when unnamed);
// comments and retry lines carry no event.
func parseSSE(stream string) []streamEvent {
	var out []streamEvent
	for _, block := range strings.Split(stream, "\n\n") {
		ev := streamEvent{name: "message"}
		var data []string
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, "event:"):
				ev.name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
			}
		}
		if len(data) > 0 {
			ev.data = strings.Join(data, "\n")
			out = append(out, ev)
		}
	}
	return out
}

// TestOpenAPIAnswers reaches every operation of the document with a
// request that succeeds (and a few that are refused) on a server with a
// real dispatcher and simulated workspace, and validates each answer with
// checkOpenAPI; then it checks that no operation was left out.
func TestOpenAPIAnswers(t *testing.T) {
	doc, router := loadedOpenAPI(t)
	e := fullEnv(t)
	_, sim := e.wireDispatcher(workspace.SimConfig{Duration: time.Hour, Capacity: 4}, func(c *dispatch.Config) {
		c.DeployCommand, c.DeployTimeout, c.RequestTimeout = "echo deployed", 5*time.Second, 2*time.Second
	})
	ctx := context.Background()

	admin := e.adminSession()
	user := e.userSession()
	ac := []*http.Cookie{admin}
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	reached := map[string]bool{}
	succeeded := map[string]bool{}
	var last *httptest.ResponseRecorder
	do := func(name string, r req, status int) *httptest.ResponseRecorder {
		t.Helper()
		w := e.do(r)
		if w.Code != status {
			t.Fatalf("%s: %d, want %d: %.300s", name, w.Code, status, w.Body.String())
		}
		checkOpenAPI(t, name, r, w)
		if route, _, err := router.FindRoute(httpRequest(r)); err == nil {
			op := r.method + " " + route.Path
			reached[op] = true
			if w.Code < 400 {
				succeeded[op] = true
			}
		}
		last = w
		return w
	}
	decode := func(w *httptest.ResponseRecorder, v any) {
		t.Helper()
		if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
			t.Fatal(err)
		}
	}

	// Public.
	for _, m := range []string{"GET", "HEAD"} {
		do(m+" /health", req{method: m, path: "/health"}, 200)
		do(m+" /config", req{method: m, path: "/config"}, 200)
		do(m+" /openapi.json", req{method: m, path: "/openapi.json"}, 200)
		do(m+" /", req{method: m, path: "/"}, 200)
		do(m+" /docs/WORKSPACES.md", req{method: m, path: "/docs/WORKSPACES.md"}, 200)
		do(m+" /docs/modal/README.md", req{method: m, path: "/docs/modal/README.md"}, 200)
		do(m+" /favicon.svg (not in this build)", req{method: m, path: "/favicon.svg"}, 404)
	}
	assets, err := os.ReadDir("../dist/assets")
	if err != nil || len(assets) == 0 {
		t.Fatalf("dist/assets: %v", err)
	}
	for _, a := range assets {
		do("GET asset "+a.Name(), req{method: "GET", path: "/assets/" + a.Name()}, 200)
		do("HEAD asset "+a.Name(), req{method: "HEAD", path: "/assets/" + a.Name()}, 200)
	}
	do("missing asset", req{method: "GET", path: "/assets/nope.js"}, 404)

	// Sessions.
	do("POST /auth/session", req{method: "POST", path: "/auth/session", remote: "192.0.2.10:1"}, 200)
	do("GET /auth/session", req{method: "GET", path: "/auth/session", cookies: []*http.Cookie{user}}, 200)
	do("GET /auth/session without cookie", req{method: "GET", path: "/auth/session"}, 401)

	// Worker accounts: one ready on the simulator.
	var acc AccountView
	decode(do("POST /admin/accounts", req{method: "POST", path: "/admin/accounts", cookies: ac,
		body: fmt.Sprintf(`{"name":"sim","workspace":"sim-one","credentials":{"token_id":"t"},"base_url":%q,"capacity":4}`, sim.URL)}, 201), &acc)
	accPath := fmt.Sprint("/admin/accounts/", acc.ID)
	do("health-check", req{method: "POST", path: accPath + "/health-check", cookies: ac}, 200)
	do("GET /admin/accounts", req{method: "GET", path: "/admin/accounts", cookies: ac}, 200)
	do("PATCH account", req{method: "PATCH", path: accPath, cookies: ac, body: `{"capacity":3,"credentials":{"token_secret":null}}`}, 200)
	do("deploy", req{method: "POST", path: accPath + "/deploy", cookies: ac}, 202)
	waitDeploy(t, e, acc.ID)
	// The PATCH left the account pending until a health check: the tasks
	// below need it ready (this test's clock stands still, so waitDeploy
	// cannot tell the deploy's follow-up check by its time).
	testutil.WaitFor(t, 10*time.Second, "the account ready again after the edit and the deploy", func() bool {
		a, err := e.db.GetAccount(context.Background(), acc.ID)
		return err == nil && a.Status == store.AccountReady
	})
	do("GET account", req{method: "GET", path: accPath, cookies: ac}, 200)
	if !strings.Contains(last.Body.String(), `"deploy_output"`) {
		t.Errorf("GET account after a deploy lacks deploy_output: %s", last.Body.String())
	}
	var spare AccountView
	decode(do("POST spare account", req{method: "POST", path: "/admin/accounts", cookies: ac,
		body: `{"name":"spare","workspace":"spare-one","credentials":{},"driver":"comfyui","base_url":"https://comfy.example.com"}`}, 201), &spare)
	do("DELETE account", req{method: "DELETE", path: fmt.Sprint("/admin/accounts/", spare.ID), cookies: ac}, 204)

	// Tasks: a batch of two t2i, an i2v with an input image.
	var batch generateAccepted
	decode(do("POST /generate", req{method: "POST", path: "/generate", header: map[string]string{"X-API-Key": e.sec.APIKey, "Idempotency-Key": "oa-1"},
		body: `{"model":"flux","mode":"t2i","prompt":"a lighthouse","params":{"seed":-1},"count":2}`}, 202), &batch)
	do("POST /generate replayed", req{method: "POST", path: "/generate", header: map[string]string{"X-API-Key": e.sec.APIKey, "Idempotency-Key": "oa-1"},
		body: `{"model":"flux","mode":"t2i","prompt":"a lighthouse","params":{"seed":-1},"count":2}`}, 202)
	var png bytes.Buffer
	if err := stdpng.Encode(&png, image.NewRGBA(image.Rect(0, 0, 64, 48))); err != nil {
		t.Fatal(err)
	}
	var i2v generateAccepted
	decode(do("POST /generate i2v", req{method: "POST", path: "/generate", cookies: []*http.Cookie{user},
		body: `{"model":"anisora","mode":"i2v","prompt":"waves","negative_prompt":"blur","type":"video","image":"data:image/png;base64,` + base64.StdEncoding.EncodeToString(png.Bytes()) + `"}`}, 202), &i2v)
	do("GET /status pending", req{method: "GET", path: "/status/" + batch.TaskID, header: key}, 200)
	do("GET /tasks", req{method: "GET", path: "/tasks?status=pending,processing&model=flux&type=image&q=lighthouse&limit=1", header: key}, 200)
	do("GET /tasks with total", req{method: "GET", path: "/tasks?total=1", header: key}, 200)
	do("GET /inputs", req{method: "GET", path: "/inputs/" + i2v.TaskID + "?api_key=" + e.sec.APIKey}, 200)
	do("HEAD /inputs", req{method: "HEAD", path: "/inputs/" + i2v.TaskID, header: key}, 200)
	do("GET /inputs of a t2i task", req{method: "GET", path: "/inputs/" + batch.TaskID, header: key}, 404)
	do("POST cancel", req{method: "POST", path: "/tasks/" + batch.TaskIDs[1] + "/cancel", header: key}, 200)
	do("GET /status failed", req{method: "GET", path: "/status/" + batch.TaskIDs[1], header: key}, 200)
	do("GET /results of a canceled task", req{method: "GET", path: "/results/" + batch.TaskIDs[1], header: key}, 409)
	do("GET /events of a canceled task", req{method: "GET", path: "/events/" + batch.TaskIDs[1], header: key}, 200)

	// A processing task and a done one.
	processing := e.task("processing", acc.ID)
	do("GET /status processing", req{method: "GET", path: "/status/" + processing.ID, header: key}, 200)
	do("GET /preview while processing", req{method: "GET", path: "/preview/" + processing.ID, header: key}, 409)
	done := e.task("done", acc.ID)
	for _, m := range []string{"GET", "HEAD"} {
		do(m+" /results", req{method: m, path: "/results/" + done.ID + "?download=1", header: key}, 200)
		do(m+" /preview", req{method: m, path: "/preview/" + done.ID, header: key}, 200)
	}
	etag := last.Header().Get("ETag")
	do("GET /results range", req{method: "GET", path: "/results/" + done.ID, header: map[string]string{"X-API-Key": e.sec.APIKey, "Range": "bytes=0-3"}}, 206)
	do("GET /preview not modified", req{method: "GET", path: "/preview/" + done.ID, header: map[string]string{"X-API-Key": e.sec.APIKey, "If-None-Match": etag}}, 304)
	do("GET /results bad range", req{method: "GET", path: "/results/" + done.ID, header: map[string]string{"X-API-Key": e.sec.APIKey, "Range": "bytes=9999-"}}, 416)
	do("GET /events done", req{method: "GET", path: "/events/" + done.ID, header: key}, 200)
	do("GET /gallery", req{method: "GET", path: "/gallery?limit=10&model=flux&type=image&q=lighthouse", header: key}, 200)
	do("GET /gallery total", req{method: "GET", path: "/gallery?total=1", header: key}, 200)
	do("DELETE /gallery", req{method: "DELETE", path: "/gallery/" + done.ID, header: key}, 204)

	// GET /events over a real connection: the first task event after a change.
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	streamCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hr, _ := http.NewRequestWithContext(streamCtx, "GET", srv.URL+"/events", nil)
	hr.Header.Set("X-API-Key", e.sec.APIKey)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "retry: 2000\n" {
		t.Fatalf("GET /events starts with %q %v", line, err)
	}
	do("cancel for the stream", req{method: "POST", path: "/tasks/" + i2v.TaskID + "/cancel", header: key}, 200)
	var stream strings.Builder
	stream.WriteString("retry: 2000\n")
	for !strings.Contains(stream.String(), "event: task\ndata:") || !strings.HasSuffix(stream.String(), "\n\n") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("GET /events: %v after %q", err, stream.String())
		}
		stream.WriteString(line)
	}
	cancel()
	resp.Body.Close()
	rec := httptest.NewRecorder()
	for k, v := range resp.Header {
		rec.Header()[k] = v
	}
	rec.WriteHeader(resp.StatusCode)
	rec.WriteString(stream.String())
	checkOpenAPI(t, "GET /events", req{method: "GET", path: "/events", header: key}, rec)
	reached["GET /events"], succeeded["GET /events"] = true, true

	// Invites.
	var inv inviteView
	decode(do("POST /admin/invites", req{method: "POST", path: "/admin/invites", cookies: ac, body: `{"label":"team","uses":2,"expires_in":"1h"}`}, 201), &inv)
	do("GET /admin/invites", req{method: "GET", path: "/admin/invites", cookies: ac}, 200)
	token := inv.URL[strings.LastIndex(inv.URL, "/")+1:]
	do("GET /auth/invite", req{method: "GET", path: "/auth/invite/" + token, remote: "192.0.2.11:1"}, 303)
	do("GET /auth/invite as JSON", req{method: "GET", path: "/auth/invite/nope", remote: "192.0.2.11:1", header: map[string]string{"Accept": "application/json"}}, 401)
	do("DELETE /admin/invites", req{method: "DELETE", path: fmt.Sprint("/admin/invites/", inv.ID), cookies: ac}, 204)

	// Admin reading.
	do("GET /admin/health", req{method: "GET", path: "/admin/health", cookies: ac}, 200)
	do("GET /admin/logs", req{method: "GET", path: "/admin/logs?limit=5&outcome=success&since=2026-01-01T00:00:00Z", cookies: ac}, 200)
	do("GET /admin/logs next", req{method: "GET", path: "/admin/logs?limit=5&cursor=3", cookies: ac}, 200)
	do("GET /admin/logs/verify", req{method: "GET", path: "/admin/logs/verify", cookies: ac}, 200)
	do("GET /metrics", req{method: "GET", path: "/metrics", cookies: ac}, 200)
	do("GET /metrics OpenMetrics", req{method: "GET", path: "/metrics", cookies: ac, header: map[string]string{"Accept": "application/openmetrics-text; version=1.0.0"}}, 200)

	// Sign-outs last.
	do("DELETE /auth/session", req{method: "DELETE", path: "/auth/session", cookies: []*http.Cookie{user}}, 204)
	do("DELETE /admin/session", req{method: "DELETE", path: "/admin/session", cookies: ac}, 204)
	do("POST /admin/session", req{method: "POST", path: "/admin/session", header: map[string]string{"X-Admin-Key": e.sec.AdminKey}, remote: "192.0.2.12:1"}, 200)

	// Every operation was reached, and all but the favicon (absent from
	// this build) answered with success at least once.
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			op := method + " " + path
			switch {
			case !reached[op]:
				t.Errorf("%s was never reached", op)
			case !succeeded[op] && path != "/favicon.svg":
				t.Errorf("%s never answered with success", op)
			}
		}
	}
}

// TestOpenAPICheckFails: checkOpenAPI itself refuses answers the document
// does not describe, so that a drift between server and document fails the
// suites that use it.
func TestOpenAPICheckFails(t *testing.T) {
	task := `{"task_id":"01ABC","type":"image","model":"flux","mode":"t2i","prompt":"x","params":{},"status":"done","progress":100,` +
		`"created_at":"2026-01-01T00:00:00Z","started_at":null,"completed_at":null,"result_url":"/results/01ABC","preview_url":"/preview/01ABC"}`
	errJSON := func(code string) string {
		return `{"error":{"code":"` + code + `","message":"m","correlation_id":"c1"}}`
	}
	key := map[string]string{"X-API-Key": "k"}
	for _, c := range []struct {
		name   string
		r      req
		status int
		ctype  string
		body   string
	}{
		{"a new field in a task view", req{method: "GET", path: "/status/01ABC", header: key}, 200, "application/json", strings.Replace(task, `"x",`, `"x","new":1,`, 1)},
		{"a field missing", req{method: "GET", path: "/status/01ABC", header: key}, 200, "application/json", strings.Replace(task, `"progress":100,`, ``, 1)},
		{"progress 100 while pending", req{method: "GET", path: "/status/01ABC", header: key}, 200, "application/json",
			strings.Replace(strings.Replace(task, `"done"`, `"pending"`, 1), `"params":{}`, `"params":{},"queue_position":0,"eta_seconds":null`, 1)},
		{"an undocumented status", req{method: "GET", path: "/status/01ABC", header: key}, 418, "application/json", errJSON("internal")},
		{"a code the route does not list", req{method: "GET", path: "/status/01ABC", header: key}, 404, "application/json", errJSON("account_not_found")},
		{"a plain-text error", req{method: "GET", path: "/status/01ABC", header: key}, 404, "text/plain", "404 page not found"},
		{"success without a credential", req{method: "GET", path: "/status/01ABC"}, 200, "application/json", task},
		{"success for a body the document refuses", req{method: "POST", path: "/generate", header: key, body: `{"model":"flux"}`}, 202, "application/json", `{}`},
		{"405 on an undocumented path", req{method: "GET", path: "/nowhere"}, 405, "application/json", errJSON("method_not_allowed")},
		{"not_found for a documented path", req{method: "PUT", path: "/health"}, 404, "application/json", errJSON("not_found")},
		{"an undocumented event", req{method: "GET", path: "/events", header: key}, 200, "text/event-stream", "event: surprise\ndata: {}\n\n"},
		{"a task event that is not a task view", req{method: "GET", path: "/events", header: key}, 200, "text/event-stream", "event: task\ndata: {\"task_id\":1}\n\n"},
	} {
		w := httptest.NewRecorder()
		w.Header().Set("Content-Type", c.ctype)
		w.Header().Set("X-Correlation-ID", "c1")
		w.WriteHeader(c.status)
		w.WriteString(c.body)
		rec := &failures{}
		checkOpenAPI(rec, c.name, c.r, w)
		t.Logf("%s: %q", c.name, rec.msgs)
		if len(rec.msgs) == 0 {
			t.Errorf("%s: checkOpenAPI accepted it", c.name)
		}
	}
}

// failures records what a check reports instead of failing the test.
type failures struct{ msgs []string }

func (f *failures) Helper() {}
func (f *failures) Errorf(format string, args ...any) {
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}
func (f *failures) Fatal(args ...any) { f.msgs = append(f.msgs, fmt.Sprint(args...)) }
