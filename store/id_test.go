package store

import (
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

var idPattern = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`)

func TestNewIDShapeAndOrder(t *testing.T) {
	seen := map[string]bool{}
	var ids []string
	for i := 0; i < 5000; i++ {
		id := NewID()
		if !idPattern.MatchString(id) {
			t.Fatalf("id %q is not 26 Crockford base32 chars", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("ids from one process are not increasing")
	}
}

func TestNewIDTimestamp(t *testing.T) {
	for _, tc := range []struct {
		at     time.Time
		prefix string
	}{
		// The first 10 chars are the 48-bit millisecond time.
		{time.UnixMilli(0), "0000000000"},
		{time.UnixMilli(1), "0000000001"},
		{time.UnixMilli(32), "0000000010"},
		{time.UnixMilli(1<<48 - 1), "7ZZZZZZZZZ"},
	} {
		// Reset the monotonic state so the requested time is used as is.
		idState.Lock()
		idState.lastMS = -1
		idState.Unlock()
		if id := newIDAt(tc.at); !strings.HasPrefix(id, tc.prefix) {
			t.Errorf("newIDAt(%d ms) = %s, want prefix %s", tc.at.UnixMilli(), id, tc.prefix)
		}
	}
	idState.Lock()
	idState.lastMS = 0
	idState.Unlock()
}

func TestNewIDMonotonicSameMillisecond(t *testing.T) {
	at := time.Now().Add(time.Hour)
	a, b, c := newIDAt(at), newIDAt(at), newIDAt(at.Add(-time.Second))
	if !(a < b && b < c) {
		t.Fatalf("not increasing within one ms or after a clock step back: %s %s %s", a, b, c)
	}
	if a[:10] != b[:10] {
		t.Fatalf("same ms, different time part: %s %s", a, b)
	}
	idState.Lock()
	idState.lastMS = 0
	idState.Unlock()
}

func TestNewIDConcurrent(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				id := NewID()
				mu.Lock()
				if seen[id] {
					t.Errorf("duplicate %s", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestIDAtCarriesItsTime: a seeded id sorts by the time it was given, not by
// when it was made, and is a valid id.
func TestIDAtCarriesItsTime(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_000)
	_ = NewID() // the process clock is later than base: IDAt must ignore it
	a, b := IDAt(base), IDAt(base.Add(time.Millisecond))
	const prefix = "01HF7YAT00" // 1,700,000,000,000 ms in Crockford base32, 48 bits in 10 digits
	if !(a < b) || a[:10] != prefix {
		t.Fatalf("IDAt(base) = %s, IDAt(base+1ms) = %s, want the time prefix %s and order", a, b, prefix)
	}
	if len(a) != 26 || IDAt(base) == a {
		t.Fatalf("IDAt must give 26 chars and random low bits: %s", a)
	}
}
