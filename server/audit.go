package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"gooni/internal/dispatch"
	"gooni/server/apierr"
	"gooni/store"
)

func contextWithoutCancel(r *http.Request) context.Context { return context.WithoutCancel(r.Context()) }

func isDeployRunning(err error) bool { return errors.Is(err, dispatch.ErrDeployRunning) }

// AuditView is one audit event as admins read it (CONTRACT.md section 9).
type AuditView struct {
	ID            int64  `json:"id"`
	Timestamp     string `json:"timestamp"`
	Actor         string `json:"actor"`
	Source        string `json:"source"`
	Action        string `json:"action"`
	Target        string `json:"target"`
	Outcome       string `json:"outcome"`
	CorrelationID string `json:"correlation_id"`
	// Details is the event's details object, or the stored text when a row
	// holds something that is not a JSON object.
	Details any `json:"details"`
}

func auditView(e *store.AuditEvent) *AuditView {
	var d any = e.Details
	switch {
	case e.Details == nil && e.DetailsText != "":
		d = e.DetailsText
	case e.Details == nil:
		d = map[string]any{}
	}
	return &AuditView{ID: e.ID, Timestamp: e.Timestamp.UTC().Format(time.RFC3339Nano), Actor: e.Actor, Source: e.Source,
		Action: e.Action, Target: e.Target, Outcome: e.Outcome, CorrelationID: e.CorrelationID, Details: d}
}

// handleLogs lists audit events newest first, with a cursor and filters.
func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.AuditFilter{Limit: 100, Action: q.Get("action"), Outcome: q.Get("outcome")}
	if v, ok := q["limit"]; ok {
		n, err := parseIntParam(v, 1, 500)
		if err != nil {
			return apierr.Validation("limit", "limit must be a whole number from 1 to 500")
		}
		f.Limit = n
	}
	if c := q.Get("cursor"); c != "" {
		n, err := strconv.ParseInt(c, 10, 64)
		if err != nil || n <= 0 {
			return apierr.Validation("cursor", "cursor is not one this server gave out")
		}
		f.Cursor = n
	}
	if len(f.Action) > 64 {
		return apierr.Validation("action", "action filter is too long")
	}
	switch f.Outcome {
	case "", "success", "failure", "denied":
	default:
		return apierr.Validation("outcome", "outcome must be success, failure or denied")
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return apierr.Validation("since", "since must be an RFC 3339 time like 2026-01-02T15:04:05Z")
		}
		f.Since = t
	}
	items, next, err := s.cfg.DB.ListAudit(r.Context(), f)
	if err != nil {
		return apierr.Internal(err)
	}
	out := struct {
		Items      []*AuditView `json:"items"`
		NextCursor *string      `json:"next_cursor"`
	}{Items: make([]*AuditView, 0, len(items))}
	for _, e := range items {
		out.Items = append(out.Items, auditView(e))
	}
	if next > 0 {
		c := strconv.FormatInt(next, 10)
		out.NextCursor = &c
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleLogsVerify checks the audit chain against its anchor:
// {"ok","checked","first_bad_id"} plus, when not ok, "reason" (a store.Audit*
// code); first_bad_id is null when ok or when no one row is to blame.
func (s *Server) handleLogsVerify(w http.ResponseWriter, r *http.Request) error {
	v, err := s.cfg.DB.VerifyAudit(r.Context())
	if err != nil {
		return apierr.Internal(err)
	}
	out := struct {
		OK         bool    `json:"ok"`
		Checked    int     `json:"checked"`
		FirstBadID *int64  `json:"first_bad_id"`
		Reason     *string `json:"reason,omitempty"`
	}{OK: v.OK, Checked: v.Checked}
	if v.FirstBadID != 0 {
		id := v.FirstBadID
		out.FirstBadID = &id
	}
	if v.Reason != "" {
		reason := v.Reason
		out.Reason = &reason
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
