package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"time"

	"gooni/internal/taskid"

	"github.com/gorilla/mux"

	"gooni/internal/catalog"
	"gooni/server/apierr"
	"gooni/store"
)

type taskError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// TaskView is the task as clients see it (CONTRACT.md section 6).
type TaskView struct {
	TaskID        string          `json:"task_id"`
	Type          string          `json:"type"`
	Model         string          `json:"model"`
	Mode          string          `json:"mode"`
	Prompt        string          `json:"prompt"`
	NegativePrmpt string          `json:"negative_prompt,omitempty"`
	Params        json.RawMessage `json:"params"`
	Status        string          `json:"status"`
	Progress      int             `json:"progress"`
	QueuePosition *int            `json:"queue_position,omitempty"`
	// EtaSeconds is set on pending and processing views: an integer or
	// null (CONTRACT section 12); absent on finished ones.
	EtaSeconds  json.RawMessage `json:"eta_seconds,omitempty"`
	CreatedAt   *string         `json:"created_at"`
	StartedAt   *string         `json:"started_at"`
	CompletedAt *string         `json:"completed_at"`
	Error       *taskError      `json:"error,omitempty"`
	ResultURL   string          `json:"result_url"`
	PreviewURL  string          `json:"preview_url"`
}

func rfc3339(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

// view is t as clients see it; base is the base path its URLs carry
// (Server.basePath, CONTRACT section 17).
func view(t *store.Task, base string) *TaskView {
	v := &TaskView{
		TaskID: t.ID, Type: t.Type, Model: t.Model, Mode: t.Mode, Prompt: t.Prompt, NegativePrmpt: t.NegativePrompt,
		Params: t.Params, Status: t.Status, Progress: t.Progress,
		CreatedAt: rfc3339(t.CreatedAt), StartedAt: rfc3339(t.StartedAt), CompletedAt: rfc3339(t.CompletedAt),
		ResultURL: base + "/results/" + t.ID, PreviewURL: base + "/preview/" + t.ID,
	}
	if len(v.Params) == 0 {
		v.Params = json.RawMessage("{}")
	}
	if t.Status == store.StatusFailed {
		v.Error = &taskError{Code: t.ErrorCode, Message: t.ErrorMessage}
	}
	if t.Status != store.StatusDone && v.Progress >= 100 {
		v.Progress = 99
	}
	return v
}

// taskView loads a task's view, with its queue position and ETA while open.
func (s *Server) taskView(r *http.Request, id string) (*TaskView, error) {
	t, err := s.loadTask(r, id)
	if err != nil {
		return nil, err
	}
	return s.liveView(r.Context(), t)
}

// liveView is view plus what is computed, not stored: the queue position
// of a pending task and the eta_seconds of a pending or processing one.
func (s *Server) liveView(ctx context.Context, t *store.Task) (*TaskView, error) {
	v := view(t, s.basePath())
	if t.Status == store.StatusPending {
		pos := s.cfg.DB.QueuePositionOf(t)
		v.QueuePosition = &pos
	}
	if t.Status == store.StatusPending || t.Status == store.StatusProcessing {
		eta, err := s.eta.estimate(ctx, t)
		if err != nil {
			return nil, apierr.Internal(err)
		}
		v.EtaSeconds = json.RawMessage("null")
		if eta >= 0 {
			v.EtaSeconds = json.RawMessage(strconv.Itoa(eta))
		}
	}
	return v, nil
}

// taskErr maps a store error about a task to its contract code; the one
// place for this resource.
func taskErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return apierr.TaskNotFound()
	case errors.Is(err, store.ErrQueueFull), errors.Is(err, store.ErrInputQuota):
		return apierr.QueueFull()
	default:
		return apierr.Internal(err)
	}
}

// loadTask checks the id's shape before anything else touches it.
func (s *Server) loadTask(r *http.Request, id string) (*store.Task, error) {
	if !taskid.Valid(id) {
		return nil, apierr.TaskNotFound()
	}
	t, err := s.cfg.DB.GetTask(r.Context(), id)
	if err != nil {
		return nil, taskErr(err)
	}
	return t, nil
}

// generateAccepted is the 202 answer of POST /generate: the first task's
// fields, and with them every task of the batch (CONTRACT section 12).
type generateAccepted struct {
	TaskID     string         `json:"task_id"`
	Status     string         `json:"status"`
	StatusURL  string         `json:"status_url"`
	ResultURL  string         `json:"result_url"`
	PreviewURL string         `json:"preview_url"`
	TaskIDs    []string       `json:"task_ids"`
	Tasks      []acceptedTask `json:"tasks"`
}

// acceptedTask is one task of a batch in the 202 answer.
type acceptedTask struct {
	TaskID     string `json:"task_id"`
	Status     string `json:"status"`
	StatusURL  string `json:"status_url"`
	ResultURL  string `json:"result_url"`
	PreviewURL string `json:"preview_url"`
}

// accepted is the 202 answer for ids; its URLs carry the base path
// (CONTRACT section 17).
func accepted(ids []string, basePath string) generateAccepted {
	a := generateAccepted{TaskIDs: ids, Tasks: make([]acceptedTask, len(ids))}
	for i, id := range ids {
		a.Tasks[i] = acceptedTask{TaskID: id, Status: store.StatusPending, StatusURL: basePath + "/status/" + id,
			ResultURL: basePath + "/results/" + id, PreviewURL: basePath + "/preview/" + id}
	}
	f := a.Tasks[0]
	a.TaskID, a.Status, a.StatusURL, a.ResultURL, a.PreviewURL = f.TaskID, f.Status, f.StatusURL, f.ResultURL, f.PreviewURL
	return a
}

// handleGenerate validates against the catalog and answers 202 only after
// the task rows have committed. An i2v image is decoded straight from the
// body's buffer into a temp file in media/, checked whole, and renamed to
// media/<id>.input.<ext> before the rows commit (each task of a batch gets
// its own file, a hard link where the file system allows). A seed of -1 is
// drawn before the commit; a batch's seeds count up from it. With an
// Idempotency-Key, the key commits with the tasks, and the same key with
// the same body later gets the first answer again.
func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) error {
	body, release, err := s.readGenerateBody(w, r)
	if err != nil {
		return err
	}
	defer release()
	key, hasKey, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var bodyHash []byte
	if hasKey {
		sum := sha256.Sum256(body)
		bodyHash = sum[:]
		if done, err := s.replay(w, r, key, bodyHash); done || err != nil {
			return err
		}
	}
	req, err := catalog.ParseGenerate(body)
	if err != nil {
		return generateError(err)
	}
	sink := &lazyInput{s: s, r: r, holdsSlot: r.ContentLength < 0 || r.ContentLength > largeBody}
	defer sink.discard()
	v, err := s.cfg.Catalog.ValidateInto(req, sink)
	if err != nil {
		return generateError(err)
	}
	ready, err := s.cfg.DB.HasReadyAccountFor(r.Context(), v.ModelID)
	if err != nil {
		return apierr.Internal(err)
	}
	if !ready {
		return apierr.NoWorkersFor(v.ModelID)
	}
	count := max(req.Count, 1)
	params, err := batchParams(v, count)
	if err != nil {
		return apierr.Internal(err)
	}
	tasks := make([]*store.Task, count)
	ids := make([]string, count)
	for i := range tasks {
		tasks[i] = &store.Task{
			ID: store.NewID(), Type: v.Type, Model: v.ModelID, Mode: v.Mode, Prompt: v.Prompt,
			NegativePrompt: v.NegativePrompt, Params: params[i], Status: store.StatusPending,
		}
		ids[i] = tasks[i].ID
	}
	var kept []string // input files in media/, removed again if the tasks do not commit
	removeKept := func() {
		for _, rel := range kept {
			if p, perr := s.dataDir().MediaPath(rel); perr == nil {
				os.Remove(p)
			}
		}
	}
	if v.ImageBytes > 0 {
		media := s.dataDir().Media()
		for i, t := range tasks {
			t.InputPath, t.InputType, t.InputBytes = store.InputPath(t.ID, v.ImageType), v.ImageType, v.ImageBytes
			if i == 0 {
				err = sink.in.keep(media, path.Base(t.InputPath))
			} else {
				err = linkOrCopy(filepath.Join(media, path.Base(tasks[0].InputPath)), filepath.Join(media, path.Base(t.InputPath)))
			}
			if err != nil {
				removeKept()
				return apierr.StorageFailed().With(err)
			}
			kept = append(kept, t.InputPath)
		}
		if count > 1 {
			if err := syncDir(media); err != nil {
				removeKept()
				return apierr.StorageFailed().With(err)
			}
		}
	}
	answer := accepted(ids, s.basePath())
	opts := store.CreateOptions{QueueMax: s.cfg.QueueMax, InputQuota: s.cfg.InputQuota}
	if hasKey {
		b, _ := json.Marshal(answer)
		opts.Idempotency = &store.IdempotencyRecord{Key: key, BodyHash: bodyHash, Response: b}
	}
	if err := s.cfg.DB.CreateTasks(r.Context(), tasks, opts); err != nil {
		removeKept()
		if errors.Is(err, store.ErrIdempotencyKeyUsed) {
			// The same key committed meanwhile (a retry racing its original).
			if done, err := s.replay(w, r, key, bodyHash); done || err != nil {
				return err
			}
		}
		return taskErr(err)
	}
	if s.cfg.Dispatcher != nil {
		s.cfg.Dispatcher.Wake()
	}
	s.log.Info("task accepted", "task_id", ids[0], "count", count, "type", v.Type, "model", v.ModelID, "mode", v.Mode,
		"actor", actorOf(r.Context()), "correlation_id", correlationID(r.Context()))
	writeJSON(w, http.StatusAccepted, answer)
	return nil
}

// idempotencyKey reads the Idempotency-Key header: 1-255 printable ASCII
// characters, given once.
func idempotencyKey(r *http.Request) (string, bool, error) {
	vals, ok := r.Header[http.CanonicalHeaderKey("Idempotency-Key")]
	if !ok {
		return "", false, nil
	}
	bad := apierr.Validation("Idempotency-Key", "Idempotency-Key must be 1 to 255 printable ASCII characters, given once")
	if len(vals) != 1 || len(vals[0]) == 0 || len(vals[0]) > 255 {
		return "", false, bad
	}
	for i := 0; i < len(vals[0]); i++ {
		if c := vals[0][i]; c < 0x20 || c > 0x7e {
			return "", false, bad
		}
	}
	return vals[0], true, nil
}

// replay answers a stored Idempotency-Key: the first answer again when the
// body is the same, idempotency_conflict when it is not; done is false when
// the key is not stored (or older than 24 h).
func (s *Server) replay(w http.ResponseWriter, r *http.Request, key string, bodyHash []byte) (done bool, err error) {
	rec, err := s.cfg.DB.IdempotentAnswer(r.Context(), key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return true, apierr.Internal(err)
	}
	if !rec.SameBody(bodyHash) {
		return true, apierr.IdempotencyConflict()
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Idempotent-Replayed", "true")
	w.WriteHeader(http.StatusAccepted)
	w.Write(append(rec.Response, '\n'))
	s.log.Info("generate replayed", "correlation_id", correlationID(r.Context()), "actor", actorOf(r.Context()))
	return true, nil
}

// maxSeed is the largest seed (CONTRACT section 12: seeds are in [0, 2^31-1]).
const maxSeed = 2147483647

// batchParams returns the params JSON of each of count tasks: a catalog
// param named "seed" that is -1 becomes a random seed s in [0, maxSeed],
// and task i gets s+i, wrapping from maxSeed to 0. A model without a seed
// param gets the same params for every task.
func batchParams(v *catalog.Validated, count int) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, count)
	seed, hasSeed := v.Params["seed"].(int64)
	if !hasSeed {
		for i := range out {
			out[i] = v.ParamsJSON
		}
		return out, nil
	}
	if seed == -1 {
		n, err := rand.Int(rand.Reader, big.NewInt(maxSeed+1))
		if err != nil {
			return nil, err
		}
		seed = n.Int64()
	}
	p := make(map[string]any, len(v.Params))
	for k, val := range v.Params {
		p[k] = val
	}
	for i := range out {
		p["seed"] = (seed + int64(i)) % (maxSeed + 1)
		b, err := json.Marshal(p) // keys sorted, as ParamsJSON
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// linkOrCopy makes dst a durable copy of src: a hard link when the file
// system allows, else a copy that is synced.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}

// lazyInput is the catalog's image sink: a temp file in media/ made on the
// first byte, so a request without an image touches no file. It is also the
// catalog's DecodeGate: decoding an image whose pixels take more than
// largeDecode needs an upload slot, like a large body (a small PNG can
// decode to hundreds of MiB).
type lazyInput struct {
	s         *Server
	r         *http.Request
	in        *inputFile
	err       error
	holdsSlot bool   // the request's body already took an upload slot
	release   func() // the slot BeforeDecode took, if any
}

// largeDecode is the decoded size from which an input image's decode counts
// as a large upload (a 1448x1448 RGBA picture; the models take at most
// 2048x2048 and usually far less).
const largeDecode = 8 << 20

// BeforeDecode takes an upload slot for a large decode, unless the request
// already holds one; server_busy when none frees in time.
func (l *lazyInput) BeforeDecode(pixelBytes int64) error {
	if pixelBytes <= largeDecode || l.holdsSlot || l.release != nil {
		return nil
	}
	if !l.s.uploads.acquire(l.r.Context()) {
		return apierr.ServerBusy("too many large uploads at once; try again shortly", max(1, int(l.s.uploads.wait/time.Second)))
	}
	l.release = l.s.uploads.release
	return nil
}

func (l *lazyInput) Write(p []byte) (int, error) {
	if l.in == nil && l.err == nil {
		l.in, l.err = l.s.newInputFile()
	}
	if l.err != nil {
		return 0, l.err
	}
	return l.in.f.Write(p)
}

func (l *lazyInput) ReadAt(p []byte, off int64) (int, error) {
	if l.in == nil {
		return 0, io.EOF
	}
	return l.in.f.ReadAt(p, off)
}

// discard removes the temp file unless it was kept, and gives back the
// decode's upload slot.
func (l *lazyInput) discard() {
	l.in.discard()
	if l.release != nil {
		l.release()
		l.release = nil
	}
}

func generateError(err error) error {
	var fe *catalog.FieldError
	var ae *apierr.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &fe):
		return apierr.Validation(fe.Field, fe.Message)
	case errors.Is(err, catalog.ErrImageStorage):
		return apierr.StorageFailed().With(err)
	case errors.Is(err, catalog.ErrTooLarge):
		return apierr.PayloadTooLarge(maxGenerateBody)
	case errors.Is(err, catalog.ErrInvalidJSON):
		return apierr.InvalidJSON(err.Error())
	}
	return apierr.InvalidJSON("the body is not the JSON this route takes")
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) error {
	v, err := s.taskView(r, mux.Vars(r)["task_id"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
