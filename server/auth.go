package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/securecookie"

	"gooni/internal/audit"
	"gooni/internal/secrets"
	"gooni/server/apierr"
	"gooni/store"
)

const (
	userCookie  = "gg_session"
	adminCookie = "gg_admin"
)

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// decodeToken checks a session cookie's MAC, age and encryption and returns
// the session token inside it.
func decodeToken(codec *securecookie.SecureCookie, name, value string) (string, bool) {
	if value == "" || len(value) > 4096 {
		return "", false
	}
	var b []byte
	if err := codec.Decode(name, value, &b); err != nil || len(b) < 16 || len(b) > 128 {
		return "", false
	}
	return string(b), true
}

func tokenHashHex(token string) string { return hex.EncodeToString(tokenHash(token)) }

// apiKeyOK compares in constant time against the current key and any key
// still in its rotation grace period.
func (s *Server) apiKeyOK(given string) bool {
	ok := 0
	for _, k := range s.apiKeys {
		ok |= subtle.ConstantTimeCompare([]byte(given), k)
	}
	return ok == 1
}

// requireUser enforces the user-route precedence of CONTRACT.md section 3:
// X-API-Key header, then api_key query, then gg_session cookie; the first
// credential present decides and a wrong one never falls through.
func (s *Server) requireUser(next handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		actor, err := s.userActor(r)
		if err != nil {
			return err
		}
		return next(w, withActor(r, actor))
	}
}

// userActor decides a user route's credential (CONTRACT section 3) and
// names who it is: api_key or user:<session prefix>. An event stream calls
// it again while it runs, so a revoked session ends the stream.
func (s *Server) userActor(r *http.Request) (string, error) {
	if vals, ok := r.Header["X-Api-Key"]; ok {
		if len(vals) != 1 || !s.apiKeyOK(vals[0]) {
			return "", apierr.InvalidAPIKey()
		}
		return "api_key", nil
	}
	if vals, ok := queryAPIKey(r.URL.RawQuery); ok {
		if len(vals) != 1 || !s.apiKeyOK(vals[0]) {
			return "", apierr.InvalidAPIKey()
		}
		return "api_key", nil
	}
	if _, err := r.Cookie(userCookie); err == nil {
		_, token, err := s.liveSession(r, "user")
		if err != nil {
			return "", err
		}
		return "user:" + tokenHashHex(token)[:12], nil
	}
	return "", apierr.SessionRequired()
}

// queryAPIKey finds the api_key query parameter without dropping what does
// not parse: url.Values skips a malformed pair, so "?api_key=%zz" would look
// like no key at all and fall through to the cookie. A pair named api_key
// whose value cannot be decoded, and a malformed pair (bad escape, ';') that
// mentions api, count as a key that is wrong.
func queryAPIKey(raw string) (vals []string, present bool) {
	const wrong = "\x00" // never equal to a key
	for pair := range strings.SplitSeq(raw, "&") {
		k, v, _ := strings.Cut(pair, "=")
		key, kerr := url.QueryUnescape(k)
		if kerr != nil || strings.Contains(pair, ";") {
			if strings.Contains(strings.ToLower(pair), "api") {
				vals, present = append(vals, wrong), true
			}
			continue
		}
		if key != "api_key" {
			continue
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			val = wrong
		}
		vals, present = append(vals, val), true
	}
	return vals, present
}

// liveSession decodes the kind's cookie and checks its row: a bad MAC, an
// unknown, expired or revoked session is session_expired; unreadable session
// storage is auth_unavailable (fail closed).
func (s *Server) liveSession(r *http.Request, kind string) (*store.Session, string, error) {
	name, codec := userCookie, s.cookies
	if kind == "admin" {
		name, codec = adminCookie, s.admin
	}
	c, err := r.Cookie(name)
	if err != nil {
		if kind == "admin" {
			return nil, "", apierr.AdminSessionRequired()
		}
		return nil, "", apierr.SessionRequired()
	}
	token, ok := decodeToken(codec, name, c.Value)
	if !ok {
		return nil, "", apierr.SessionExpired()
	}
	sess, err := s.cfg.DB.GetSession(r.Context(), kind, tokenHash(token))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, "", apierr.SessionExpired()
	case err != nil:
		s.audit(r, "security.secret_denied", kind+"_session", "denied", map[string]any{"reason": "session storage unavailable"})
		return nil, "", apierr.AuthUnavailable().With(err)
	}
	if !sess.RevokedAt.IsZero() || !s.now().Before(sess.ExpiresAt) {
		return nil, "", apierr.SessionExpired()
	}
	return sess, token, nil
}

// requireAdmin admits only a live admin session; X-Admin-Key and user
// sessions grant nothing here.
func (s *Server) requireAdmin(next handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		_, token, err := s.liveSession(r, "admin")
		if err != nil {
			return err
		}
		return next(w, withActor(r, "admin:"+tokenHashHex(token)[:12]))
	}
}

type sessionView struct {
	Authenticated bool   `json:"authenticated"`
	ExpiresAt     string `json:"expires_at"`
}

// issueSession stores a new session of kind and sets its cookie. event, when
// not nil, gives the audit event (as the actor the new token names) that is
// appended in the same transaction as the session: if it cannot be written,
// no session exists and no cookie is set (FR-023); logged then writes its log line.
func (s *Server) issueSession(w http.ResponseWriter, r *http.Request, kind string,
	event func(actor string) (store.AuditOf[*store.Session], func())) (sess *store.Session, token string, logged func(), err error) {
	logged = func() {}
	token, val, exp, err := s.newSessionCookie(kind)
	if err != nil {
		return nil, "", logged, err
	}
	var ev store.AuditOf[*store.Session]
	if event != nil {
		ev, logged = event(kind + ":" + tokenHashHex(token)[:12])
	}
	sess, err = s.cfg.DB.CreateSessionAudited(r.Context(), kind, tokenHash(token), exp, ev)
	switch {
	case errors.Is(err, store.ErrAuditWrite) || errors.Is(err, store.ErrAuditKey):
		return nil, "", func() {}, apierr.Internal(err)
	case err != nil:
		return nil, "", func() {}, apierr.AuthUnavailable().With(err)
	}
	s.setSessionCookie(w, r, kind, val, exp)
	return sess, token, logged, nil
}

// newSessionCookie makes a fresh session token of kind, the cookie value
// that carries it, and when it expires (now + the kind's TTL).
func (s *Server) newSessionCookie(kind string) (token, value string, exp time.Time, err error) {
	if token, err = secrets.RandomToken(); err != nil {
		return "", "", time.Time{}, apierr.Internal(err)
	}
	ttl, name, codec := s.cfg.SessionTTL, userCookie, s.cookies
	if kind == "admin" {
		ttl, name, codec = s.cfg.AdminSessionTTL, adminCookie, s.admin
	}
	exp = s.now().Add(ttl).UTC().Truncate(time.Second)
	if value, err = codec.Encode(name, []byte(token)); err != nil {
		return "", "", time.Time{}, apierr.Internal(err)
	}
	return token, value, exp, nil
}

// setSessionCookie sets the kind's cookie: HttpOnly, SameSite Lax (user)
// or Strict (admin), Secure when the client reached us over HTTPS, scoped
// to the base path (CONTRACT sections 3 and 17).
func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, kind, value string, exp time.Time) {
	ttl, name, same := s.cfg.SessionTTL, userCookie, http.SameSiteLaxMode
	if kind == "admin" {
		ttl, name, same = s.cfg.AdminSessionTTL, adminCookie, http.SameSiteStrictMode
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: s.cookiePath(r), Expires: exp, MaxAge: int(ttl / time.Second),
		HttpOnly: true, Secure: s.secure(r), SameSite: same})
}

func (s *Server) clearCookie(w http.ResponseWriter, r *http.Request, name string, same http.SameSite) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: s.cookiePath(r), MaxAge: -1, Expires: time.Unix(0, 0),
		HttpOnly: true, Secure: s.secure(r), SameSite: same})
}

// handleSessionCreate issues gg_session (POST /auth/session); in key mode it
// needs a valid X-API-Key, in invite mode it issues nothing (an invite link does).
func (s *Server) handleSessionCreate(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.SessionMode == "invite" {
		// Only an invite link signs people in (CONTRACT section 16).
		s.audit(r, "session.issue", "user_session", "denied", map[string]any{"reason": "invite mode: sign in with an invite link"})
		e := apierr.SessionRequired()
		e.Message = "this server signs people in with invite links: open the sign-in link an admin gave you"
		return s.withSessionMode(e)
	}
	if s.cfg.SessionMode == "key" {
		vals, ok := r.Header["X-Api-Key"]
		if !ok {
			s.audit(r, "session.issue", "user_session", "denied", map[string]any{"reason": "no API key"})
			return s.withSessionMode(apierr.SessionRequired())
		}
		if len(vals) != 1 || !s.apiKeyOK(vals[0]) {
			s.audit(r, "session.issue", "user_session", "denied", map[string]any{"reason": "wrong API key"})
			return apierr.InvalidAPIKey()
		}
	}
	sess, token, _, err := s.issueSession(w, r, "user", nil)
	if err != nil {
		return err
	}
	s.auditAs(r, "user:"+tokenHashHex(token)[:12], "session.issue", "user_session", "success", nil)
	writeJSON(w, http.StatusOK, sessionView{true, sess.ExpiresAt.UTC().Format(time.RFC3339)})
	return nil
}

func (s *Server) handleSessionGet(w http.ResponseWriter, r *http.Request) error {
	sess, _, err := s.liveSession(r, "user")
	if err != nil {
		return s.withSessionMode(err)
	}
	writeJSON(w, http.StatusOK, sessionView{true, sess.ExpiresAt.UTC().Format(time.RFC3339)})
	return nil
}

// withSessionMode adds details.session_mode (open, key or invite) to a
// session_required or session_expired answer of /auth/session, so that the
// UI knows whether asking for a session can work or it must show its
// sign-in screen, without a request that would only be refused.
func (s *Server) withSessionMode(err error) error {
	e := apierr.From(err)
	if e.Code != "session_required" && e.Code != "session_expired" {
		return err
	}
	mode := s.cfg.SessionMode
	if mode == "" {
		mode = "open"
	}
	c := *e
	c.Details = map[string]any{"session_mode": mode}
	return &c
}

// handleSessionDelete revokes the caller's session if it has one; logging
// out twice is not an error. Revoking a live session is a success row; a
// cookie whose session already ended (a replayed logout, which anyone holding
// an old cookie can repeat at will) is a session.revoke denial, under the
// one-row-per-minute rule of CONTRACT section 19.
func (s *Server) handleSessionDelete(w http.ResponseWriter, r *http.Request) error {
	if c, err := r.Cookie(userCookie); err == nil {
		if token, ok := decodeToken(s.cookies, userCookie, c.Value); ok {
			live, err := s.cfg.DB.RevokeLiveSession(r.Context(), "user", tokenHash(token))
			if err != nil {
				return apierr.AuthUnavailable().With(err)
			}
			actor := "user:" + tokenHashHex(token)[:12]
			if live {
				s.auditAs(r, actor, "session.revoke", "user_session", "success", nil)
			} else {
				s.auditAs(r, actor, "session.revoke", "user_session", "denied", map[string]any{"reason": "the session had already ended"})
			}
		}
	}
	s.clearCookie(w, r, userCookie, http.SameSiteLaxMode)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleAdminLogin takes X-Admin-Key from the header only.
func (s *Server) handleAdminLogin(w http.ResponseWriter, r *http.Request) error {
	vals := r.Header.Values("X-Admin-Key")
	ok := len(vals) == 1 && subtle.ConstantTimeCompare([]byte(vals[0]), []byte(s.cfg.Secrets.AdminKey)) == 1
	if !ok {
		reason := "wrong admin key"
		if len(vals) == 0 {
			reason = "no X-Admin-Key header"
		}
		s.audit(r, "admin.login", "admin_session", "failure", map[string]any{"reason": reason})
		return apierr.InvalidAdminKey()
	}
	// The admin session exists only if its admin.login row commits with it (FR-023).
	sess, _, logged, err := s.issueSession(w, r, "admin", func(actor string) (store.AuditOf[*store.Session], func()) {
		return audit.InTx(s.auditLog, withActor(r, actor).Context(), "admin.login", "success",
			func(*store.Session) (string, map[string]any) { return "admin_session", nil })
	})
	if err != nil {
		return err
	}
	logged()
	writeJSON(w, http.StatusOK, sessionView{true, sess.ExpiresAt.UTC().Format(time.RFC3339)})
	return nil
}

func (s *Server) handleAdminLogout(w http.ResponseWriter, r *http.Request) error {
	c, _ := r.Cookie(adminCookie)
	if c == nil {
		c = &http.Cookie{}
	}
	if token, ok := decodeToken(s.admin, adminCookie, c.Value); ok {
		if err := s.cfg.DB.RevokeSession(r.Context(), "admin", tokenHash(token)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return apierr.AuthUnavailable().With(err)
		}
	}
	s.audit(r, "session.revoke", "admin_session", "success", nil)
	s.clearCookie(w, r, adminCookie, http.SameSiteStrictMode)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
