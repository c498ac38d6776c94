package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// DataDir is the data directory (CONTRACT section 1): it owns gooni.db,
// media/, secrets/ and the lock file. Nothing is written outside it.
type DataDir string

// Names inside the data directory.
const (
	DBFileName   = "gooni.db"
	LockFileName = "gooni.lock"
)

// Path is the directory itself.
func (d DataDir) Path() string { return string(d) }

// DB is the path of the SQLite database.
func (d DataDir) DB() string { return filepath.Join(string(d), DBFileName) }

// Media is the directory of results, previews and input images.
func (d DataDir) Media() string { return filepath.Join(string(d), "media") }

// Secrets is the directory of generated secret files (0700, files 0600).
func (d DataDir) Secrets() string { return filepath.Join(string(d), "secrets") }

// ErrDataDirBusy means another gooni process holds the data directory.
var ErrDataDirBusy = errors.New("a gooni server (or another gooni command) is running on this data directory; stop it first")

// Lock creates the directory (0700) and takes the exclusive lock on its lock
// file without waiting; the lock dies with the process, so a crash never
// leaves it stale. A serving gooni holds it, so offline commands cannot
// change secrets under it. The error wraps ErrDataDirBusy when it is held.
func (d DataDir) Lock() (unlock func(), err error) {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(string(d), LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s is locked)", ErrDataDirBusy, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// ErrMediaPath means a stored media path does not name a file inside media/.
var ErrMediaPath = errors.New("config: not a path inside media/")

// MediaPath resolves a stored path ("media/<name>", relative to the data
// directory, slash-separated) strictly inside media/.
func (d DataDir) MediaPath(rel string) (string, error) {
	if rel == "" {
		return "", ErrMediaPath
	}
	media := d.Media()
	p := filepath.Join(string(d), filepath.FromSlash(rel))
	if !strings.HasPrefix(p, media+string(filepath.Separator)) {
		return "", ErrMediaPath
	}
	return p, nil
}

// OpenMedia opens a stored media file for reading without following a
// symbolic link in its last element (O_NOFOLLOW; media/ itself is flat), so
// a link planted in media/ is refused (ELOOP), never followed to another
// file of the machine. Errors: ErrMediaPath, fs.ErrNotExist, or the open error.
func (d DataDir) OpenMedia(rel string) (*os.File, error) {
	p, err := d.MediaPath(rel)
	if err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}
