package pngmeta

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Keywords of the chunks CONTRACT section 13 embeds.
const (
	KeywordParameters = "parameters" // AUTOMATIC1111's text form
	KeywordGooni      = "gooni"      // Gooni's JSON form, always iTXt
)

// Settings is what a task was generated with, as CONTRACT section 13 embeds it.
// Params is the task's params object as stored, e.g.
// {"width":1024,"height":1024,"steps":28,"guidance":3.5,"seed":1234}.
type Settings struct {
	Model          string // catalog model id, e.g. "flux"
	Mode           string // e.g. "t2i"
	Prompt         string
	NegativePrompt string
	Params         json.RawMessage
	TaskID         string
}

// Parameters renders s in AUTOMATIC1111's infotext form (CONTRACT section 13;
// modules/processing.py create_infotext):
//
//	<prompt>
//	Negative prompt: <negative prompt>
//	Steps: <steps>, CFG scale: <guidance>, Seed: <seed>, Size: <width>x<height>, Model: <model>
//
// The negative line is left out when empty, a key whose param is missing or
// not a number is left out (Size needs both sides), numbers are written in
// their shortest form (7, 3.5), and a value holding ',', ':' or a newline is
// JSON-quoted as A1111's quote() does.
func Parameters(s Settings) string {
	var params map[string]json.RawMessage
	_ = json.Unmarshal(s.Params, &params) // not an object: no numbers to write
	num := func(name string) (string, bool) { return formatNumber(params[name]) }

	var kv []string
	if v, ok := num("steps"); ok {
		kv = append(kv, "Steps: "+v)
	}
	if v, ok := num("guidance"); ok {
		kv = append(kv, "CFG scale: "+v)
	}
	if v, ok := num("seed"); ok {
		kv = append(kv, "Seed: "+v)
	}
	w, okw := num("width")
	h, okh := num("height")
	if okw && okh {
		kv = append(kv, "Size: "+w+"x"+h)
	}
	if s.Model != "" {
		kv = append(kv, "Model: "+quoteA1111(s.Model))
	}

	var b strings.Builder
	b.WriteString(s.Prompt)
	if s.NegativePrompt != "" {
		b.WriteString("\nNegative prompt: ")
		b.WriteString(s.NegativePrompt)
	}
	b.WriteString("\n")
	b.WriteString(strings.Join(kv, ", "))
	return b.String()
}

// formatNumber writes a JSON number the way Python's str() writes A1111's
// values, minus the ".0" of whole floats: integers as they are, others in
// their shortest decimal form. ok is false when raw is not a number.
func formatNumber(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || !(raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9') {
		return "", false // json.Number would also take a quoted number
	}
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		return "", false
	}
	if _, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
		return n.String(), true
	}
	f, err := n.Float64()
	if err != nil {
		return "", false
	}
	return strconv.FormatFloat(f, 'f', -1, 64), true
}

// quoteA1111 JSON-quotes v when it holds a comma, colon or newline (A1111's
// modules/infotext_utils.py quote), so a reader can split the key/value line.
func quoteA1111(v string) string {
	if !strings.ContainsAny(v, ",:\n") {
		return v
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// ErrParams is returned by GooniJSON when Settings.Params is not a JSON object.
var ErrParams = errors.New("pngmeta: params must be a JSON object")

// GooniJSON renders s as the `gooni` chunk's JSON (CONTRACT section 13):
// {"model","mode","prompt","negative_prompt","params","task_id"} in that
// order, params as given (compacted; {} when empty). Fails with ErrParams when
// Params is not a JSON object.
func GooniJSON(s Settings) (string, error) {
	params := bytes.TrimSpace(s.Params)
	if len(params) == 0 {
		params = []byte("{}")
	}
	var obj map[string]json.RawMessage
	if params[0] != '{' || json.Unmarshal(params, &obj) != nil {
		return "", ErrParams
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, params); err != nil {
		return "", fmt.Errorf("%w: %v", ErrParams, err)
	}
	v := struct {
		Model          string          `json:"model"`
		Mode           string          `json:"mode"`
		Prompt         string          `json:"prompt"`
		NegativePrompt string          `json:"negative_prompt"`
		Params         json.RawMessage `json:"params"`
		TaskID         string          `json:"task_id"`
	}{s.Model, s.Mode, s.Prompt, s.NegativePrompt, compact.Bytes(), s.TaskID}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// Chunks returns the two chunks CONTRACT section 13 embeds for s, ready for
// Embed: `parameters` (tEXt, or iTXt when the text is not Latin-1) and `gooni`
// (iTXt). Fails with ErrParams as GooniJSON does.
func Chunks(s Settings) ([]Chunk, error) {
	g, err := GooniJSON(s)
	if err != nil {
		return nil, err
	}
	return []Chunk{
		{Keyword: KeywordParameters, Text: Parameters(s)},
		{Keyword: KeywordGooni, Text: g, ITXt: true},
	}, nil
}
