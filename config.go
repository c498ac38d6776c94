package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// config is the resolved configuration: environment first, then flags of the
// same meaning override it (CONTRACT.md section 1).
type config struct {
	Addr            string
	DataDir         string
	TLSCert, TLSKey string
	HealthInterval  time.Duration
	FrontendOrigins []string
	TrustedProxies  []netip.Prefix
	SessionMode     string
	SessionTTL      time.Duration
	AdminSessionTTL time.Duration
	TTLImage        time.Duration
	TTLVideo        time.Duration
	WorkspaceURL    string
	DeployCommand   string
	QueueMax        int
	MetricsAddr     string
	CatalogFile     string
	Demo            bool
	APIKeyGrace     time.Duration
	AuditRetention  time.Duration // 0 = keep audit events forever
}

// envVars documents every variable `gooni --help` lists, with its default.
var envVars = []struct{ name, def, meaning string }{
	{"GG_ADDR", "127.0.0.1:8080", "listen address"},
	{"GG_DATA_DIR", "./data", "data directory (gooni.db, media/, secrets/)"},
	{"GG_API_KEY / GG_API_KEY_FILE", "generated into secrets/api_key", "generation API key"},
	{"GG_ADMIN_KEY / GG_ADMIN_KEY_FILE", "generated into secrets/admin_key", "admin key (only for POST /admin/session)"},
	{"GG_SESSION_KEYS_FILE", "generated into secrets/session_keys", "securecookie hash and block keys"},
	{"GG_ACCOUNT_KEY / GG_ACCOUNT_KEY_FILE", "generated into secrets/account_key", "Fernet key(s) for worker credentials, comma-separated, newest first"},
	{"GG_AUDIT_KEY / GG_AUDIT_KEY_FILE", "generated into secrets/audit_key", "HMAC key of the audit chain"},
	{"GG_TLS_CERT / GG_TLS_KEY", "empty", "serve HTTPS with this certificate and key"},
	{"GG_HEALTH_INTERVAL", "60s", "background health checks of worker accounts"},
	{"FRONTEND_ORIGINS", "empty", "comma-separated CORS allowlist of exact origins"},
	{"GG_TRUSTED_PROXIES", "empty", "CIDRs whose X-Forwarded-For is believed"},
	{"GG_SESSION_MODE", "open", "open: anyone may get a session (rate-limited); key: POST /auth/session needs X-API-Key"},
	{"GG_SESSION_TTL", "24h", "user session lifetime"},
	{"GG_ADMIN_SESSION_TTL", "8h", "admin session lifetime"},
	{"GG_TTL_IMAGE / GG_TTL_VIDEO", "10m / 30m", "stale-processing limits"},
	{"GG_WORKSPACE_URL", "https://{workspace}--gooni-inference.modal.run", "how a workspace name becomes a base URL"},
	{"GG_DEPLOY_COMMAND", "modal deploy modal/modal_app.py", "what deploy runs for an account"},
	{"GG_QUEUE_MAX", "1000", "pending tasks accepted before queue_full"},
	{"GG_METRICS_ADDR", "empty", "optional separate listen address for /metrics (loopback recommended)"},
	{"GG_CATALOG", "empty (the built-in inference_settings.json)", "path of a model catalog to use instead of the built-in one"},
	{"GG_API_KEY_GRACE", "24h", "how long a rotated-out API key stays valid"},
	{"GG_AUDIT_RETENTION", "empty (keep forever)", "remove audit events older than this, daily; at least 2160h (90 days)"},
}

func loadConfig(args []string, getenv func(string) string) (*config, error) {
	c := &config{}
	var errs []error
	str := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	dur := func(name, def string) time.Duration {
		v := str(name, def)
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: must be a positive duration like %s", name, v, def))
		}
		return d
	}
	c.Addr = str("GG_ADDR", "127.0.0.1:8080")
	c.DataDir = str("GG_DATA_DIR", "./data")
	c.TLSCert, c.TLSKey = getenv("GG_TLS_CERT"), getenv("GG_TLS_KEY")
	c.HealthInterval = dur("GG_HEALTH_INTERVAL", "60s")
	c.SessionMode = str("GG_SESSION_MODE", "open")
	c.SessionTTL = dur("GG_SESSION_TTL", "24h")
	c.AdminSessionTTL = dur("GG_ADMIN_SESSION_TTL", "8h")
	c.TTLImage = dur("GG_TTL_IMAGE", "10m")
	c.TTLVideo = dur("GG_TTL_VIDEO", "30m")
	c.WorkspaceURL = str("GG_WORKSPACE_URL", "https://{workspace}--gooni-inference.modal.run")
	c.DeployCommand = str("GG_DEPLOY_COMMAND", "modal deploy modal/modal_app.py")
	c.MetricsAddr = getenv("GG_METRICS_ADDR")
	c.CatalogFile = getenv("GG_CATALOG")
	c.APIKeyGrace = dur("GG_API_KEY_GRACE", "24h")
	if v := getenv("GG_AUDIT_RETENTION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 90*24*time.Hour {
			errs = append(errs, fmt.Errorf("GG_AUDIT_RETENTION=%q: must be a duration of at least 2160h (90 days)", v))
		}
		c.AuditRetention = d
	}
	qm := str("GG_QUEUE_MAX", "1000")
	n, err := strconv.Atoi(qm)
	if err != nil || n < 1 {
		errs = append(errs, fmt.Errorf("GG_QUEUE_MAX=%q: must be a positive integer", qm))
	}
	c.QueueMax = n
	for _, o := range splitList(getenv("FRONTEND_ORIGINS")) {
		if o == "*" || !strings.Contains(o, "://") || strings.HasSuffix(o, "/") {
			errs = append(errs, fmt.Errorf("FRONTEND_ORIGINS: %q is not an exact origin like https://app.example.com", o))
		}
		c.FrontendOrigins = append(c.FrontendOrigins, o)
	}
	for _, p := range splitList(getenv("GG_TRUSTED_PROXIES")) {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			a, err2 := netip.ParseAddr(p)
			if err2 != nil {
				errs = append(errs, fmt.Errorf("GG_TRUSTED_PROXIES: %q is not a CIDR", p))
				continue
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, pfx.Masked())
	}

	fs := flag.NewFlagSet("gooni", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() { usage(os.Stderr) }
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address (GG_ADDR)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "data directory (GG_DATA_DIR)")
	fs.BoolVar(&c.Demo, "demo", false, "also run the built-in simulated workspace as the `demo` worker account")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, flagHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q (see gooni --help)", fs.Arg(0)))
	}
	if c.SessionMode != "open" && c.SessionMode != "key" {
		errs = append(errs, fmt.Errorf("GG_SESSION_MODE=%q: must be open or key", c.SessionMode))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("GG_TLS_CERT and GG_TLS_KEY must be set together"))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("GG_ADDR=%q: must be host:port", c.Addr))
	}
	if !strings.Contains(c.WorkspaceURL, "{workspace}") {
		errs = append(errs, fmt.Errorf("GG_WORKSPACE_URL must contain {workspace}"))
	}
	return c, errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// loopbackAddr reports whether a listen address only accepts local clients.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
