package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// GenerateRequest is the body of POST /generate (decoded with DisallowUnknownFields by the caller
// or by DecodeGenerate).
type GenerateRequest struct {
	Type           *string                    `json:"type,omitempty"`
	Model          string                     `json:"model"`
	Mode           string                     `json:"mode"`
	Prompt         string                     `json:"prompt"`
	NegativePrompt *string                    `json:"negative_prompt,omitempty"`
	Params         map[string]json.RawMessage `json:"params,omitempty"`
	// Image is the raw JSON value of "image" (a string literal, still
	// escaped, sharing the body's memory); nil when absent or null.
	Image json.RawMessage `json:"image,omitempty"`
	// Count is how many tasks to create (CONTRACT section 12): 1..MaxCount,
	// 0 when absent or null (meaning 1).
	Count int `json:"count,omitempty"`
}

// Decode errors; the server maps them to invalid_json and payload_too_large.
var (
	ErrInvalidJSON = errors.New("invalid JSON")
	ErrTooLarge    = errors.New("request body too large")
)

// Limits of a generate request.
const (
	DefaultMaxGenerateBytes = 16 << 20 // the route limit, used when DecodeGenerate gets maxBytes <= 0
	MaxPromptRunes          = 2000
	MaxImageBytes           = 10 << 20
	// MaxImageSide bounds an input image's width and height: it is decoded
	// whole to check it, which takes up to 4096*4096*8 bytes (16-bit RGBA).
	MaxImageSide = 4096
	// MaxCount bounds "count", the tasks one request creates.
	MaxCount = 8
)

// FieldError is one violation of the catalog or a limit; it becomes
// validation_failed with details.field = Field, and Message is shown to a person.
type FieldError struct{ Field, Message string }

func (e *FieldError) Error() string { return e.Message }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Validated is a request that passed every check, normalised for storage.
type Validated struct {
	Model                                       *Model
	Type, ModelID, Mode, Prompt, NegativePrompt string         // ModelID canonical (alias resolved)
	Params                                      map[string]any // every catalog param, defaults filled, ints as int64, floats as float64
	ParamsJSON                                  []byte         // canonical JSON of Params (sorted keys)
	Image                                       []byte         // decoded bytes (i2v) when Validate kept them in memory, nil otherwise
	ImageType                                   string         // image/png|image/jpeg|image/webp
	ImageBytes                                  int64          // size of the decoded image, 0 = none
}

// DecodeGenerate reads at most maxBytes (the route limit: 16 MiB) with DisallowUnknownFields;
// returns *FieldError-free decode errors as ErrInvalidJSON-wrapped errors, ErrTooLarge when over.
// An unknown or repeated field is a *FieldError (validation_failed), since the
// body is JSON, only not the fields the route takes.
func DecodeGenerate(r io.Reader, maxBytes int64) (*GenerateRequest, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxGenerateBytes
	}
	limit := maxBytes
	if limit < math.MaxInt64 {
		limit++
	}
	body, err := io.ReadAll(io.LimitReader(r, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, ErrTooLarge
		}
		return nil, fmt.Errorf("catalog: reading the request body: %w", err)
	}
	if int64(len(body)) > maxBytes {
		return nil, ErrTooLarge
	}
	return ParseGenerate(body)
}

// ParseGenerate is DecodeGenerate on a body already read (the server reads
// it into one buffer of its exact size). The request's Image shares body's
// memory, so body must outlive it.
func ParseGenerate(body []byte) (*GenerateRequest, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("%w: the body is empty", ErrInvalidJSON)
	}
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: the body is not valid UTF-8", ErrInvalidJSON)
	}
	if err := checkSyntax(body); err != nil {
		var le *loadError
		if errors.As(err, &le) {
			return nil, fmt.Errorf("%w: the body is %s", ErrInvalidJSON, le.msg)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	members, err := splitObject(body)
	if err != nil {
		return nil, fmt.Errorf("%w: the body must be a JSON object", ErrInvalidJSON)
	}
	req := &GenerateRequest{}
	seen := map[string]bool{}
	for _, m := range members {
		if seen[m.key] {
			name := echoName(m.key)
			return nil, fieldErr(name, "%s is given twice", name)
		}
		seen[m.key] = true
		var err error
		switch m.key {
		case "type":
			req.Type, err = optionalString(m.key, m.value)
		case "model":
			err = plainString(m.key, m.value, &req.Model)
		case "mode":
			err = plainString(m.key, m.value, &req.Mode)
		case "prompt":
			err = plainString(m.key, m.value, &req.Prompt)
		case "negative_prompt":
			req.NegativePrompt, err = optionalString(m.key, m.value)
		case "image":
			if !isNull(m.value) {
				if len(m.value) == 0 || m.value[0] != '"' {
					err = fmt.Errorf("%w: image must be a string", ErrInvalidJSON)
				}
				req.Image = m.value
			}
		case "params":
			req.Params, err = decodeParams(m.value)
		case "count":
			if !isNull(m.value) {
				req.Count, err = countAt(m.value)
			}
		default:
			return nil, UnknownField("", m.key, "field")
		}
		if err != nil {
			return nil, err
		}
	}
	return req, nil
}

// countAt reads "count": a JSON integer from 1 to MaxCount.
func countAt(raw json.RawMessage) (int, error) {
	s := string(bytes.TrimSpace(raw))
	n, err := strconv.Atoi(s)
	if !jsonIntegerPattern.MatchString(s) || err != nil || n < 1 || n > MaxCount {
		return 0, fieldErr("count", "count must be a whole number from 1 to %d", MaxCount)
	}
	return n, nil
}

// echoableField is the shape of a field name safe to repeat in an error:
// short snake_case, like every field the routes take.
var echoableField = regexp.MustCompile(`^[a-z][a-z0-9_]{0,23}$`)

// Echoable reports whether a client-chosen field name may be repeated in an
// error, a log line or an audit row. A key that does not look like a field
// name may be a pasted secret, so it is never echoed. Every route uses this
// one rule (the admin routes through the server's JSON decoder).
func Echoable(name string) bool { return echoableField.MatchString(name) }

func echoName(name string) string {
	if Echoable(name) {
		return name
	}
	return "(unknown)"
}

// UnknownField is the validation error for a field (or parameter: what) a
// route does not take; its name is repeated only when Echoable. prefix is ""
// or "params.".
func UnknownField(prefix, name, what string) *FieldError {
	if !Echoable(name) {
		return fieldErr(prefix+"(unknown)", "the body has a %s this route does not take", what)
	}
	return fieldErr(prefix+name, "unknown %s %q", what, name)
}

// shortField keeps an attacker-chosen key from filling error messages and logs.
func shortField(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max]) + "…"
}

func plainString(field string, raw json.RawMessage, dst *string) error {
	if isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%w: %s must be a string", ErrInvalidJSON, field)
	}
	return nil
}

func optionalString(field string, raw json.RawMessage) (*string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%w: %s must be a string", ErrInvalidJSON, field)
	}
	return &s, nil
}

func decodeParams(raw json.RawMessage) (map[string]json.RawMessage, error) {
	if isNull(raw) {
		return nil, nil
	}
	members, err := splitObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: params must be an object", ErrInvalidJSON)
	}
	out := make(map[string]json.RawMessage, len(members))
	for _, m := range members {
		if _, dup := out[m.key]; dup {
			name := echoName(m.key)
			return nil, fieldErr("params."+name, "%s is given twice", name)
		}
		out[m.key] = m.value
	}
	return out, nil
}

// Validate checks the request strictly (see CONTRACT section 6 "Generate
// body"), keeping an i2v image's decoded bytes in v.Image.
func (c *Catalog) Validate(req *GenerateRequest) (*Validated, error) {
	return c.ValidateInto(req, nil)
}

// ValidateInto is Validate writing an i2v image's decoded bytes to sink
// (nil: kept in memory in v.Image) instead of holding them: the server
// streams them into a file. Errors: *FieldError, or ErrImageStorage when
// sink failed.
// Returns *FieldError on the first violation.
func (c *Catalog) ValidateInto(req *GenerateRequest, sink ImageSink) (*Validated, error) {
	if c == nil || len(c.Models) == 0 {
		return nil, errors.New("catalog: no catalog loaded")
	}
	if req == nil {
		return nil, fieldErr("model", "model is required")
	}
	if req.Model == "" {
		return nil, fieldErr("model", "model is required")
	}
	m, ok := c.Lookup(req.Model)
	if !ok {
		return nil, fieldErr("model", "model %q is not in the catalog (choose %s)", shortField(req.Model), c.modelList())
	}
	v := &Validated{Model: m, Type: m.Type, ModelID: m.ID}

	if req.Type != nil && *req.Type != m.Type {
		return nil, fieldErr("type", "type must be %q for model %s", m.Type, m.ID)
	}
	if req.Mode == "" {
		return nil, fieldErr("mode", "mode is required")
	}
	if !slices.Contains(m.Modes, req.Mode) {
		return nil, fieldErr("mode", "mode %q is not available for %s (choose %s)", shortField(req.Mode), m.ID, orList(m.Modes))
	}
	v.Mode = req.Mode

	prompt, err := checkText("prompt", req.Prompt)
	if err != nil {
		return nil, err
	}
	if prompt == "" {
		return nil, fieldErr("prompt", "prompt is required")
	}
	v.Prompt = prompt

	if req.NegativePrompt != nil {
		neg, err := checkText("negative_prompt", *req.NegativePrompt)
		if err != nil {
			return nil, err
		}
		if neg != "" && !m.NegativePrompt {
			return nil, fieldErr("negative_prompt", "model %s does not take a negative prompt", m.ID)
		}
		v.NegativePrompt = neg
	}

	if v.Params, err = checkParams(m, req.Params); err != nil {
		return nil, err
	}
	if v.ParamsJSON, err = json.Marshal(v.Params); err != nil { // map keys are sorted by encoding/json
		return nil, fmt.Errorf("catalog: encoding params: %w", err)
	}

	takesImage := strings.Contains(v.Mode, "i2")
	given := len(req.Image) > 0 && string(req.Image) != `""`
	switch {
	case takesImage && !given:
		return nil, fieldErr("image", "image is required for mode %s", v.Mode)
	case !takesImage && given:
		return nil, fieldErr("image", "mode %s does not take an image", v.Mode)
	case takesImage:
		mem, to := (*memImage)(nil), sink
		if to == nil {
			mem = &memImage{}
			to = mem
		}
		typ, n, err := saveImage(req.Image, to)
		if err != nil {
			return nil, err
		}
		v.ImageType, v.ImageBytes = typ, n
		if mem != nil {
			v.Image = mem.b
		}
	}
	return v, nil
}

func (c *Catalog) modelList() string { return orList(c.ModelIDs()) }

func orList(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// checkText returns the trimmed text, refusing what a worker or a log line
// should never see: broken UTF-8, NUL bytes, or more than MaxPromptRunes.
func checkText(field, s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fieldErr(field, "%s must be valid UTF-8 text", field)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", fieldErr(field, "%s must not contain NUL characters", field)
	}
	s = strings.TrimSpace(s)
	if n := utf8.RuneCountInString(s); n > MaxPromptRunes {
		return "", fieldErr(field, "%s must be at most %d characters (it has %d)", field, MaxPromptRunes, n)
	}
	return s, nil
}

var (
	jsonNumberPattern  = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)
	jsonIntegerPattern = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)
)

func checkParams(m *Model, given map[string]json.RawMessage) (map[string]any, error) {
	names := make([]string, 0, len(given))
	for name := range given {
		names = append(names, name)
	}
	sort.Strings(names) // the first error is the same on every run
	byName := make(map[string]*Param, len(m.Params))
	known := make([]string, 0, len(m.Params))
	for i := range m.Params {
		byName[m.Params[i].Name] = &m.Params[i]
		known = append(known, m.Params[i].Name)
	}
	out := make(map[string]any, len(m.Params))
	for _, name := range names {
		p, ok := byName[name]
		if !ok {
			e := UnknownField("params.", name, "parameter")
			if len(known) == 0 {
				return nil, fieldErr(e.Field, "%s: model %s takes no parameters", e.Message, m.ID)
			}
			return nil, fieldErr(e.Field, "%s for model %s (it takes %s)", e.Message, m.ID, strings.Join(known, ", "))
		}
		val, err := checkParam(p, given[name])
		if err != nil {
			return nil, err
		}
		out[name] = val
	}
	for _, p := range m.Params {
		if _, ok := out[p.Name]; ok {
			continue
		}
		switch p.Kind {
		case KindInt:
			d, _ := p.Default.(float64)
			out[p.Name] = int64(d)
		default:
			out[p.Name] = p.Default
		}
	}
	return out, nil
}

func checkParam(p *Param, raw json.RawMessage) (any, error) {
	field := "params." + p.Name
	s := string(bytes.TrimSpace(raw))
	switch p.Kind {
	case KindInt:
		if !jsonIntegerPattern.MatchString(s) {
			return nil, fieldErr(field, "%s must be a whole number", p.Name)
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || float64(n) < *p.Min || float64(n) > *p.Max {
			return nil, p.rangeErr(field)
		}
		if !p.onStep(float64(n)) {
			return nil, fieldErr(field, "%s must be a multiple of %s from %s", p.Name, num(*p.Step), num(*p.Min))
		}
		return n, nil
	case KindFloat:
		if !jsonNumberPattern.MatchString(s) {
			return nil, fieldErr(field, "%s must be a number", p.Name)
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, fieldErr(field, "%s must be a number", p.Name)
		}
		if math.IsInf(f, 0) || math.IsNaN(f) || f < *p.Min || f > *p.Max {
			return nil, p.rangeErr(field)
		}
		if !p.onStep(f) {
			return nil, fieldErr(field, "%s must be a multiple of %s from %s", p.Name, num(*p.Step), num(*p.Min))
		}
		return f, nil
	case KindEnum:
		var v string
		if isNull(raw) || json.Unmarshal(raw, &v) != nil || !slices.Contains(p.Options, v) {
			return nil, fieldErr(field, "%s must be one of %s", p.Name, orList(quoted(p.Options)))
		}
		return v, nil
	case KindBool:
		switch s {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, fieldErr(field, "%s must be true or false", p.Name)
	}
	return nil, fieldErr(field, "%s has an unknown kind %q in the catalog", p.Name, p.Kind)
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func quoted(items []string) []string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = strconv.Quote(s)
	}
	return out
}

// rangeErr says the range a value of p must lie in ("must be 16" when it
// has only one value).
func (p *Param) rangeErr(field string) *FieldError {
	if *p.Min == *p.Max {
		return fieldErr(field, "%s must be %s", p.Name, num(*p.Min))
	}
	return fieldErr(field, "%s must be between %s and %s", p.Name, num(*p.Min), num(*p.Max))
}
