package pngmeta_test

import (
	"bytes"
	"errors"
	"maps"
	"testing"

	"gooni/internal/pngmeta"
)

// FuzzRead: any input gives texts or a *FormatError, never a panic; and what
// Read accepts, Embed copies into a file that reads back the same plus the new chunk.
func FuzzRead(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := pngmeta.Read(bytes.NewReader(in))
		if err != nil {
			var fe *pngmeta.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("Read error %T %v is not a *FormatError", err, err)
			}
			return
		}
		var out bytes.Buffer
		if err := pngmeta.Embed(&out, bytes.NewReader(in), []pngmeta.Chunk{{Keyword: "parameters", Text: "fuzz ü"}}); err != nil {
			t.Fatalf("Read accepted the input but Embed refused it: %v", err)
		}
		again, err := pngmeta.Read(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("Read of Embed's output: %v", err)
		}
		want := maps.Clone(got)
		want["parameters"] = "fuzz ü"
		if !maps.Equal(again, want) {
			t.Fatalf("after Embed: %q, want %q", again, want)
		}
	})
}
