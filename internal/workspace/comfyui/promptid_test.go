package comfyui

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"gooni/internal/workspace"
	"gooni/store"
)

var canonicalUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestPromptIDKnownValues(t *testing.T) {
	// Expected values computed independently (Python: int(base32) -> %032x).
	cases := []struct{ task, uuid string }{
		{"00000000000000000000000000", "00000000-0000-0000-0000-000000000000"},
		{"7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "ffffffff-ffff-ffff-ffff-ffffffffffff"},
		{"01ARZ3NDEKTSV4RRFFQ69G5FAV", "01563e3a-b5d3-d676-4c61-efb99302bd5b"},
		{"01J9Z8K4M5N6P7Q8R9S0T1V2W3", "01927e89-9285-a9ac-7ba3-09c8341d8b83"},
	}
	for _, c := range cases {
		got, err := PromptID(c.task)
		if err != nil || got != c.uuid {
			t.Errorf("PromptID(%s) = %q, %v; want %q", c.task, got, err, c.uuid)
		}
		back, err := TaskID(c.uuid)
		if err != nil || back != c.task {
			t.Errorf("TaskID(%s) = %q, %v; want %q", c.uuid, back, err, c.task)
		}
		upper, err := TaskID(strings.ToUpper(c.uuid))
		if err != nil || upper != c.task {
			t.Errorf("TaskID(upper %s) = %q, %v", c.uuid, upper, err)
		}
	}
}

func TestPromptIDRoundTripOfStoreIDs(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 2000; i++ {
		id := store.NewID()
		pid, err := PromptID(id)
		if err != nil {
			t.Fatalf("PromptID(%s): %v", id, err)
		}
		if !canonicalUUID.MatchString(pid) {
			t.Fatalf("PromptID(%s) = %q, not a canonical lowercase UUID", id, pid)
		}
		if seen[pid] {
			t.Fatalf("two task ids gave prompt_id %s", pid)
		}
		seen[pid] = true
		back, err := TaskID(pid)
		if err != nil || back != id {
			t.Fatalf("TaskID(PromptID(%s)) = %q, %v", id, back, err)
		}
	}
}

func TestPromptIDRefusesOtherIDs(t *testing.T) {
	for _, bad := range []string{
		"",
		"01ARZ3NDEKTSV4RRFFQ69G5FA",   // 25 digits
		"01ARZ3NDEKTSV4RRFFQ69G5FAVX", // 27 digits
		"01arz3ndektsv4rrffq69g5fav",  // lowercase: not the form store.NewID writes
		"01ARZ3NDEKTSV4RRFFQ69G5FAI",  // I is not a Crockford digit
		"01ARZ3NDEKTSV4RRFFQ69G5FAL",
		"01ARZ3NDEKTSV4RRFFQ69G5FAO",
		"01ARZ3NDEKTSV4RRFFQ69G5FAU",
		"81ARZ3NDEKTSV4RRFFQ69G5FAV", // over 128 bits
		"01ARZ3NDEKTSV4RRFFQ69G5FA\u00e9",
		"01ARZ3NDEKTSV4RRFFQ69G5F/V",
	} {
		if got, err := PromptID(bad); err == nil || !errors.Is(err, workspace.ErrTaskIDInvalid) {
			t.Errorf("PromptID(%q) = %q, %v; want ErrTaskIDInvalid", bad, got, err)
		}
	}
	for _, bad := range []string{"", "01563e3ab5d3d6764c61efb99302bd5b", "01563e3a-b5d3-d676-4c61-efb99302bd5", "g1563e3a-b5d3-d676-4c61-efb99302bd5b", "{01563e3a-b5d3-d676-4c61-efb99302bd5b}"} {
		if _, err := TaskID(bad); err == nil {
			t.Errorf("TaskID(%q) accepted", bad)
		}
	}
}
