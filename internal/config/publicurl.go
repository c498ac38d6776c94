package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// PublicURL is GG_PUBLIC_URL parsed (CONTRACT section 17): the URL people
// use to reach the server, perhaps through a reverse proxy.
type PublicURL struct {
	// Scheme is "http" or "https".
	Scheme string
	// Host is the host as a Host header names it: lower case, without a
	// trailing dot, without the scheme's default port ("example.com",
	// "gen.example.com:8443", "[2001:db8::1]").
	Host string
	// BasePath is the path prefix the proxy strips, without a trailing
	// slash: "" or "/gooni".
	BasePath string
}

// Origin is the browser origin of the public URL, "https://example.com".
func (p *PublicURL) Origin() string { return p.Scheme + "://" + p.Host }

// String is the public URL with its base path and no trailing slash.
func (p *PublicURL) String() string { return p.Origin() + p.BasePath }

// DefaultPort is the port a URL of scheme means when it names none: "443"
// for https, "80" otherwise.
func DefaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// NormalizeHost puts a host[:port] the way PublicURL.Host holds it: lower
// case, no trailing dot, and no port when it is the scheme's default.
// IPv6 literals keep their brackets.
func NormalizeHost(hostport, scheme string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if port == DefaultPort(scheme) {
		port = ""
	}
	if port == "" {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, port)
}

// ParsePublicURL reads GG_PUBLIC_URL: an http or https URL with a host and
// optionally a path (the base path), without user info, query or fragment.
// "https://example.com/gooni/" gives BasePath "/gooni".
func ParsePublicURL(raw string) (*PublicURL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errors.New("must start with https:// or http://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("must name a host, like https://gen.example.com")
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, errors.New("must not carry a user, query or fragment")
	}
	if p := u.Port(); p != "" {
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 || fmt.Sprint(n) != p {
			return nil, errors.New("has a bad port")
		}
	}
	base := strings.TrimRight(u.EscapedPath(), "/")
	for _, seg := range strings.Split(strings.TrimPrefix(base, "/"), "/") {
		if base != "" && (seg == "" || seg == "." || seg == "..") {
			return nil, errors.New("has an empty, . or .. path segment")
		}
	}
	return &PublicURL{Scheme: u.Scheme, Host: NormalizeHost(u.Host, u.Scheme), BasePath: base}, nil
}
