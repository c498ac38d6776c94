package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkValidated asserts what every accepted request promises the store and
// the workers: a canonical model, an offered mode, a sane prompt, and every
// param present, of its kind, within bounds and on step.
func checkValidated(t *testing.T, c *Catalog, v *Validated) {
	t.Helper()
	m, ok := c.Lookup(v.ModelID)
	if !ok || m.ID != v.ModelID || v.Model != m || v.Type != m.Type {
		t.Fatalf("model %q / type %q is not canonical", v.ModelID, v.Type)
	}
	if !slices.Contains(m.Modes, v.Mode) {
		t.Fatalf("mode %q not offered by %s", v.Mode, m.ID)
	}
	for name, s := range map[string]string{"prompt": v.Prompt, "negative_prompt": v.NegativePrompt} {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 || utf8.RuneCountInString(s) > MaxPromptRunes || s != strings.TrimSpace(s) {
			t.Fatalf("%s %q breaks the text rules", name, s)
		}
	}
	if v.Prompt == "" {
		t.Fatal("empty prompt accepted")
	}
	if v.NegativePrompt != "" && !m.NegativePrompt {
		t.Fatalf("negative prompt accepted by %s", m.ID)
	}
	if len(v.Params) != len(m.Params) {
		t.Fatalf("%d params, want %d", len(v.Params), len(m.Params))
	}
	for _, p := range m.Params {
		val, ok := v.Params[p.Name]
		if !ok {
			t.Fatalf("param %s missing", p.Name)
		}
		switch p.Kind {
		case KindInt:
			n, ok := val.(int64)
			if !ok || float64(n) < *p.Min || float64(n) > *p.Max || !p.onStep(float64(n)) {
				t.Fatalf("int %s = %#v outside the catalog", p.Name, val)
			}
		case KindFloat:
			f, ok := val.(float64)
			if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f < *p.Min || f > *p.Max || !p.onStep(f) {
				t.Fatalf("float %s = %#v outside the catalog", p.Name, val)
			}
		case KindEnum:
			s, ok := val.(string)
			if !ok || !slices.Contains(p.Options, s) {
				t.Fatalf("enum %s = %#v not an option", p.Name, val)
			}
		case KindBool:
			if _, ok := val.(bool); !ok {
				t.Fatalf("bool %s = %#v", p.Name, val)
			}
		}
	}
	var back map[string]any
	if err := json.Unmarshal(v.ParamsJSON, &back); err != nil || len(back) != len(m.Params) {
		t.Fatalf("ParamsJSON %s: %v", v.ParamsJSON, err)
	}
	takesImage := strings.Contains(v.Mode, "i2")
	if takesImage != (v.Image != nil) || takesImage != (v.ImageType != "") || len(v.Image) > MaxImageBytes {
		t.Fatalf("mode %s with %d image bytes of type %q", v.Mode, len(v.Image), v.ImageType)
	}
}

func FuzzDecodeGenerate(f *testing.F) {
	c := realCatalog(f)
	f.Add([]byte(`{"model":"anisora","mode":"t2v","prompt":"a fox","params":{"steps":20,"guidance":7.5}}`))
	f.Add([]byte(body(f, `{"model":"wan-remix","mode":"i2v","prompt":"go","image":"data:image/png;base64,$PNG"}`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeGenerate(bytes.NewReader(data), 1<<20)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) && !errors.Is(err, ErrInvalidJSON) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("decode error of no known kind: %v", err)
			}
			return
		}
		v, err := c.Validate(req)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" || fe.Message == "" {
				t.Fatalf("validation error without a field: %v", err)
			}
			return
		}
		checkValidated(t, c, v)
	})
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(tinyCatalog))
	f.Add(realCatalogBytes(f))
	png := b64(pngBytes(f, 2, 2))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load(data)
		if err != nil {
			if c != nil {
				t.Fatal("a catalog returned with an error")
			}
			return
		}
		if _, err := Load(c.Raw); err != nil {
			t.Fatalf("Raw does not load again: %v", err)
		}
		for i := range c.Models {
			m := &c.Models[i]
			for _, name := range append([]string{m.ID}, m.Aliases...) {
				if got, ok := c.Lookup(name); !ok || got != m {
					t.Fatalf("Lookup(%q) does not find %s", name, m.ID)
				}
			}
			// The defaults alone must make a valid request in every mode:
			// the UI starts from them.
			for _, mode := range m.Modes {
				req := &GenerateRequest{Model: m.ID, Mode: mode, Prompt: "p"}
				if strings.Contains(mode, "i2") {
					req.Image = json.RawMessage(strconv.Quote(png))
				}
				v, err := c.Validate(req)
				if err != nil {
					t.Fatalf("defaults of %s in mode %s rejected: %v", m.ID, mode, err)
				}
				checkValidated(t, c, v)
			}
		}
	})
}
