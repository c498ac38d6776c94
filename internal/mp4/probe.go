package mp4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed is what Probe returns, wrapped with details, for a file it cannot read.
var ErrMalformed = errors.New("mp4: malformed file")

// Info is what Probe reads from an MP4 file with one H.264 video track.
type Info struct {
	Boxes         []string    // box paths in file order, such as "moov/trak/mdia/minf/stbl/stsd"
	Brand         string      // ftyp major_brand
	Width, Height int         // tkhd size in pixels
	CodedWidth    int         // from the SPS: pic_width_in_mbs*16 minus cropping
	CodedHeight   int         // from the SPS, likewise
	Timescale     uint32      // mdhd units per second
	Duration      uint64      // mdhd duration in Timescale units
	SampleDeltas  []uint32    // stts expanded: one per sample
	SampleSizes   []uint32    // stsz
	SyncSamples   []uint32    // stss, 1-based
	ChunkOffsets  []uint32    // stco
	SampleToChunk []StscEntry // stsc
	SampleOffsets []uint64    // where each sample starts in the file (from stsc, stco, stsz)
	Profile       uint8       // avcC AVCProfileIndication
	Compatibility uint8       // avcC profile_compatibility (the SPS constraint flags)
	Level         uint8       // avcC AVCLevelIndication
	SPS, PPS      []byte      // the first of each from avcC
	LengthSize    int         // bytes of each NAL length prefix
	MdatStart     int64       // offset of mdat's payload
	MdatSize      int64       // size of mdat's payload

	hasMdat bool
}

// StscEntry is one run of the sample-to-chunk table: from FirstChunk
// (1-based) until the next entry's, each chunk holds SamplesPerChunk samples.
type StscEntry struct {
	FirstChunk, SamplesPerChunk, DescriptionIndex uint32
}

// FPS is the frame rate as Timescale / the first sample's delta (0 when unknown).
func (in *Info) FPS() float64 {
	if len(in.SampleDeltas) == 0 || in.SampleDeltas[0] == 0 {
		return 0
	}
	return float64(in.Timescale) / float64(in.SampleDeltas[0])
}

// Sample returns sample i (0-based) of file b, the file Probe read.
func (in *Info) Sample(b []byte, i int) ([]byte, error) {
	if i < 0 || i >= len(in.SampleOffsets) {
		return nil, fmt.Errorf("%w: no sample %d", ErrMalformed, i)
	}
	off, size := in.SampleOffsets[i], uint64(in.SampleSizes[i])
	if off+size > uint64(len(b)) {
		return nil, fmt.Errorf("%w: sample %d ends past the file", ErrMalformed, i)
	}
	return b[off : off+size], nil
}

// locate fills SampleOffsets from stsc, stco and stsz and checks that every
// sample lies inside mdat.
func (in *Info) locate() error {
	in.SampleOffsets = make([]uint64, 0, len(in.SampleSizes))
	for k, e := range in.SampleToChunk {
		first, last := int64(e.FirstChunk), int64(len(in.ChunkOffsets))
		if k+1 < len(in.SampleToChunk) {
			last = min(last, int64(in.SampleToChunk[k+1].FirstChunk)-1)
		}
		if first < 1 {
			return fmt.Errorf("%w: stsc first_chunk 0", ErrMalformed)
		}
		for c := first; c <= last && len(in.SampleOffsets) < len(in.SampleSizes); c++ {
			off := uint64(in.ChunkOffsets[c-1])
			for j := uint32(0); j < e.SamplesPerChunk && len(in.SampleOffsets) < len(in.SampleSizes); j++ {
				size := uint64(in.SampleSizes[len(in.SampleOffsets)])
				if off < uint64(in.MdatStart) || off+size > uint64(in.MdatStart+in.MdatSize) {
					return fmt.Errorf("%w: sample %d lies outside mdat", ErrMalformed, len(in.SampleOffsets))
				}
				in.SampleOffsets = append(in.SampleOffsets, off)
				off += size
			}
		}
	}
	if len(in.SampleOffsets) != len(in.SampleSizes) {
		return fmt.Errorf("%w: %d samples, chunks hold %d", ErrMalformed, len(in.SampleSizes), len(in.SampleOffsets))
	}
	return nil
}

// maxProbeEntries bounds each table Probe expands, whatever counts a file claims.
const maxProbeEntries = 1 << 22

// Probe reads the box tree of an MP4 file and the tables of its (first)
// video track. It checks every size against b and bounds every table, so
// hostile input gives ErrMalformed, never a panic or a huge allocation.
func Probe(b []byte) (*Info, error) {
	in := &Info{}
	if err := in.walk(b, 0, "", 0); err != nil {
		return nil, err
	}
	if in.Brand == "" {
		return nil, fmt.Errorf("%w: no ftyp box", ErrMalformed)
	}
	if len(in.SPS) == 0 {
		return nil, fmt.Errorf("%w: no avcC with an SPS", ErrMalformed)
	}
	w, h, err := spsSize(in.SPS)
	if err != nil {
		return nil, err
	}
	in.CodedWidth, in.CodedHeight = w, h
	if !in.hasMdat {
		return nil, fmt.Errorf("%w: no mdat box", ErrMalformed)
	}
	if err := in.locate(); err != nil {
		return nil, err
	}
	return in, nil
}

var containers = map[string]bool{"moov": true, "trak": true, "mdia": true, "minf": true, "dinf": true, "stbl": true}

func (in *Info) walk(b []byte, base int64, parent string, depth int) error {
	if depth > 8 {
		return fmt.Errorf("%w: boxes nested too deep", ErrMalformed)
	}
	for len(b) > 0 {
		if len(b) < 8 {
			return fmt.Errorf("%w: %d stray bytes in %q", ErrMalformed, len(b), parent)
		}
		size := int64(binary.BigEndian.Uint32(b))
		typ := string(b[4:8])
		hdr := int64(8)
		switch size {
		case 1:
			if len(b) < 16 {
				return fmt.Errorf("%w: short largesize header", ErrMalformed)
			}
			u := binary.BigEndian.Uint64(b[8:])
			if u > uint64(len(b)) {
				return fmt.Errorf("%w: box %q larger than its parent", ErrMalformed, typ)
			}
			size, hdr = int64(u), 16
		case 0:
			size = int64(len(b)) // to the end of the file
		}
		if size < hdr || size > int64(len(b)) {
			return fmt.Errorf("%w: box %q has size %d with %d bytes left", ErrMalformed, typ, size, len(b))
		}
		path := typ
		if parent != "" {
			path = parent + "/" + typ
		}
		if len(in.Boxes) >= 4096 {
			return fmt.Errorf("%w: too many boxes", ErrMalformed)
		}
		in.Boxes = append(in.Boxes, path)
		body := b[hdr:size]
		var err error
		switch {
		case containers[typ]:
			err = in.walk(body, base+hdr, path, depth+1)
		default:
			err = in.leaf(path, typ, body, base+hdr)
		}
		if err != nil {
			return err
		}
		b = b[size:]
		base += size
	}
	return nil
}

// reader reads big-endian fields and remembers the first overrun.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || n > len(r.b) {
		r.bad = true
		return make([]byte, max(n, 0))
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}
func (r *reader) u8() uint8   { return r.take(1)[0] }
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }

// table reads a u32 entry count and checks that count*entrySize bytes follow.
func (r *reader) table(entrySize int) int {
	n := r.u32()
	if r.bad || uint64(n)*uint64(entrySize) > uint64(len(r.b)) {
		r.bad = true
		return 0
	}
	return int(n)
}

func (in *Info) leaf(path, typ string, body []byte, offset int64) error {
	r := &reader{b: body}
	inVideo := strings.Contains(path, "trak/")
	switch {
	case typ == "ftyp":
		in.Brand = string(r.take(4))
	case typ == "mdat":
		in.MdatStart, in.MdatSize, in.hasMdat = offset, int64(len(body)), true
	case typ == "tkhd" && in.Width == 0:
		v := r.u8()
		r.take(3)
		if v == 1 {
			r.take(8 + 8 + 4 + 4 + 8)
		} else {
			r.take(4 + 4 + 4 + 4 + 4)
		}
		r.take(8 + 2 + 2 + 2 + 2 + 36)
		in.Width, in.Height = int(r.u32()>>16), int(r.u32()>>16)
	case typ == "mdhd" && in.Timescale == 0:
		v := r.u8()
		r.take(3)
		if v == 1 {
			r.take(16)
			in.Timescale, in.Duration = r.u32(), r.u64()
		} else {
			r.take(8)
			in.Timescale, in.Duration = r.u32(), uint64(r.u32())
		}
	case typ == "stsd" && inVideo && len(in.SPS) == 0:
		r.take(4)
		if r.table(8) < 1 {
			return fmt.Errorf("%w: empty stsd", ErrMalformed)
		}
		return in.sampleEntry(r.b)
	case typ == "stts" && in.SampleDeltas == nil:
		r.take(4)
		n := r.table(8)
		in.SampleDeltas = []uint32{}
		for i := 0; i < n; i++ {
			count, delta := r.u32(), r.u32()
			if uint64(len(in.SampleDeltas))+uint64(count) > maxProbeEntries {
				return fmt.Errorf("%w: stts counts over %d samples", ErrMalformed, maxProbeEntries)
			}
			for j := uint32(0); j < count; j++ {
				in.SampleDeltas = append(in.SampleDeltas, delta)
			}
		}
	case typ == "stss" && in.SyncSamples == nil:
		r.take(4)
		n := r.table(4)
		in.SyncSamples = make([]uint32, n)
		for i := range in.SyncSamples {
			in.SyncSamples[i] = r.u32()
		}
	case typ == "stsz" && in.SampleSizes == nil:
		r.take(4)
		fixed := r.u32()
		if fixed != 0 {
			n := r.u32()
			if n > maxProbeEntries {
				return fmt.Errorf("%w: stsz counts %d samples", ErrMalformed, n)
			}
			in.SampleSizes = make([]uint32, n)
			for i := range in.SampleSizes {
				in.SampleSizes[i] = fixed
			}
			break
		}
		n := r.table(4)
		in.SampleSizes = make([]uint32, n)
		for i := range in.SampleSizes {
			in.SampleSizes[i] = r.u32()
		}
	case typ == "stco" && in.ChunkOffsets == nil:
		r.take(4)
		n := r.table(4)
		in.ChunkOffsets = make([]uint32, n)
		for i := range in.ChunkOffsets {
			in.ChunkOffsets[i] = r.u32()
		}
	case typ == "stsc" && in.SampleToChunk == nil:
		r.take(4)
		n := r.table(12)
		in.SampleToChunk = make([]StscEntry, n)
		for i := range in.SampleToChunk {
			in.SampleToChunk[i] = StscEntry{FirstChunk: r.u32(), SamplesPerChunk: r.u32(), DescriptionIndex: r.u32()}
		}
	}
	if r.bad {
		return fmt.Errorf("%w: %s is truncated", ErrMalformed, path)
	}
	return nil
}

// sampleEntry reads the first sample entry of stsd, which must be avc1 with an avcC.
func (in *Info) sampleEntry(b []byte) error {
	if len(b) < 8 {
		return fmt.Errorf("%w: short sample entry", ErrMalformed)
	}
	size := int(binary.BigEndian.Uint32(b))
	typ := string(b[4:8])
	if typ != "avc1" {
		return fmt.Errorf("%w: sample entry %q, want avc1", ErrMalformed, typ)
	}
	// 78 bytes of VisualSampleEntry fields follow the header (ISO/IEC 14496-12 12.1.3).
	if size < 8+78 || size > len(b) {
		return fmt.Errorf("%w: avc1 entry of %d bytes", ErrMalformed, size)
	}
	parent := in.Boxes[len(in.Boxes)-1]
	in.Boxes = append(in.Boxes, parent+"/avc1")
	kids := b[8+78 : size]
	for len(kids) >= 8 {
		ksize := int(binary.BigEndian.Uint32(kids))
		ktyp := string(kids[4:8])
		if ksize < 8 || ksize > len(kids) {
			return fmt.Errorf("%w: box %q in avc1 has size %d", ErrMalformed, ktyp, ksize)
		}
		in.Boxes = append(in.Boxes, parent+"/avc1/"+ktyp)
		if ktyp == "avcC" {
			if err := in.avcC(kids[8:ksize]); err != nil {
				return err
			}
		}
		kids = kids[ksize:]
	}
	return nil
}

// avcC reads an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1).
func (in *Info) avcC(b []byte) error {
	r := &reader{b: b}
	if r.u8() != 1 {
		return fmt.Errorf("%w: avcC configurationVersion is not 1", ErrMalformed)
	}
	in.Profile, in.Compatibility, in.Level = r.u8(), r.u8(), r.u8()
	in.LengthSize = int(r.u8()&3) + 1
	nsps := int(r.u8() & 31)
	for i := 0; i < nsps; i++ {
		p := r.take(int(r.u16()))
		if i == 0 {
			in.SPS = p
		}
	}
	npps := int(r.u8())
	for i := 0; i < npps; i++ {
		p := r.take(int(r.u16()))
		if i == 0 {
			in.PPS = p
		}
	}
	if r.bad {
		return fmt.Errorf("%w: avcC is truncated", ErrMalformed)
	}
	return nil
}

// Unescape removes the emulation prevention bytes of a NAL unit, giving its
// header byte and RBSP (H.264 section 7.4.1).
func Unescape(nal []byte) []byte {
	out := make([]byte, 0, len(nal))
	zeros := 0
	for _, c := range nal {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// BitReader reads an RBSP most significant bit first, with Exp-Golomb codes
// (H.264 section 9.1). Reading past the end sets Err and yields zeros.
type BitReader struct {
	B   []byte
	Pos int // in bits
	Err error
}

// U reads n (<= 32) bits.
func (r *BitReader) U(n int) uint32 {
	var v uint32
	for i := 0; i < n; i++ {
		if r.Pos >= len(r.B)*8 {
			r.Err = fmt.Errorf("%w: bitstream ends early", ErrMalformed)
			return 0
		}
		bit := r.B[r.Pos/8] >> (7 - r.Pos%8) & 1
		v = v<<1 | uint32(bit)
		r.Pos++
	}
	return v
}

// UE reads ue(v); codes longer than 32 bits set Err.
func (r *BitReader) UE() uint32 {
	zeros := 0
	for r.U(1) == 0 {
		if r.Err != nil {
			return 0
		}
		zeros++
		if zeros > 31 {
			r.Err = fmt.Errorf("%w: Exp-Golomb code too long", ErrMalformed)
			return 0
		}
	}
	return uint32(1<<zeros - 1 + uint64(r.U(zeros)))
}

// SE reads se(v).
func (r *BitReader) SE() int32 {
	k := r.UE()
	if k&1 == 1 {
		return int32((k + 1) / 2)
	}
	return -int32(k / 2)
}

// spsSize reads the visible picture size from an SPS NAL unit (section 7.3.2.1.1, 7.4.2.1.1).
func spsSize(nal []byte) (w, h int, err error) {
	rb := Unescape(nal)
	if len(rb) < 4 || rb[0]&0x1F != nalSPS {
		return 0, 0, fmt.Errorf("%w: avcC SPS is not an SPS NAL unit", ErrMalformed)
	}
	r := &BitReader{B: rb[1:]}
	profile := r.U(8)
	r.U(16) // constraint flags, level_idc
	r.UE()  // seq_parameter_set_id
	chroma := uint32(1)
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.UE()
		if chroma == 3 {
			r.U(1)
		}
		r.UE()
		r.UE()
		r.U(1)
		if r.U(1) == 1 {
			return 0, 0, fmt.Errorf("%w: SPS scaling lists are not read here", ErrMalformed)
		}
	}
	r.UE() // log2_max_frame_num_minus4
	switch r.UE() {
	case 0:
		r.UE()
	case 1:
		r.U(1)
		r.SE()
		r.SE()
		n := r.UE()
		if n > 255 {
			return 0, 0, fmt.Errorf("%w: SPS POC cycle of %d", ErrMalformed, n)
		}
		for i := uint32(0); i < n; i++ {
			r.SE()
		}
	}
	r.UE() // max_num_ref_frames
	r.U(1) // gaps_in_frame_num_value_allowed_flag
	mbW, mapH := int64(r.UE())+1, int64(r.UE())+1
	frameMbsOnly := int64(r.U(1))
	if frameMbsOnly == 0 {
		r.U(1)
	}
	r.U(1) // direct_8x8_inference_flag
	var cl, cr, ct, cb int64
	if r.U(1) == 1 {
		cl, cr, ct, cb = int64(r.UE()), int64(r.UE()), int64(r.UE()), int64(r.UE())
	}
	if r.Err != nil {
		return 0, 0, r.Err
	}
	ux, uy := int64(2), int64(2)
	switch chroma {
	case 0, 3:
		ux, uy = 1, 1
	case 2:
		uy = 1
	}
	uy *= 2 - frameMbsOnly
	w64 := mbW*16 - ux*(cl+cr)
	h64 := (2-frameMbsOnly)*mapH*16 - uy*(ct+cb)
	if mbW > 1<<16 || mapH > 1<<16 || w64 < 1 || h64 < 1 {
		return 0, 0, fmt.Errorf("%w: SPS size %dx%d", ErrMalformed, w64, h64)
	}
	return int(w64), int(h64), nil
}
