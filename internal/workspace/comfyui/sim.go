package comfyui

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"gooni/internal/workspace"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"mime"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Fault names accepted by SimConfig.Fault and `--fault` (CONTRACT section 14).
const (
	FaultNone       = "none"
	FaultValidation = "validation"  // POST /prompt: every model file is missing (400 node_errors)
	FaultExecError  = "exec_error"  // halfway: execution_error from the sampler
	FaultOOM        = "oom"         // halfway: a torch out-of-memory execution_error
	FaultInterrupt  = "interrupt"   // halfway: interrupted, as if stopped in ComfyUI's own UI
	FaultRestart    = "restart"     // halfway through the first prompt: queue, history and sockets lost
	FaultWSDrop     = "ws_drop"     // halfway: sockets closed, /ws refused until that prompt ends
	FaultOldVersion = "old_version" // POST /prompt ignores the client's prompt_id and invents one
)

var simFaults = []string{FaultNone, FaultValidation, FaultExecError, FaultOOM, FaultInterrupt, FaultRestart, FaultWSDrop, FaultOldVersion}

const (
	simDefaultAddr     = "127.0.0.1:8188"
	simDefaultDuration = 3 * time.Second
	simMaxBody         = 16 << 20
	simMaxUpload       = 32 << 20
	simMaxQueue        = 1024
	simMaxHistory      = 512
	simMaxUploads      = 128
	simMaxUploadBytes  = 256 << 20
	simMaxFiles        = 64
	simSocketBuffer    = 1024
)

// SimConfig configures comfy-sim; zero values take the `gooni comfy-sim` defaults.
type SimConfig struct {
	Addr     string
	Duration time.Duration // the sampling time of one prompt
	// Models are the model file names the loaders list; nil = every file
	// the workflows need (an empty non-nil list = none).
	Models []string
	Fault  string // one of the Fault* names
	// Workflows give the default Models; nil = the embedded set.
	Workflows *Workflows
	// Now stamps messages; nil = time.Now.
	Now func() time.Time
	// After paces execution; nil = time.After. Tests pass a channel they
	// feed, so a prompt moves one step when the test says so.
	After func(time.Duration) <-chan time.Time
}

// Sim is an in-memory fake of the ComfyUI API subset the driver uses, with
// ComfyUI's message and answer shapes: one prompt executes at a time; queue,
// history, uploads and outputs live in memory (bounded); /view serves real
// media drawn by workspace.RenderMedia from the graph's prompt and settings.
type Sim struct {
	cfg      SimConfig
	defs     NodeDefs
	models   []string
	now      func() time.Time
	after    func(time.Duration) <-chan time.Time
	preview  []byte // the JPEG of every binary preview frame
	stop     chan struct{}
	stopOnce sync.Once
	wake     chan struct{}
	execDone chan struct{}

	mu          sync.Mutex
	boot        uint64
	number      int
	queue       []*simPrompt
	running     *simPrompt
	lastNode    string
	history     map[string]map[string]any
	histOrder   []string
	uploads     map[string][]byte
	uploadOrder []string
	uploadBytes int
	files       map[string]*simFile // "subfolder/filename" of outputs
	fileOrder   []string
	counters    map[string]int
	cache       map[string]string // node id -> input signature, from the last prompt
	cacheUI     map[string]any    // node id -> ui output, from the last prompt
	sockets     map[string]*simSocket
	wsBlocked   string // ws_drop: the prompt during which /ws is refused
	restarted   bool
	submitted   map[string]int // prompt_id -> times queued (twins show here)
	completed   map[string]int // prompt_id -> times run to success

	startOnce sync.Once
	requests  atomic.Int64 // HTTP requests to /queue and /history since start
}

type simPrompt struct {
	number    int
	id        string
	graph     map[string]any
	extra     map[string]any
	outputs   []string
	clientID  string
	interrupt chan struct{}
	stopOnce  sync.Once
}

func (p *simPrompt) stopIt() { p.stopOnce.Do(func() { close(p.interrupt) }) }

func (p *simPrompt) item() []any {
	return []any{p.number, p.id, p.graph, p.extra, p.outputs}
}

// simFile is one saved output: what to draw when /view asks for it.
type simFile struct {
	contentType string
	render      func() ([]byte, error)
	once        sync.Once
	data        []byte
	err         error
}

func (f *simFile) bytes() ([]byte, error) {
	f.once.Do(func() { f.data, f.err = f.render() })
	return f.data, f.err
}

// NewSim validates cfg and fills defaults.
func NewSim(cfg SimConfig) (*Sim, error) {
	if cfg.Addr == "" {
		cfg.Addr = simDefaultAddr
	}
	switch {
	case cfg.Duration < 0:
		return nil, errors.New("comfy-sim: duration must be positive")
	case cfg.Duration == 0:
		cfg.Duration = simDefaultDuration
	}
	if cfg.Fault == "" {
		cfg.Fault = FaultNone
	}
	if !validSimFault(cfg.Fault) {
		return nil, fmt.Errorf("comfy-sim: unknown fault %q (want %s)", cfg.Fault, strings.Join(simFaults, "|"))
	}
	defs, err := ParseNodeDefs(nodeDefsJSON)
	if err != nil {
		return nil, err
	}
	models := cfg.Models
	if models == nil {
		wfs := cfg.Workflows
		if wfs == nil {
			if wfs, err = LoadWorkflows(EmbeddedWorkflows(), ""); err != nil {
				return nil, err
			}
		}
		models = RequiredModelFiles(wfs)
	}
	s := &Sim{
		cfg: cfg, defs: defs, models: append([]string(nil), models...), now: cfg.Now, after: cfg.After,
		stop: make(chan struct{}), wake: make(chan struct{}, 1), execDone: make(chan struct{}),
		history: map[string]map[string]any{}, uploads: map[string][]byte{}, files: map[string]*simFile{},
		counters: map[string]int{}, cache: map[string]string{}, cacheUI: map[string]any{},
		sockets: map[string]*simSocket{}, submitted: map[string]int{}, completed: map[string]int{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.after == nil {
		s.after = time.After
	}
	s.preview = tinyJPEG()
	return s, nil
}

// RequiredModelFiles lists every model file the workflows need, sorted.
func RequiredModelFiles(wfs *Workflows) []string {
	set := map[string]bool{}
	for _, wf := range wfs.All() {
		for _, f := range wf.ModelFiles {
			set[f.File] = true
		}
	}
	return sortedKeys(set)
}

func validSimFault(f string) bool {
	for _, x := range simFaults {
		if x == f {
			return true
		}
	}
	return false
}

func tinyJPEG() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 32, 32))
	for i := range img.Pix {
		img.Pix[i] = 128
	}
	img.Set(16, 16, color.RGBA{255, 0, 0, 255})
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// Config returns the effective configuration (defaults filled).
func (s *Sim) Config() SimConfig { return s.cfg }

// Models returns the model file names the loaders list.
func (s *Sim) Models() []string { return append([]string(nil), s.models...) }

// Submissions says how often a prompt_id was queued; a value over 1 is a twin.
func (s *Sim) Submissions(promptID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.submitted[promptID]
}

// Completions says how often a prompt_id ran to success.
func (s *Sim) Completions(promptID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.completed[promptID]
}

// PollRequests counts GET /queue and GET /history calls since the Sim started.
func (s *Sim) PollRequests() int64 { return s.requests.Load() }

// Close stops the executor and every socket; the Sim answers nothing useful after it.
func (s *Sim) Close() {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.mu.Lock()
		for _, sock := range s.sockets {
			sock.close()
		}
		s.mu.Unlock()
	})
}

// Handler serves the ComfyUI routes, also under /api as ComfyUI does.
func (s *Sim) Handler() http.Handler {
	s.startOnce.Do(func() { go s.execLoop() })
	mux := http.NewServeMux()
	routes := map[string]http.HandlerFunc{
		"GET /ws":                  s.handleWS,
		"POST /prompt":             s.handlePrompt,
		"GET /prompt":              s.handleQueueInfo,
		"GET /queue":               s.handleQueue,
		"POST /queue":              s.handleQueuePost,
		"GET /history":             s.handleHistoryAll,
		"GET /history/{id}":        s.handleHistory,
		"POST /history":            s.handleHistoryPost,
		"POST /interrupt":          s.handleInterrupt,
		"GET /object_info":         s.handleObjectInfo,
		"GET /object_info/{class}": s.handleObjectInfo,
		"POST /upload/image":       s.handleUpload,
		"GET /view":                s.handleView,
	}
	for pattern, h := range routes {
		mux.HandleFunc(pattern, h)
		method, p, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" /api"+p, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404: Not Found", http.StatusNotFound)
	})
	return mux
}

// ListenAndServe serves on cfg.Addr until ctx is done.
func (s *Sim) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("comfy-sim: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then closes sockets, shuts down and closes ln.
func (s *Sim) Serve(ctx context.Context, ln net.Listener) error {
	return workspace.ServeSim(ctx, ln, s.Handler(), s.Close, "comfy-sim")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

// promptRefusal is ComfyUI's 400 answer to POST /prompt.
func promptRefusal(w http.ResponseWriter, typ, msg, details string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"error":       promptError{Type: typ, Message: msg, Details: details, ExtraInfo: map[string]any{}},
		"node_errors": map[string]any{},
	})
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// defsForValidation is the fixture with the loader lists set to the models
// (none under the validation fault) and LoadImage's list to the uploads.
func (s *Sim) defsForValidation() NodeDefs {
	models := s.models
	if s.cfg.Fault == FaultValidation {
		models = []string{}
	}
	return s.liveDefs(models)
}

// liveDefs copies the fixture with live choice lists.
func (s *Sim) liveDefs(models []string) NodeDefs {
	s.mu.Lock()
	uploads := sortedKeys(s.uploads)
	s.mu.Unlock()
	out := make(NodeDefs, len(s.defs))
	for class, def := range s.defs {
		cp := *def
		inputs := loaderInputs[class]
		if class == "LoadImage" {
			inputs = []string{"image"}
		}
		if len(inputs) > 0 {
			cp.Input.Required = make(map[string]json.RawMessage, len(def.Input.Required))
			for k, v := range def.Input.Required {
				cp.Input.Required[k] = v
			}
			for _, in := range inputs {
				list := models
				if class == "LoadImage" {
					list = uploads
				}
				cp.Input.Required[in] = withChoices(def.Input.Required[in], list)
			}
		}
		out[class] = &cp
	}
	return out
}

func (s *Sim) handleObjectInfo(w http.ResponseWriter, r *http.Request) {
	defs := s.liveDefs(s.models)
	// Re-encode each definition from the fixture's raw JSON so every field ComfyUI sends is kept.
	var raw map[string]map[string]json.RawMessage
	_ = json.Unmarshal(nodeDefsJSON, &raw)
	out := map[string]any{}
	for class, def := range defs {
		if c := r.PathValue("class"); c != "" && c != class {
			continue
		}
		entry := map[string]json.RawMessage{}
		for k, v := range raw[class] {
			entry[k] = v
		}
		input := map[string]any{"required": def.Input.Required}
		var orig struct {
			Optional map[string]json.RawMessage `json:"optional"`
			Hidden   json.RawMessage            `json:"hidden"`
		}
		_ = json.Unmarshal(raw[class]["input"], &orig)
		if orig.Optional != nil {
			input["optional"] = orig.Optional
		}
		if orig.Hidden != nil {
			input["hidden"] = orig.Hidden
		}
		entry["input"], _ = json.Marshal(input)
		out[class] = entry
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) queueInfoLocked() map[string]any {
	n := len(s.queue)
	if s.running != nil {
		n++
	}
	return map[string]any{"exec_info": map[string]any{"queue_remaining": n}}
}

func (s *Sim) handleQueueInfo(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	info := s.queueInfoLocked()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, info)
}

func (s *Sim) handlePrompt(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, simMaxBody))
	dec.UseNumber()
	var body map[string]any
	if err := dec.Decode(&body); err != nil {
		promptRefusal(w, "invalid_json", "Invalid JSON", "the body must be a JSON object")
		return
	}
	graph, ok := body["prompt"].(map[string]any)
	if _, present := body["prompt"]; !present {
		promptRefusal(w, "no_prompt", "No prompt provided", "No prompt provided")
		return
	}
	if !ok {
		promptRefusal(w, "invalid_prompt", "The prompt must be an object of nodes", "")
		return
	}
	pid := newUUID()
	if raw, present := body["prompt_id"]; present && s.cfg.Fault != FaultOldVersion {
		str, isStr := raw.(string)
		if _, err := parseUUID(str); !isStr || err != nil {
			promptRefusal(w, "invalid_prompt_id", "Invalid prompt_id", "prompt_id must be a UUID")
			return
		}
		pid = strings.ToLower(str)
	}
	v := s.defsForValidation().validate(graph)
	if v.err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": v.err, "node_errors": v.nodeErrors})
		return
	}
	extra, _ := body["extra_data"].(map[string]any)
	if extra == nil {
		extra = map[string]any{}
	}
	clientID, _ := body["client_id"].(string)
	if clientID != "" {
		extra["client_id"] = clientID
	}
	extra["create_time"] = s.now().UnixMilli()

	s.mu.Lock()
	if len(s.queue) >= simMaxQueue {
		s.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "queue full"})
		return
	}
	number := s.number
	s.number++
	if n, ok := asFloat(body["number"]); ok {
		number = int(n)
	} else if front, _ := body["front"].(bool); front {
		number = -number
	}
	p := &simPrompt{number: number, id: pid, graph: graph, extra: extra, outputs: v.outputs, clientID: clientID, interrupt: make(chan struct{})}
	s.queue = append(s.queue, p)
	sort.SliceStable(s.queue, func(i, j int) bool { return s.queue[i].number < s.queue[j].number })
	s.submitted[pid]++
	s.broadcastLocked("status", map[string]any{"status": s.queueInfoLocked()})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	writeJSON(w, http.StatusOK, map[string]any{"prompt_id": pid, "number": number, "node_errors": v.nodeErrors})
}

func (s *Sim) handleQueue(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.writeLocked(w, func() any {
		running := []any{}
		if s.running != nil {
			running = append(running, s.running.item())
		}
		pending := make([]any, 0, len(s.queue))
		for _, p := range s.queue {
			pending = append(pending, p.item())
		}
		return map[string]any{"queue_running": running, "queue_pending": pending}
	})
}

// writeLocked answers 200 with the JSON of what build returns, built and
// encoded while s.mu is held (the entries it names change under the lock).
func (s *Sim) writeLocked(w http.ResponseWriter, build func() any) {
	s.mu.Lock()
	b, err := json.Marshal(build())
	s.mu.Unlock()
	if err != nil {
		http.Error(w, "500: encode failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(b)
}

// readSmallJSON reads a small JSON object body; an empty body is an empty object.
func readSmallJSON(w http.ResponseWriter, r *http.Request) (map[string]any, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "400: body too large", http.StatusBadRequest)
		return nil, false
	}
	out := map[string]any{}
	if len(bytes.TrimSpace(b)) == 0 {
		return out, true
	}
	if json.Unmarshal(b, &out) != nil {
		http.Error(w, "500: Internal Server Error", http.StatusInternalServerError) // aiohttp: request.json() raised
		return nil, false
	}
	return out, true
}

func stringList(v any) []string {
	items, _ := v.([]any)
	var out []string
	for _, it := range items {
		if s, ok := it.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func (s *Sim) handleQueuePost(w http.ResponseWriter, r *http.Request) {
	body, ok := readSmallJSON(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	if clear, _ := body["clear"].(bool); clear {
		s.queue = nil
	}
	for _, id := range stringList(body["delete"]) {
		for i, p := range s.queue {
			if p.id == id {
				s.queue = append(s.queue[:i], s.queue[i+1:]...)
				break // like ComfyUI's delete_queue_item: the first match only
			}
		}
	}
	s.broadcastLocked("status", map[string]any{"status": s.queueInfoLocked()})
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (s *Sim) handleInterrupt(w http.ResponseWriter, r *http.Request) {
	body, ok := readSmallJSON(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	p := s.running
	s.mu.Unlock()
	if id, _ := body["prompt_id"].(string); p != nil && (id == "" || id == p.id) {
		p.stopIt()
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Sim) handleHistoryAll(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.writeLocked(w, func() any {
		out := make(map[string]any, len(s.history))
		for id, e := range s.history {
			out[id] = e
		}
		return out
	})
}

func (s *Sim) handleHistory(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	id := r.PathValue("id")
	s.writeLocked(w, func() any {
		out := map[string]any{}
		if e, ok := s.history[id]; ok {
			out[id] = e
		}
		return out
	})
}

func (s *Sim) handleHistoryPost(w http.ResponseWriter, r *http.Request) {
	body, ok := readSmallJSON(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	if clear, _ := body["clear"].(bool); clear {
		s.history, s.histOrder = map[string]map[string]any{}, nil
	}
	for _, id := range stringList(body["delete"]) {
		delete(s.history, id)
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (s *Sim) handleUpload(w http.ResponseWriter, r *http.Request) {
	// Read the parts by hand: Go's form parsing strips directories from file
	// names, and ComfyUI refuses a name that leaves its input folder.
	r.Body = http.MaxBytesReader(w, r.Body, simMaxUpload)
	mr, err := r.MultipartReader()
	if err != nil {
		http.Error(w, "400: Bad Request", http.StatusBadRequest)
		return
	}
	fields := map[string]string{}
	var name string
	var data []byte
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			http.Error(w, "400: Bad Request", http.StatusBadRequest)
			return
		}
		_, params, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		b, err := io.ReadAll(io.LimitReader(part, simMaxUpload+1))
		if err != nil || len(b) > simMaxUpload {
			http.Error(w, "413: Request Entity Too Large", http.StatusRequestEntityTooLarge)
			return
		}
		if params["name"] == "image" {
			name, data = params["filename"], b
		} else if len(b) <= 1024 {
			fields[params["name"]] = string(b)
		}
	}
	typ := fields["type"]
	if typ == "" {
		typ = "input"
	}
	if data == nil || !safeFileName(name) || fields["subfolder"] != "" || typ != "input" {
		http.Error(w, "400: Bad Request", http.StatusBadRequest)
		return
	}
	overwrite := fields["overwrite"] == "true" || fields["overwrite"] == "1"
	s.mu.Lock()
	if old, exists := s.uploads[name]; exists && !overwrite && !bytes.Equal(old, data) {
		ext := ""
		if i := strings.LastIndexByte(name, '.'); i > 0 {
			name, ext = name[:i], name[i:]
		}
		base := name
		for i := 1; ; i++ {
			name = fmt.Sprintf("%s (%d)%s", base, i, ext)
			if prev, taken := s.uploads[name]; !taken || bytes.Equal(prev, data) {
				break
			}
		}
	}
	if old, exists := s.uploads[name]; exists {
		s.uploadBytes -= len(old)
	} else {
		s.uploadOrder = append(s.uploadOrder, name)
	}
	s.uploads[name] = data
	s.uploadBytes += len(data)
	for len(s.uploadOrder) > 1 && (len(s.uploadOrder) > simMaxUploads || s.uploadBytes > simMaxUploadBytes) {
		s.uploadBytes -= len(s.uploads[s.uploadOrder[0]])
		delete(s.uploads, s.uploadOrder[0])
		s.uploadOrder = s.uploadOrder[1:]
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"name": name, "subfolder": "", "type": typ})
}

func (s *Sim) handleView(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("filename")
	if name == "" {
		http.Error(w, "404: Not Found", http.StatusNotFound)
		return
	}
	if name[0] == '/' || strings.Contains(name, "..") {
		http.Error(w, "400: Bad Request", http.StatusBadRequest)
		return
	}
	sub := q.Get("subfolder")
	if strings.Contains(sub, "..") || strings.HasPrefix(sub, "/") {
		http.Error(w, "403: Forbidden", http.StatusForbidden)
		return
	}
	typ := q.Get("type")
	if typ == "" {
		typ = "output"
	}
	var body []byte
	ctype := extTypes[strings.ToLower(extOf(name))]
	switch typ {
	case "output":
		key := name
		if sub != "" {
			key = sub + "/" + name
		}
		s.mu.Lock()
		f, ok := s.files[key]
		s.mu.Unlock()
		if !ok {
			http.Error(w, "404: Not Found", http.StatusNotFound)
			return
		}
		b, err := f.bytes()
		if err != nil {
			http.Error(w, "500: render failed", http.StatusInternalServerError)
			return
		}
		body, ctype = b, f.contentType
	case "input":
		s.mu.Lock()
		b, ok := s.uploads[name]
		s.mu.Unlock()
		if !ok || sub != "" {
			http.Error(w, "404: Not Found", http.StatusNotFound)
			return
		}
		body = b
	default:
		http.Error(w, "400: Bad Request", http.StatusBadRequest)
		return
	}
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf("filename=%q", name))
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func extOf(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i:]
	}
	return ""
}

// simSocket is one /ws client; frames go out through a bounded buffer.
type simSocket struct {
	sid  string
	conn *websocket.Conn
	out  chan simFrame
	once sync.Once
	gone chan struct{}
}

type simFrame struct {
	typ  websocket.MessageType
	data []byte
}

func (c *simSocket) close() {
	c.once.Do(func() {
		close(c.gone)
		c.conn.CloseNow()
	})
}

// push queues a frame; a client too slow to keep up is dropped, not waited for.
func (c *simSocket) push(f simFrame) {
	select {
	case c.out <- f:
	case <-c.gone:
	default:
		c.close()
	}
}

func (s *Sim) handleWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	blocked := s.wsBlocked != "" && s.running != nil && s.running.id == s.wsBlocked
	s.mu.Unlock()
	if blocked {
		http.Error(w, "503: Service Unavailable", http.StatusServiceUnavailable)
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	conn.SetReadLimit(64 << 10)
	sid := r.URL.Query().Get("clientId")
	if sid == "" {
		sid = strings.ReplaceAll(newUUID(), "-", "")
	}
	sock := &simSocket{sid: sid, conn: conn, out: make(chan simFrame, simSocketBuffer), gone: make(chan struct{})}
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		conn.CloseNow()
		return
	default:
	}
	if old, ok := s.sockets[sid]; ok {
		old.close() // ComfyUI: reusing a client id replaces the old session
	}
	s.sockets[sid] = sock
	first := map[string]any{"status": s.queueInfoLocked(), "sid": sid}
	sock.push(textFrame("status", first))
	if s.running != nil && s.running.clientID == sid && s.lastNode != "" {
		sock.push(textFrame("executing", map[string]any{"node": s.lastNode}))
	}
	s.mu.Unlock()

	go func() {
		for {
			select {
			case f := <-sock.out:
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := conn.Write(ctx, f.typ, f.data)
				cancel()
				if err != nil {
					sock.close()
					return
				}
			case <-sock.gone:
				return
			}
		}
	}()
	firstMsg := true
	for {
		_, data, err := conn.Read(r.Context())
		if err != nil {
			break
		}
		var m socketMessage
		if firstMsg && json.Unmarshal(data, &m) == nil && m.Type == "feature_flags" {
			sock.push(textFrame("feature_flags", map[string]any{"supports_preview_metadata": false, "max_upload_size": simMaxUpload}))
		}
		firstMsg = false
	}
	sock.close()
	s.mu.Lock()
	if s.sockets[sid] == sock {
		delete(s.sockets, sid)
	}
	s.mu.Unlock()
}

func textFrame(kind string, data any) simFrame {
	b, _ := json.Marshal(map[string]any{"type": kind, "data": data})
	return simFrame{typ: websocket.MessageText, data: b}
}

// sendLocked sends to one client id (ComfyUI's send_sync with a sid).
func (s *Sim) sendLocked(sid, kind string, data any) {
	if sid == "" {
		return
	}
	if sock, ok := s.sockets[sid]; ok {
		sock.push(textFrame(kind, data))
	}
}

func (s *Sim) broadcastLocked(kind string, data any) {
	f := textFrame(kind, data)
	for _, sock := range s.sockets {
		sock.push(f)
	}
}

func (s *Sim) closeSocketsLocked() {
	for sid, sock := range s.sockets {
		sock.close()
		delete(s.sockets, sid)
	}
}
