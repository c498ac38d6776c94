package catalog

import (
	"errors"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDecodeGenerateDefaultLimit: a limit of 0 or less means the route's
// 16 MiB, and the largest limit is taken as it is (no overflow to a negative
// read bound): a small valid body decodes under each, and the default limit
// still stops a body one byte over 16 MiB.
func TestDecodeGenerateDefaultLimit(t *testing.T) {
	valid := `{"model":"flux","mode":"t2i","prompt":"x"}`
	for _, limit := range []int64{0, -1, math.MaxInt64} {
		req, err := DecodeGenerate(strings.NewReader(valid), limit)
		if err != nil || req.Model != "flux" {
			t.Errorf("limit %d: %v %+v, want the body decoded", limit, err, req)
		}
	}
	over := `{"prompt":"` + strings.Repeat("a", DefaultMaxGenerateBytes) + `"}`
	if _, err := DecodeGenerate(strings.NewReader(over), 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a body over 16 MiB with the default limit: %v, want ErrTooLarge", err)
	}
}

// TestUnknownModelNameIsShortened: the model or mode a request names comes
// back in the message up to 64 characters whole, and cut (with an ellipsis)
// past that, so an attacker's string cannot fill messages and logs.
func TestUnknownModelNameIsShortened(t *testing.T) {
	c := realCatalog(t)
	for _, tc := range []struct {
		name     string
		runes    int
		wantCut  bool
		wantEcho int // runes of the name in the message
	}{
		{"64 characters kept whole", 64, false, 64},
		{"65 characters cut to 64", 65, true, 64},
		{"5000 characters cut to 64", 5000, true, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.Repeat("é", tc.runes) // multi-byte: the cut counts characters
			_, err := decodeAndValidate(t, c, `{"model":"`+name+`","mode":"t2i","prompt":"x"}`)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "model" {
				t.Fatalf("got %v, want a field error on model", err)
			}
			quoted := fe.Message[strings.Index(fe.Message, `"`)+1:]
			quoted = quoted[:strings.Index(quoted, `"`)]
			if got := utf8.RuneCountInString(strings.TrimSuffix(quoted, "…")); got != tc.wantEcho {
				t.Errorf("the message echoes %d characters of the name, want %d: %.120q", got, tc.wantEcho, fe.Message)
			}
			if strings.HasSuffix(quoted, "…") != tc.wantCut || !utf8.ValidString(fe.Message) {
				t.Errorf("cut %v, want %v: %.120q", strings.HasSuffix(quoted, "…"), tc.wantCut, fe.Message)
			}
		})
	}
}

// TestEnumParam: an enum parameter takes exactly one of its options, as a
// JSON string; null, another case, a number or an unknown option is a field
// error naming the parameter and the options.
func TestEnumParam(t *testing.T) {
	c, err := Load([]byte(tinyCatalog))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{`"dpm"`, true},
		{`"euler"`, true},
		{`null`, false},
		{`"DPM"`, false},
		{`"ddim"`, false},
		{`1`, false},
		{`["dpm"]`, false},
	} {
		v, err := decodeAndValidate(t, c, `{"model":"vid","mode":"t2v","prompt":"x","params":{"sampler":`+tc.value+`}}`)
		if tc.ok {
			if err != nil || v.Params["sampler"] != strings.Trim(tc.value, `"`) {
				t.Errorf("sampler %s: %v %+v, want accepted", tc.value, err, v)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "params.sampler" || !strings.Contains(fe.Message, `"euler" or "dpm"`) {
			t.Errorf("sampler %s: %v, want a field error on params.sampler listing the options", tc.value, err)
		}
	}
}
