package workspace

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"gooni/internal/taskid"
	"math"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Fault names accepted by SimConfig.Fault and `--fault`.
const (
	FaultNone    = "none"
	FaultRefuse  = "refuse"  // 503 on POST /tasks
	FaultDrop    = "drop"    // accepted, then 404 on status
	FaultHang    = "hang"    // the call never answers
	FaultCorrupt = "corrupt" // result bytes are not the media they claim
	FaultError   = "error"   // task ends failed
	Fault5xx     = "5xx"     // every call 500
)

// SimModels is what the simulator claims to serve on /health.
var SimModels = []string{"anisora", "phr00t", "pony", "flux"}

const (
	simDefaultAddr     = "127.0.0.1:9100"
	simDefaultDuration = 3 * time.Second
	simDefaultCapacity = 2
	simMaxBody         = 16 << 20
	simSteps           = 10  // progress moves in 10% steps over Duration
	simMaxTasks        = 256 // finished tasks beyond this are forgotten, oldest first
)

// SimConfig configures the simulator; zero values take the `workspace-sim` defaults.
type SimConfig struct {
	Addr                      string
	Duration                  time.Duration
	Capacity                  int
	Fault                     string  // none|refuse|drop|hang|corrupt|error|5xx
	FaultRate                 float64 // 0..1; 0 with a fault set means 1 (the default)
	RequireKey, RequireSecret string
	Seed                      int64            // varies which task ids a partial fault rate hits
	Now                       func() time.Time // nil = time.Now; tests move time instead of sleeping
	// Models are what GET /health says it serves; nil = SimModels (every
	// catalog model). Routing tests give two simulators different lists.
	Models []string
}

// Sim is an in-memory Workspace API v1 server with synthetic but real media.
type Sim struct {
	cfg        SimConfig
	now        func() time.Time
	keyHash    [32]byte
	secretHash [32]byte

	mu    sync.Mutex
	tasks map[string]*simTask

	healthCalls atomic.Uint64
	stop        chan struct{}
	stopOnce    sync.Once
}

type simTask struct {
	id       string
	typ      string
	prompt   string
	params   json.RawMessage
	accepted time.Time
	fate     string
	first    []byte       // the first answer, repeated verbatim on a resubmit
	render   *TaskRequest // what RenderMedia draws from

	mediaOnce sync.Once
	media     *simMedia
	mediaErr  error
}

// NewSim validates cfg and fills defaults.
func NewSim(cfg SimConfig) (*Sim, error) {
	if cfg.Addr == "" {
		cfg.Addr = simDefaultAddr
	}
	switch {
	case cfg.Duration < 0:
		return nil, errors.New("workspace-sim: duration must be positive")
	case cfg.Duration == 0:
		cfg.Duration = simDefaultDuration
	}
	switch {
	case cfg.Capacity < 0:
		return nil, errors.New("workspace-sim: capacity must be at least 1")
	case cfg.Capacity == 0:
		cfg.Capacity = simDefaultCapacity
	}
	if cfg.Fault == "" {
		cfg.Fault = FaultNone
	}
	if !validFault(cfg.Fault) {
		return nil, fmt.Errorf("workspace-sim: unknown fault %q (want none|refuse|drop|hang|corrupt|error|5xx)", cfg.Fault)
	}
	if math.IsNaN(cfg.FaultRate) || cfg.FaultRate < 0 || cfg.FaultRate > 1 {
		return nil, errors.New("workspace-sim: fault rate must be within 0..1")
	}
	if cfg.Fault != FaultNone && cfg.FaultRate == 0 {
		cfg.FaultRate = 1
	}
	if (cfg.RequireKey == "") != (cfg.RequireSecret == "") {
		return nil, errors.New("workspace-sim: require both a key and a secret, or neither")
	}
	s := &Sim{cfg: cfg, now: cfg.Now, tasks: make(map[string]*simTask), stop: make(chan struct{})}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.RequireKey != "" {
		s.keyHash = sha256.Sum256([]byte(cfg.RequireKey))
		s.secretHash = sha256.Sum256([]byte(cfg.RequireSecret))
	}
	return s, nil
}

func validFault(f string) bool {
	switch f {
	case FaultNone, FaultRefuse, FaultDrop, FaultHang, FaultCorrupt, FaultError, Fault5xx:
		return true
	}
	return false
}

// Config returns the effective configuration (defaults filled).
func (s *Sim) Config() SimConfig { return s.cfg }

// Close releases every call held by the hang fault; the Sim answers nothing after it.
func (s *Sim) Close() { s.stopOnce.Do(func() { close(s.stop) }) }

// Handler serves Workspace API v1.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("POST /tasks", s.handleSubmit)
	mux.HandleFunc("GET /tasks/{id}", s.handleStatus)
	mux.HandleFunc("GET /tasks/{id}/result", s.handleMedia(true))
	mux.HandleFunc("GET /tasks/{id}/preview", s.handleMedia(false))
	mux.HandleFunc("DELETE /tasks/{id}", s.handleDelete)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeSimError(w, http.StatusNotFound, "not_found", "no such route")
	})
	return s.requireKey(mux)
}

// ListenAndServe serves on cfg.Addr until ctx is done.
func (s *Sim) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("workspace-sim: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then shuts down (releasing hung calls) and closes ln.
func (s *Sim) Serve(ctx context.Context, ln net.Listener) error {
	return ServeSim(ctx, ln, s.Handler(), s.Close, "workspace-sim")
}

func (s *Sim) requireKey(next http.Handler) http.Handler {
	if s.cfg.RequireKey == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := sha256.Sum256([]byte(r.Header.Get("Modal-Key")))
		sec := sha256.Sum256([]byte(r.Header.Get("Modal-Secret")))
		ok := subtle.ConstantTimeCompare(k[:], s.keyHash[:]) & subtle.ConstantTimeCompare(sec[:], s.secretHash[:])
		if ok != 1 {
			writeSimError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong Modal-Key / Modal-Secret")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// share maps a key to [0,1) deterministically, so a task id always meets the same fate.
func (s *Sim) share(key string) float64 {
	return float64(hash64(fmt.Sprint(s.cfg.Seed), key)>>11) / float64(1<<53)
}

// fate is the fault this task id meets, or FaultNone.
func (s *Sim) fate(id string) string {
	if s.cfg.Fault == FaultNone || s.share(id) >= s.cfg.FaultRate {
		return FaultNone
	}
	return s.cfg.Fault
}

// hang holds the call without an answer until the caller leaves or the Sim closes,
// then drops the connection so no half answer is sent.
func (s *Sim) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.stop:
	}
	panic(http.ErrAbortHandler)
}

// preflight applies the per-task faults that precede any lookup; false = answered.
func (s *Sim) preflight(w http.ResponseWriter, r *http.Request, id string) bool {
	if !taskid.Valid(id) {
		writeSimError(w, http.StatusBadRequest, "invalid_task_id", "task id must match ^[A-Za-z0-9_-]{1,64}$")
		return false
	}
	switch s.fate(id) {
	case Fault5xx:
		writeSimError(w, http.StatusInternalServerError, "internal", "simulated server error")
		return false
	case FaultHang:
		s.hang(r)
		return false
	}
	return true
}

func (s *Sim) models() []string {
	if s.cfg.Models == nil {
		return SimModels
	}
	return s.cfg.Models
}

func (s *Sim) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Fault == Fault5xx {
		n := s.healthCalls.Add(1)
		if s.share(fmt.Sprintf("health#%d", n)) < s.cfg.FaultRate {
			writeSimError(w, http.StatusInternalServerError, "internal", "simulated server error")
			return
		}
	}
	now := s.now()
	s.mu.Lock()
	running := s.runningLocked(now)
	s.mu.Unlock()
	writeSimJSON(w, http.StatusOK, map[string]any{
		"status": "ok", "models": s.models(), "capacity": s.cfg.Capacity, "running": running,
	})
}

// simSubmit is a POST /tasks body: a TaskRequest whose image stays as sent
// (base64 or a data URL), nil when absent.
type simSubmit struct {
	TaskRequest
	Image *string `json:"image"`
}

func (s *Sim) handleSubmit(w http.ResponseWriter, r *http.Request) {
	var req simSubmit
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, simMaxBody))
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeSimError(w, http.StatusRequestEntityTooLarge, "too_large", "body over 16 MiB")
			return
		}
		writeSimError(w, http.StatusBadRequest, "invalid_json", "body must be a JSON task object")
		return
	}
	if !s.preflight(w, r, req.TaskID) {
		return
	}
	if s.fate(req.TaskID) == FaultRefuse {
		writeSimError(w, http.StatusServiceUnavailable, "refused", "simulated refusal: try another workspace")
		return
	}
	if req.Type != "image" && req.Type != "video" {
		writeSimError(w, http.StatusBadRequest, "invalid_type", "type must be image or video")
		return
	}
	if len(req.Params) > 0 && !bytes.Equal(bytes.TrimSpace(req.Params), []byte("null")) {
		var obj map[string]json.RawMessage
		if json.Unmarshal(req.Params, &obj) != nil {
			writeSimError(w, http.StatusBadRequest, "invalid_params", "params must be an object")
			return
		}
	}
	render := &TaskRequest{TaskID: req.TaskID, Type: req.Type, Model: req.Model, Mode: req.Mode,
		Prompt: req.Prompt, NegativePrompt: req.NegativePrompt, Params: req.Params}
	if req.Image != nil {
		img, err := base64.StdEncoding.DecodeString(*req.Image)
		if err != nil {
			img = []byte(*req.Image) // not base64: still part of what is drawn from
		}
		render.Image = img
	}

	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tasks[req.TaskID]; ok {
		writeSimRaw(w, http.StatusAccepted, t.first)
		return
	}
	if s.runningLocked(now) >= s.cfg.Capacity {
		w.Header().Set("Retry-After", "1")
		writeSimError(w, http.StatusTooManyRequests, "at_capacity", "workspace is at capacity: try another")
		return
	}
	s.evictLocked(now)
	first, _ := json.Marshal(map[string]string{"task_id": req.TaskID, "status": StatusPending})
	s.tasks[req.TaskID] = &simTask{
		id: req.TaskID, typ: req.Type, prompt: req.Prompt, params: req.Params,
		accepted: now, fate: s.fate(req.TaskID), first: first, render: render,
	}
	writeSimRaw(w, http.StatusAccepted, first)
}

// state is where a task stands at now: derived from time, so nothing needs a ticker.
func (s *Sim) state(t *simTask, now time.Time) TaskState {
	elapsed := now.Sub(t.accepted)
	if elapsed < 0 {
		elapsed = 0
	}
	d := s.cfg.Duration
	if t.fate == FaultError && elapsed >= d/2 {
		return TaskState{TaskID: t.id, Status: StatusFailed, Progress: 50, Error: "simulated failure: the model crashed"}
	}
	if elapsed >= d {
		return TaskState{TaskID: t.id, Status: StatusDone, Progress: 100}
	}
	// Accepted means running: the simulator refuses (429) rather than queues
	// when it is at capacity.
	step := int(int64(elapsed) * simSteps / int64(d))
	return TaskState{TaskID: t.id, Status: StatusProcessing, Progress: step * 100 / simSteps}
}

func (s *Sim) runningLocked(now time.Time) int {
	n := 0
	for _, t := range s.tasks {
		if t.fate == FaultDrop {
			continue
		}
		if st := s.state(t, now).Status; st == StatusPending || st == StatusProcessing {
			n++
		}
	}
	return n
}

// evictLocked keeps memory bounded by forgetting the oldest finished tasks.
func (s *Sim) evictLocked(now time.Time) {
	if len(s.tasks) < simMaxTasks {
		return
	}
	var done []*simTask
	for _, t := range s.tasks {
		st := s.state(t, now).Status
		if t.fate == FaultDrop || st == StatusDone || st == StatusFailed {
			done = append(done, t)
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i].accepted.Before(done[j].accepted) })
	for _, t := range done {
		if len(s.tasks) < simMaxTasks {
			break
		}
		delete(s.tasks, t.id)
	}
}

// lookup finds a live task; dropped tasks have vanished.
func (s *Sim) lookup(id string) (*simTask, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[id]
	if !ok || t.fate == FaultDrop {
		return nil, false
	}
	return t, true
}

// task resolves the request's task id, answering the error itself when it cannot.
func (s *Sim) task(w http.ResponseWriter, r *http.Request) (*simTask, bool) {
	id := r.PathValue("id")
	if !s.preflight(w, r, id) {
		return nil, false
	}
	t, ok := s.lookup(id)
	if !ok {
		writeSimError(w, http.StatusNotFound, "task_not_found", "no such task")
	}
	return t, ok
}

func (s *Sim) handleStatus(w http.ResponseWriter, r *http.Request) {
	if t, ok := s.task(w, r); ok {
		writeSimJSON(w, http.StatusOK, s.state(t, s.now()))
	}
}

func (s *Sim) handleMedia(result bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.task(w, r)
		if !ok {
			return
		}
		if st := s.state(t, s.now()); st.Status != StatusDone {
			writeSimError(w, http.StatusConflict, "not_ready", "task is "+st.Status+", media exists only when done")
			return
		}
		t.mediaOnce.Do(func() {
			t.media, t.mediaErr = renderMedia(t.render)
			t.render.Image = nil // drawn: the media are kept, the input need not be
		})
		if t.mediaErr != nil {
			writeSimError(w, http.StatusInternalServerError, "render_failed", "could not render media")
			return
		}
		body, ctype := t.media.preview, t.media.previewType
		if result {
			body, ctype = t.media.result, t.media.resultType
			if t.fate == FaultCorrupt {
				body = corruptBytes(t.id)
			}
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Cache-Control", "no-store")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}
}

func (s *Sim) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.preflight(w, r, id) {
		return
	}
	s.mu.Lock()
	t, ok := s.tasks[id]
	if ok {
		delete(s.tasks, id)
	}
	s.mu.Unlock()
	if !ok || t.fate == FaultDrop {
		writeSimError(w, http.StatusNotFound, "task_not_found", "no such task")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeSimJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","message":"encode failed"}`)
	}
	writeSimRaw(w, status, b)
}

func writeSimRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
	w.Write([]byte("\n"))
}

func writeSimError(w http.ResponseWriter, status int, code, msg string) {
	writeSimJSON(w, status, map[string]string{"error": code, "message": msg})
}
