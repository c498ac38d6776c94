package comfyui

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"gooni/internal/workspace"
)

const (
	// recheckAfter is how long a live task's socket-derived state is trusted
	// before Status asks /queue and /history again (a missed message cannot
	// leave a task stuck).
	recheckAfter = 30 * time.Second
	// maxTracked bounds the tasks the driver remembers; finished ones go first.
	maxTracked = 4096
)

// taskTrack is what the driver knows about one prompt.
type taskTrack struct {
	model, mode string
	samplers    []string
	status      string
	frac        map[string]float64 // per sampler node: value/max, 1 when cached or finished
	errMsg      string
	epoch       uint64    // socket session in which the state was last confirmed
	checked     time.Time // when the state was last confirmed
}

func (t *taskTrack) final() bool {
	return t.status == workspace.StatusDone || t.status == workspace.StatusFailed
}

// progress is the share of sampler work done, 0-99 until done (then 100).
func (t *taskTrack) progress() int {
	switch {
	case t.status == workspace.StatusDone:
		return 100
	case t.status != workspace.StatusProcessing || len(t.samplers) == 0:
		return 0
	}
	sum := 0.0
	for _, s := range t.samplers {
		sum += t.frac[s]
	}
	p := int(math.Floor(100 * sum / float64(len(t.samplers))))
	return max(0, min(99, p))
}

func (t *taskTrack) state() workspace.TaskState {
	return workspace.TaskState{Status: t.status, Progress: t.progress(), Error: t.errMsg}
}

// tracker is the driver's state machine: it turns ComfyUI's socket messages
// (server.py send_json: {"type": ..., "data": ...}) and /queue, /history
// answers into task states. Safe for concurrent use.
type tracker struct {
	mu      sync.Mutex
	tasks   map[string]*taskTrack // by prompt_id
	epoch   uint64                // counts socket sessions; 0 = never connected
	up      bool
	now     func() time.Time
	red     *redactor
	observe func(promptID string, st workspace.TaskState) // called on every change, under no lock
}

func newTracker(now func() time.Time, red *redactor) *tracker {
	return &tracker{tasks: map[string]*taskTrack{}, now: now, red: red}
}

// socketUp starts a new socket session: every state learnt before must be
// confirmed again, since messages may have been missed while it was down.
func (t *tracker) socketUp() {
	t.mu.Lock()
	t.epoch++
	t.up = true
	t.mu.Unlock()
}

func (t *tracker) socketDown() {
	t.mu.Lock()
	t.up = false
	t.mu.Unlock()
}

func (t *tracker) isUp() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.up
}

// begin records a prompt about to be posted (before the answer: its first
// socket messages may arrive first).
func (t *tracker) begin(pid string, m *Manifest) {
	t.mu.Lock()
	t.evictLocked()
	t.tasks[pid] = &taskTrack{model: m.Model, mode: m.Mode, samplers: m.Samplers, status: workspace.StatusPending,
		frac: map[string]float64{}, epoch: t.epoch, checked: t.now()}
	t.mu.Unlock()
}

func (t *tracker) drop(pid string) {
	t.mu.Lock()
	delete(t.tasks, pid)
	t.mu.Unlock()
}

// fresh returns the state when it can be trusted without asking ComfyUI:
// finished, or confirmed during the current socket session not long ago.
func (t *tracker) fresh(pid string) (workspace.TaskState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, ok := t.tasks[pid]
	if !ok {
		return workspace.TaskState{}, false
	}
	if tr.final() || (t.up && tr.epoch == t.epoch && t.now().Sub(tr.checked) < recheckAfter) {
		return tr.state(), true
	}
	return workspace.TaskState{}, false
}

// known returns the model and mode recorded for a prompt.
func (t *tracker) known(pid string) (model, mode string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, found := t.tasks[pid]; found && tr.model != "" {
		return tr.model, tr.mode, true
	}
	return "", "", false
}

func rank(status string) int {
	switch status {
	case workspace.StatusProcessing:
		return 1
	case workspace.StatusDone, workspace.StatusFailed:
		return 2
	}
	return 0
}

// merge folds in what /queue or /history said; a state the socket already
// moved further along (ComfyUI writes history only after it sends
// execution_success) is kept.
func (t *tracker) merge(pid string, r *remoteState, m *Manifest) workspace.TaskState {
	t.mu.Lock()
	tr, ok := t.tasks[pid]
	if !ok {
		t.evictLocked()
		tr = &taskTrack{status: r.status, frac: map[string]float64{}}
		if m != nil {
			tr.model, tr.mode, tr.samplers = m.Model, m.Mode, m.Samplers
		}
		t.tasks[pid] = tr
	}
	before := tr.state()
	if rank(r.status) >= rank(tr.status) {
		tr.status = r.status
		if r.status == workspace.StatusFailed {
			tr.errMsg = r.errMsg
		}
	}
	tr.epoch, tr.checked = t.epoch, t.now()
	st := tr.state()
	t.mu.Unlock()
	if st != before {
		t.notify(pid, st)
	}
	return st
}

func (t *tracker) notify(pid string, st workspace.TaskState) {
	if t.observe != nil {
		t.observe(pid, st)
	}
}

// evictLocked keeps the map bounded: finished tasks first, then the oldest.
func (t *tracker) evictLocked() {
	if len(t.tasks) < maxTracked {
		return
	}
	var oldest string
	var oldestAt time.Time
	for pid, tr := range t.tasks {
		if tr.final() {
			delete(t.tasks, pid)
			continue
		}
		if oldest == "" || tr.checked.Before(oldestAt) {
			oldest, oldestAt = pid, tr.checked
		}
	}
	if len(t.tasks) >= maxTracked {
		delete(t.tasks, oldest)
	}
}

// socketMessage is one JSON frame of ComfyUI's /ws.
type socketMessage struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// messageData holds the fields of every message kind the driver reads.
type messageData struct {
	PromptID string `json:"prompt_id"`
	// status
	Status *struct {
		ExecInfo struct {
			QueueRemaining *int `json:"queue_remaining"`
		} `json:"exec_info"`
	} `json:"status"`
	// execution_cached
	Nodes []json.RawMessage `json:"nodes"`
	// executing, progress
	Node  json.RawMessage `json:"node"`
	Value *float64        `json:"value"`
	Max   *float64        `json:"max"`
	// execution_error, execution_interrupted
	NodeType         string `json:"node_type"`
	ExceptionType    string `json:"exception_type"`
	ExceptionMessage string `json:"exception_message"`
}

// handle applies one text frame. Unknown kinds, other prompts and malformed
// frames are ignored: the socket is an accelerator, /queue and /history are
// the truth.
func (t *tracker) handle(frame []byte) {
	var msg socketMessage
	if json.Unmarshal(frame, &msg) != nil {
		return
	}
	var d messageData
	if json.Unmarshal(msg.Data, &d) != nil {
		return
	}
	t.mu.Lock()
	if msg.Type == "status" {
		// An empty queue while we think a task is live means we missed its end.
		if d.Status != nil && d.Status.ExecInfo.QueueRemaining != nil && *d.Status.ExecInfo.QueueRemaining == 0 {
			for _, tr := range t.tasks {
				if !tr.final() {
					tr.epoch = 0
				}
			}
		}
		t.mu.Unlock()
		return
	}
	tr, ok := t.tasks[d.PromptID]
	if !ok || tr.final() {
		t.mu.Unlock()
		return
	}
	before := tr.state()
	confirmed := true
	switch msg.Type {
	case "execution_start":
		tr.status = workspace.StatusProcessing
	case "execution_cached":
		tr.status = workspace.StatusProcessing
		for _, n := range d.Nodes {
			if id := nodeID(n); id != "" && slices.Contains(tr.samplers, id) {
				tr.frac[id] = 1
			}
		}
	case "executing":
		id := nodeID(d.Node)
		if id == "" {
			// The prompt left the executor; its end message should have come first.
			confirmed = false
			tr.epoch = 0
			break
		}
		tr.status = workspace.StatusProcessing
	case "progress":
		id := nodeID(d.Node)
		if d.Value == nil || d.Max == nil || *d.Max <= 0 || !slices.Contains(tr.samplers, id) {
			break
		}
		tr.status = workspace.StatusProcessing
		tr.frac[id] = math.Max(0, math.Min(1, *d.Value / *d.Max))
	case "executed":
		tr.status = workspace.StatusProcessing
	case "execution_success":
		tr.status = workspace.StatusDone
	case "execution_error":
		tr.status = workspace.StatusFailed
		tr.errMsg = taskErrorText(t.red, d.NodeType, d.ExceptionType, d.ExceptionMessage)
	case "execution_interrupted":
		tr.status = workspace.StatusFailed
		tr.errMsg = interruptedText(t.red, d.NodeType)
	default:
		confirmed = false
	}
	if confirmed {
		tr.epoch, tr.checked = t.epoch, t.now()
	}
	st := tr.state()
	t.mu.Unlock()
	if st != before {
		t.notify(d.PromptID, st)
	}
}

// nodeID reads a node id that ComfyUI sends as a string (or null).
func nodeID(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

// taskErrorText words an execution_error as "<node type>: <exception type>:
// <message>": ComfyUI's tips and any traceback dropped, control characters
// removed, credentials redacted, at most 1 KiB. An out-of-memory error says
// so plainly.
func taskErrorText(red *redactor, nodeType, excType, excMsg string) string {
	if nodeType == "" {
		nodeType = "unknown node"
	}
	if excType == "" {
		excType = "error"
	}
	msg := excMsg
	for _, cut := range []string{"Traceback (most recent call last)", "\nTIPS:", "This error means you ran out of memory"} {
		if i := strings.Index(msg, cut); i >= 0 {
			msg = msg[:i]
		}
	}
	msg = strings.TrimSpace(msg)
	if isOOM(excType, excMsg) {
		text := nodeType + ": out of GPU memory (" + excType + ")"
		if msg != "" {
			text += ": " + msg
		}
		return red.clean(text, maxTaskError)
	}
	if msg == "" {
		msg = "no message"
	}
	return red.clean(nodeType+": "+excType+": "+msg, maxTaskError)
}

// isOOM recognises torch's and CUDA's out-of-memory errors as ComfyUI reports them.
func isOOM(excType, excMsg string) bool {
	low := strings.ToLower(excType + " " + excMsg)
	return strings.Contains(low, "outofmemoryerror") || strings.Contains(low, "out of memory") ||
		strings.Contains(low, "ran out of memory") || strings.Contains(low, "allocation on device")
}

func interruptedText(red *redactor, nodeType string) string {
	text := "interrupted in ComfyUI"
	if nodeType != "" {
		text += " at " + nodeType
	}
	return red.clean(text, maxTaskError)
}
