package comfyui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"gooni/internal/workspace"
)

// Result opens the file the workflow's result node saved, through /view.
func (d *Driver) Result(ctx context.Context, id string) (*workspace.Media, error) {
	return d.media(ctx, id, false)
}

// Preview opens the still the workflow's poster node saved; ErrNotFound when
// the workflow has no poster node (image workflows).
func (d *Driver) Preview(ctx context.Context, id string) (*workspace.Media, error) {
	return d.media(ctx, id, true)
}

// outputFile is one file an output node saved (nodes.py SaveImage results).
type outputFile struct {
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
}

var extTypes = map[string]string{
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
	".gif": "image/gif", ".mp4": "video/mp4", ".webm": "video/webm",
}

func (d *Driver) media(ctx context.Context, id string, poster bool) (*workspace.Media, error) {
	pid, err := PromptID(id)
	if err != nil {
		return nil, err
	}
	h, err := d.getHistory(ctx, pid, false)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, workspace.ErrNotFound
	}
	if st, _ := d.historyState(h); st != workspace.StatusDone {
		return nil, fmt.Errorf("comfyui: task %s has no media: ComfyUI did not finish it", id)
	}
	node := ""
	if wf := d.manifestFor(pid, h.extra()); wf != nil {
		node = wf.Manifest.Result
		if poster {
			node = wf.Manifest.Poster
		}
	} else {
		node = guessOutput(h, poster)
	}
	if node == "" {
		return nil, workspace.ErrNotFound
	}
	f, ok := firstFile(h.Outputs[node])
	if !ok {
		if poster {
			return nil, workspace.ErrNotFound
		}
		return nil, fmt.Errorf("%w: ComfyUI's history has no file from the result node %s", workspace.ErrBadResponse, node)
	}
	if f.Type == "" {
		f.Type = "output"
	}
	if !safeFileName(f.Filename) || !safeSubfolder(f.Subfolder) || (f.Type != "output" && f.Type != "temp") {
		return nil, fmt.Errorf("%w: ComfyUI's history names an unusable file", workspace.ErrBadResponse)
	}
	q := url.Values{"filename": {f.Filename}, "subfolder": {f.Subfolder}, "type": {f.Type}}
	cctx, cancel := withCallTimeout(ctx, mediaTimeout)
	resp, err := d.do(cctx, http.MethodGet, "/view?"+q.Encode(), nil, "")
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		cancel()
		return nil, workspace.ErrNotFound
	}
	if resp.StatusCode != http.StatusOK {
		err := d.statusErr(resp, false)
		cancel()
		return nil, err
	}
	ctype := resp.Header.Get("Content-Type")
	if base, _, _ := strings.Cut(ctype, ";"); ctype == "" || strings.EqualFold(strings.TrimSpace(base), "application/octet-stream") {
		ctype = extTypes[strings.ToLower(path.Ext(f.Filename))]
	}
	return &workspace.Media{Body: workspace.CancelOnClose(resp.Body, cancel), ContentType: ctype, Length: resp.ContentLength}, nil
}

// firstFile reads the first file of an output node (SaveImage and SaveVideo
// use "images"; some custom nodes use "videos" or "gifs").
func firstFile(out map[string]json.RawMessage) (outputFile, bool) {
	for _, key := range []string{"images", "videos", "gifs"} {
		var files []outputFile
		if json.Unmarshal(out[key], &files) == nil && len(files) > 0 && files[0].Filename != "" {
			return files[0], true
		}
	}
	return outputFile{}, false
}

// guessOutput picks a node when the prompt's workflow is unknown: the result
// is the first node that saved a video, else the first that saved anything;
// the poster is the first other node that saved an image.
func guessOutput(h *historyEntry, poster bool) string {
	ids := sortedKeys(h.Outputs)
	result := ""
	for _, id := range ids {
		if f, ok := firstFile(h.Outputs[id]); ok && strings.HasPrefix(extTypes[strings.ToLower(path.Ext(f.Filename))], "video/") {
			result = id
			break
		}
	}
	if result == "" {
		for _, id := range ids {
			if _, ok := firstFile(h.Outputs[id]); ok {
				return map[bool]string{false: id, true: ""}[poster]
			}
		}
		return ""
	}
	if !poster {
		return result
	}
	for _, id := range ids {
		if f, ok := firstFile(h.Outputs[id]); ok && id != result && strings.HasPrefix(extTypes[strings.ToLower(path.Ext(f.Filename))], "image/") {
			return id
		}
	}
	return ""
}

// Cancel takes a queued prompt out of ComfyUI's queue (POST /queue
// {"delete":[id]}), interrupts it when it is the running one (POST
// /interrupt {"prompt_id": id}; a ComfyUI too old for the id interrupts
// whatever runs, which is then this prompt), or forgets a finished one
// (POST /history {"delete":[id]}). ErrNotFound when ComfyUI has no such prompt.
func (d *Driver) Cancel(ctx context.Context, id string) error {
	pid, err := PromptID(id)
	if err != nil {
		return err
	}
	for attempt := 0; attempt < 3; attempt++ {
		q, err := d.getQueue(ctx, pid, false)
		if err != nil {
			return err
		}
		switch q.found {
		case workspace.StatusPending:
			body, _ := json.Marshal(map[string][]string{"delete": {pid}})
			if _, err := d.callJSON(ctx, http.MethodPost, "/queue", body, maxPromptAnswer, false); err != nil {
				return err
			}
			// It may have started between the two calls: look again.
			continue
		case workspace.StatusProcessing:
			body, _ := json.Marshal(map[string]string{"prompt_id": pid})
			if _, err := d.callJSON(ctx, http.MethodPost, "/interrupt", body, maxPromptAnswer, false); err != nil {
				return err
			}
			d.tr.drop(pid)
			return nil
		}
		h, err := d.getHistory(ctx, pid, false)
		if err != nil {
			return err
		}
		if h == nil {
			if attempt > 0 {
				d.tr.drop(pid)
				return nil // it was queued and the delete took it out
			}
			return workspace.ErrNotFound
		}
		body, _ := json.Marshal(map[string][]string{"delete": {pid}})
		if _, err := d.callJSON(ctx, http.MethodPost, "/history", body, maxPromptAnswer, false); err != nil {
			return err
		}
		d.tr.drop(pid)
		return nil
	}
	return fmt.Errorf("comfyui: cancel %s: the prompt kept moving in ComfyUI's queue", id)
}
