// Package apierr holds the one error type the HTTP surface answers with.
//
// Every non-2xx response carries one of these codes (CONTRACT.md section 2).
// Handlers return *Error; exactly one writer (server.writeError) turns it into JSON.
package apierr

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a contract error: a stable code, its HTTP status, a message safe to
// show a person, optional details, and the wrapped cause (logged, never sent).
type Error struct {
	Code    string
	Status  int
	Message string
	Details map[string]any
	Err     error
	// RetryAfter, in whole seconds, is sent as Retry-After when > 0.
	RetryAfter int
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// With returns a copy carrying cause as the wrapped error.
func (e *Error) With(cause error) *Error {
	c := *e
	c.Err = cause
	return &c
}

// Field returns a copy with details.field set.
func (e *Error) Field(name string) *Error {
	c := *e
	c.Details = map[string]any{"field": name}
	return &c
}

// From finds an *Error in err's chain, or wraps err as internal.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Internal(err)
}

func newErr(code string, status int, msg string) *Error {
	return &Error{Code: code, Status: status, Message: msg}
}

// Constructors, one per contract code.

func InvalidJSON(msg string) *Error { return newErr("invalid_json", http.StatusBadRequest, msg) }
func Validation(field, msg string) *Error {
	e := newErr("validation_failed", http.StatusBadRequest, msg)
	if field != "" {
		e.Details = map[string]any{"field": field}
	}
	return e
}
func PayloadTooLarge(limit int64) *Error {
	return newErr("payload_too_large", http.StatusRequestEntityTooLarge,
		fmt.Sprintf("request body is larger than %d bytes", limit))
}
func InvalidAPIKey() *Error {
	return newErr("invalid_api_key", http.StatusUnauthorized, "the API key is not valid")
}
func SessionRequired() *Error {
	return newErr("session_required", http.StatusUnauthorized, "sign in first: no session or API key was given")
}
func AdminSessionRequired() *Error {
	return newErr("session_required", http.StatusUnauthorized, "an admin session is required: sign in as admin first")
}
func SessionExpired() *Error {
	return newErr("session_expired", http.StatusUnauthorized, "the session has expired or was revoked; start a new one")
}
func InvalidAdminKey() *Error {
	return newErr("invalid_admin_key", http.StatusUnauthorized, "the admin key is missing or wrong")
}
func RateLimited(retryAfter int) *Error {
	e := newErr("rate_limited", http.StatusTooManyRequests, "too many requests; try again later")
	e.RetryAfter = retryAfter
	return e
}
func CORSBlocked() *Error {
	return newErr("cors_origin_blocked", http.StatusForbidden, "this origin is not allowed")
}
func NotFound() *Error { return newErr("not_found", http.StatusNotFound, "no such route") }
func MethodNotAllowed() *Error {
	return newErr("method_not_allowed", http.StatusMethodNotAllowed, "this route does not take that method")
}
func TaskNotFound() *Error {
	return newErr("task_not_found", http.StatusNotFound, "no task with that id")
}
func AccountNotFound() *Error {
	return newErr("account_not_found", http.StatusNotFound, "no worker account with that id")
}
func ResultNotReady() *Error {
	return newErr("result_not_ready", http.StatusConflict, "the task has not finished yet")
}
func TaskFailed(reason string) *Error {
	return newErr("task_failed", http.StatusConflict, reason)
}
func TaskNotDone() *Error {
	return newErr("task_not_done", http.StatusConflict, "only finished tasks can be deleted from the gallery")
}
func ResultGone() *Error {
	return newErr("result_gone", http.StatusGone, "the task finished but its file is no longer stored")
}
func NoWorkers() *Error {
	return newErr("no_workers", http.StatusServiceUnavailable,
		"no worker is ready to take the task; an admin must add or health-check a worker account")
}

// NoWorkersFor is no_workers for a model no ready account serves (CONTRACT
// section 14): the message names the model.
func NoWorkersFor(model string) *Error {
	return newErr("no_workers", http.StatusServiceUnavailable,
		"no ready worker serves the model "+model+"; an admin must add or health-check a workspace that has it")
}
func QueueFull() *Error {
	return newErr("queue_full", http.StatusServiceUnavailable, "the queue is full; try again when some tasks have finished")
}
func ProxyTargetInvalid() *Error {
	return newErr("proxy_target_invalid", http.StatusBadGateway, "the task's workspace is not a valid registered target")
}
func WorkerUnavailable() *Error {
	return newErr("worker_unavailable", http.StatusBadGateway, "the workspace did not answer usably")
}
func StorageFailed() *Error {
	return newErr("storage_failed", http.StatusInsufficientStorage, "media could not be written or read")
}
func AuthUnavailable() *Error {
	return newErr("auth_unavailable", http.StatusServiceUnavailable, "authentication is unavailable right now; try again later")
}
func Internal(cause error) *Error {
	e := newErr("internal", http.StatusInternalServerError, "something went wrong on the server")
	e.Err = cause
	return e
}

// Version 2 codes (CONTRACT "Version 2 additions").

func TaskFinished() *Error {
	return newErr("task_finished", http.StatusConflict, "the task has already finished")
}
func IdempotencyConflict() *Error {
	return newErr("idempotency_conflict", http.StatusUnprocessableEntity,
		"this Idempotency-Key was already used with a different request body")
}
func InputNotFound() *Error {
	return newErr("input_not_found", http.StatusNotFound, "this task has no input image")
}
func HostNotAllowed() *Error {
	return newErr("host_not_allowed", http.StatusMisdirectedRequest, "this server does not answer for that host name")
}

// ServerBusy is a server-wide limit of section 18, with Retry-After.
func ServerBusy(msg string, retryAfter int) *Error {
	e := newErr("server_busy", http.StatusServiceUnavailable, msg)
	e.RetryAfter = retryAfter
	return e
}
func InviteInvalid() *Error {
	return newErr("invite_invalid", http.StatusUnauthorized, "this sign-in link is unknown, expired, revoked or used up")
}

// InviteNotFound is not_found for DELETE /admin/invites/{id} of an invite
// that does not exist (the contract has no code of its own for it).
func InviteNotFound() *Error {
	return newErr("not_found", http.StatusNotFound, "no invite with that id")
}
