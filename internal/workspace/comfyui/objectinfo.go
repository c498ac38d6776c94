package comfyui

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"gooni/internal/workspace"
	"math"
	"sort"
	"strconv"
	"strings"
)

// nodeDefsJSON is the pinned node fixture: the /object_info shape of every
// node class the shipped workflows use, written from ComfyUI's node
// definitions (nodes.py, comfy_extras/nodes_wan.py, nodes_hunyuan.py,
// nodes_flux.py, nodes_sd3.py, nodes_video.py, nodes_images.py,
// comfy/samplers.py for the sampler and scheduler lists) at upstream commit
// 3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce. Loader choice lists hold the
// files the shipped workflows need; comfy-sim replaces them with --models.
//
//go:embed testdata/object_info.json
var nodeDefsJSON []byte

// loaderInputs are the loader inputs whose choice lists are model files.
var loaderInputs = map[string][]string{
	"CheckpointLoaderSimple": {"ckpt_name"},
	"UNETLoader":             {"unet_name"},
	"CLIPLoader":             {"clip_name"},
	"DualCLIPLoader":         {"clip_name1", "clip_name2"},
	"VAELoader":              {"vae_name"},
	"CLIPVisionLoader":       {"clip_name"},
	"LoraLoaderModelOnly":    {"lora_name"},
}

// NodeDef is one node class as ComfyUI's GET /object_info describes it
// (server.py node_info, at the commit named in the package comment): its inputs by
// category, its output types, and whether it is an output node.
type NodeDef struct {
	Input struct {
		Required map[string]json.RawMessage `json:"required"`
		Optional map[string]json.RawMessage `json:"optional"`
	} `json:"input"`
	InputOrder map[string][]string `json:"input_order"`
	Output     []string            `json:"output"`
	OutputNode bool                `json:"output_node"`
}

// NodeDefs is a parsed /object_info answer: class_type -> definition.
type NodeDefs map[string]*NodeDef

// ParseNodeDefs reads an /object_info answer (or the /object_info/{class}
// answer, which has the same shape with one entry). An error when the body is
// not a JSON object of objects.
func ParseNodeDefs(data []byte) (NodeDefs, error) {
	var defs NodeDefs
	if err := json.Unmarshal(data, &defs); err != nil {
		return nil, fmt.Errorf("comfyui: object_info: %s", workspace.JSONErrSummary(err))
	}
	for name, d := range defs {
		if d == nil {
			return nil, fmt.Errorf("comfyui: object_info: %q is not an object", name)
		}
	}
	return defs, nil
}

// inputSpec is one input of a node class: a link type such as "MODEL", a
// widget type ("INT", "FLOAT", "STRING", "BOOLEAN") or a list of choices.
type inputSpec struct {
	typ      string // "COMBO" for a list of choices, in both the old and the new form
	options  []any  // the choices of a COMBO (strings or numbers)
	min, max *float64
}

// parseInputSpec reads [type, {options}] or [[choices...], {options}] (old
// nodes) or ["COMBO", {"options": [...]}] (nodes written against comfy_api).
func parseInputSpec(raw json.RawMessage) (inputSpec, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil || len(parts) == 0 {
		return inputSpec{}, errors.New("input spec is not a non-empty list")
	}
	var spec inputSpec
	var extra struct {
		Min     *float64 `json:"min"`
		Max     *float64 `json:"max"`
		Options []any    `json:"options"`
	}
	if len(parts) > 1 {
		// Extra options are advisory; a shape we do not know leaves them unset.
		_ = json.Unmarshal(parts[1], &extra)
	}
	first := bytes.TrimSpace(parts[0])
	switch {
	case len(first) > 0 && first[0] == '[':
		spec.typ = "COMBO"
		if err := json.Unmarshal(first, &spec.options); err != nil {
			return inputSpec{}, errors.New("choice list is not a list")
		}
	default:
		if err := json.Unmarshal(first, &spec.typ); err != nil {
			return inputSpec{}, errors.New("input type is not a string")
		}
		if spec.typ == "COMBO" {
			spec.options = extra.Options
		}
	}
	spec.min, spec.max = extra.Min, extra.Max
	return spec, nil
}

// Options returns the choice list of one input (for a loader: the model files
// ComfyUI found), and whether the input exists and is a choice list.
func (d *NodeDef) Options(input string) ([]string, bool) {
	raw, ok := d.Input.Required[input]
	if !ok {
		raw, ok = d.Input.Optional[input]
	}
	if !ok {
		return nil, false
	}
	spec, err := parseInputSpec(raw)
	if err != nil || spec.typ != "COMBO" {
		return nil, false
	}
	out := make([]string, 0, len(spec.options))
	for _, o := range spec.options {
		if s, ok := o.(string); ok {
			out = append(out, s)
		}
	}
	return out, true
}

// inputNames lists a class's inputs in ComfyUI's order: required, then optional.
func (d *NodeDef) inputNames() (required, optional []string) {
	order := func(cat string, m map[string]json.RawMessage) []string {
		var names []string
		seen := map[string]bool{}
		for _, n := range d.InputOrder[cat] {
			if _, ok := m[n]; ok && !seen[n] {
				names, seen[n] = append(names, n), true
			}
		}
		var rest []string
		for n := range m {
			if !seen[n] {
				rest = append(rest, n)
			}
		}
		sort.Strings(rest)
		return append(names, rest...)
	}
	return order("required", d.Input.Required), order("optional", d.Input.Optional)
}

// promptError is ComfyUI's "error" object of a refused POST /prompt.
type promptError struct {
	Type      string         `json:"type"`
	Message   string         `json:"message"`
	Details   string         `json:"details"`
	ExtraInfo map[string]any `json:"extra_info"`
}

// nodeError is one entry of ComfyUI's "node_errors" object.
type nodeError struct {
	Errors           []promptError `json:"errors"`
	DependentOutputs []string      `json:"dependent_outputs"`
	ClassType        string        `json:"class_type"`
}

// validation is what ComfyUI's execution.validate_prompt decides about a graph.
type validation struct {
	err        *promptError          // nil when at least one output is valid
	outputs    []string              // the valid output nodes, sorted
	nodeErrors map[string]*nodeError // may be non-empty even when err is nil
}

// validate checks an API-format graph as ComfyUI's validate_prompt does
// (execution.py): known class types, at least one output node, and for every
// node an output depends on: required inputs present, links of length 2 to
// existing nodes and outputs of the matching type, widget values convertible
// to their type and within min/max, choices in their lists.
func (defs NodeDefs) validate(graph map[string]any) *validation {
	fail := func(typ, msg, details string) *validation {
		return &validation{err: &promptError{Type: typ, Message: msg, Details: details, ExtraInfo: map[string]any{}}, nodeErrors: map[string]*nodeError{}}
	}
	ids := sortedKeys(graph)
	var outputs []string
	for _, id := range ids {
		node, _ := graph[id].(map[string]any)
		ct, ok := node["class_type"].(string)
		if node == nil || !ok {
			return fail("invalid_prompt", "Cannot execute because a node is missing the class_type property.", fmt.Sprintf("Node ID '#%s'", id))
		}
		def, ok := defs[ct]
		if !ok {
			return fail("invalid_prompt", fmt.Sprintf("Cannot execute because node %s does not exist.", ct), fmt.Sprintf("Node ID '#%s'", id))
		}
		if def.OutputNode {
			outputs = append(outputs, id)
		}
	}
	if len(outputs) == 0 {
		return fail("prompt_no_outputs", "Prompt has no outputs", "")
	}
	v := &validator{defs: defs, graph: graph, done: map[string]*nodeResult{}}
	res := &validation{nodeErrors: map[string]*nodeError{}}
	var lines []string
	for _, o := range outputs {
		r := v.node(o)
		if r.ok {
			res.outputs = append(res.outputs, o)
			continue
		}
		for _, e := range r.errors {
			lines = append(lines, e.Message+": "+e.Details)
		}
		for _, id := range sortedKeys(v.done) {
			nr := v.done[id]
			if nr.ok || len(nr.errors) == 0 {
				continue
			}
			ne, ok := res.nodeErrors[id]
			if !ok {
				ct, _ := graph[id].(map[string]any)["class_type"].(string)
				ne = &nodeError{Errors: nr.errors, ClassType: ct, DependentOutputs: []string{}}
				res.nodeErrors[id] = ne
			}
			ne.DependentOutputs = append(ne.DependentOutputs, o)
		}
	}
	if len(res.outputs) == 0 {
		res.err = &promptError{Type: "prompt_outputs_failed_validation", Message: "Prompt outputs failed validation",
			Details: strings.Join(lines, "\n"), ExtraInfo: map[string]any{}}
	}
	return res
}

type nodeResult struct {
	ok     bool
	errors []promptError
}

type validator struct {
	defs  NodeDefs
	graph map[string]any
	done  map[string]*nodeResult
}

func (v *validator) node(id string) *nodeResult {
	if r, ok := v.done[id]; ok {
		return r
	}
	// Mark first: a cycle then ends here instead of recursing without end.
	r := &nodeResult{ok: true}
	v.done[id] = r
	node, _ := v.graph[id].(map[string]any)
	ct, _ := node["class_type"].(string)
	def := v.defs[ct]
	inputs, _ := node["inputs"].(map[string]any)
	required, optional := def.inputNames()
	check := func(name string, isRequired bool) {
		raw := def.Input.Required[name]
		if !isRequired {
			raw = def.Input.Optional[name]
		}
		spec, err := parseInputSpec(raw)
		if err != nil {
			return
		}
		val, present := inputs[name]
		if !present {
			if isRequired {
				r.add(promptError{Type: "required_input_missing", Message: "Required input is missing", Details: name,
					ExtraInfo: map[string]any{"input_name": name}})
			}
			return
		}
		if link, isList := val.([]any); isList {
			v.link(r, name, spec, link)
			return
		}
		v.widget(r, name, spec, val)
	}
	for _, n := range required {
		check(n, true)
	}
	for _, n := range optional {
		check(n, false)
	}
	return r
}

func (r *nodeResult) add(e promptError) {
	r.ok = false
	r.errors = append(r.errors, e)
}

// link checks one [node_id, output_index] input and the node it points at.
func (v *validator) link(r *nodeResult, name string, spec inputSpec, link []any) {
	if len(link) != 2 {
		r.add(promptError{Type: "bad_linked_input", Message: "Bad linked input, must be a length-2 list of [node_id, slot_index]",
			Details: name, ExtraInfo: map[string]any{"input_name": name, "received_value": link}})
		return
	}
	src, _ := link[0].(string)
	slot, okSlot := asInt(link[1])
	srcNode, okNode := v.graph[src].(map[string]any)
	if !okNode {
		// ComfyUI raises KeyError here and reports it as an exception.
		r.add(promptError{Type: "exception_during_inner_validation", Message: "Exception when validating inner node",
			Details: fmt.Sprintf("'%v'", link[0]), ExtraInfo: map[string]any{"input_name": name, "linked_node": link}})
		return
	}
	ct, _ := srcNode["class_type"].(string)
	outs := v.defs[ct].Output
	if !okSlot || slot < 0 || slot >= len(outs) {
		r.add(promptError{Type: "exception_during_inner_validation", Message: "Exception when validating inner node",
			Details: "tuple index out of range", ExtraInfo: map[string]any{"input_name": name, "linked_node": link}})
		return
	}
	got := outs[slot]
	if !typesMatch(got, spec.typ) {
		r.add(promptError{Type: "return_type_mismatch", Message: "Return type mismatch between linked nodes",
			Details:   fmt.Sprintf("%s, received_type(%s) mismatch input_type(%s)", name, got, spec.typ),
			ExtraInfo: map[string]any{"input_name": name, "received_type": got, "linked_node": link}})
		return
	}
	if !v.node(src).ok {
		r.ok = false
	}
}

// typesMatch follows ComfyUI's validate_node_input: equal types, "*", or a
// comma-separated union on either side.
func typesMatch(received, input string) bool {
	if received == input || received == "*" || input == "*" {
		return true
	}
	in := strings.Split(input, ",")
	for _, a := range strings.Split(received, ",") {
		for _, b := range in {
			if strings.TrimSpace(a) == strings.TrimSpace(b) {
				return true
			}
		}
	}
	return false
}

// widget checks one literal value against its type, bounds and choices.
func (v *validator) widget(r *nodeResult, name string, spec inputSpec, val any) {
	var num float64
	convErr := false
	switch spec.typ {
	case "INT", "FLOAT":
		switch x := val.(type) {
		case json.Number:
			f, err := strconv.ParseFloat(string(x), 64)
			num, convErr = f, err != nil
		case float64:
			num = x
		case bool:
			num = map[bool]float64{false: 0, true: 1}[x]
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			num, convErr = f, err != nil
			if spec.typ == "INT" && err == nil && f != math.Trunc(f) {
				convErr = true // Python's int("1.5") fails
			}
		default:
			convErr = true
		}
		if spec.typ == "INT" && !convErr {
			num = math.Trunc(num)
		}
	case "STRING", "BOOLEAN":
		return // Python's str() and bool() convert any value
	case "COMBO":
		for _, o := range spec.options {
			if sameChoice(o, val) {
				return
			}
		}
		list := fmt.Sprintf("(list of length %d)", len(spec.options))
		if len(spec.options) <= 20 {
			list = pyList(spec.options)
		}
		r.add(promptError{Type: "value_not_in_list", Message: "Value not in list",
			Details:   fmt.Sprintf("%s: '%v' not in %s", name, plain(val), list),
			ExtraInfo: map[string]any{"input_name": name, "received_value": val}})
		return
	default:
		// A link type given a literal: ComfyUI does not check it here.
		return
	}
	if convErr {
		r.add(promptError{Type: "invalid_input_type", Message: fmt.Sprintf("Failed to convert an input value to a %s value", spec.typ),
			Details: fmt.Sprintf("%s, %v", name, plain(val)), ExtraInfo: map[string]any{"input_name": name, "received_value": val}})
		return
	}
	if spec.min != nil && num < *spec.min {
		r.add(promptError{Type: "value_smaller_than_min", Message: fmt.Sprintf("Value %s smaller than min of %s", pyNum(num), pyNum(*spec.min)),
			Details: name, ExtraInfo: map[string]any{"input_name": name, "received_value": val}})
		return
	}
	if spec.max != nil && num > *spec.max {
		r.add(promptError{Type: "value_bigger_than_max", Message: fmt.Sprintf("Value %s bigger than max of %s", pyNum(num), pyNum(*spec.max)),
			Details: name, ExtraInfo: map[string]any{"input_name": name, "received_value": val}})
	}
}

func sameChoice(option, val any) bool {
	switch o := option.(type) {
	case string:
		s, ok := val.(string)
		return ok && s == o
	case float64:
		f, ok := asFloat(val)
		return ok && f == o
	}
	return false
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	}
	return 0, false
}

func asInt(v any) (int, bool) {
	f, ok := asFloat(v)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<30 {
		return 0, false
	}
	return int(f), true
}

func plain(v any) any {
	if n, ok := v.(json.Number); ok {
		return string(n)
	}
	return v
}

func pyNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// pyList writes a list as Python's str() does: ['a', 'b'].
func pyList(items []any) string {
	parts := make([]string, len(items))
	for i, it := range items {
		if s, ok := it.(string); ok {
			parts[i] = "'" + s + "'"
		} else {
			parts[i] = fmt.Sprint(it)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return nodeIDLess(keys[i], keys[j]) })
	return keys
}

// nodeIDLess orders node ids numerically when both are numbers, else as text.
func nodeIDLess(a, b string) bool {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	if errA == nil && errB == nil {
		return x < y
	}
	if (errA == nil) != (errB == nil) {
		return errA == nil
	}
	return a < b
}

// withChoices replaces the choice list of an old-style [[...], {...}] input spec.
func withChoices(spec json.RawMessage, choices []string) json.RawMessage {
	var parts []json.RawMessage
	if json.Unmarshal(spec, &parts) != nil || len(parts) == 0 {
		return spec
	}
	if choices == nil {
		choices = []string{}
	}
	parts[0], _ = json.Marshal(choices)
	b, _ := json.Marshal(parts)
	return b
}
