package comfyui

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"gooni/internal/workspace"
)

//go:embed workflows/*.json
var embeddedWorkflows embed.FS

// EmbeddedWorkflows is the workflow set shipped in the binary: for every
// catalog model and mode, <model>-<mode>.json (an API-format ComfyUI graph)
// and <model>-<mode>.manifest.json (a Manifest), at the root of the FS.
func EmbeddedWorkflows() fs.FS {
	sub, err := fs.Sub(embeddedWorkflows, "workflows")
	if err != nil {
		panic(err) // the directory is embedded above; this cannot fail
	}
	return sub
}

const (
	maxWorkflowFile  = 1 << 20 // bytes per workflow or manifest file
	maxWorkflowFiles = 256
	manifestSuffix   = ".manifest.json"
)

// Manifest says how a catalog task fills one workflow (CONTRACT section 14).
// Paths are RFC 6901 JSON Pointers into the API-format graph, such as
// "/6/inputs/text"; each must name an input the graph already has.
type Manifest struct {
	Model string `json:"model"` // catalog model id
	Mode  string `json:"mode"`  // catalog mode: t2i, t2v, i2v
	Type  string `json:"type"`  // image or video: the kind of media the result node saves
	// Params maps a catalog parameter name (width, height, num_frames, fps,
	// steps, guidance, seed...) and the task fields "prompt",
	// "negative_prompt", "image" (the uploaded i2v image's name) and
	// "filename_prefix" (gooni/<task id>) to the inputs they fill.
	Params map[string][]string `json:"params"`
	// Samplers are the node ids whose progress messages make up the task's
	// progress; a Wan 2.2 workflow with two samplers lists both.
	Samplers []string `json:"samplers"`
	Result   string   `json:"result"`           // node id of the output node that saves the result
	Poster   string   `json:"poster,omitempty"` // node id of the output node that saves a still; empty for none
	// ModelFiles point at the loader inputs naming the model files the
	// workflow needs (for example "/4/inputs/ckpt_name"); a workspace serves
	// the model only when every file is in that loader's /object_info list.
	ModelFiles []string `json:"model_files"`
	Notes      string   `json:"notes,omitempty"`
}

// ModelFile is one model file a workflow needs: the file name and the loader
// node class and input whose /object_info choice list must contain it.
type ModelFile struct {
	NodeID, ClassType, Input, File string
}

// Workflow is one loaded, checked workflow and its manifest.
type Workflow struct {
	Manifest   Manifest
	ModelFiles []ModelFile
	Source     string // "embedded" or the override file's path, for messages
	graph      []byte
}

// Workflows is the set of workflows the ComfyUI driver can submit, by model and mode.
type Workflows struct {
	byKey map[string]*Workflow
}

// LoadWorkflows reads every <name>.json / <name>.manifest.json pair from
// fsys and, when overrideDir is not empty, from that directory
// (GG_WORKFLOWS_DIR): a file there replaces the file of the same name in
// fsys, file by file, and a new pair adds a workflow. Every pair is checked
// (graph shape, manifest fields, every path naming an existing input, the
// name matching <model>-<mode>); the error names the file and the problem.
func LoadWorkflows(fsys fs.FS, overrideDir string) (*Workflows, error) {
	files := map[string]func() ([]byte, string, error){}
	add := func(src fs.FS, label string) error {
		entries, err := fs.ReadDir(src, ".")
		if err != nil {
			return fmt.Errorf("comfyui: workflows: read %s: %w", label, err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || !strings.HasSuffix(name, ".json") {
				continue
			}
			files[name] = func() ([]byte, string, error) {
				b, err := readBounded(src, name)
				where := name
				if label != "embedded" {
					where = path.Join(label, name)
				}
				return b, where, err
			}
		}
		return nil
	}
	if fsys != nil {
		if err := add(fsys, "embedded"); err != nil {
			return nil, err
		}
	}
	if overrideDir != "" {
		if err := add(os.DirFS(overrideDir), overrideDir); err != nil {
			return nil, err
		}
	}
	if len(files) > maxWorkflowFiles {
		return nil, fmt.Errorf("comfyui: workflows: more than %d files", maxWorkflowFiles)
	}
	ws := &Workflows{byKey: map[string]*Workflow{}}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasSuffix(n, manifestSuffix) {
			if _, ok := files[strings.TrimSuffix(n, manifestSuffix)+".json"]; !ok {
				return nil, fmt.Errorf("comfyui: workflows: %s has no workflow %s", n, strings.TrimSuffix(n, manifestSuffix)+".json")
			}
			continue
		}
		base := strings.TrimSuffix(n, ".json")
		mf, ok := files[base+manifestSuffix]
		if !ok {
			return nil, fmt.Errorf("comfyui: workflows: %s has no manifest %s", n, base+manifestSuffix)
		}
		graph, gwhere, err := files[n]()
		if err != nil {
			return nil, err
		}
		man, mwhere, err := mf()
		if err != nil {
			return nil, err
		}
		wf, err := loadWorkflow(base, graph, man)
		if err != nil {
			return nil, fmt.Errorf("comfyui: workflows: %s / %s: %w", gwhere, mwhere, err)
		}
		wf.Source = gwhere
		key := wf.Manifest.Model + "/" + wf.Manifest.Mode
		ws.byKey[key] = wf
	}
	return ws, nil
}

func readBounded(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("comfyui: workflows: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxWorkflowFile+1))
	if err != nil {
		return nil, fmt.Errorf("comfyui: workflows: read %s: %w", name, err)
	}
	if len(b) > maxWorkflowFile {
		return nil, fmt.Errorf("comfyui: workflows: %s is over %d bytes", name, maxWorkflowFile)
	}
	return b, nil
}

func loadWorkflow(base string, graphJSON, manifestJSON []byte) (*Workflow, error) {
	graph, err := parseGraph(graphJSON)
	if err != nil {
		return nil, err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(manifestJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %v", err)
	}
	switch {
	case m.Model == "" || m.Mode == "":
		return nil, errors.New("manifest: model and mode are required")
	case base != m.Model+"-"+m.Mode:
		return nil, fmt.Errorf("manifest: the files must be named %s-%s.json and %s-%s%s", m.Model, m.Mode, m.Model, m.Mode, manifestSuffix)
	case m.Type != "image" && m.Type != "video":
		return nil, errors.New(`manifest: type must be "image" or "video"`)
	case len(m.Params["prompt"]) == 0:
		return nil, errors.New(`manifest: params must map "prompt"`)
	case m.Mode == "i2v" && len(m.Params["image"]) == 0:
		return nil, errors.New(`manifest: an i2v workflow must map "image" (a LoadImage input)`)
	case m.Result == "":
		return nil, errors.New("manifest: result (the node id that saves the result) is required")
	case len(m.ModelFiles) == 0:
		return nil, errors.New("manifest: model_files must name the loader inputs of the model files")
	}
	nodeExists := func(what, id string) error {
		if _, ok := graph[id].(map[string]any); !ok {
			return fmt.Errorf("manifest: %s names node %q, which the workflow does not have", what, id)
		}
		return nil
	}
	for _, id := range m.Samplers {
		if err := nodeExists("samplers", id); err != nil {
			return nil, err
		}
	}
	if err := nodeExists("result", m.Result); err != nil {
		return nil, err
	}
	if m.Poster != "" {
		if err := nodeExists("poster", m.Poster); err != nil {
			return nil, err
		}
	}
	for name, ptrs := range m.Params {
		for _, p := range ptrs {
			if _, _, err := lookupPointer(graph, p); err != nil {
				return nil, fmt.Errorf("manifest: params.%s: %v", name, err)
			}
		}
	}
	wf := &Workflow{Manifest: m, graph: graphJSON}
	for _, p := range m.ModelFiles {
		parent, key, err := lookupPointer(graph, p)
		if err != nil {
			return nil, fmt.Errorf("manifest: model_files: %v", err)
		}
		file, ok := parent[key].(string)
		segs, _ := splitPointer(p)
		if !ok || file == "" || len(segs) != 3 || segs[1] != "inputs" {
			return nil, fmt.Errorf("manifest: model_files: %s must be /<node id>/inputs/<input> holding a file name", p)
		}
		node := graph[segs[0]].(map[string]any)
		wf.ModelFiles = append(wf.ModelFiles, ModelFile{NodeID: segs[0], ClassType: node["class_type"].(string), Input: segs[2], File: file})
	}
	return wf, nil
}

// parseGraph reads an API-format graph: an object of node id -> {"class_type", "inputs"}.
func parseGraph(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var graph map[string]any
	if err := dec.Decode(&graph); err != nil {
		return nil, fmt.Errorf("workflow: not a JSON object of nodes: %v", workspace.JSONErrSummary(err))
	}
	if dec.More() {
		return nil, errors.New("workflow: text after the graph")
	}
	_, hasNodes := graph["nodes"]
	_, hasLastID := graph["last_node_id"]
	if len(graph) == 0 || (hasNodes && hasLastID) {
		return nil, errors.New("workflow: this is not the API format (ComfyUI's UI format has nodes and links); export it with \"Save (API)\"")
	}
	for id, n := range graph {
		node, ok := n.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("workflow: node %q is not an object", id)
		}
		if ct, ok := node["class_type"].(string); !ok || ct == "" {
			return nil, fmt.Errorf("workflow: node %q has no class_type (is this the UI format? export it with \"Save (API)\")", id)
		}
		if _, ok := node["inputs"].(map[string]any); !ok {
			return nil, fmt.Errorf("workflow: node %q has no inputs object", id)
		}
	}
	return graph, nil
}

// splitPointer splits an RFC 6901 JSON Pointer into unescaped segments.
func splitPointer(p string) ([]string, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("path %q is not a JSON Pointer (it must start with /)", p)
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return segs, nil
}

// lookupPointer finds the object holding the pointer's last key; the key must exist.
func lookupPointer(graph map[string]any, p string) (map[string]any, string, error) {
	segs, err := splitPointer(p)
	if err != nil {
		return nil, "", err
	}
	cur := graph
	for i, s := range segs {
		v, ok := cur[s]
		if !ok {
			return nil, "", fmt.Errorf("path %s: %q does not exist in the workflow", p, s)
		}
		if i == len(segs)-1 {
			return cur, s, nil
		}
		next, ok := v.(map[string]any)
		if !ok {
			return nil, "", fmt.Errorf("path %s: %q is not an object", p, s)
		}
		cur = next
	}
	return nil, "", fmt.Errorf("path %s is empty", p)
}

// Get returns the workflow for a catalog model id and mode.
func (ws *Workflows) Get(model, mode string) (*Workflow, bool) {
	wf, ok := ws.byKey[model+"/"+mode]
	return wf, ok
}

// All returns every workflow, ordered by model then mode.
func (ws *Workflows) All() []*Workflow {
	out := make([]*Workflow, 0, len(ws.byKey))
	for _, wf := range ws.byKey {
		out = append(out, wf)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Manifest, out[j].Manifest
		return a.Model < b.Model || (a.Model == b.Model && a.Mode < b.Mode)
	})
	return out
}

// Graph returns a fresh copy of the unfilled graph (numbers kept as json.Number).
func (wf *Workflow) Graph() map[string]any {
	g, err := parseGraph(wf.graph)
	if err != nil {
		panic(err) // checked when loaded
	}
	return g
}

// Fill returns the graph with the task written into the inputs the manifest
// names: prompt, negative prompt, the uploaded image's name (imageName, for
// i2v), filename_prefix gooni/<task id>, and each catalog parameter present
// in req.Params. Values are assigned into the parsed graph, never spliced
// into text. An error (to be shown as a refusal) when the task lacks an
// image the workflow needs or a parameter is not a number, string or bool.
func (wf *Workflow) Fill(req *workspace.TaskRequest, imageName string) (map[string]any, error) {
	g := wf.Graph()
	params := map[string]any{}
	if raw := bytes.TrimSpace(req.Params); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&params); err != nil {
			return nil, errors.New("params must be a JSON object")
		}
	}
	// A seed of -1 ("random", from a task queued before the server resolved
	// seeds) is not a value ComfyUI takes: a seed drawn from the task id
	// stands in, the same on every re-send.
	if n, ok := params["seed"].(json.Number); ok {
		if v, err := n.Int64(); err == nil && v < 0 {
			h := fnv.New32a()
			h.Write([]byte(req.TaskID))
			params["seed"] = json.Number(strconv.FormatUint(uint64(h.Sum32()&0x7fffffff), 10))
		}
	}
	special := map[string]any{
		"prompt":          req.Prompt,
		"negative_prompt": req.NegativePrompt,
		"filename_prefix": "gooni/" + req.TaskID,
	}
	if imageName != "" {
		special["image"] = imageName
	}
	if len(wf.Manifest.Params["image"]) > 0 && imageName == "" {
		return nil, fmt.Errorf("the %s %s workflow needs an input image", wf.Manifest.Model, wf.Manifest.Mode)
	}
	for _, name := range sortedKeys(wf.Manifest.Params) {
		val, ok := special[name]
		if !ok {
			if name == "image" {
				continue
			}
			val, ok = params[name]
		}
		if !ok {
			continue // the workflow's own value stays
		}
		switch val.(type) {
		case string, json.Number, bool:
		default:
			return nil, fmt.Errorf("parameter %s must be a number, string or bool", name)
		}
		for _, p := range wf.Manifest.Params[name] {
			parent, key, err := lookupPointer(g, p)
			if err != nil {
				return nil, err // checked when loaded; a fresh copy has the same paths
			}
			parent[key] = val
		}
	}
	return g, nil
}
