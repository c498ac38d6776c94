package comfyui

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"gooni/internal/workspace"
)

// GET /queue lists every queued prompt with its whole graph and extra data
// (a prompt queued from ComfyUI's page carries its UI workflow too), so a
// busy ComfyUI can answer with many megabytes. The driver needs two fields
// per item; jsonScanner reads the answer as a stream and skips the rest
// without holding it, so memory stays small whatever the answer's size.

// errJSON is any malformed or unexpected JSON in a streamed answer.
var errJSON = errors.New("invalid JSON")

// jsonScanner reads JSON values from a stream, skipping what it is not asked to keep.
type jsonScanner struct {
	r       *bufio.Reader
	rec     *bytes.Buffer // when set, consumed bytes are recorded up to recMax
	recMax  int
	recOver bool
}

func newJSONScanner(r io.Reader) *jsonScanner { return &jsonScanner{r: bufio.NewReaderSize(r, 32<<10)} }

func (s *jsonScanner) readByte() (byte, error) {
	b, err := s.r.ReadByte()
	if err != nil {
		if err == io.EOF {
			return 0, errJSON
		}
		return 0, err
	}
	if s.rec != nil {
		if s.rec.Len() < s.recMax {
			s.rec.WriteByte(b)
		} else {
			s.recOver = true
		}
	}
	return b, nil
}

// peek returns the next byte that is not white space, without consuming it.
func (s *jsonScanner) peek() (byte, error) {
	for {
		b, err := s.r.Peek(1)
		if err != nil {
			if err == io.EOF {
				return 0, errJSON
			}
			return 0, err
		}
		switch b[0] {
		case ' ', '\t', '\n', '\r':
			if _, err := s.readByte(); err != nil {
				return 0, err
			}
		default:
			return b[0], nil
		}
	}
}

// next consumes and returns the next byte that is not white space.
func (s *jsonScanner) next() (byte, error) {
	if _, err := s.peek(); err != nil {
		return 0, err
	}
	return s.readByte()
}

func (s *jsonScanner) expect(c byte) error {
	b, err := s.next()
	if err != nil {
		return err
	}
	if b != c {
		return errJSON
	}
	return nil
}

// str reads a string value, keeping at most max bytes of its raw text
// (escapes are kept as sent: the driver compares ASCII ids and keys only).
func (s *jsonScanner) str(max int) (string, error) {
	if err := s.expect('"'); err != nil {
		return "", err
	}
	var sb strings.Builder
	for {
		b, err := s.readByte()
		if err != nil {
			return "", err
		}
		switch b {
		case '"':
			return sb.String(), nil
		case '\\':
			esc, err := s.readByte()
			if err != nil {
				return "", err
			}
			if sb.Len() < max {
				sb.WriteByte(b)
				sb.WriteByte(esc)
			}
			continue
		}
		if sb.Len() < max {
			sb.WriteByte(b)
		}
	}
}

// skipString consumes the rest of a string whose opening quote was read.
func (s *jsonScanner) skipString() error {
	for {
		b, err := s.readByte()
		if err != nil {
			return err
		}
		switch b {
		case '"':
			return nil
		case '\\':
			if _, err := s.readByte(); err != nil {
				return err
			}
		}
	}
}

// skip consumes one value of any size, holding none of it.
func (s *jsonScanner) skip() error {
	b, err := s.next()
	if err != nil {
		return err
	}
	switch b {
	case '"':
		return s.skipString()
	case '{', '[':
		depth := 1
		for depth > 0 {
			b, err := s.readByte()
			if err != nil {
				return err
			}
			switch b {
			case '"':
				if err := s.skipString(); err != nil {
					return err
				}
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
		}
		return nil
	case '}', ']', ',', ':':
		return errJSON
	}
	// A number or a literal: up to the next delimiter.
	for {
		p, err := s.r.Peek(1)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch p[0] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return nil
		}
		if _, err := s.readByte(); err != nil {
			return err
		}
	}
}

// raw returns one value's bytes when it is at most max bytes long, else
// skips it and returns nil.
func (s *jsonScanner) raw(max int) ([]byte, error) {
	if _, err := s.peek(); err != nil {
		return nil, err
	}
	s.rec, s.recMax, s.recOver = &bytes.Buffer{}, max, false
	err := s.skip()
	rec, over := s.rec, s.recOver
	s.rec = nil
	if err != nil || over {
		return nil, err
	}
	return rec.Bytes(), nil
}

const (
	maxScannedID    = 128
	maxScannedExtra = 64 << 10 // our own extra_data is a few dozen bytes
)

// parseQueue reads {"queue_running": [...], "queue_pending": [...]}: it
// counts the items and notes whether want is among them, and where.
func parseQueue(r io.Reader, want string) (*queueInfo, error) {
	s := newJSONScanner(r)
	if err := s.expect('{'); err != nil {
		return nil, errors.New("not a JSON object")
	}
	q := &queueInfo{}
	seen := 0
	if b, err := s.peek(); err != nil {
		return nil, err
	} else if b == '}' {
		return nil, errors.New("queue_running or queue_pending missing")
	}
	for {
		key, err := s.str(64)
		if err != nil {
			return nil, err
		}
		if err := s.expect(':'); err != nil {
			return nil, err
		}
		switch key {
		case "queue_running", "queue_pending":
			seen++
			n, err := s.queueList(q, want, key == "queue_running")
			if err != nil {
				return nil, errors.New(key + " is not a list of lists")
			}
			if key == "queue_running" {
				q.running += n
			} else {
				q.pending += n
			}
		default:
			if err := s.skip(); err != nil {
				return nil, err
			}
		}
		b, err := s.next()
		if err != nil {
			return nil, err
		}
		if b == '}' {
			break
		}
		if b != ',' {
			return nil, errJSON
		}
	}
	if seen != 2 {
		return nil, errors.New("queue_running or queue_pending missing")
	}
	return q, nil
}

// queueList reads one list of [number, prompt_id, prompt, extra_data, outputs] items.
func (s *jsonScanner) queueList(q *queueInfo, want string, running bool) (int, error) {
	if err := s.expect('['); err != nil {
		return 0, err
	}
	if b, err := s.peek(); err != nil {
		return 0, err
	} else if b == ']' {
		_, err := s.next()
		return 0, err
	}
	n := 0
	for {
		if err := s.expect('['); err != nil {
			return 0, err
		}
		n++
		match := false
		for idx := 0; ; idx++ {
			if b, err := s.peek(); err != nil {
				return 0, err
			} else if b == ']' && idx == 0 {
				if _, err := s.next(); err != nil {
					return 0, err
				}
				break
			}
			switch {
			case idx == 1:
				if b, _ := s.peek(); b == '"' {
					id, err := s.str(maxScannedID)
					if err != nil {
						return 0, err
					}
					match = want != "" && id == want
				} else if err := s.skip(); err != nil {
					return 0, err
				}
			case idx == 3 && match:
				extra, err := s.raw(maxScannedExtra)
				if err != nil {
					return 0, err
				}
				var e struct {
					Gooni gooniExtra `json:"gooni"`
				}
				if extra != nil && json.Unmarshal(extra, &e) == nil {
					q.extra = e.Gooni
				}
			default:
				if err := s.skip(); err != nil {
					return 0, err
				}
			}
			b, err := s.next()
			if err != nil {
				return 0, err
			}
			if b == ']' {
				break
			}
			if b != ',' {
				return 0, errJSON
			}
		}
		if match {
			q.found = workspace.StatusPending
			if running {
				q.found = workspace.StatusProcessing
			}
		}
		b, err := s.next()
		if err != nil {
			return 0, err
		}
		if b == ']' {
			return n, nil
		}
		if b != ',' {
			return 0, errJSON
		}
	}
}
