// Package catalog loads the model catalog (inference_settings.json) and
// validates generate requests against it. The catalog is the one source of
// truth for models, modes and parameter bounds: the server checks with it and
// the UI renders from it.
package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Param is one tunable parameter of a model, with the bounds a request must keep.
type Param struct {
	Name, Label, Kind string   // kind: int|float|enum|bool
	Min, Max, Step    *float64 // nil when absent (enum/bool; step optional)
	Default           any      // float64 / string / bool as decoded
	Options           []string // enum
}

// Model is one catalog entry; Type is video or image.
type Model struct {
	ID, Label, Type string
	Modes           []string
	Aliases         []string
	NegativePrompt  bool
	Params          []Param
}

// Catalog is the checked catalog; Raw is served unchanged at GET /config so the
// UI sees exactly what the server validates with.
type Catalog struct {
	Version int
	Models  []Model
	Raw     []byte

	byName map[string]int // id or alias -> index in Models
}

// Kinds of parameters.
const (
	KindInt   = "int"
	KindFloat = "float"
	KindEnum  = "enum"
	KindBool  = "bool"
)

// maxExactInt bounds integer params so every value is exact in a float64
// (the catalog is decoded as JSON numbers, and the UI does the same).
const maxExactInt = 1 << 53

var (
	idPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	paramPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	// modesByType keeps a video model from claiming t2i and the other way round.
	modesByType = map[string][]string{
		"video": {"t2v", "i2v"},
		"image": {"t2i", "i2i"},
	}
)

// loadError names the JSON path of what is wrong, so a person editing the
// file can find it: `models[1].params[4].max: must be >= min`.
type loadError struct{ path, msg string }

func (e *loadError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

func errAt(path, format string, args ...any) error {
	return &loadError{path: path, msg: fmt.Sprintf(format, args...)}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Load parses and checks the catalog. Errors name the JSON path, e.g.
// `models[2].params[3].step: must be > 0`.
func Load(data []byte) (*Catalog, error) {
	if err := checkSyntax(data); err != nil {
		return nil, err
	}
	top, err := objectMembers(data, "", []string{"version", "models"}, []string{"version", "models"})
	if err != nil {
		return nil, err
	}
	c := &Catalog{Raw: bytes.Clone(data), byName: map[string]int{}}

	v, err := numberAt(top["version"], "version")
	if err != nil {
		return nil, err
	}
	if v != 1 {
		return nil, errAt("version", "must be 1 (the only catalog version this server knows)")
	}
	c.Version = 1

	models, err := arrayAt(top["models"], "models")
	if err != nil {
		return nil, err
	}
	if len(models) == 0 {
		return nil, errAt("models", "must list at least one model")
	}
	for i, raw := range models {
		path := fmt.Sprintf("models[%d]", i)
		m, err := loadModel(raw, path)
		if err != nil {
			return nil, err
		}
		if _, dup := c.byName[m.ID]; dup {
			return nil, errAt(path+".id", "%q is used twice (as an id or an alias)", m.ID)
		}
		c.byName[m.ID] = i
		c.Models = append(c.Models, *m)
	}
	// Aliases are checked after all ids are known, so an alias can never
	// shadow an id that comes later in the file.
	for i, m := range c.Models {
		for j, a := range m.Aliases {
			if _, dup := c.byName[a]; dup {
				return nil, errAt(fmt.Sprintf("models[%d].aliases[%d]", i, j), "%q is used twice (as an id or an alias)", a)
			}
			c.byName[a] = i
		}
	}
	return c, nil
}

// ModelIDs lists the catalog's model ids in catalog order.
func (c *Catalog) ModelIDs() []string {
	ids := make([]string, 0, len(c.Models))
	for _, m := range c.Models {
		ids = append(ids, m.ID)
	}
	return ids
}

// Lookup finds a model by id or alias (exact match).
func (c *Catalog) Lookup(idOrAlias string) (*Model, bool) {
	if c == nil {
		return nil, false
	}
	if c.byName != nil {
		i, ok := c.byName[idOrAlias]
		if !ok {
			return nil, false
		}
		return &c.Models[i], true
	}
	for i := range c.Models {
		m := &c.Models[i]
		if m.ID == idOrAlias {
			return m, true
		}
		for _, a := range m.Aliases {
			if a == idOrAlias {
				return m, true
			}
		}
	}
	return nil, false
}

func loadModel(raw json.RawMessage, path string) (*Model, error) {
	f, err := objectMembers(raw, path,
		[]string{"id", "label", "type", "modes", "aliases", "negative_prompt", "params"},
		[]string{"id", "label", "type", "modes", "negative_prompt", "params"})
	if err != nil {
		return nil, err
	}
	m := &Model{}
	if m.ID, err = stringAt(f["id"], path+".id"); err != nil {
		return nil, err
	}
	if !idPattern.MatchString(m.ID) {
		return nil, errAt(path+".id", "%q must be 1-64 of a-z, 0-9, '.', '_', '-' starting with a letter or digit", m.ID)
	}
	if m.Label, err = labelAt(f["label"], path+".label"); err != nil {
		return nil, err
	}
	if m.Type, err = stringAt(f["type"], path+".type"); err != nil {
		return nil, err
	}
	allowed, ok := modesByType[m.Type]
	if !ok {
		return nil, errAt(path+".type", "must be \"video\" or \"image\", not %q", m.Type)
	}
	if m.Modes, err = stringListAt(f["modes"], path+".modes"); err != nil {
		return nil, err
	}
	if len(m.Modes) == 0 {
		return nil, errAt(path+".modes", "must list at least one mode")
	}
	seen := map[string]bool{}
	for i, mode := range m.Modes {
		p := fmt.Sprintf("%s.modes[%d]", path, i)
		if !slices.Contains(allowed, mode) {
			return nil, errAt(p, "%q is not %s mode (use %s)", mode, withArticle(m.Type), strings.Join(allowed, " or "))
		}
		if seen[mode] {
			return nil, errAt(p, "%q is listed twice", mode)
		}
		seen[mode] = true
	}
	m.Aliases = []string{}
	if raw, ok := f["aliases"]; ok {
		if m.Aliases, err = stringListAt(raw, path+".aliases"); err != nil {
			return nil, err
		}
		for i, a := range m.Aliases {
			if !idPattern.MatchString(a) {
				return nil, errAt(fmt.Sprintf("%s.aliases[%d]", path, i), "%q must be 1-64 of a-z, 0-9, '.', '_', '-' starting with a letter or digit", a)
			}
		}
	}
	if m.NegativePrompt, err = boolAt(f["negative_prompt"], path+".negative_prompt"); err != nil {
		return nil, err
	}
	params, err := arrayAt(f["params"], path+".params")
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	m.Params = []Param{}
	for i, raw := range params {
		pp := fmt.Sprintf("%s.params[%d]", path, i)
		p, err := loadParam(raw, pp)
		if err != nil {
			return nil, err
		}
		if names[p.Name] {
			return nil, errAt(pp+".name", "%q is used twice in this model", p.Name)
		}
		names[p.Name] = true
		m.Params = append(m.Params, *p)
	}
	return m, nil
}

func loadParam(raw json.RawMessage, path string) (*Param, error) {
	f, err := objectMembers(raw, path,
		[]string{"name", "label", "kind", "min", "max", "step", "default", "options"},
		[]string{"name", "label", "kind", "default"})
	if err != nil {
		return nil, err
	}
	p := &Param{}
	if p.Name, err = stringAt(f["name"], path+".name"); err != nil {
		return nil, err
	}
	if !paramPattern.MatchString(p.Name) {
		return nil, errAt(path+".name", "%q must be 1-64 of a-z, 0-9, '_' starting with a letter", p.Name)
	}
	if p.Label, err = labelAt(f["label"], path+".label"); err != nil {
		return nil, err
	}
	if p.Kind, err = stringAt(f["kind"], path+".kind"); err != nil {
		return nil, err
	}
	switch p.Kind {
	case KindInt, KindFloat:
		if _, ok := f["options"]; ok {
			return nil, errAt(path+".options", "only an enum takes options")
		}
		for _, key := range []string{"min", "max"} {
			if _, ok := f[key]; !ok {
				return nil, errAt(join(path, key), "is required for kind %s", p.Kind)
			}
		}
		bound := func(key string) (*float64, error) {
			raw, ok := f[key]
			if !ok {
				return nil, nil
			}
			v, err := numberAt(raw, join(path, key))
			if err != nil {
				return nil, err
			}
			if p.Kind == KindInt {
				if v != math.Trunc(v) {
					return nil, errAt(join(path, key), "must be a whole number for kind int")
				}
				if math.Abs(v) > maxExactInt {
					return nil, errAt(join(path, key), "must be within ±2^53")
				}
			}
			return &v, nil
		}
		if p.Min, err = bound("min"); err != nil {
			return nil, err
		}
		if p.Max, err = bound("max"); err != nil {
			return nil, err
		}
		if p.Step, err = bound("step"); err != nil {
			return nil, err
		}
		if *p.Max < *p.Min {
			return nil, errAt(path+".max", "must be >= min")
		}
		if p.Step != nil && *p.Step <= 0 {
			return nil, errAt(path+".step", "must be > 0")
		}
		d, err := numberAt(f["default"], path+".default")
		if err != nil {
			return nil, err
		}
		if p.Kind == KindInt && d != math.Trunc(d) {
			return nil, errAt(path+".default", "must be a whole number for kind int")
		}
		if d < *p.Min || d > *p.Max {
			return nil, errAt(path+".default", "must be between min and max")
		}
		if !p.onStep(d) {
			return nil, errAt(path+".default", "must be min plus a multiple of step")
		}
		p.Default = d
	case KindEnum:
		for _, key := range []string{"min", "max", "step"} {
			if _, ok := f[key]; ok {
				return nil, errAt(join(path, key), "an enum takes options, not %s", key)
			}
		}
		raw, ok := f["options"]
		if !ok {
			return nil, errAt(path+".options", "is required for an enum")
		}
		if p.Options, err = stringListAt(raw, path+".options"); err != nil {
			return nil, err
		}
		if len(p.Options) == 0 {
			return nil, errAt(path+".options", "must list at least one option")
		}
		seen := map[string]bool{}
		for i, o := range p.Options {
			if o == "" {
				return nil, errAt(fmt.Sprintf("%s.options[%d]", path, i), "must not be empty")
			}
			if seen[o] {
				return nil, errAt(fmt.Sprintf("%s.options[%d]", path, i), "%q is listed twice", o)
			}
			seen[o] = true
		}
		d, err := stringAt(f["default"], path+".default")
		if err != nil {
			return nil, err
		}
		if !seen[d] {
			return nil, errAt(path+".default", "%q is not one of the options", d)
		}
		p.Default = d
	case KindBool:
		for _, key := range []string{"min", "max", "step", "options"} {
			if _, ok := f[key]; ok {
				return nil, errAt(join(path, key), "a bool takes no %s", key)
			}
		}
		if p.Default, err = boolAt(f["default"], path+".default"); err != nil {
			return nil, err
		}
	default:
		return nil, errAt(path+".kind", "must be int, float, enum or bool, not %q", p.Kind)
	}
	return p, nil
}

// onStep reports whether v lies on min + k*step. Ints are checked exactly
// (all int bounds are within ±2^53, so the conversions are exact).
func (p *Param) onStep(v float64) bool {
	if p.Kind == KindInt && p.Step != nil && p.Min != nil {
		step := int64(*p.Step)
		return step <= 0 || (int64(v)-int64(*p.Min))%step == 0
	}
	return onStep(v, *p.Min, p.Step)
}

// onStep reports whether v lies on min + k*step; the relative tolerance lets
// decimal steps such as 0.1 work despite binary floating point.
func onStep(v, min float64, step *float64) bool {
	if step == nil {
		return true
	}
	k := (v - min) / *step
	return math.Abs(k-math.Round(k)) <= 1e-9*math.Max(1, math.Abs(k))
}

func withArticle(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an " + word
	}
	return "a " + word
}

// checkSyntax rejects anything that is not exactly one JSON value, saying
// where (line and column) it went wrong.
func checkSyntax(data []byte) error {
	if json.Valid(data) {
		return nil
	}
	var v any
	err := json.Unmarshal(data, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := position(data, se.Offset)
		return errAt("", "not valid JSON at line %d, column %d: %s", line, col, se.Error())
	}
	if err == nil {
		err = errors.New("invalid JSON")
	}
	return errAt("", "not valid JSON: %v", err)
}

func position(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	line, col = 1, 1
	for _, b := range data[:offset] {
		if b == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// objectMembers splits a JSON object into its members, refusing unknown and
// duplicate keys (encoding/json would silently keep the last duplicate) and
// reporting missing required ones. data must already be valid JSON.
func objectMembers(data []byte, path string, known, required []string) (map[string]json.RawMessage, error) {
	members, err := splitObject(data)
	if err != nil {
		if path == "" {
			return nil, errAt("", "must be a JSON object")
		}
		return nil, errAt(path, "must be an object")
	}
	out := make(map[string]json.RawMessage, len(members))
	for _, m := range members {
		if !slices.Contains(known, m.key) {
			return nil, errAt(join(path, m.key), "unknown field")
		}
		if _, dup := out[m.key]; dup {
			return nil, errAt(join(path, m.key), "is given twice")
		}
		out[m.key] = m.value
	}
	for _, k := range required {
		if _, ok := out[k]; !ok {
			return nil, errAt(join(path, k), "is required")
		}
	}
	return out, nil
}

type member struct {
	key   string
	value json.RawMessage
}

var errNotObject = errors.New("not a JSON object")

// splitObject returns the members of a JSON object in order (duplicates kept),
// or errNotObject. data must already be valid JSON.
func splitObject(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, errNotObject
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errNotObject
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errNotObject
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, member{key: key, value: v})
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotObject
	}
	return out, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func stringAt(raw json.RawMessage, path string) (string, error) {
	var s string
	if isNull(raw) || json.Unmarshal(raw, &s) != nil {
		return "", errAt(path, "must be a string")
	}
	return s, nil
}

func labelAt(raw json.RawMessage, path string) (string, error) {
	s, err := stringAt(raw, path)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(s) == "" {
		return "", errAt(path, "must not be empty")
	}
	return s, nil
}

func boolAt(raw json.RawMessage, path string) (bool, error) {
	var b bool
	if isNull(raw) || json.Unmarshal(raw, &b) != nil {
		return false, errAt(path, "must be true or false")
	}
	return b, nil
}

func stringListAt(raw json.RawMessage, path string) ([]string, error) {
	items, err := arrayAt(raw, path)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, err := stringAt(it, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func arrayAt(raw json.RawMessage, path string) ([]json.RawMessage, error) {
	var items []json.RawMessage
	if isNull(raw) || json.Unmarshal(raw, &items) != nil {
		return nil, errAt(path, "must be an array")
	}
	return items, nil
}

// numberAt parses a JSON number, refusing values too large for a float64
// (1e400) rather than turning them into infinity.
func numberAt(raw json.RawMessage, path string) (float64, error) {
	s := string(bytes.TrimSpace(raw))
	if !isJSONNumber(s) {
		return 0, errAt(path, "must be a number")
	}
	v, err := strconv.ParseFloat(s, 64)
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, errAt(path, "must be a finite number")
	}
	if err != nil && !errors.Is(err, strconv.ErrRange) { // underflow to 0 is fine
		return 0, errAt(path, "must be a number")
	}
	return v, nil
}

// isJSONNumber reports whether s starts like a JSON number token; the full
// syntax was already checked by the JSON decoder.
func isJSONNumber(s string) bool {
	return s != "" && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))
}
