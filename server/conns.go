package server

import (
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// Connection limits: no mix of clients may exhaust the process's file
// descriptors (an open connection is one). Past PerIP connections from one
// client (an IPv6 /64; trusted proxies are exempt) or Total in all, a new
// connection is closed at once, so it costs nothing and leaves room for
// everyone else (a /health probe from another address still gets in).
type ConnLimits struct {
	Total   int
	PerIP   int
	Trusted []netip.Prefix
}

// DefaultConnLimits derives the limits from the soft file limit: room for
// the database, media files, workspace sockets and deploy pipes is kept
// back, and the total is capped at 20,000 (each connection holds buffers).
func DefaultConnLimits(fileLimit uint64, trusted []netip.Prefix) ConnLimits {
	total := int(min(fileLimit, 1<<20)) - 256
	total = max(64, min(total, 20_000))
	return ConnLimits{Total: total, PerIP: min(256, total/2), Trusted: trusted}
}

// RaiseFileLimit sets the soft limit on open files to the hard limit (Go
// programs start with the soft limit) and returns the limit in force.
func RaiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			rl = want
		}
	}
	return rl.Cur, nil
}

// LimitConns wraps ln so that it enforces lim (see ConnLimits).
func LimitConns(ln net.Listener, lim ConnLimits) net.Listener {
	return &connGate{Listener: ln, lim: lim, byIP: map[string]int{}}
}

type connGate struct {
	net.Listener
	lim   ConnLimits
	mu    sync.Mutex
	total int
	byIP  map[string]int // only addresses with a connection open
}

func (g *connGate) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, exempt := g.key(c.RemoteAddr())
		g.mu.Lock()
		ok := g.total < g.lim.Total && (exempt || g.byIP[key] < g.lim.PerIP)
		if ok {
			g.total++
			if !exempt {
				g.byIP[key]++
			}
		}
		g.mu.Unlock()
		if !ok {
			c.Close()
			continue
		}
		return &gatedConn{Conn: c, g: g, key: key, exempt: exempt}, nil
	}
}

func (g *connGate) key(addr net.Addr) (string, bool) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return addr.String(), false
	}
	a := ap.Addr().Unmap()
	for _, p := range g.lim.Trusted {
		if p.Contains(a) {
			return "", true
		}
	}
	return clientKey(a.String()), false
}

// open is how many connections are open now.
func (g *connGate) open() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total
}

type gatedConn struct {
	net.Conn
	g      *connGate
	key    string
	exempt bool
	once   sync.Once
}

func (c *gatedConn) Close() error {
	c.once.Do(func() {
		c.g.mu.Lock()
		c.g.total--
		if !c.exempt {
			if c.g.byIP[c.key]--; c.g.byIP[c.key] <= 0 {
				delete(c.g.byIP, c.key)
			}
		}
		c.g.mu.Unlock()
	})
	return c.Conn.Close()
}
