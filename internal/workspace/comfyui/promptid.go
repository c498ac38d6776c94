package comfyui

import (
	"encoding/hex"
	"errors"
	"fmt"

	"gooni/internal/workspace"
)

// crockford is the alphabet of store.NewID: 26 digits carry a 128-bit ULID.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

var crockfordValue = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(crockford); i++ {
		t[crockford[i]] = int8(i)
	}
	return t
}()

// PromptID writes a Gooni task id (a 26-digit Crockford base32 ULID, as made
// by store.NewID) as the canonical lowercase UUID text ComfyUI takes as
// prompt_id: the same 128 bits, 8-4-4-4-12 hex digits. Errors wrap
// workspace.ErrTaskIDInvalid for any other id (wrong length, lowercase, a
// letter outside the alphabet such as I, L, O or U, or a value over 128 bits),
// so that the mapping is one to one.
func PromptID(taskID string) (string, error) {
	if len(taskID) != 26 {
		return "", fmt.Errorf("%w: a task id has 26 Crockford base32 digits", workspace.ErrTaskIDInvalid)
	}
	var b [16]byte
	for i := 0; i < 26; i++ {
		v := crockfordValue[taskID[i]]
		if v < 0 {
			return "", fmt.Errorf("%w: a task id has only Crockford base32 digits", workspace.ErrTaskIDInvalid)
		}
		if i == 0 && v > 7 {
			// 26 digits hold 130 bits; the first digit may only carry the top 3.
			return "", fmt.Errorf("%w: a task id is at most 128 bits", workspace.ErrTaskIDInvalid)
		}
		for j := 4; j >= 0; j-- {
			p := i*5 - 2 + (4 - j) // bit position within b, most significant first
			if p < 0 {
				continue
			}
			if v>>j&1 == 1 {
				b[p/8] |= 1 << (7 - p%8)
			}
		}
	}
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

// errPromptIDInvalid refuses text that is not a canonical UUID.
var errPromptIDInvalid = errors.New("comfyui: prompt_id is not a canonical UUID")

// parseUUID reads 8-4-4-4-12 hex digits (either case) into 16 bytes.
func parseUUID(s string) ([16]byte, error) {
	var b [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return b, errPromptIDInvalid
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(b[:], []byte(h)); err != nil {
		return b, errPromptIDInvalid
	}
	return b, nil
}

// TaskID is the inverse of PromptID: it reads a UUID (8-4-4-4-12 hex digits,
// either case) and writes its 128 bits as the 26-digit uppercase Crockford
// task id. An error for any other text.
func TaskID(promptID string) (string, error) {
	b, err := parseUUID(promptID)
	if err != nil {
		return "", err
	}
	var out [26]byte
	for i := 0; i < 26; i++ {
		var v int
		for j := 0; j < 5; j++ {
			p := i*5 - 2 + j
			v <<= 1
			if p >= 0 && b[p/8]>>(7-p%8)&1 == 1 {
				v |= 1
			}
		}
		out[i] = crockford[v]
	}
	return string(out[:]), nil
}
