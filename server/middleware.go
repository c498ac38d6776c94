package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"gooni/internal/audit"
	"gooni/server/apierr"
)

type ctxKey int

const ctxRoute ctxKey = iota

// validCorrelationID reports whether an incoming X-Correlation-ID may be
// kept: 1-64 of [A-Za-z0-9._-] (CONTRACT section 2). A loop, not a regexp:
// it runs on every request.
func validCorrelationID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// correlationID is the request's correlation id (set by correlate).
func correlationID(ctx context.Context) string { return audit.ActorFrom(ctx).CorrelationID }

// actorOf names who made the request, for audit rows and logs.
func actorOf(ctx context.Context) string { return audit.ActorFrom(ctx).Name }

// withActor records who the request turned out to be (after authentication).
func withActor(r *http.Request, name string) *http.Request {
	a := audit.ActorFrom(r.Context())
	a.Name = name
	return r.WithContext(audit.WithActor(r.Context(), a))
}

func newCorrelationID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// correlate gives every request a correlation id (reusing a valid incoming
// one) and puts it on every response.
func (s *Server) correlate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cid := r.Header.Get("X-Correlation-ID")
		if !validCorrelationID(cid) {
			cid = newCorrelationID()
		}
		w.Header().Set("X-Correlation-ID", cid)
		// Every request starts anonymous; authentication names the actor.
		a := audit.Actor{Name: "anonymous", Source: s.clientIP(r), CorrelationID: cid}
		next.ServeHTTP(w, r.WithContext(audit.WithActor(r.Context(), a)))
	})
}

// recoverPanics turns a panic into the contract's internal error.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic", "correlation_id", correlationID(r.Context()), "path", safePath(r),
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				s.writeError(w, r, apierr.Internal(fmt.Errorf("panic: %v", v)))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// headerValue is a header's one value as http.Header holds it, built once:
// assigning it costs no allocation or key check per response. Its capacity
// is its length, so an Add to the same header copies instead of writing
// into the shared array; nothing in net/http edits a value in place.
func headerValue(v string) []string { return []string{v}[:1:1] }

// securityHeaders are set on every response (canonical keys).
var securityHeaders = []struct {
	key   string
	value []string
}{
	{"Content-Security-Policy", headerValue(contentSecurityPolicy)},
	{"X-Content-Type-Options", headerValue("nosniff")},
	{"X-Frame-Options", headerValue("DENY")},
	{"Referrer-Policy", headerValue("no-referrer")},
	{"Cross-Origin-Opener-Policy", headerValue("same-origin")},
	{"Permissions-Policy", headerValue("camera=(), microphone=(), geolocation=()")},
}

var hstsValue = headerValue("max-age=31536000")

// secureHeaders sets the security headers every response carries.
func (s *Server) secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for _, sh := range securityHeaders {
			h[sh.key] = sh.value
		}
		if s.secure(r) {
			h["Strict-Transport-Security"] = hstsValue
		}
		next.ServeHTTP(w, r)
	})
}

const (
	corsMethods = "GET, POST, PATCH, DELETE, OPTIONS"
	// Idempotency-Key (section 12) joins the contract's three, so an allowed
	// origin's client can retry safely; it may read the replay marker and
	// the correlation id back.
	corsHeaders = "Content-Type, X-API-Key, X-Correlation-ID, Idempotency-Key"
	corsExpose  = "X-Correlation-ID, Idempotent-Replayed, Retry-After"
)

// cors passes same-origin and allowlisted origins and refuses every other
// Origin with cors_origin_blocked (CONTRACT.md section 5).
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin, present := r.Header["Origin"]
		if !present {
			next.ServeHTTP(w, r)
			return
		}
		o := ""
		if len(origin) > 0 {
			o = origin[0]
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		switch {
		case s.origins[o]:
			h.Set("Access-Control-Allow-Origin", o)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Expose-Headers", corsExpose)
			if preflight {
				h.Set("Access-Control-Allow-Methods", corsMethods)
				h.Set("Access-Control-Allow-Headers", corsHeaders)
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		case s.sameOrigin(o, r):
			if preflight {
				w.WriteHeader(http.StatusNoContent)
				return
			}
		default:
			// One row per client per minute however the Origin varies (CONTRACT section 19).
			s.audit(r, "security.cors_blocked", "origin", "denied", map[string]any{"origin": truncate(o, 200)})
			s.writeError(w, r, apierr.CORSBlocked())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientIP is the peer address, or the nearest untrusted X-Forwarded-For hop
// when the peer is a trusted proxy.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !s.trusted(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a.String()
		}
		peer = a
	}
	return peer.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// throttleIP limits a route per client IP (checked before auth).
func (s *Server) throttleIP(l *Limiter, next http.Handler) http.Handler {
	return s.throttle(l, func(r *http.Request) string { return "ip:" + clientKey(s.clientIP(r)) }, next)
}

// throttleAdmin limits admin routes per admin session, or per IP without one.
func (s *Server) throttleAdmin(next http.Handler) http.Handler {
	return s.throttle(s.adminLimit, func(r *http.Request) string {
		if c, err := r.Cookie(adminCookie); err == nil {
			if token, ok := decodeToken(s.admin, adminCookie, c.Value); ok {
				return "admin:" + tokenHashHex(token)
			}
		}
		return "ip:" + clientKey(s.clientIP(r))
	}, next)
}

// throttle is the reusable rolling-window middleware: it answers rate_limited
// with Retry-After and audits the rejection; the audit writer keeps one row
// per client per minute of these (CONTRACT section 19) and counts the rest.
func (s *Server) throttle(l *Limiter, key func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := key(r)
		ok, retry, _ := l.Allow(k)
		if !ok {
			s.metrics.throttled.WithLabelValues(l.Name).Inc()
			target := r.Method + " " + safePath(r)
			s.audit(r, "security.throttled", target, "denied", map[string]any{"limiter": l.Name, "limit": l.N,
				"window_seconds": int(l.Window / time.Second)})
			s.writeError(w, r, apierr.RateLimited(int(math.Ceil(retry.Seconds()))))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// audit writes an audit row and its log line (CONTRACT section 9) as the
// request's actor; it returns the append error so an admin action can fail closed.
func (s *Server) audit(r *http.Request, action, target, outcome string, details map[string]any) error {
	return s.auditLog.Record(r.Context(), action, target, outcome, details)
}

// auditAs is audit with the actor named explicitly (a session being issued).
func (s *Server) auditAs(r *http.Request, actor, action, target, outcome string, details map[string]any) error {
	return s.audit(withActor(r, actor), action, target, outcome, details)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
