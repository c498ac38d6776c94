package server

import (
	"encoding/json"
	"errors"
	"gooni/internal/taskid"
	"io"
	"net/http"
	"os"
	"path"
	"time"

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
	CreatedAt     *string         `json:"created_at"`
	StartedAt     *string         `json:"started_at"`
	CompletedAt   *string         `json:"completed_at"`
	Error         *taskError      `json:"error,omitempty"`
	ResultURL     string          `json:"result_url"`
	PreviewURL    string          `json:"preview_url"`
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

// taskView loads a task's view, with its queue position while pending.
func (s *Server) taskView(r *http.Request, id string) (*TaskView, error) {
	t, err := s.loadTask(r, id)
	if err != nil {
		return nil, err
	}
	v := view(t, s.basePath())
	if t.Status == store.StatusPending {
		pos, err := s.cfg.DB.QueuePosition(r.Context(), id)
		if err != nil {
			return nil, apierr.Internal(err)
		}
		v.QueuePosition = &pos
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

type generateAccepted struct {
	TaskID     string `json:"task_id"`
	Status     string `json:"status"`
	StatusURL  string `json:"status_url"`
	ResultURL  string `json:"result_url"`
	PreviewURL string `json:"preview_url"`
}

// handleGenerate validates against the catalog and answers 202 only after
// the task row has committed. An i2v image is decoded straight from the
// body's buffer into a temp file in media/, checked whole, and renamed to
// media/<id>.input.<ext> before the row commits.
func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) error {
	body, release, err := s.readGenerateBody(w, r)
	if err != nil {
		return err
	}
	defer release()
	req, err := catalog.ParseGenerate(body)
	if err != nil {
		return generateError(err)
	}
	sink := &lazyInput{s: s}
	defer sink.discard()
	v, err := s.cfg.Catalog.ValidateInto(req, sink)
	if err != nil {
		return generateError(err)
	}
	ready, err := s.anyReadyAccount(r)
	if err != nil {
		return err
	}
	if !ready {
		return apierr.NoWorkers()
	}
	t := &store.Task{
		ID: store.NewID(), Type: v.Type, Model: v.ModelID, Mode: v.Mode, Prompt: v.Prompt,
		NegativePrompt: v.NegativePrompt, Params: v.ParamsJSON, Status: store.StatusPending,
	}
	if v.ImageBytes > 0 {
		t.InputPath, t.InputType, t.InputBytes = store.InputPath(t.ID, v.ImageType), v.ImageType, v.ImageBytes
		if err := sink.in.keep(s.dataDir().Media(), path.Base(t.InputPath)); err != nil {
			return apierr.StorageFailed().With(err)
		}
	}
	opts := store.CreateOptions{QueueMax: s.cfg.QueueMax, InputQuota: s.cfg.InputQuota}
	if err := s.cfg.DB.CreateTask(r.Context(), t, opts); err != nil {
		if t.InputPath != "" {
			if p, perr := s.dataDir().MediaPath(t.InputPath); perr == nil {
				os.Remove(p)
			}
		}
		return taskErr(err)
	}
	if s.cfg.Dispatcher != nil {
		s.cfg.Dispatcher.Wake()
	}
	s.log.Info("task accepted", "task_id", t.ID, "type", t.Type, "model", t.Model, "mode", t.Mode,
		"actor", actorOf(r.Context()), "correlation_id", correlationID(r.Context()))
	writeJSON(w, http.StatusAccepted, generateAccepted{
		TaskID: t.ID, Status: store.StatusPending, StatusURL: s.basePath() + "/status/" + t.ID,
		ResultURL: s.basePath() + "/results/" + t.ID, PreviewURL: s.basePath() + "/preview/" + t.ID,
	})
	return nil
}

// lazyInput is the catalog's image sink: a temp file in media/ made on the
// first byte, so a request without an image touches no file.
type lazyInput struct {
	s   *Server
	in  *inputFile
	err error
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

func (l *lazyInput) discard() { l.in.discard() }

func generateError(err error) error {
	var fe *catalog.FieldError
	switch {
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

// anyReadyAccount asks one EXISTS query (listing every account per submit
// was the submit path's second cost after the queue count).
func (s *Server) anyReadyAccount(r *http.Request) (bool, error) {
	ok, err := s.cfg.DB.HasReadyAccount(r.Context())
	if err != nil {
		return false, apierr.Internal(err)
	}
	return ok, nil
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) error {
	v, err := s.taskView(r, mux.Vars(r)["task_id"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
