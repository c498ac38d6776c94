package mp4

// bitWriter builds an RBSP (raw byte sequence payload) most significant bit
// first, with the Exp-Golomb codes of H.264 section 9.1.
type bitWriter struct {
	buf  []byte
	cur  uint64 // pending bits, right-aligned
	ncur uint   // how many bits of cur are pending (< 8 after each call)
}

// u writes the n (<= 32) low bits of v.
func (w *bitWriter) u(n uint, v uint32) {
	w.cur = w.cur<<n | uint64(v)&(1<<n-1)
	w.ncur += n
	for w.ncur >= 8 {
		w.ncur -= 8
		w.buf = append(w.buf, byte(w.cur>>w.ncur))
	}
	w.cur &= 1<<w.ncur - 1
}

// flag writes one bit.
func (w *bitWriter) flag(b bool) {
	if b {
		w.u(1, 1)
	} else {
		w.u(1, 0)
	}
}

// ue writes v as ue(v): leadingZeroBits zeros, then v+1 in binary.
func (w *bitWriter) ue(v uint32) {
	x := uint64(v) + 1
	n := uint(0)
	for t := x; t > 1; t >>= 1 {
		n++
	}
	// n zeros then n+1 bits of x; split so no call writes more than 32 bits.
	w.u(n, 0)
	if n+1 > 32 {
		w.u(n+1-32, uint32(x>>32))
		w.u(32, uint32(x))
		return
	}
	w.u(n+1, uint32(x))
}

// se writes v as se(v): k > 0 maps to 2k-1, k <= 0 to -2k.
func (w *bitWriter) se(v int32) {
	if v > 0 {
		w.ue(uint32(2*int64(v) - 1))
	} else {
		w.ue(uint32(-2 * int64(v)))
	}
}

func (w *bitWriter) aligned() bool { return w.ncur == 0 }

// alignZero pads with zero bits to the next byte boundary (pcm_alignment_zero_bit).
func (w *bitWriter) alignZero() {
	if w.ncur > 0 {
		w.u(8-w.ncur, 0)
	}
}

// bytes appends whole bytes; the writer must be byte aligned.
func (w *bitWriter) bytes(b []byte) {
	w.buf = append(w.buf, b...)
}

// trailing writes rbsp_trailing_bits(): a one bit, then zeros to the byte boundary.
func (w *bitWriter) trailing() {
	w.u(1, 1)
	w.alignZero()
}

// appendNAL appends one NAL unit to dst as an MP4 sample carries it: a 4-byte
// big-endian length, the one-byte header (forbidden_zero_bit, nal_ref_idc,
// nal_unit_type) and the RBSP with emulation prevention bytes inserted
// (H.264 section 7.4.1: within a NAL unit, 0x000000..0x000003 never occur).
func appendNAL(dst []byte, refIdc, typ byte, rbsp []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, refIdc<<5|typ)
	zeros := 0
	for _, b := range rbsp {
		if zeros >= 2 && b <= 3 {
			dst = append(dst, 3)
			zeros = 0
		}
		dst = append(dst, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	n := len(dst) - start - 4
	dst[start] = byte(n >> 24)
	dst[start+1] = byte(n >> 16)
	dst[start+2] = byte(n >> 8)
	dst[start+3] = byte(n)
	return dst
}

// nalPayload is a NAL unit without a length prefix, as avcC stores SPS and PPS.
func nalPayload(refIdc, typ byte, rbsp []byte) []byte {
	return appendNAL(nil, refIdc, typ, rbsp)[4:]
}
