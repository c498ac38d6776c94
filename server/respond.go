package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"gooni/internal/catalog"
	"gooni/server/apierr"
)

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// h adapts a handler that returns an error to http.Handler; the error goes
// to writeError, the one place that shapes error responses.
func (s *Server) h(fn handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

type errorBody struct {
	Error errorPayload `json:"error"`
}

type errorPayload struct {
	Code          string         `json:"code"`
	Message       string         `json:"message"`
	CorrelationID string         `json:"correlation_id"`
	Details       map[string]any `json:"details,omitempty"`
}

// writeError is the one error writer: it decides the JSON shape, the status,
// Retry-After, and what gets logged (the cause, never sent to the client).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := apierr.From(err)
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody is listening for an answer.
		return
	}
	cid := correlationID(r.Context())
	level := slog.LevelInfo
	switch {
	case e.Status == http.StatusInternalServerError || (e.Status >= 500 && e.Err != nil):
		level = slog.LevelError
	case e.Status >= 500:
		// Back-pressure with no fault behind it (queue_full, no_workers, a
		// stream or upload limit): the server is working as designed, and
		// a client retrying on it must not raise an operator's Error alarm.
		level = slog.LevelWarn
	case e.Status == http.StatusNotFound || e.Status == http.StatusMethodNotAllowed:
		// A miss (an unknown id or route) is the answer of a lookup, not
		// an event: at Info, anyone probing ids or paths would write a log
		// line per request (it was 12 % of the 404's cost in-process).
		level = slog.LevelDebug
	}
	if s.log.Enabled(r.Context(), level) {
		attrs := []any{"code", e.Code, "status", e.Status, "method", r.Method, "path", safePath(r), "correlation_id", cid}
		if e.Err != nil {
			attrs = append(attrs, "cause", e.Err.Error())
		}
		s.log.Log(r.Context(), level, "request failed", attrs...)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(w, e.Status, errorBody{Error: errorPayload{Code: e.Code, Message: e.Message, CorrelationID: cid, Details: e.Details}})
}

// safePath is the request path without its query (which may hold api_key)
// and without an invite token (which signs people in).
func safePath(r *http.Request) string {
	p := r.URL.EscapedPath()
	if strings.HasPrefix(p, "/auth/invite/") {
		p = "/auth/invite/[token]"
	}
	if len(p) > 200 {
		p = p[:200] + "..."
	}
	return p
}

// jsonBuffers hold answers while they are encoded; one answer's buffer is
// reused by a later one (no allocation and copy per answer), unless it grew
// past maxPooledJSON.
var jsonBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledJSON = 64 << 10

var (
	jsonContentType = headerValue("application/json; charset=utf-8")
	noStore         = headerValue("no-store")
)

// writeJSON answers v as JSON (json.Marshal's bytes and a newline).
func writeJSON(w http.ResponseWriter, status int, v any) {
	buf := jsonBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledJSON {
			jsonBuffers.Put(buf)
		}
	}()
	// Encode writes what Marshal returns, then a newline; nothing on error.
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"code":"internal","message":"something went wrong on the server","correlation_id":""}}` + "\n")
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	delete(h, "Content-Length")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// decodeJSON reads one JSON object of at most limit bytes into dst, refusing
// unknown fields (validation_failed naming the field) and trailing data.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any, limit int64) error {
	if r.ContentLength > limit {
		return apierr.PayloadTooLarge(limit)
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err, limit)
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apierr.PayloadTooLarge(limit)
		}
		return apierr.InvalidJSON("the body must hold exactly one JSON object")
	}
	return nil
}

func jsonError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return apierr.PayloadTooLarge(limit)
	case errors.Is(err, io.EOF):
		return apierr.InvalidJSON("the body is empty; a JSON object is required")
	case errors.As(err, &ute):
		field := ute.Field
		if field == "" {
			return apierr.InvalidJSON("the body must be a JSON object")
		}
		kind := jsonKind(ute.Type.Kind().String())
		if strings.HasPrefix(ute.Value, "number") && kind == "a whole number" {
			kind += " in range" // 1.5, or 1e100: a number, but not one this field holds
		}
		return apierr.Validation(field, fmt.Sprintf("%s must be %s", field, kind))
	case errors.As(err, &se):
		return apierr.InvalidJSON(fmt.Sprintf("the body is not valid JSON (at byte %d)", se.Offset))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		e := catalog.UnknownField("", name, "field")
		return apierr.Validation(e.Field, e.Message)
	default:
		return apierr.InvalidJSON("the body is not the JSON this route takes")
	}
}

// jsonKind names a Go kind as JSON calls it, with its article ("an object").
func jsonKind(k string) string {
	switch k {
	case "int", "int64", "int32", "uint":
		return "a whole number"
	case "float64":
		return "a number"
	case "map", "struct":
		return "an object"
	case "slice":
		return "a list"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	}
	return "a " + k
}
