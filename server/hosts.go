package server

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"gooni/internal/config"
	"gooni/server/apierr"
)

// hosts is where the server is reached (CONTRACT section 17): which Host
// headers it answers, which Origin is its own, and the base path a proxy
// strips.
type hosts struct {
	public *config.PublicURL // nil: no GG_PUBLIC_URL
	// listenHost is the host of the listen address, as NormalizeHost gives
	// it; "" when it is unspecified (0.0.0.0, ::, empty).
	listenHost string
	// listenPort is the listen port; "" or "0" matches any port (a listener
	// on port 0, whose real port is only known later).
	listenPort string
	// check is false when neither a listen address nor a public URL is
	// configured: no Host check, and same-origin means the request's own
	// Host. Only handler tests built without an address run like that;
	// `gooni serve` always passes GG_ADDR.
	check bool
}

func newHosts(listenAddr string, public *config.PublicURL) hosts {
	h := hosts{public: public, check: listenAddr != "" || public != nil}
	if host, port, err := net.SplitHostPort(listenAddr); err == nil {
		h.listenPort = port
		if a, err := netip.ParseAddr(host); err == nil && a.IsUnspecified() {
			host = ""
		}
		if host != "" {
			h.listenHost = hostOnly(host)
		}
	}
	return h
}

// hostOnly lower-cases a host name (no port), drops a trailing dot and the
// brackets of an IPv6 literal.
func hostOnly(h string) string {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// splitHost splits a Host header (or an origin's host) into the host as
// hostOnly gives it and the port ("" when none is named).
func splitHost(hostport string) (host, port string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return hostOnly(h), p
	}
	return hostOnly(hostport), ""
}

// isLoopbackName reports whether host (as hostOnly gives it) is localhost or
// a loopback IP: names only this machine can answer for.
func isLoopbackName(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// local reports whether host:port names this server without the public
// URL: a loopback name (always, for local tools) or, when no public URL is
// set, the listen address itself; on the listen port either way.
func (h hosts) local(host, port string) bool {
	if host == "" {
		return false
	}
	named := isLoopbackName(host) || (h.public == nil && h.listenHost != "" && host == h.listenHost)
	return named && (h.listenPort == "" || h.listenPort == "0" || port == h.listenPort)
}

// hostAllowed reports whether the server answers for r's Host header: the
// public host, or a local name of section 17. A Host without a port means
// the port of the scheme the request arrived with.
func (s *Server) hostAllowed(r *http.Request) bool {
	h := s.hosts
	if !h.check {
		return true
	}
	if h.public != nil && config.NormalizeHost(r.Host, h.public.Scheme) == h.public.Host {
		return true
	}
	host, port := splitHost(r.Host)
	if port == "" {
		port = "80"
		if r.TLS != nil || s.cfg.TLS {
			port = "443"
		}
	}
	return h.local(host, port)
}

// sameOrigin reports whether an Origin header names this server (CONTRACT
// sections 5 and 17): the public URL's origin, or a local name on the
// listen port; never whatever the request's own Host says, which a page
// that rebound its DNS name to this machine controls.
func (s *Server) sameOrigin(origin string, r *http.Request) bool {
	h := s.hosts
	if !h.check {
		return origin == s.requestOrigin(r)
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	if h.public != nil && u.Scheme+"://"+config.NormalizeHost(u.Host, u.Scheme) == h.public.Origin() {
		return true
	}
	host, port := splitHost(u.Host)
	if port == "" {
		port = config.DefaultPort(u.Scheme)
	}
	return h.local(host, port)
}

// requestOrigin is the origin the request's own Host names; used only when
// no address is configured (see hosts.check) and for links built without a
// public URL, after hostAllowed passed.
func (s *Server) requestOrigin(r *http.Request) string {
	scheme := "http"
	if s.secure(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// secure reports whether the client reached us over HTTPS (CONTRACT section
// 17): TLS served here, a public URL that is https, or a peer listed in
// GG_TRUSTED_PROXIES saying X-Forwarded-Proto: https. Cookies then get
// Secure and answers HSTS. An untrusted peer's X-Forwarded-Proto is ignored.
func (s *Server) secure(r *http.Request) bool {
	if s.cfg.TLS || r.TLS != nil || (s.hosts.public != nil && s.hosts.public.Scheme == "https") {
		return true
	}
	vals := r.Header.Values("X-Forwarded-Proto")
	if len(vals) == 0 || !s.trustedPeer(r) {
		return false
	}
	// The nearest proxy's word is the last value.
	last := vals[len(vals)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(strings.TrimSpace(last), "https")
}

// trustedPeer reports whether the connection's peer is in GG_TRUSTED_PROXIES.
func (s *Server) trustedPeer(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	return err == nil && s.trusted(a.Unmap())
}

// basePath is the path prefix of GG_PUBLIC_URL ("" or "/gooni"); the URLs
// the API returns carry it.
func (s *Server) basePath() string {
	if s.hosts.public == nil {
		return ""
	}
	return s.hosts.public.BasePath
}

// cookiePath scopes the session cookies to the base path when the request
// came through the public host, so that other applications under the same
// host never receive them; "/" otherwise (a local tool or a browser on a
// loopback name, which reaches the server without the prefix).
func (s *Server) cookiePath(r *http.Request) string {
	if s.basePath() == "" {
		return "/"
	}
	if host, _ := splitHost(r.Host); isLoopbackName(host) {
		return "/"
	}
	return s.basePath() + "/"
}

// publicBase is the absolute URL people reach the server's root at, with
// no trailing slash: GG_PUBLIC_URL, or else the request's own (allowed) origin.
func (s *Server) publicBase(r *http.Request) string {
	if s.hosts.public != nil {
		return s.hosts.public.String()
	}
	return s.requestOrigin(r)
}

// checkHost answers 421 host_not_allowed for a Host this server does not
// answer for, before CORS, throttling and auth: a page whose DNS name was
// rebound to this machine gets nothing but this error.
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r) {
			s.writeError(w, r, apierr.HostNotAllowed())
			return
		}
		next.ServeHTTP(w, r)
	})
}
