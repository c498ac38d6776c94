// Package pngmeta reads and writes the text chunks of a PNG file (tEXt, zTXt,
// iTXt: PNG specification, third edition, section 11.3.3) without decoding the
// image. Gooni uses it to embed a task's settings in its PNG results (CONTRACT
// section 13) in the forms AUTOMATIC1111 and Pillow write and read.
//
// Both directions stream: Embed and Read hold at most one text chunk (bounded
// by MaxTextChunk) and a fixed copy buffer, whatever the length fields say,
// and every chunk's CRC is checked.
package pngmeta

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf8"
)

// Limits on what Read holds and what Embed writes, in bytes.
const (
	// MaxTextChunk bounds one text chunk: its stored length and, for zTXt and
	// compressed iTXt, its decompressed text.
	MaxTextChunk = 4 << 20
	// MaxText bounds the keywords and decompressed texts of all text chunks of
	// one file together (Read).
	MaxText = 16 << 20
	// maxChunkLen is the PNG limit on a chunk's length field (section 5.3).
	maxChunkLen = 1<<31 - 1
	// maxKeyword is the PNG limit on a text keyword (section 11.3.3.2).
	maxKeyword = 79
)

// signature is the eight bytes every PNG file starts with (section 5.2).
var signature = []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}

// Kinds of bad input; a *FormatError or a wrapped error matches one of them with errors.Is.
var (
	ErrNotPNG    = errors.New("not a PNG file (bad signature)")
	ErrTruncated = errors.New("file ends inside a chunk or before IEND")
	ErrCRC       = errors.New("chunk CRC does not match its contents")
	ErrTooLarge  = errors.New("chunk or text larger than allowed")
	ErrMalformed = errors.New("malformed chunk")
	// ErrBadText is returned by Embed for a Chunk whose keyword or text a PNG text chunk cannot hold.
	ErrBadText = errors.New("keyword or text cannot be stored in a PNG text chunk")
)

// FormatError says where in the input a rule was broken: Offset is the byte
// offset of the chunk's length field (0 for the signature), Chunk its type
// ("tEXt"; empty before the first chunk), Err one of ErrNotPNG, ErrTruncated,
// ErrCRC, ErrTooLarge or ErrMalformed, Detail a short human explanation.
type FormatError struct {
	Offset int64
	Chunk  string
	Err    error
	Detail string
}

// Error reads like `pngmeta: "tEXt" chunk at byte 33: chunk CRC does not match its contents`.
func (e *FormatError) Error() string {
	msg := "pngmeta: "
	if e.Chunk != "" {
		msg += fmt.Sprintf("%q chunk at byte %d: ", e.Chunk, e.Offset)
	} else {
		msg += fmt.Sprintf("at byte %d: ", e.Offset)
	}
	msg += e.Err.Error()
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// Unwrap returns Err, so errors.Is(err, ErrCRC) and the like work.
func (e *FormatError) Unwrap() error { return e.Err }

// chunkHeader is a chunk's length and type, and where its length field starts.
type chunkHeader struct {
	length uint32
	typ    [4]byte
	off    int64
}

func (h chunkHeader) name() string { return string(h.typ[:]) }

func (h chunkHeader) fail(err error, detail string) error {
	return &FormatError{Offset: h.off, Chunk: h.name(), Err: err, Detail: detail}
}

func (h chunkHeader) isText() bool {
	switch h.name() {
	case "tEXt", "zTXt", "iTXt":
		return true
	}
	return false
}

// scanner walks the chunks of a PNG stream, counting offsets and checking CRCs.
type scanner struct {
	r   *bufio.Reader
	off int64
	crc hash.Hash32
	buf []byte // copy buffer for chunk data that is streamed, not kept
}

func newScanner(r io.Reader) *scanner {
	return &scanner{r: bufio.NewReaderSize(r, 32<<10), crc: crc32.NewIEEE(), buf: make([]byte, 32<<10)}
}

// readFull reads exactly len(p) bytes; running out is ErrTruncated against h.
func (s *scanner) readFull(p []byte, h chunkHeader) error {
	n, err := io.ReadFull(s.r, p)
	s.off += int64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return h.fail(ErrTruncated, "")
	}
	if err != nil {
		return fmt.Errorf("pngmeta: reading at byte %d: %w", s.off, err)
	}
	return nil
}

func (s *scanner) signature() error {
	var sig [8]byte
	n, err := io.ReadFull(s.r, sig[:])
	s.off += int64(n)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return fmt.Errorf("pngmeta: reading the signature: %w", err)
	}
	if err != nil || !bytes.Equal(sig[:], signature) {
		return &FormatError{Err: ErrNotPNG}
	}
	return nil
}

// next reads a chunk header and starts its CRC. The first chunk must be IHDR.
func (s *scanner) next(first bool) (chunkHeader, error) {
	h := chunkHeader{off: s.off}
	var b [8]byte
	n, err := io.ReadFull(s.r, b[:])
	s.off += int64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return h, &FormatError{Offset: h.off, Err: ErrTruncated, Detail: "no IEND chunk"}
	}
	if err != nil {
		return h, fmt.Errorf("pngmeta: reading at byte %d: %w", s.off, err)
	}
	h.length = binary.BigEndian.Uint32(b[:4])
	copy(h.typ[:], b[4:])
	for _, c := range h.typ {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return h, &FormatError{Offset: h.off, Err: ErrMalformed, Detail: fmt.Sprintf("chunk type %q is not four letters", h.typ[:])}
		}
	}
	if h.length > maxChunkLen {
		return h, h.fail(ErrTooLarge, fmt.Sprintf("length %d is over the PNG limit of 2^31-1", h.length))
	}
	if first && (h.name() != "IHDR" || h.length != 13) {
		return h, h.fail(ErrMalformed, "the first chunk must be a 13-byte IHDR")
	}
	s.crc.Reset()
	s.crc.Write(h.typ[:])
	return h, nil
}

// header returns the 8 bytes of h as they stand in the file.
func (h chunkHeader) bytes() []byte {
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], h.length)
	copy(b[4:], h.typ[:])
	return b[:]
}

// data reads n of the chunk's data bytes into a new slice, adding them to the CRC.
// n is small or bounded by the caller; the slice grows only as bytes arrive.
func (s *scanner) data(h chunkHeader, n uint32) ([]byte, error) {
	var out bytes.Buffer
	if _, err := s.stream(h, &out, int64(n)); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// stream copies n data bytes to w (and the CRC) through the fixed buffer.
func (s *scanner) stream(h chunkHeader, w io.Writer, n int64) (int64, error) {
	var done int64
	for done < n {
		want := int64(len(s.buf))
		if n-done < want {
			want = n - done
		}
		got, err := io.ReadFull(s.r, s.buf[:want])
		s.off += int64(got)
		s.crc.Write(s.buf[:got])
		if got > 0 && w != nil {
			if _, werr := w.Write(s.buf[:got]); werr != nil {
				return done, werr
			}
		}
		done += int64(got)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return done, h.fail(ErrTruncated, "")
		}
		if err != nil {
			return done, fmt.Errorf("pngmeta: reading at byte %d: %w", s.off, err)
		}
	}
	return done, nil
}

// checkCRC reads the chunk's stored CRC and compares it with the computed one.
// It returns the four stored bytes so a copier can pass them on unchanged.
func (s *scanner) checkCRC(h chunkHeader) ([]byte, error) {
	var b [4]byte
	if err := s.readFull(b[:], h); err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint32(b[:]) != s.crc.Sum32() {
		return nil, h.fail(ErrCRC, "")
	}
	return b[:], nil
}

// Chunk is one text entry for Embed. Keyword is 1-79 Latin-1 characters
// (printable, no leading, trailing or double spaces: PNG section 11.3.3.2);
// Text is valid UTF-8 without NUL. Embed writes tEXt when both fit Latin-1 and
// ITXt is false, else an uncompressed iTXt in UTF-8, as Pillow's
// PngInfo.add_text (and so AUTOMATIC1111) does.
type Chunk struct {
	Keyword string
	Text    string
	ITXt    bool // always iTXt, even when Text fits Latin-1
}

// latin1 converts s to Latin-1 bytes; ok is false when a rune is above U+00FF.
func latin1(s string) (b []byte, ok bool) {
	b = make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, false
		}
		b = append(b, byte(r))
	}
	return b, true
}

// encode returns the chunk's type and data.
func (c Chunk) encode() (typ string, data []byte, err error) {
	bad := func(why string) error { return fmt.Errorf("pngmeta: chunk %q: %w: %s", c.Keyword, ErrBadText, why) }
	if !utf8.ValidString(c.Keyword) || !utf8.ValidString(c.Text) {
		return "", nil, bad("not valid UTF-8")
	}
	kw, ok := latin1(c.Keyword)
	if !ok {
		return "", nil, bad("the keyword must be Latin-1")
	}
	if why := checkKeyword(kw); why != "" {
		return "", nil, bad(why)
	}
	if bytes.IndexByte([]byte(c.Text), 0) >= 0 {
		return "", nil, bad("the text contains a NUL character")
	}
	var buf bytes.Buffer
	buf.Write(kw)
	buf.WriteByte(0)
	if text, ok := latin1(c.Text); ok && !c.ITXt {
		typ = "tEXt"
		buf.Write(text)
	} else {
		// compression flag 0, method 0, empty language tag, empty translated keyword
		typ = "iTXt"
		buf.Write([]byte{0, 0, 0, 0})
		buf.WriteString(c.Text)
	}
	if buf.Len() > MaxTextChunk {
		return "", nil, fmt.Errorf("pngmeta: chunk %q: %w: %d bytes, the limit is %d", c.Keyword, ErrTooLarge, buf.Len(), MaxTextChunk)
	}
	return typ, buf.Bytes(), nil
}

// checkKeyword applies section 11.3.3.2 to a Latin-1 keyword; it returns why not, or "".
func checkKeyword(kw []byte) string {
	if len(kw) < 1 || len(kw) > maxKeyword {
		return "the keyword must be 1 to 79 characters"
	}
	for i, c := range kw {
		if !(32 <= c && c <= 126 || 161 <= c) {
			return "the keyword may hold only printable Latin-1 characters"
		}
		if c == ' ' && (i == 0 || i == len(kw)-1 || kw[i-1] == ' ') {
			return "the keyword may not start or end with a space or hold two in a row"
		}
	}
	return ""
}

func writeChunk(w io.Writer, typ string, data []byte) error {
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], uint32(len(data)))
	copy(b[4:], typ)
	crc := crc32.NewIEEE()
	crc.Write(b[4:])
	crc.Write(data)
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], crc.Sum32())
	for _, p := range [][]byte{b[:], data, c[:]} {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// Embed copies the PNG in src to dst, writing chunks right after IHDR and
// dropping every tEXt, zTXt or iTXt chunk (anywhere in the file) whose keyword
// one of chunks uses. Every other chunk, and so the image data, is copied byte
// for byte; bytes after IEND are not copied. It checks the signature and every
// chunk's CRC and fails with a *FormatError (ErrNotPNG, ErrTruncated, ErrCRC,
// ErrTooLarge, ErrMalformed) on bad input, or ErrBadText / ErrTooLarge for a
// bad Chunk. Memory stays bounded whatever src's length fields say. On error
// dst holds a partial copy that the caller must discard.
func Embed(dst io.Writer, src io.Reader, chunks []Chunk) error {
	type encoded struct {
		typ  string
		data []byte
	}
	out := make([]encoded, 0, len(chunks))
	replace := make(map[string]bool, len(chunks))
	for _, c := range chunks {
		typ, data, err := c.encode()
		if err != nil {
			return err
		}
		kw := string(data[:bytes.IndexByte(data, 0)])
		if replace[kw] {
			return fmt.Errorf("pngmeta: chunk %q: %w: the keyword is given twice", c.Keyword, ErrBadText)
		}
		replace[kw] = true
		out = append(out, encoded{typ, data})
	}

	s := newScanner(src)
	if err := s.signature(); err != nil {
		return err
	}
	w := bufio.NewWriterSize(dst, 32<<10)
	if _, err := w.Write(signature); err != nil {
		return err
	}
	for first := true; ; first = false {
		h, err := s.next(first)
		if err != nil {
			return err
		}
		var prefix []byte
		if h.isText() {
			// the keyword and its NUL come first; read just enough to see it
			n := min(h.length, maxKeyword+1)
			if prefix, err = s.data(h, n); err != nil {
				return err
			}
			if i := bytes.IndexByte(prefix, 0); i >= 0 && replace[string(prefix[:i])] {
				if _, err := s.stream(h, nil, int64(h.length-n)); err != nil {
					return err
				}
				if _, err := s.checkCRC(h); err != nil {
					return err
				}
				continue
			}
		}
		if _, err := w.Write(h.bytes()); err != nil {
			return err
		}
		if _, err := w.Write(prefix); err != nil {
			return err
		}
		if _, err := s.stream(h, w, int64(h.length)-int64(len(prefix))); err != nil {
			return err
		}
		crc, err := s.checkCRC(h)
		if err != nil {
			return err
		}
		if _, err := w.Write(crc); err != nil {
			return err
		}
		if first {
			for _, c := range out {
				if err := writeChunk(w, c.typ, c.data); err != nil {
					return err
				}
			}
		}
		if h.name() == "IEND" {
			return w.Flush()
		}
	}
}

// Read returns the text of every tEXt, zTXt and iTXt chunk of the PNG in r by
// keyword (Latin-1 keywords and tEXt/zTXt texts converted to UTF-8; the first
// chunk wins when a keyword repeats). It reads up to IEND, checks every CRC,
// and fails with a *FormatError (ErrNotPNG, ErrTruncated, ErrCRC, ErrMalformed,
// or ErrTooLarge for a text chunk over MaxTextChunk stored or decompressed, or
// over MaxText in all).
func Read(r io.Reader) (map[string]string, error) {
	s := newScanner(r)
	if err := s.signature(); err != nil {
		return nil, err
	}
	texts := map[string]string{}
	total := 0
	for first := true; ; first = false {
		h, err := s.next(first)
		if err != nil {
			return nil, err
		}
		if !h.isText() {
			if _, err := s.stream(h, nil, int64(h.length)); err != nil {
				return nil, err
			}
			if _, err := s.checkCRC(h); err != nil {
				return nil, err
			}
			if h.name() == "IEND" {
				return texts, nil
			}
			continue
		}
		if h.length > MaxTextChunk {
			return nil, h.fail(ErrTooLarge, fmt.Sprintf("%d bytes, the limit is %d", h.length, MaxTextChunk))
		}
		data, err := s.data(h, h.length)
		if err != nil {
			return nil, err
		}
		if _, err := s.checkCRC(h); err != nil {
			return nil, err
		}
		kw, text, err := parseText(h, data)
		if err != nil {
			return nil, err
		}
		total += len(kw) + len(text)
		if total > MaxText {
			return nil, h.fail(ErrTooLarge, fmt.Sprintf("the text chunks hold more than %d bytes in all", MaxText))
		}
		if _, seen := texts[kw]; !seen {
			texts[kw] = text
		}
	}
}

// parseText decodes one text chunk's data into its keyword and text, both UTF-8.
func parseText(h chunkHeader, data []byte) (kw, text string, err error) {
	nul := bytes.IndexByte(data, 0)
	if nul < 0 {
		return "", "", h.fail(ErrMalformed, "no NUL after the keyword")
	}
	if nul < 1 || nul > maxKeyword {
		return "", "", h.fail(ErrMalformed, "the keyword must be 1 to 79 bytes")
	}
	kw = fromLatin1(data[:nul])
	rest := data[nul+1:]
	switch h.name() {
	case "tEXt":
		return kw, fromLatin1(rest), nil
	case "zTXt":
		if len(rest) < 1 || rest[0] != 0 {
			return "", "", h.fail(ErrMalformed, "unknown compression method")
		}
		b, err := inflate(h, rest[1:])
		if err != nil {
			return "", "", err
		}
		return kw, fromLatin1(b), nil
	}
	// iTXt: flag, method, language tag NUL, translated keyword NUL, text
	if len(rest) < 2 {
		return "", "", h.fail(ErrMalformed, "no compression flag")
	}
	flag, method := rest[0], rest[1]
	rest = rest[2:]
	for range 2 { // language tag, translated keyword
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return "", "", h.fail(ErrMalformed, "unterminated language tag or translated keyword")
		}
		rest = rest[i+1:]
	}
	switch {
	case flag == 1 && method == 0:
		if rest, err = inflate(h, rest); err != nil {
			return "", "", err
		}
	case flag != 0:
		return "", "", h.fail(ErrMalformed, "unknown compression flag or method")
	}
	if !utf8.Valid(rest) {
		return "", "", h.fail(ErrMalformed, "the text is not valid UTF-8")
	}
	return kw, string(rest), nil
}

// inflate decompresses a zlib stream, refusing more than MaxTextChunk bytes of output.
func inflate(h chunkHeader, data []byte) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, h.fail(ErrMalformed, "bad zlib stream: "+err.Error())
	}
	defer zr.Close()
	var out bytes.Buffer
	n, err := io.Copy(&out, io.LimitReader(zr, MaxTextChunk+1))
	if err != nil {
		return nil, h.fail(ErrMalformed, "bad zlib stream: "+err.Error())
	}
	if n > MaxTextChunk {
		return nil, h.fail(ErrTooLarge, fmt.Sprintf("decompresses to more than %d bytes", MaxTextChunk))
	}
	return out.Bytes(), nil
}

func fromLatin1(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}
