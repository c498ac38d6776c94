package cli

import (
	"log/slog"
	"net"
	"net/netip"

	"gooni/internal/config"
)

// warnHosts says at start which Host names the server answers
// (CONTRACT section 17), and warns when a server bound beyond loopback
// has no GG_PUBLIC_URL: it then answers only loopback names and its
// listen address, so people on the network would get 421.
func warnHosts(cfg *config.Config, log *slog.Logger) {
	if cfg.PublicURL != nil {
		log.Info("public URL", "url", cfg.PublicURL.String(), "base_path", cfg.PublicURL.BasePath,
			"hosts", "its host, and localhost or loopback IPs on the listen port")
		return
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil || config.LoopbackAddr(cfg.Addr) {
		return
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		log.Warn("GG_PUBLIC_URL is not set: only localhost and loopback addresses on the listen port are answered (others get 421 host_not_allowed); set GG_PUBLIC_URL to the URL people use", "addr", cfg.Addr)
		return
	}
	log.Warn("GG_PUBLIC_URL is not set: only the listen address, localhost and loopback addresses are answered (others get 421 host_not_allowed); set GG_PUBLIC_URL to the URL people use", "addr", cfg.Addr)
}
