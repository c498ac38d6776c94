package server

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"gooni/internal/audit"
	"gooni/internal/secrets"
	"gooni/server/apierr"
	"gooni/store"
)

// Invite bounds (CONTRACT section 16).
const (
	defaultInviteTTL = 72 * time.Hour
	maxInviteTTL     = 720 * time.Hour
	minInviteTTL     = time.Minute
	// maxInviteList is how many invites GET /admin/invites lists, newest first.
	maxInviteList = 500
)

// inviteView is an invite as admins see it (CONTRACT section 16): url (which
// holds the token) only in the answer that made it. Status is active,
// used_up, expired or revoked.
type inviteView struct {
	ID         int64   `json:"id"`
	Label      string  `json:"label"`
	URL        string  `json:"url,omitempty"`
	Uses       int     `json:"uses"`
	UsesLeft   int     `json:"uses_left"`
	Status     string  `json:"status"`
	ExpiresAt  *string `json:"expires_at"`
	CreatedAt  *string `json:"created_at"`
	RevokedAt  *string `json:"revoked_at"`
	LastUsedAt *string `json:"last_used_at"`
}

func (s *Server) inviteView(i *store.Invite) *inviteView {
	return &inviteView{ID: i.ID, Label: i.Label, Uses: i.Uses, UsesLeft: i.UsesLeft, Status: i.State(s.now()),
		ExpiresAt: rfc3339(i.ExpiresAt), CreatedAt: rfc3339(i.CreatedAt), RevokedAt: rfc3339(i.RevokedAt),
		LastUsedAt: rfc3339(i.LastUsedAt)}
}

func inviteTarget(id int64) string { return "invite:" + strconv.FormatInt(id, 10) }

type inviteCreate struct {
	Label     *string `json:"label"`
	Uses      *int    `json:"uses"`
	ExpiresIn *string `json:"expires_in"`
}

func checkLabel(label string) error {
	if utf8.RuneCountInString(label) > 100 || !utf8.ValidString(label) {
		return apierr.Validation("label", "label must be at most 100 characters")
	}
	for _, r := range label {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return apierr.Validation("label", "label must not contain control or text-direction characters")
		}
	}
	return nil
}

// handleInviteCreate answers POST /admin/invites: 201 with the link, shown
// only here. The invite exists only if its invite.create row commits with it.
func (s *Server) handleInviteCreate(w http.ResponseWriter, r *http.Request) error {
	fail := func(err error) error {
		s.audit(r, "invite.create", "invite", "failure", map[string]any{"reason": apierr.From(err).Message})
		return err
	}
	var body inviteCreate
	if err := decodeJSON(w, r, &body, maxSmallBody); err != nil {
		return fail(err)
	}
	inv := &store.Invite{Uses: 1}
	if body.Label != nil {
		inv.Label = strings.TrimSpace(*body.Label)
		if err := checkLabel(inv.Label); err != nil {
			return fail(err)
		}
	}
	if body.Uses != nil {
		if *body.Uses < 1 || *body.Uses > store.MaxInviteUses {
			return fail(apierr.Validation("uses", fmt.Sprintf("uses must be between 1 and %d", store.MaxInviteUses)))
		}
		inv.Uses = *body.Uses
	}
	ttl := defaultInviteTTL
	if body.ExpiresIn != nil {
		d, err := time.ParseDuration(strings.TrimSpace(*body.ExpiresIn))
		if err != nil || d < minInviteTTL || d > maxInviteTTL {
			return fail(apierr.Validation("expires_in", "expires_in must be a duration from 1m to 720h, like 72h"))
		}
		ttl = d
	}
	inv.ExpiresAt = s.now().Add(ttl).UTC().Truncate(time.Second)
	token, err := secrets.RandomToken()
	if err != nil {
		return fail(apierr.Internal(err))
	}
	ev, logged := audit.InTx(s.auditLog, r.Context(), "invite.create", "success", func(i *store.Invite) (string, map[string]any) {
		return inviteTarget(i.ID), map[string]any{"label": i.Label, "uses": i.Uses, "expires_at": *rfc3339(i.ExpiresAt)}
	})
	if err := s.cfg.DB.CreateInviteAudited(r.Context(), inv, tokenHash(token), ev); err != nil {
		return fail(apierr.Internal(err))
	}
	logged()
	v := s.inviteView(inv)
	v.URL = s.publicBase(r) + "/auth/invite/" + token
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// handleInvitesList answers GET /admin/invites: newest first, never a url.
func (s *Server) handleInvitesList(w http.ResponseWriter, r *http.Request) error {
	list, err := s.cfg.DB.ListInvites(r.Context(), maxInviteList)
	if err != nil {
		return apierr.Internal(err)
	}
	items := make([]*inviteView, 0, len(list))
	for _, i := range list {
		items = append(items, s.inviteView(i))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

// handleInviteRevoke answers DELETE /admin/invites/{id}: 204, and the link
// stops working; revoking twice is 204 too. Sessions it issued stay.
func (s *Server) handleInviteRevoke(w http.ResponseWriter, r *http.Request) error {
	raw := mux.Vars(r)["id"]
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != raw {
		return apierr.InviteNotFound()
	}
	ev, logged := audit.InTx(s.auditLog, r.Context(), "invite.revoke", "success", func(i *store.Invite) (string, map[string]any) {
		return inviteTarget(i.ID), map[string]any{"label": i.Label, "uses_left": i.UsesLeft}
	})
	if _, _, err := s.cfg.DB.RevokeInviteAudited(r.Context(), id, ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apierr.InviteNotFound()
		}
		s.audit(r, "invite.revoke", inviteTarget(id), "failure", map[string]any{"reason": "revoke failed"})
		return apierr.Internal(err)
	}
	logged()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// inviteToken is the shape of the tokens RandomToken makes (43 characters
// of base64url), with room to spare; anything else is unknown at once.
var inviteToken = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)

// inviteMessages is what a JSON client is told per reason.
var inviteMessages = map[string]string{
	store.InviteUnknown: "this sign-in link is not valid: check that the whole link was copied",
	store.InviteExpired: "this sign-in link has expired: ask the admin for a new one",
	store.InviteRevoked: "this sign-in link was revoked by an admin: ask the admin for a new one",
	store.InviteUsedUp:  "this sign-in link has been used as many times as it allows: ask the admin for a new one",
}

// handleInviteUse answers GET /auth/invite/{token} (CONTRACT section 16): a
// live invite gives a fresh gg_session and 303 to the UI's root; an invalid
// one 303 to the root with ?signin=invalid&reason=<why>, or 401
// invite_invalid (details.reason) for a client that accepts JSON. The
// Location is relative ("../../"), so it lands on the UI's root under any
// base path a proxy strips. The token never reaches a log or an audit row.
func (s *Server) handleInviteUse(w http.ResponseWriter, r *http.Request) error {
	token := mux.Vars(r)["token"]
	deny := func(reason string, inv *store.Invite) error {
		target := "invite"
		if inv != nil {
			target = inviteTarget(inv.ID)
		}
		// A denial anyone can repeat: one row per client a minute (CONTRACT section 19).
		s.audit(r, "invite.use", target, "denied", map[string]any{"reason": reason})
		if acceptsJSON(r) {
			e := apierr.InviteInvalid()
			e.Message = inviteMessages[reason]
			e.Details = map[string]any{"reason": reason}
			return e
		}
		seeOther(w, "../../?signin=invalid&reason="+reason)
		return nil
	}
	if !inviteToken.MatchString(token) {
		return deny(store.InviteUnknown, nil)
	}
	sessToken, cookie, exp, err := s.newSessionCookie("user")
	if err != nil {
		return err
	}
	actor := "user:" + tokenHashHex(sessToken)[:12]
	ev, logged := audit.InTx(s.auditLog, withActor(r, actor).Context(), "invite.use", "success", func(i *store.Invite) (string, map[string]any) {
		return inviteTarget(i.ID), map[string]any{"label": i.Label, "uses_left": i.UsesLeft}
	})
	_, _, err = s.cfg.DB.UseInvite(r.Context(), tokenHash(token), tokenHash(sessToken), exp, ev)
	var ie *store.InviteError
	switch {
	case errors.As(err, &ie):
		return deny(ie.Reason, ie.Invite)
	case errors.Is(err, store.ErrAuditWrite) || errors.Is(err, store.ErrAuditKey):
		return apierr.Internal(err)
	case err != nil:
		return apierr.AuthUnavailable().With(err)
	}
	logged()
	s.setSessionCookie(w, r, "user", cookie, exp)
	seeOther(w, "../../")
	return nil
}

// seeOther answers 303 to a Location relative to the request's URL.
// (http.Redirect would turn it into an absolute path, losing the base path.)
func seeOther(w http.ResponseWriter, location string) {
	h := w.Header()
	h.Set("Location", location)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusSeeOther)
}

// acceptsJSON reports whether the request's Accept names application/json
// (an API client); a browser opening a link never does.
func acceptsJSON(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/json" {
				return true
			}
		}
	}
	return false
}
