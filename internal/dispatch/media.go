package dispatch

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gooni/internal/config"
	"gooni/internal/pngmeta"
	"gooni/internal/workspace"
	"gooni/store"
)

// maxMediaBytes bounds one downloaded file, so a broken workspace cannot fill the disk.
const maxMediaBytes = 4 << 30

var errNoPreview = errors.New("dispatch: the workspace has no preview for this task")

// corruptError means the workspace's bytes are not the media they claim to be.
type corruptError struct{ msg string }

func (e *corruptError) Error() string { return e.msg }

// storageError means the server's own disk failed us.
type storageError struct{ err error }

func (e *storageError) Error() string { return "storing media: " + e.err.Error() }
func (e *storageError) Unwrap() error { return e.err }

type storedMedia struct {
	name        string // file name inside media/
	contentType string
}

var extByType = map[string]string{
	"image/png":  ".png",
	"image/jpeg": ".jpg",
	"image/webp": ".webp",
	"video/mp4":  ".mp4",
	"video/webm": ".webm",
}

func (d *Dispatcher) mediaDir() string { return filepath.Join(d.cfg.DataDir, "media") }

// fetchMedia downloads a task's result (or preview) into media/ the durable way:
// temp file, fsync, type check against the bytes, rename, fsync of the directory.
// A PNG result is streamed through pngmeta.Embed on the way, so the stored
// file carries the task's settings (CONTRACT section 13).
func (d *Dispatcher) fetchMedia(ctx context.Context, c workspace.Driver, t *store.Task, preview bool) (*storedMedia, error) {
	ctx, cancel := context.WithTimeout(ctx, downloadTimeout)
	defer cancel()
	what := "result"
	get := c.Result
	if preview {
		what = "preview"
		get = c.Preview
	}
	resp, err := get(ctx, t.ID)
	if err != nil {
		var se *workspace.StatusError
		if preview && (errors.Is(err, workspace.ErrNotFound) || (errors.As(err, &se) && se.Code == http.StatusNotFound)) {
			return nil, errNoPreview
		}
		return nil, err
	}
	defer resp.Body.Close()

	declared := mediaType(resp.ContentType)
	if !allowedType(t.Type, preview, declared) {
		return nil, &corruptError{msg: fmt.Sprintf("the workspace sent a %s of type %q, which a %s task cannot have", what, declared, t.Type)}
	}

	dir := d.mediaDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &storageError{err}
	}
	tmp, err := os.CreateTemp(dir, "."+t.ID+".*.tmp")
	if err != nil {
		return nil, &storageError{err}
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var head []byte
	var n int64
	if !preview && declared == "image/png" {
		head, n, err = d.copyPNG(tmp, resp.Body, t)
	} else {
		head, n, err = copyMedia(tmp, resp.Body)
	}
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, &corruptError{msg: "the workspace sent an empty " + what}
	}
	if got := sniff(head); got != declared {
		return nil, notTheClaimedType(what, declared)
	}
	if err := tmp.Sync(); err != nil {
		return nil, &storageError{err}
	}
	if err := tmp.Close(); err != nil {
		return nil, &storageError{err}
	}
	name := t.ID + extByType[declared]
	if preview {
		name = t.ID + ".preview" + extByType[declared]
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return nil, &storageError{err}
	}
	keep = true
	if err := syncDir(dir); err != nil {
		removeQuietly(dir, name)
		return nil, &storageError{err}
	}
	return &storedMedia{name: name, contentType: declared}, nil
}

func notTheClaimedType(what, declared string) error {
	return &corruptError{msg: fmt.Sprintf("the %s's bytes are not the %s the workspace claimed", what, declared)}
}

// copyMedia copies body to f, keeping the first bytes for the type check. Read
// errors come back as they are (the download is retried); write errors as storageError.
func copyMedia(f *os.File, body io.Reader) (head []byte, n int64, err error) {
	buf := make([]byte, 64<<10)
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			if len(head) < 16 {
				head = append(head, buf[:min(k, 16-len(head))]...)
			}
			n += int64(k)
			if n > maxMediaBytes {
				return nil, n, &corruptError{msg: "the workspace sent a file larger than " + strconv.Itoa(maxMediaBytes>>30) + " GiB"}
			}
			if _, werr := f.Write(buf[:k]); werr != nil {
				return nil, n, &storageError{werr}
			}
		}
		if rerr == io.EOF {
			return head, n, nil
		}
		if rerr != nil {
			return nil, n, rerr
		}
	}
}

// copyPNG copies a PNG result from body to f through pngmeta.Embed, adding
// the task's `parameters` and `gooni` text chunks right after IHDR (and
// dropping any the workspace wrote under those keywords); every other chunk,
// and so the image data, is copied byte for byte. head and n are what
// copyMedia gives (the body's own first bytes, for the type check, and how
// many bytes were read from it). A body that is not a well-formed PNG (bad
// signature, CRC, truncated) is corruptError; read and write errors come
// back as copyMedia's do.
func (d *Dispatcher) copyPNG(f *os.File, body io.Reader, t *store.Task) (head []byte, n int64, err error) {
	chunks, err := pngmeta.Chunks(pngmeta.Settings{Model: t.Model, Mode: t.Mode, Prompt: t.Prompt,
		NegativePrompt: t.NegativePrompt, Params: t.Params, TaskID: t.ID})
	if err != nil {
		// params are always a JSON object in a stored task; never lose the result over it
		d.log.Warn("result stored without its settings", "task_id", t.ID, "err", err)
		return copyMedia(f, body)
	}
	for i := range chunks {
		// a PNG text holds no NUL; the gooni JSON escapes it, parameters gets U+FFFD
		chunks[i].Text = strings.ReplaceAll(chunks[i].Text, "\x00", "\uFFFD")
	}
	src := &mediaReader{r: body}
	dst := &mediaWriter{w: f}
	err = pngmeta.Embed(dst, src, chunks)
	var fe *pngmeta.FormatError
	switch {
	case src.tooLarge:
		return nil, src.n, &corruptError{msg: "the workspace sent a file larger than " + strconv.Itoa(maxMediaBytes>>30) + " GiB"}
	case src.err != nil:
		return nil, src.n, src.err
	case dst.err != nil:
		return nil, src.n, &storageError{dst.err}
	case errors.Is(err, pngmeta.ErrNotPNG) && src.n == 0:
		return nil, 0, nil // nothing came: fetchMedia says the result is empty
	case errors.Is(err, pngmeta.ErrNotPNG):
		return nil, src.n, notTheClaimedType("result", "image/png")
	case errors.As(err, &fe):
		return src.head, src.n, &corruptError{msg: "the result is not a well-formed PNG: " + strings.TrimPrefix(fe.Error(), "pngmeta: ")}
	case err != nil:
		return nil, src.n, &storageError{err}
	}
	return src.head, src.n, nil
}

// mediaReader counts what it reads, keeps the first 16 bytes, stops at
// maxMediaBytes, and remembers a read error so the caller can tell it from
// a format error.
type mediaReader struct {
	r        io.Reader
	n        int64
	head     []byte
	err      error
	tooLarge bool
}

func (m *mediaReader) Read(p []byte) (int, error) {
	if m.n >= maxMediaBytes {
		m.tooLarge = true
		return 0, errTooLarge
	}
	if rest := maxMediaBytes - m.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	k, err := m.r.Read(p)
	if len(m.head) < 16 {
		m.head = append(m.head, p[:min(k, 16-len(m.head))]...)
	}
	m.n += int64(k)
	if err != nil && err != io.EOF {
		m.err = err
	}
	return k, err
}

var errTooLarge = errors.New("dispatch: media over the size limit")

// mediaWriter remembers a write error (the server's own disk).
type mediaWriter struct {
	w   io.Writer
	err error
}

func (m *mediaWriter) Write(p []byte) (int, error) {
	k, err := m.w.Write(p)
	if err != nil {
		m.err = err
	}
	return k, err
}

func mediaType(header string) string {
	mt, _, err := mime.ParseMediaType(header)
	if err != nil {
		return ""
	}
	if mt == "image/jpg" {
		return "image/jpeg"
	}
	return mt
}

func allowedType(taskType string, preview bool, ct string) bool {
	switch ct {
	case "image/png", "image/jpeg", "image/webp":
		return preview || taskType == "image"
	case "video/mp4", "video/webm":
		return !preview && taskType == "video"
	}
	return false
}

// sniff names the media type the first bytes show, "" when none we serve.
func sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png"
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return "image/jpeg"
	case len(b) >= 12 && string(b[0:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "image/webp"
	case len(b) >= 8 && string(b[4:8]) == "ftyp":
		return "video/mp4"
	case bytes.HasPrefix(b, []byte{0x1A, 0x45, 0xDF, 0xA3}): // EBML, as WebM starts
		return "video/webm"
	}
	return ""
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func removeQuietly(dir, name string) {
	_ = os.Remove(filepath.Join(dir, name))
}

func encodeBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func itoa(n int) string { return strconv.Itoa(n) }

// removeStaleTemp deletes media temp files left by a crash mid-download; at
// start no download runs, and the tasks they belonged to are fetched again.
func (d *Dispatcher) removeStaleTemp() {
	matches, _ := filepath.Glob(filepath.Join(d.mediaDir(), ".*.tmp"))
	for _, m := range matches {
		if err := os.Remove(m); err == nil {
			d.log.Info("removed a partial media file left by a crash", "file", filepath.Base(m))
		}
	}
}

// CleanMedia removes what a crash can leave in media/: partial downloads
// and uploads (.*.tmp), and input images whose task row never committed
// (the file is renamed into place just before the row's COMMIT). It runs
// once, before anything writes media/: the server calls it before it
// listens, and Run calls it too (a second call does nothing).
func (d *Dispatcher) CleanMedia(ctx context.Context) {
	d.cleanOnce.Do(func() {
		d.removeStaleTemp()
		inputs, _ := filepath.Glob(filepath.Join(d.mediaDir(), "*.input.*"))
		for _, m := range inputs {
			id, _, _ := strings.Cut(filepath.Base(m), ".")
			if _, err := d.db.GetTask(ctx, id); errors.Is(err, store.ErrNotFound) {
				if os.Remove(m) == nil {
					d.log.Info("removed an input image whose task never committed", "file", filepath.Base(m))
				}
			}
		}
	})
}

// ErrProxyRefused means a task's media cannot be fetched from its workspace
// because the workspace is not (or no longer) a valid registry entry; nothing
// was sent. The wrapped text says why, without a credential.
var ErrProxyRefused = errors.New("dispatch: proxy target refused")

// ErrNotLive means a processing task's media could not be had from its
// workspace right now (no account yet, or the workspace could not be reached).
var ErrNotLive = errors.New("dispatch: media not available from the workspace")

// ErrUnusable means the workspace answered with media that is not what it
// claims or not a type Gooni serves (PNG, JPEG, WebP; MP4, WebM for a
// video's result): nothing of it is passed on.
var ErrUnusable = errors.New("dispatch: the workspace's media is not usable")

// LiveMedia is a processing task's result or preview streamed from its workspace.
type LiveMedia struct {
	Body        io.ReadCloser
	ContentType string // checked against the bytes and the task's type
	Length      int64  // -1 when unknown
}

// LiveMedia opens the result (or preview) of a task that is still on its
// workspace. The target is resolved only from the account registry and
// checked before any credential is opened. Errors: ErrProxyRefused (with the
// reason), ErrNotLive. The caller closes Body.
func (d *Dispatcher) LiveMedia(ctx context.Context, t *store.Task, preview bool) (*LiveMedia, error) {
	if t.AccountID == 0 {
		return nil, ErrNotLive
	}
	acc, err := d.db.GetAccount(ctx, t.AccountID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: account no longer registered", ErrProxyRefused)
	}
	if err != nil {
		return nil, err
	}
	c, err := d.Driver(ctx, acc)
	if err != nil {
		if errors.Is(err, workspace.ErrTargetInvalid) {
			return nil, fmt.Errorf("%w: invalid workspace target (account %d)", ErrProxyRefused, acc.ID)
		}
		return nil, ErrNotLive
	}
	get := c.Result
	if preview {
		get = c.Preview
	}
	m, err := get(ctx, t.ID)
	if err != nil {
		return nil, ErrNotLive
	}
	// The same allowlist and byte check as the copy into media/: a
	// workspace's claim (image/svg+xml with a script, video/html) never
	// reaches a browser.
	declared := mediaType(m.ContentType)
	head := make([]byte, 16)
	n, rerr := io.ReadFull(m.Body, head)
	head = head[:n]
	if (rerr != nil && !errors.Is(rerr, io.ErrUnexpectedEOF)) || !allowedType(t.Type, preview, declared) || sniff(head) != declared {
		m.Body.Close()
		return nil, ErrUnusable
	}
	body := struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), m.Body), m.Body}
	return &LiveMedia{Body: body, ContentType: declared, Length: m.Length}, nil
}

// readInput reads a task's input image from media/ (never through a
// symbolic link), at most MaxInputBytes.
func (d *Dispatcher) readInput(t *store.Task) ([]byte, error) {
	f, err := config.DataDir(d.cfg.DataDir).OpenMedia(t.InputPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInputBytes+1))
	if err == nil && len(b) > maxInputBytes {
		err = fmt.Errorf("input image of task %s is over %d bytes", t.ID, maxInputBytes)
	}
	return b, err
}

// maxInputBytes is the catalog's 10 MiB image limit: a larger file in media/
// was not written by the server.
const maxInputBytes = 10 << 20
