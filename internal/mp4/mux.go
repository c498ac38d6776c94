package mp4

import (
	"encoding/binary"
	"fmt"
	"io"
)

// track is one H.264 video track as the muxer writes it.
type track struct {
	width, height int
	fps           int
	sps, pps      []byte // NAL units without length prefix
	level         uint8
	sizes         []uint32 // sample sizes in decoding order; sample 1 is the only sync sample
}

// sampleDelta is each frame's duration in the media timescale fps*sampleDelta,
// so every frame lasts exactly 1/fps s.
const sampleDelta = 1000

// box is an ISO BMFF box (ISO/IEC 14496-12 section 4.2) under construction.
type box struct{ b []byte }

func newBox(typ string) *box {
	b := &box{b: make([]byte, 8, 64)}
	copy(b.b[4:], typ)
	return b
}

// fullBox starts a FullBox: version and 24-bit flags after the header.
func newFullBox(typ string, version uint8, flags uint32) *box {
	b := newBox(typ)
	b.u32(uint32(version)<<24 | flags&0xFFFFFF)
	return b
}

func (b *box) u8(v uint8)   { b.b = append(b.b, v) }
func (b *box) u16(v uint16) { b.b = binary.BigEndian.AppendUint16(b.b, v) }
func (b *box) u32(v uint32) { b.b = binary.BigEndian.AppendUint32(b.b, v) }
func (b *box) zeros(n int)  { b.b = append(b.b, make([]byte, n)...) }
func (b *box) raw(p []byte) { b.b = append(b.b, p...) }
func (b *box) add(kids ...*box) {
	for _, k := range kids {
		b.b = append(b.b, k.bytes()...)
	}
}

// bytes fills in the size and returns the whole box.
func (b *box) bytes() []byte {
	binary.BigEndian.PutUint32(b.b, uint32(len(b.b)))
	return b.b
}

// unityMatrix is the identity transformation of mvhd and tkhd (16.16 and 2.30 fixed point).
func (b *box) unityMatrix() {
	for _, v := range []uint32{0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000} {
		b.u32(v)
	}
}

// writeMP4 writes ftyp, moov and mdat. All samples go in one chunk, whose
// offset (stco) is known once moov's size is: moov is built, measured, and
// the offset is the size of ftyp, moov and the mdat header.
func writeMP4(w io.Writer, t *track, mdat []byte) error {
	ftyp := ftypBox().bytes()
	moov := moovBox(t, 0).bytes()
	offset := uint64(len(ftyp)) + uint64(len(moov)) + 8
	if offset+uint64(len(mdat)) > 1<<32-1 {
		return fmt.Errorf("%w: file over 4 GiB", ErrTooLarge)
	}
	moov = moovBox(t, uint32(offset)).bytes()
	hdr := make([]byte, 8)
	binary.BigEndian.PutUint32(hdr, uint32(8+len(mdat)))
	copy(hdr[4:], "mdat")
	for _, p := range [][]byte{ftyp, moov, hdr, mdat} {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

func ftypBox() *box {
	b := newBox("ftyp")
	b.raw([]byte("isom"))
	b.u32(0x200) // minor_version
	b.raw([]byte("isomiso2avc1mp41"))
	return b
}

func moovBox(t *track, chunkOffset uint32) *box {
	timescale := uint32(t.fps) * sampleDelta
	duration := uint32(len(t.sizes)) * sampleDelta

	mvhd := newFullBox("mvhd", 0, 0)
	mvhd.u32(0) // creation_time
	mvhd.u32(0) // modification_time
	mvhd.u32(timescale)
	mvhd.u32(duration)
	mvhd.u32(0x00010000) // rate 1.0
	mvhd.u16(0x0100)     // volume 1.0
	mvhd.zeros(2 + 8)    // reserved
	mvhd.unityMatrix()
	mvhd.zeros(6 * 4) // pre_defined
	mvhd.u32(2)       // next_track_ID

	tkhd := newFullBox("tkhd", 0, 3) // track_enabled | track_in_movie
	tkhd.u32(0)                      // creation_time
	tkhd.u32(0)                      // modification_time
	tkhd.u32(1)                      // track_ID
	tkhd.u32(0)                      // reserved
	tkhd.u32(duration)               // in mvhd's timescale, which is the same
	tkhd.zeros(8)                    // reserved
	tkhd.u16(0)                      // layer
	tkhd.u16(0)                      // alternate_group
	tkhd.u16(0)                      // volume: not audio
	tkhd.u16(0)                      // reserved
	tkhd.unityMatrix()
	tkhd.u32(uint32(t.width) << 16) // 16.16 fixed point
	tkhd.u32(uint32(t.height) << 16)

	mdhd := newFullBox("mdhd", 0, 0)
	mdhd.u32(0)
	mdhd.u32(0)
	mdhd.u32(timescale)
	mdhd.u32(duration)
	mdhd.u16(0x55C4) // language "und", packed ISO-639-2/T
	mdhd.u16(0)      // pre_defined

	hdlr := newFullBox("hdlr", 0, 0)
	hdlr.u32(0) // pre_defined
	hdlr.raw([]byte("vide"))
	hdlr.zeros(12) // reserved
	hdlr.raw([]byte("VideoHandler\x00"))

	vmhd := newFullBox("vmhd", 0, 1)
	vmhd.zeros(2 + 6) // graphicsmode, opcolor

	dref := newFullBox("dref", 0, 0)
	dref.u32(1)
	dref.add(newFullBox("url ", 0, 1)) // media data in this file
	dinf := newBox("dinf")
	dinf.add(dref)

	stbl := newBox("stbl")
	stbl.add(stsdBox(t))

	stts := newFullBox("stts", 0, 0)
	stts.u32(1)
	stts.u32(uint32(len(t.sizes)))
	stts.u32(sampleDelta)

	stss := newFullBox("stss", 0, 0)
	stss.u32(1)
	stss.u32(1) // only the IDR picture is a sync sample

	stsc := newFullBox("stsc", 0, 0)
	stsc.u32(1)
	stsc.u32(1)                    // first_chunk
	stsc.u32(uint32(len(t.sizes))) // samples_per_chunk: one chunk holds them all
	stsc.u32(1)                    // sample_description_index

	stsz := newFullBox("stsz", 0, 0)
	stsz.u32(0) // sample_size: sizes follow
	stsz.u32(uint32(len(t.sizes)))
	for _, s := range t.sizes {
		stsz.u32(s)
	}

	stco := newFullBox("stco", 0, 0)
	stco.u32(1)
	stco.u32(chunkOffset)

	stbl.add(stts, stss, stsc, stsz, stco)
	minf := newBox("minf")
	minf.add(vmhd, dinf, stbl)
	mdia := newBox("mdia")
	mdia.add(mdhd, hdlr, minf)
	trak := newBox("trak")
	trak.add(tkhd, mdia)
	moov := newBox("moov")
	moov.add(mvhd, trak)
	return moov
}

// stsdBox holds one avc1 sample entry (ISO/IEC 14496-15 section 5.4.2) with
// its AVCDecoderConfigurationRecord (avcC, section 5.3.3.1).
func stsdBox(t *track) *box {
	avc1 := newBox("avc1")
	avc1.zeros(6)  // reserved
	avc1.u16(1)    // data_reference_index
	avc1.zeros(16) // pre_defined, reserved
	avc1.u16(uint16(t.width))
	avc1.u16(uint16(t.height))
	avc1.u32(0x00480000) // 72 dpi
	avc1.u32(0x00480000)
	avc1.u32(0)      // reserved
	avc1.u16(1)      // frame_count
	avc1.zeros(32)   // compressorname: empty Pascal string
	avc1.u16(0x0018) // depth: colour, no alpha
	avc1.u16(0xFFFF) // pre_defined -1

	avcC := newBox("avcC")
	avcC.u8(1) // configurationVersion
	avcC.u8(profileBaseline)
	avcC.u8(constraintFlags) // profile_compatibility
	avcC.u8(t.level)
	avcC.u8(0xFC | 3) // lengthSizeMinusOne: 4-byte NAL lengths
	avcC.u8(0xE0 | 1) // one SPS
	avcC.u16(uint16(len(t.sps)))
	avcC.raw(t.sps)
	avcC.u8(1) // one PPS
	avcC.u16(uint16(len(t.pps)))
	avcC.raw(t.pps)
	avc1.add(avcC)

	stsd := newFullBox("stsd", 0, 0)
	stsd.u32(1)
	stsd.add(avc1)
	return stsd
}
