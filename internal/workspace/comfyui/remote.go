package comfyui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"gooni/internal/workspace"
)

// gooniExtra is what the driver puts in extra_data, so that /queue and
// /history say which workflow a prompt came from after a Gooni restart.
type gooniExtra struct {
	TaskID string `json:"task_id"`
	Model  string `json:"model"`
	Mode   string `json:"mode"`
}

// remoteState is where ComfyUI says a prompt stands.
type remoteState struct {
	status string
	errMsg string
	extra  gooniExtra
}

// queueInfo is what the driver reads from GET /queue.
type queueInfo struct {
	running, pending int
	found            string // workspace.StatusProcessing or StatusPending when the prompt was seen
	extra            gooniExtra
}

// getQueue reads GET /queue item by item (each item holds a whole graph, and
// a busy ComfyUI may list many), noting whether want is running or pending.
func (d *Driver) getQueue(ctx context.Context, want string, busyOK bool) (*queueInfo, error) {
	ctx, cancel := withCallTimeout(ctx, workspace.CallTimeout)
	defer cancel()
	resp, err := d.do(ctx, http.MethodGet, "/queue", nil, "")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, d.statusErr(resp, busyOK)
	}
	defer resp.Body.Close()
	q, err := parseQueue(io.LimitReader(resp.Body, maxQueueAnswer), want)
	if err != nil {
		return nil, fmt.Errorf("%w: GET /queue: %v", workspace.ErrBadResponse, err)
	}
	return q, nil
}

// historyEntry is one /history/{prompt_id} value (execution.py PromptQueue.task_done).
type historyEntry struct {
	Prompt  []json.RawMessage                     `json:"prompt"`
	Outputs map[string]map[string]json.RawMessage `json:"outputs"`
	Status  *struct {
		StatusStr string              `json:"status_str"`
		Completed bool                `json:"completed"`
		Messages  [][]json.RawMessage `json:"messages"`
	} `json:"status"`
}

func (h *historyEntry) extra() gooniExtra {
	var extra struct {
		Gooni gooniExtra `json:"gooni"`
	}
	if len(h.Prompt) > 3 {
		_ = json.Unmarshal(h.Prompt[3], &extra)
	}
	return extra.Gooni
}

// getHistory reads GET /history/{prompt_id}; nil when ComfyUI does not have it.
func (d *Driver) getHistory(ctx context.Context, pid string, busyOK bool) (*historyEntry, error) {
	b, err := d.callJSON(ctx, http.MethodGet, "/history/"+url.PathEscape(pid), nil, maxHistoryAnswer, busyOK)
	if err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, fmt.Errorf("%w: GET /history: %s", workspace.ErrBadResponse, workspace.JSONErrSummary(err))
	}
	raw, ok := all[pid]
	if !ok {
		if len(all) > 0 {
			return nil, fmt.Errorf("%w: GET /history: the answer names another prompt", workspace.ErrBadResponse)
		}
		return nil, nil
	}
	var h historyEntry
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("%w: GET /history: %s", workspace.ErrBadResponse, workspace.JSONErrSummary(err))
	}
	return &h, nil
}

// historyState maps a history entry to a task state.
func (d *Driver) historyState(h *historyEntry) (string, string) {
	if h.Status == nil {
		// ComfyUI before status was recorded: an entry means it ran.
		return workspace.StatusDone, ""
	}
	if h.Status.StatusStr == "success" && h.Status.Completed {
		return workspace.StatusDone, ""
	}
	for _, m := range h.Status.Messages {
		if len(m) != 2 {
			continue
		}
		var kind string
		_ = json.Unmarshal(m[0], &kind)
		var data messageData
		_ = json.Unmarshal(m[1], &data)
		switch kind {
		case "execution_error":
			return workspace.StatusFailed, taskErrorText(d.red, data.NodeType, data.ExceptionType, data.ExceptionMessage)
		case "execution_interrupted":
			return workspace.StatusFailed, interruptedText(d.red, data.NodeType)
		}
	}
	return workspace.StatusFailed, d.red.clean("ComfyUI reported status "+strconv.Quote(h.Status.StatusStr)+" without an error message", maxTaskError)
}

// lookup asks /queue, then /history: in that order a prompt moving from the
// queue to the history between the two calls is still found (ComfyUI moves
// it under one lock), so ErrNotFound really means ComfyUI does not have it.
func (d *Driver) lookup(ctx context.Context, pid string, busyOK bool) (*remoteState, error) {
	q, err := d.getQueue(ctx, pid, busyOK)
	if err != nil {
		return nil, err
	}
	if q.found != "" {
		return &remoteState{status: q.found, extra: q.extra}, nil
	}
	h, err := d.getHistory(ctx, pid, busyOK)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, workspace.ErrNotFound
	}
	st, msg := d.historyState(h)
	return &remoteState{status: st, errMsg: msg, extra: h.extra()}, nil
}

// manifestFor finds the workflow a prompt was made from.
func (d *Driver) manifestFor(pid string, extra gooniExtra) *Workflow {
	if extra.Model != "" {
		if wf, ok := d.wfs.Get(extra.Model, extra.Mode); ok {
			return wf
		}
	}
	if model, mode, ok := d.tr.known(pid); ok {
		if wf, ok := d.wfs.Get(model, mode); ok {
			return wf
		}
	}
	return nil
}

func (d *Driver) mergeRemote(pid string, r *remoteState) workspace.TaskState {
	var m *Manifest
	if wf := d.manifestFor(pid, r.extra); wf != nil {
		m = &wf.Manifest
	}
	return d.tr.merge(pid, r, m)
}

// Health answers ok when ComfyUI answers GET /queue and each loader's GET
// /object_info/{class}. Models are the workflow models whose every model
// file is in its loader's choice list (all modes of a model must be
// servable). Capacity is 1 (ComfyUI runs one prompt at a time); Running is
// what /queue lists, running and pending, from every client.
func (d *Driver) Health(ctx context.Context) (*workspace.Health, error) {
	q, err := d.getQueue(ctx, "", false)
	if err != nil {
		return nil, err
	}
	type need struct{ class, input string }
	present := map[need]map[string]bool{}
	byClass := map[string]bool{}
	for _, wf := range d.wfs.All() {
		for _, f := range wf.ModelFiles {
			byClass[f.ClassType] = true
			present[need{f.ClassType, f.Input}] = nil
		}
	}
	for _, class := range sortedKeys(byClass) {
		b, err := d.callJSON(ctx, http.MethodGet, "/object_info/"+url.PathEscape(class), nil, maxObjectInfo, false)
		if err != nil {
			return nil, err
		}
		defs, err := ParseNodeDefs(b)
		if err != nil {
			return nil, fmt.Errorf("%w: GET /object_info/%s: %v", workspace.ErrBadResponse, class, err)
		}
		def, ok := defs[class]
		if !ok {
			continue // a ComfyUI without this node class serves no workflow that needs it
		}
		for n := range present {
			if n.class != class {
				continue
			}
			opts, _ := def.Options(n.input)
			set := make(map[string]bool, len(opts))
			for _, o := range opts {
				set[o] = true
			}
			present[n] = set
		}
	}
	servable := map[string]bool{}
	for _, wf := range d.wfs.All() {
		ok := true
		for _, f := range wf.ModelFiles {
			if !present[need{f.ClassType, f.Input}][f.File] {
				ok = false
			}
		}
		m := wf.Manifest.Model
		if prev, seen := servable[m]; seen {
			servable[m] = prev && ok
		} else {
			servable[m] = ok
		}
	}
	models := []string{}
	for _, m := range sortedKeys(servable) {
		if servable[m] {
			models = append(models, m)
		}
	}
	sort.Strings(models)
	return &workspace.Health{Status: "ok", Models: models, Capacity: 1, Running: q.running + q.pending}, nil
}

// Status reports a task: from the socket when its state was confirmed during
// the current socket session (or is final), else from /queue and /history.
// ErrNotFound when ComfyUI has neither (it restarted): the dispatcher then
// sends the task again.
func (d *Driver) Status(ctx context.Context, id string) (*workspace.TaskState, error) {
	pid, err := PromptID(id)
	if err != nil {
		return nil, err
	}
	if st, ok := d.tr.fresh(pid); ok {
		st.TaskID = id
		return &st, nil
	}
	r, err := d.lookup(ctx, pid, false)
	if errors.Is(err, workspace.ErrNotFound) {
		d.tr.drop(pid)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	st := d.mergeRemote(pid, r)
	st.TaskID = id
	return &st, nil
}
