package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"gooni/server/apierr"
)

// Large generate bodies (CONTRACT section 18): at most MaxUploads bodies
// over largeBody are read and decoded at once; the others wait up to
// uploadWait for a turn, then answer server_busy. A body of unknown length
// counts as large.
const (
	largeBody  = 1 << 20
	uploadWait = 10 * time.Second
)

// uploadGate bounds concurrent large uploads and gives memory back to the
// OS when the last one ends (the Go runtime keeps freed heap for a while,
// so a burst of 10 MiB images would otherwise leave the RSS at its peak).
type uploadGate struct {
	slots    chan struct{}
	wait     time.Duration
	inFlight atomic.Int64
	mu       sync.Mutex
	lastFree time.Time
}

func newUploadGate(n int, wait time.Duration) *uploadGate {
	if n <= 0 {
		n = 4
	}
	if wait <= 0 {
		wait = uploadWait
	}
	return &uploadGate{slots: make(chan struct{}, n), wait: wait}
}

// acquire waits for a slot; ok false means the wait ran out or ctx ended.
func (g *uploadGate) acquire(ctx context.Context) bool {
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		g.inFlight.Add(1)
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (g *uploadGate) release() {
	<-g.slots
	if g.inFlight.Add(-1) > 0 {
		return
	}
	g.mu.Lock()
	due := time.Since(g.lastFree) > time.Second
	if due {
		g.lastFree = time.Now()
	}
	g.mu.Unlock()
	if due {
		go debug.FreeOSMemory()
	}
}

// readGenerateBody reads the body of POST /generate into one buffer of its
// exact size (or growing up to the limit when the length is unknown),
// taking an upload slot for a large one. release must be called when the
// body and what was decoded from it are no longer needed.
func (s *Server) readGenerateBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), err error) {
	release = func() {}
	if r.ContentLength > maxGenerateBody {
		return nil, release, apierr.PayloadTooLarge(maxGenerateBody)
	}
	if r.ContentLength < 0 || r.ContentLength > largeBody {
		if !s.uploads.acquire(r.Context()) {
			return nil, release, apierr.ServerBusy("too many large uploads at once; try again shortly", max(1, int(s.uploads.wait/time.Second)))
		}
		release = s.uploads.release
	}
	rd := http.MaxBytesReader(w, r.Body, maxGenerateBody)
	if r.ContentLength >= 0 {
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(rd, body)
		if err == nil {
			// A body longer than it said is refused, not cut.
			var one [1]byte
			if n, _ := rd.Read(one[:]); n > 0 {
				err = errors.New("body longer than its Content-Length")
			}
		}
	} else {
		body, err = io.ReadAll(rd)
	}
	if err != nil {
		release()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, func() {}, apierr.PayloadTooLarge(maxGenerateBody)
		}
		return nil, func() {}, apierr.InvalidJSON("the body could not be read whole")
	}
	return body, release, nil
}

// inputFile is an i2v image being written to media/ before its task commits.
type inputFile struct {
	f    *os.File
	done bool
}

// newInputFile creates a private temp file in media/ (the same file system
// as its final name, so the rename is atomic).
func (s *Server) newInputFile() (*inputFile, error) {
	if err := os.MkdirAll(s.dataDir().Media(), 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.dataDir().Media(), ".upload-*.tmp")
	if err != nil {
		return nil, err
	}
	return &inputFile{f: f}, nil
}

// keep fsyncs the file and renames it to media/<name>, then fsyncs media/.
func (in *inputFile) keep(dir, name string) error {
	if err := in.f.Sync(); err != nil {
		return err
	}
	if err := in.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(in.f.Name(), dir+string(os.PathSeparator)+name); err != nil {
		return err
	}
	in.done = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// discard removes the temp file unless it was kept.
func (in *inputFile) discard() {
	if in == nil || in.done {
		return
	}
	in.f.Close()
	os.Remove(in.f.Name())
}
