// Package audit is the one writer of audit events (CONTRACT section 9): it
// appends the row to the store's HMAC chain and writes the matching
// structured log line. Who acted travels in the context (WithActor), so the
// server, the dispatcher and the offline commands record events the same way.
package audit

import (
	"context"
	"log/slog"
	"time"

	"gooni/store"
)

// Actor is who asked for an action: Name is admin:<session prefix>,
// user:<session prefix>, api_key, anonymous, system or admin:cli; Source is
// the client IP ("local" for offline commands, empty for the system).
type Actor struct {
	Name          string
	Source        string
	CorrelationID string
}

// System is the actor of what the appliance does on its own.
const System = "system"

type actorKey struct{}

// WithActor returns ctx carrying a; background work started from a request
// keeps it, so the event written when that work ends names who asked.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor ctx carries; without one it is System.
func ActorFrom(ctx context.Context) Actor {
	a, _ := ctx.Value(actorKey{}).(Actor)
	if a.Name == "" {
		a.Name = System
	}
	return a
}

// Writer appends audit events and logs each one.
type Writer struct {
	db  *store.DB
	log *slog.Logger
	now func() time.Time
}

// NewWriter returns a Writer on db; now nil means time.Now.
func NewWriter(db *store.DB, log *slog.Logger, now func() time.Time) *Writer {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Writer{db: db, log: log, now: now}
}

// Record appends one event as the actor ctx carries and writes its log line.
// The row is written even when ctx is cancelled (an action that happened is
// recorded). A failed append is logged at error level and returned, so an
// admin action can fail closed (FR-023).
func (w *Writer) Record(ctx context.Context, action, target, outcome string, details map[string]any) error {
	a := ActorFrom(ctx)
	if a.CorrelationID == "" {
		a.CorrelationID = store.NewID()
	}
	e := &store.AuditEvent{
		Timestamp:     w.now().UTC(),
		Actor:         a.Name,
		Source:        a.Source,
		Action:        action,
		Target:        target,
		Outcome:       outcome,
		CorrelationID: a.CorrelationID,
		Details:       details,
	}
	err := w.db.AppendAudit(context.WithoutCancel(ctx), e)
	attrs := []any{"audit", true, "actor", e.Actor, "source", e.Source, "action", e.Action, "target", e.Target,
		"outcome", e.Outcome, "timestamp", e.Timestamp.Format(time.RFC3339Nano), "correlation_id", e.CorrelationID}
	if len(e.Details) > 0 {
		attrs = append(attrs, "details", e.Details)
	}
	if err != nil {
		w.log.Error("audit event not stored", append(attrs, "audit_write_error", err.Error())...)
		return err
	}
	w.log.Info("audit event", attrs...)
	return nil
}
