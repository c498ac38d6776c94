package store

import (
	"crypto/rand"
	"strings"
	"sync"
	"time"
)

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var idState struct {
	sync.Mutex
	lastMS int64
	last   [10]byte
}

// NewID returns a 26-char Crockford base32 id (48-bit ms time + 80 random bits)
// whose string order is creation order, also within one millisecond in this process.
func NewID() string {
	return newIDAt(time.Now())
}

// IDAt returns an id whose time part is exactly t and whose 80 other bits
// are random, for data seeded with past creation times (`gooni bench
// --seed-done`); unlike NewID it makes no promise of order within one ms.
func IDAt(t time.Time) string {
	var b [16]byte
	ms := t.UnixMilli()
	for i := 0; i < 6; i++ {
		b[i] = byte(ms >> (40 - 8*i))
	}
	rand.Read(b[6:])
	return encodeCrockford(b)
}

func newIDAt(now time.Time) string {
	msNow := now.UnixMilli()
	var b [16]byte

	idState.Lock()
	if msNow <= idState.lastMS {
		// Same (or an earlier, after a clock step) millisecond: keep the last
		// timestamp and count up the random part so ids stay increasing.
		msNow = idState.lastMS
		carry := true
		for i := 9; i >= 0 && carry; i-- {
			idState.last[i]++
			carry = idState.last[i] == 0
		}
		if carry {
			// 80-bit overflow within one millisecond: move to the next one.
			msNow++
			rand.Read(idState.last[:])
		}
	} else {
		rand.Read(idState.last[:])
	}
	idState.lastMS = msNow
	copy(b[6:], idState.last[:])
	idState.Unlock()

	b[0] = byte(msNow >> 40)
	b[1] = byte(msNow >> 32)
	b[2] = byte(msNow >> 24)
	b[3] = byte(msNow >> 16)
	b[4] = byte(msNow >> 8)
	b[5] = byte(msNow)
	return encodeCrockford(b)
}

// encodeCrockford writes 128 bits as 26 base32 digits, most significant first
// (the first digit carries only the top 3 bits).
func encodeCrockford(b [16]byte) string {
	var out [26]byte
	// Walk the 130-bit number (two leading zero bits) five bits at a time.
	for i := 0; i < 26; i++ {
		bit := i*5 - 2 // position of this digit's first bit within b
		var v int
		for j := 0; j < 5; j++ {
			p := bit + j
			if p < 0 {
				continue
			}
			v = v<<1 | int(b[p/8]>>(7-p%8)&1)
		}
		out[i] = crockford[v]
	}
	return string(out[:])
}

// IsID reports whether s has the shape of an id NewID or IDAt makes: 26
// upper-case Crockford base32 digits whose first is 0-7 (128 bits). A page
// cursor is such an id; anything else was not given out by this server.
func IsID(s string) bool {
	if len(s) != 26 || s[0] > '7' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(crockford, s[i]) < 0 {
			return false
		}
	}
	return true
}
