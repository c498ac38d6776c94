package comfyui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"

	"gooni/internal/workspace"
)

// Submit hands a task to ComfyUI as prompt_id PromptID(req.TaskID). It first
// looks the id up in /queue and /history, so a re-send after a crash answers
// the task's state and creates no twin; it uploads an i2v image as
// <task id>.<ext>, fills the model's workflow and posts it. A 400 with
// node_errors is a *workspace.RefusedError naming node, input and problem;
// 429/503 is a *workspace.BusyError; a ComfyUI that answers with another
// prompt_id is too old to honour a client's id and is refused
// (workspace.ErrBadResponse), its stray prompt deleted.
func (d *Driver) Submit(ctx context.Context, req *workspace.TaskRequest) (*workspace.TaskState, error) {
	if req == nil {
		return nil, errors.New("comfyui: nil task request")
	}
	pid, err := PromptID(req.TaskID)
	if err != nil {
		return nil, err
	}
	wf, ok := d.wfs.Get(req.Model, req.Mode)
	if !ok {
		return nil, &workspace.RefusedError{Message: d.red.clean(fmt.Sprintf("no ComfyUI workflow for model %q mode %q", req.Model, req.Mode), maxTaskError)}
	}
	if r, err := d.lookup(ctx, pid, true); err == nil {
		st := d.mergeRemote(pid, r)
		st.TaskID = req.TaskID
		return &st, nil
	} else if !errors.Is(err, workspace.ErrNotFound) {
		return nil, err
	}
	image := ""
	if len(wf.Manifest.Params["image"]) > 0 {
		if image, err = d.upload(ctx, req); err != nil {
			return nil, err
		}
	}
	graph, err := wf.Fill(req, image)
	if err != nil {
		return nil, &workspace.RefusedError{Message: d.red.clean(err.Error(), maxTaskError)}
	}
	body, err := json.Marshal(map[string]any{
		"prompt":     graph,
		"client_id":  d.clientID,
		"prompt_id":  pid,
		"extra_data": map[string]any{"gooni": gooniExtra{TaskID: req.TaskID, Model: req.Model, Mode: req.Mode}},
	})
	if err != nil {
		return nil, fmt.Errorf("comfyui: encode prompt: %w", err)
	}
	d.tr.begin(pid, &wf.Manifest)
	st, err := d.postPrompt(ctx, pid, body)
	if err != nil {
		d.tr.drop(pid)
		return nil, err
	}
	st.TaskID = req.TaskID
	return st, nil
}

// promptAnswer is the body of a POST /prompt answer, 200 or 400.
type promptAnswer struct {
	PromptID   *string                    `json:"prompt_id"`
	Error      json.RawMessage            `json:"error"`
	NodeErrors map[string]json.RawMessage `json:"node_errors"`
}

func (d *Driver) postPrompt(ctx context.Context, pid string, body []byte) (*workspace.TaskState, error) {
	cctx, cancel := withCallTimeout(ctx, workspace.CallTimeout)
	defer cancel()
	resp, err := d.do(cctx, http.MethodPost, "/prompt", body, "application/json")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusBadRequest {
		b, _ := d.readBounded(resp.Body, http.MethodPost, "/prompt", maxPromptAnswer)
		resp.Body.Close()
		var ans promptAnswer
		if json.Unmarshal(b, &ans) != nil || (len(ans.Error) == 0 && ans.NodeErrors == nil) {
			return nil, &workspace.StatusError{Code: resp.StatusCode, Body: d.red.clean(string(b), maxErrorText)}
		}
		return nil, &workspace.RefusedError{Message: d.refusal(ans)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, d.statusErr(resp, true)
	}
	b, err := d.readBounded(resp.Body, http.MethodPost, "/prompt", maxPromptAnswer)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var ans promptAnswer
	if err := json.Unmarshal(b, &ans); err != nil || ans.PromptID == nil {
		return nil, fmt.Errorf("%w: POST /prompt: the answer has no prompt_id", workspace.ErrBadResponse)
	}
	if *ans.PromptID != pid {
		// An older ComfyUI ignored our prompt_id: a re-send could not be
		// recognised, so twins would follow. Take its prompt back.
		other := *ans.PromptID
		if len(other) <= 128 {
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), workspace.CallTimeout)
			d.takeBack(dctx, other)
			dcancel()
		}
		return nil, &workspace.IncompatibleError{Reason: "this ComfyUI is too old to honour a client's prompt_id (it answered with another one): update ComfyUI"}
	}
	if len(ans.NodeErrors) > 0 {
		// ComfyUI queued the outputs that validated and dropped the others:
		// the task would miss its result or poster. Take it back out.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), workspace.CallTimeout)
		d.takeBack(dctx, pid)
		dcancel()
		return nil, &workspace.RefusedError{Message: d.refusal(ans)}
	}
	if st, ok := d.tr.fresh(pid); ok {
		return &st, nil // the socket may already have seen it start
	}
	return &workspace.TaskState{Status: workspace.StatusPending}, nil
}

// takeBack removes a prompt the driver will not follow: out of the queue
// when it waits, interrupted when it already runs.
func (d *Driver) takeBack(ctx context.Context, pid string) {
	q, err := d.getQueue(ctx, pid, false)
	if err == nil {
		switch q.found {
		case workspace.StatusPending:
			body, _ := json.Marshal(map[string][]string{"delete": {pid}})
			_, err = d.callJSON(ctx, http.MethodPost, "/queue", body, maxPromptAnswer, false)
		case workspace.StatusProcessing:
			body, _ := json.Marshal(map[string]string{"prompt_id": pid})
			_, err = d.callJSON(ctx, http.MethodPost, "/interrupt", body, maxPromptAnswer, false)
		}
	}
	if err != nil {
		d.log.Warn("comfyui: could not take back a refused prompt", "err", err)
	}
}

// refusal words a ComfyUI validation failure: node (class type and id),
// input and problem, for each node error; else the error's own message.
func (d *Driver) refusal(ans promptAnswer) string {
	type problem struct {
		Type      string `json:"type"`
		Message   string `json:"message"`
		Details   string `json:"details"`
		ExtraInfo struct {
			InputName string `json:"input_name"`
		} `json:"extra_info"`
	}
	var parts []string
	for _, id := range sortedKeys(ans.NodeErrors) {
		var ne struct {
			ClassType string    `json:"class_type"`
			Errors    []problem `json:"errors"`
		}
		if json.Unmarshal(ans.NodeErrors[id], &ne) != nil {
			continue
		}
		for _, e := range ne.Errors {
			where := fmt.Sprintf("%s #%s", ne.ClassType, id)
			if e.ExtraInfo.InputName != "" {
				where += ", input " + e.ExtraInfo.InputName
			}
			what := e.Message
			if e.Details != "" && e.Details != e.ExtraInfo.InputName {
				what += ": " + e.Details
			}
			parts = append(parts, where+": "+what)
		}
	}
	if len(parts) == 0 {
		var e problem
		var s string
		switch {
		case json.Unmarshal(ans.Error, &e) == nil && e.Message != "":
			what := e.Message
			if e.Details != "" {
				what += ": " + e.Details
			}
			parts = append(parts, what)
		case json.Unmarshal(ans.Error, &s) == nil && s != "":
			parts = append(parts, s)
		default:
			parts = append(parts, "the prompt is invalid")
		}
	}
	return d.red.clean("ComfyUI refused the workflow: "+strings.Join(parts, "; "), maxTaskError)
}

var imageExt = map[string]string{"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}

// upload sends the i2v image as <task id>.<ext> through POST /upload/image
// (overwrite=true: a re-send writes the same name) and returns the name the
// LoadImage node must use.
func (d *Driver) upload(ctx context.Context, req *workspace.TaskRequest) (string, error) {
	if len(req.Image) == 0 {
		return "", &workspace.RefusedError{Message: "an i2v task needs an input image"}
	}
	ctype := req.ImageType
	if ctype == "" {
		ctype = http.DetectContentType(req.Image)
	}
	ext, ok := imageExt[ctype]
	if !ok {
		return "", &workspace.RefusedError{Message: d.red.clean(fmt.Sprintf("the input image type %q is not PNG, JPEG or WebP", ctype), maxTaskError)}
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := make(textproto.MIMEHeader)
	name := req.TaskID + ext
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="image"; filename="%s"`, name))
	h.Set("Content-Type", ctype)
	part, err := mw.CreatePart(h)
	if err == nil {
		_, err = part.Write(req.Image)
	}
	for _, kv := range [][2]string{{"overwrite", "true"}, {"type", "input"}} {
		if err == nil {
			err = mw.WriteField(kv[0], kv[1])
		}
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return "", fmt.Errorf("comfyui: build upload: %w", err)
	}
	cctx, cancel := withCallTimeout(ctx, mediaTimeout)
	defer cancel()
	resp, err := d.do(cctx, http.MethodPost, "/upload/image", buf.Bytes(), mw.FormDataContentType())
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", d.statusErr(resp, true)
	}
	b, err := d.readBounded(resp.Body, http.MethodPost, "/upload/image", maxPromptAnswer)
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	var ans struct {
		Name      string `json:"name"`
		Subfolder string `json:"subfolder"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || ans.Name == "" || !safeFileName(ans.Name) || !safeSubfolder(ans.Subfolder) {
		return "", fmt.Errorf("%w: POST /upload/image: the answer names no usable file", workspace.ErrBadResponse)
	}
	if ans.Subfolder != "" {
		return ans.Subfolder + "/" + ans.Name, nil
	}
	return ans.Name, nil
}

func safeFileName(s string) bool {
	return s != "" && len(s) <= 255 && !strings.ContainsAny(s, "/\\\x00") && s != "." && s != ".."
}

func safeSubfolder(s string) bool {
	if s == "" {
		return true
	}
	if len(s) > 255 || strings.ContainsAny(s, "\\\x00") || strings.HasPrefix(s, "/") {
		return false
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return false
		}
	}
	return true
}
