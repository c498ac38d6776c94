// Package audit is the one writer of audit events (CONTRACT section 9): it
// appends the row to the store's HMAC chain and writes the matching
// structured log line. Who acted travels in the context (WithActor), so the
// server, the dispatcher and the offline commands record events the same way.
package audit

import (
	"context"
	"log/slog"
	"maps"
	"sync/atomic"
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

// Writer appends audit events and logs each one. It applies the rule for
// repeatable denials (see IsRepeatable) before anything is written.
type Writer struct {
	db      *store.DB
	log     *slog.Logger
	now     func() time.Time
	repeats *repeats
	// onSuppressed is told of each repeat that wrote no row (for /metrics).
	onSuppressed atomic.Pointer[func(action string)]
}

// NewWriter returns a Writer on db; now nil means time.Now.
func NewWriter(db *store.DB, log *slog.Logger, now func() time.Time) *Writer {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Writer{db: db, log: log, now: now, repeats: newRepeats(RepeatKeys)}
}

// OnSuppressed sets fn to be called, with the action, for each repeated
// denial that wrote no row; the server counts them in /metrics. The last call wins.
func (w *Writer) OnSuppressed(fn func(action string)) { w.onSuppressed.Store(&fn) }

// Event builds, without storing it, the event the actor ctx carries would
// record now; a missing correlation id gets a fresh one.
func (w *Writer) Event(ctx context.Context, action, target, outcome string, details map[string]any) *store.AuditEvent {
	a := ActorFrom(ctx)
	if a.CorrelationID == "" {
		a.CorrelationID = store.NewID()
	}
	return &store.AuditEvent{
		Timestamp:     w.now().UTC(),
		Actor:         a.Name,
		Source:        a.Source,
		Action:        action,
		Target:        target,
		Outcome:       outcome,
		CorrelationID: a.CorrelationID,
		Details:       details,
	}
}

func attrsOf(e *store.AuditEvent) []any {
	attrs := []any{"audit", true, "actor", e.Actor, "source", e.Source, "action", e.Action, "target", e.Target,
		"outcome", e.Outcome, "timestamp", e.Timestamp.Format(time.RFC3339Nano), "correlation_id", e.CorrelationID}
	if len(e.Details) > 0 {
		attrs = append(attrs, "details", e.Details)
	}
	return attrs
}

// Logged writes the log line of an event a store write has committed (the
// line follows the commit, so the log never names an action that did not happen).
func (w *Writer) Logged(e *store.AuditEvent) {
	if e != nil {
		w.log.Info("audit event", attrsOf(e)...)
	}
}

// Record appends one event as the actor ctx carries and writes its log line.
// The row is written even when ctx is cancelled (an action that happened is
// recorded). A failed append is logged at error level and returned, so an
// admin action can fail closed (FR-023). A repeatable denial (IsRepeatable)
// within RepeatWindow of the one recorded for the same action and client
// writes nothing and returns nil; OnSuppressed counts it.
func (w *Writer) Record(ctx context.Context, action, target, outcome string, details map[string]any) error {
	var key repeatKey
	repeatable := IsRepeatable(action, outcome)
	if repeatable {
		key = repeatKey{action: action, source: sourceKey(ActorFrom(ctx).Source)}
		write, suppressed := w.repeats.admit(key, w.now())
		if !write {
			if fn := w.onSuppressed.Load(); fn != nil {
				(*fn)(action)
			}
			return nil
		}
		if suppressed > 0 {
			details = maps.Clone(details)
			if details == nil {
				details = map[string]any{}
			}
			details["repeats_suppressed"] = suppressed
		}
	}
	e := w.Event(ctx, action, target, outcome, details)
	if err := w.db.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		if repeatable {
			w.repeats.forget(key) // the next repeat tries again
		}
		w.log.Error("audit event not stored", append(attrsOf(e), "audit_write_error", err.Error())...)
		return err
	}
	w.Logged(e)
	return nil
}

// InTx prepares an event for a store write that appends it in its own
// transaction (store.AuditOf): build names the target and details from the
// row the write produced; the actor, source, correlation id and time come
// from ctx. Once the write returned nil, call logged for the log line. A nil
// Writer gives a nil builder (no event) and a logged that does nothing.
func InTx[T any](w *Writer, ctx context.Context, action, outcome string, build func(T) (target string, details map[string]any)) (ev store.AuditOf[T], logged func()) {
	return InTxOutcome(w, ctx, action, func(v T) (string, string, map[string]any) {
		target, details := build(v)
		return target, outcome, details
	})
}

// InTxOutcome is InTx for an action whose outcome depends on the row the
// write produced (a health check: success when the account is ready).
func InTxOutcome[T any](w *Writer, ctx context.Context, action string, build func(T) (target, outcome string, details map[string]any)) (ev store.AuditOf[T], logged func()) {
	if w == nil {
		return nil, func() {}
	}
	var e *store.AuditEvent
	ev = func(v T) *store.AuditEvent {
		target, outcome, details := build(v)
		e = w.Event(ctx, action, target, outcome, details)
		return e
	}
	return ev, func() {
		if e != nil {
			w.Logged(e)
		}
	}
}
