// Package config is the one reader of Gooni's configuration: the GG_*
// environment variables (CONTRACT section 1 and its version 2 additions) and
// the flags of the same meaning, which override them. Every other package
// receives values from here; none calls os.Getenv for a GG_* name.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config is the resolved configuration of `gooni serve`.
type Config struct {
	Addr            string
	DataDir         DataDir
	TLSCert, TLSKey string
	HealthInterval  time.Duration
	FrontendOrigins []string
	TrustedProxies  []netip.Prefix
	SessionMode     string // open | key | invite
	// PublicURL is GG_PUBLIC_URL parsed; nil when unset (CONTRACT section 17).
	PublicURL        *PublicURL
	SessionTTL       time.Duration
	AdminSessionTTL  time.Duration
	TTLImage         time.Duration
	TTLVideo         time.Duration
	WorkspaceURL     string
	DeployCommand    string
	QueueMax         int
	MetricsAddr      string
	CatalogFile      string
	AuditRetention   time.Duration // 0 = keep audit events forever
	MaxStreams       int           // open event streams in all (GG_MAX_STREAMS)
	WorkspaceTimeout time.Duration // one workspace call (GG_WORKSPACE_TIMEOUT)
	TTLQueued        time.Duration // waiting in a workspace's own queue (GG_TTL_QUEUED)
	WorkflowsDir     string        // ComfyUI workflows overriding the built-in ones, file by file (GG_WORKFLOWS_DIR)
	DemoDriver       string        // --demo-driver: gooni (workspace-sim) or comfyui (comfy-sim)
	MaxUploads       int           // POST /generate bodies over 1 MiB, or images over 8 MiB decoded, handled at once (GG_MAX_UPLOADS)
	InputQuota       int64         // bytes of queued input images (GG_INPUT_QUOTA)
	Demo             bool
	Secrets          Secrets
}

// Secrets is where each secret may be given: a value in the environment
// (GG_X) or a file path (GG_X_FILE); both empty means "the generated file
// under DATA_DIR/secrets/". It also holds the API key grace period.
type Secrets struct {
	APIKey, AdminKey, SessionKeys, AccountKey, AuditKey SecretSource
	// APIKeyGrace is how long a rotated-out API key stays valid (GG_API_KEY_GRACE; 0 = none).
	APIKeyGrace time.Duration
}

// SecretSource is one secret's inputs, with the variable names for messages.
type SecretSource struct {
	Value, File       string // as given; empty when unset
	ValueVar, FileVar string // GG_X, GG_X_FILE ("" when the secret has no value variable)
}

// Var documents one variable for `gooni --help` and the docs.
type Var struct{ Name, Default, Meaning string }

// DefaultDeployCommand is what "deploy" runs when GG_DEPLOY_COMMAND is unset (CONTRACT section 15).
const DefaultDeployCommand = "modal deploy modal/modal_app.py"

// DefaultAPIKeyGrace is GG_API_KEY_GRACE's default.
const DefaultAPIKeyGrace = 24 * time.Hour

// Vars lists every variable `gooni --help` prints, with its default.
var Vars = []Var{
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
	{"GG_SESSION_MODE", "open", "open: anyone may get a session (rate-limited); key: POST /auth/session needs X-API-Key; invite: people sign in only with an invite link an admin made"},
	{"GG_PUBLIC_URL", "empty", "the URL people use (https://gen.example.com or https://example.com/gooni): other Host names get 421, its path is the base path a proxy strips; https makes cookies Secure"},
	{"GG_SESSION_TTL", "24h", "user session lifetime"},
	{"GG_ADMIN_SESSION_TTL", "8h", "admin session lifetime"},
	{"GG_TTL_IMAGE / GG_TTL_VIDEO", "10m / 30m", "stale-processing limits"},
	{"GG_WORKSPACE_URL", "https://{workspace}--gooni-inference.modal.run", "how a workspace name becomes a base URL"},
	{"GG_DEPLOY_COMMAND", DefaultDeployCommand, "what deploy runs for an account"},
	{"GG_QUEUE_MAX", "1000", "tasks waiting in the queue (not yet handed to a workspace) before queue_full"},
	{"GG_METRICS_ADDR", "empty", "optional separate listen address for /metrics (loopback recommended)"},
	{"GG_CATALOG", "empty (the built-in inference_settings.json)", "path of a model catalog to use instead of the built-in one"},
	{"GG_API_KEY_GRACE", "24h", "how long a rotated-out API key stays valid (0 = not at all)"},
	{"GG_AUDIT_RETENTION", "empty (keep forever)", "remove audit events older than this, daily; at least 2160h (90 days)"},
	{"GG_WORKSPACE_TIMEOUT", "30s", "limit of one workspace call; an account is marked failed after 3 timeouts in a row"},
	{"GG_TTL_QUEUED", "60m", "a task handed to a workspace that has not started it fails with timeout after this"},
	{"GG_WORKFLOWS_DIR", "empty (the built-in workflows)", "directory of ComfyUI workflows (<model>-<mode>.json and .manifest.json) overriding the built-in ones file by file"},
	{"GG_MAX_STREAMS", "2000", "open event streams in all; past it new streams get 503 server_busy"},
	{"GG_MAX_UPLOADS", "4", "POST /generate bodies over 1 MiB, or images that decode to over 8 MiB, handled at once; others wait up to 10 s, then 503 server_busy"},
	{"GG_INPUT_QUOTA", "2GiB", "bytes of i2v input images of pending and processing tasks; past it 503 queue_full"},
}

// ErrHelp is returned by Load when the flags asked for help.
var ErrHelp = errors.New("help requested")

// reader collects every problem instead of stopping at the first.
type reader struct {
	getenv func(string) string
	errs   []error
}

func (r *reader) str(name, def string) string {
	if v := r.getenv(name); v != "" {
		return v
	}
	return def
}

// positive reads a duration that must be > 0.
func (r *reader) positive(name, def string) time.Duration {
	v := r.str(name, def)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: must be a positive duration like %s", name, v, def))
	}
	return d
}

// atLeast reads a duration that must be >= min (0 allowed when min is 0).
func (r *reader) atLeast(name string, def, min time.Duration, want string) time.Duration {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < min {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: must be %s", name, v, want))
		return def
	}
	return d
}

// count reads a positive integer.
func (r *reader) count(name string, def int) int {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: must be a positive integer", name, v))
		return def
	}
	return n
}

// size reads a byte size: a number with an optional unit B, KiB, MiB,
// GiB, TiB (or KB, MB, GB, TB, taken as the binary units too).
func (r *reader) size(name string, def int64) int64 {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	n, err := ParseSize(v)
	if err != nil || n < 1 {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: must be a size like 2GiB, 512MiB or 1048576", name, v))
		return def
	}
	return n
}

// ParseSize reads "2GiB", "512 MiB", "10MB" or "1048576" as bytes (units
// are binary: 1 KiB = 1 KB = 1024 B).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	num, unit := strings.TrimSpace(s[:i]), strings.ToLower(strings.TrimSpace(s[i:]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	shift := map[string]uint{"": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20,
		"g": 30, "gb": 30, "gib": 30, "t": 40, "tb": 40, "tib": 40}
	sh, ok := shift[unit]
	if !ok || n > (1<<62)>>sh {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return n << sh, nil
}

func (r *reader) secret(valueVar, fileVar string) SecretSource {
	s := SecretSource{File: r.getenv(fileVar), ValueVar: valueVar, FileVar: fileVar}
	if valueVar != "" {
		s.Value = r.getenv(valueVar)
	}
	return s // both set is refused where the secret is read (internal/secrets)
}

func (r *reader) secrets() Secrets {
	return Secrets{
		APIKey:      r.secret("GG_API_KEY", "GG_API_KEY_FILE"),
		AdminKey:    r.secret("GG_ADMIN_KEY", "GG_ADMIN_KEY_FILE"),
		SessionKeys: r.secret("", "GG_SESSION_KEYS_FILE"),
		AccountKey:  r.secret("GG_ACCOUNT_KEY", "GG_ACCOUNT_KEY_FILE"),
		AuditKey:    r.secret("GG_AUDIT_KEY", "GG_AUDIT_KEY_FILE"),
		APIKeyGrace: r.atLeast("GG_API_KEY_GRACE", DefaultAPIKeyGrace, 0, "a duration such as 24h, or 0 for no grace"),
	}
}

// Offline is what the maintenance commands (backup, secrets, sessions) need.
type Offline struct {
	DataDir DataDir
	Secrets Secrets
}

// LoadOffline reads GG_DATA_DIR and the secret inputs for a maintenance command.
func LoadOffline(getenv func(string) string) (*Offline, error) {
	r := &reader{getenv: getenv}
	o := &Offline{DataDir: DataDir(r.str("GG_DATA_DIR", "./data")), Secrets: r.secrets()}
	return o, errors.Join(r.errs...)
}

// Load resolves the serve configuration from the environment (getenv is
// os.Getenv in production) and then args (flags override variables). Every
// bad value is reported at once; ErrHelp when the flags asked for help
// (usage is then written to out).
func Load(args []string, getenv func(string) string, usage func(io.Writer), out io.Writer) (*Config, error) {
	r := &reader{getenv: getenv}
	c := &Config{}
	c.Addr = r.str("GG_ADDR", "127.0.0.1:8080")
	c.DataDir = DataDir(r.str("GG_DATA_DIR", "./data"))
	c.TLSCert, c.TLSKey = getenv("GG_TLS_CERT"), getenv("GG_TLS_KEY")
	c.HealthInterval = r.positive("GG_HEALTH_INTERVAL", "60s")
	c.SessionMode = r.str("GG_SESSION_MODE", "open")
	if raw := strings.TrimSpace(getenv("GG_PUBLIC_URL")); raw != "" {
		pu, err := ParsePublicURL(raw)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("GG_PUBLIC_URL=%q: %v (like https://gen.example.com or https://example.com/gooni)", raw, err))
		}
		c.PublicURL = pu
	}
	c.SessionTTL = r.positive("GG_SESSION_TTL", "24h")
	c.AdminSessionTTL = r.positive("GG_ADMIN_SESSION_TTL", "8h")
	c.TTLImage = r.positive("GG_TTL_IMAGE", "10m")
	c.TTLVideo = r.positive("GG_TTL_VIDEO", "30m")
	c.WorkspaceURL = r.str("GG_WORKSPACE_URL", "https://{workspace}--gooni-inference.modal.run")
	c.DeployCommand = r.str("GG_DEPLOY_COMMAND", DefaultDeployCommand)
	c.MetricsAddr = getenv("GG_METRICS_ADDR")
	c.CatalogFile = getenv("GG_CATALOG")
	c.AuditRetention = r.atLeast("GG_AUDIT_RETENTION", 0, 90*24*time.Hour, "a duration of at least 2160h (90 days)")
	c.Secrets = r.secrets()
	c.MaxStreams = r.count("GG_MAX_STREAMS", 2000)
	c.WorkspaceTimeout = r.positive("GG_WORKSPACE_TIMEOUT", "30s")
	c.TTLQueued = r.positive("GG_TTL_QUEUED", "60m")
	c.WorkflowsDir = getenv("GG_WORKFLOWS_DIR")
	c.MaxUploads = r.count("GG_MAX_UPLOADS", 4)
	c.InputQuota = r.size("GG_INPUT_QUOTA", 2<<30)
	qm := r.str("GG_QUEUE_MAX", "1000")
	n, err := strconv.Atoi(qm)
	if err != nil || n < 1 {
		r.errs = append(r.errs, fmt.Errorf("GG_QUEUE_MAX=%q: must be a positive integer", qm))
	}
	c.QueueMax = n
	for _, o := range splitList(getenv("FRONTEND_ORIGINS")) {
		if o == "*" || !strings.Contains(o, "://") || strings.HasSuffix(o, "/") {
			r.errs = append(r.errs, fmt.Errorf("FRONTEND_ORIGINS: %q is not an exact origin like https://app.example.com", o))
		}
		c.FrontendOrigins = append(c.FrontendOrigins, o)
	}
	for _, p := range splitList(getenv("GG_TRUSTED_PROXIES")) {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			a, err2 := netip.ParseAddr(p)
			if err2 != nil {
				r.errs = append(r.errs, fmt.Errorf("GG_TRUSTED_PROXIES: %q is not a CIDR", p))
				continue
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, pfx.Masked())
	}

	fs := flag.NewFlagSet("gooni", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { usage(out) }
	addr, dataDir := c.Addr, string(c.DataDir)
	fs.StringVar(&addr, "addr", addr, "listen address (GG_ADDR)")
	fs.StringVar(&dataDir, "data-dir", dataDir, "data directory (GG_DATA_DIR)")
	fs.BoolVar(&c.Demo, "demo", false, "also run the built-in simulated workspace as the `demo` worker account")
	fs.StringVar(&c.DemoDriver, "demo-driver", "gooni", "with --demo: the simulated workspace's driver, gooni (workspace-sim) or comfyui (comfy-sim)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, err
	}
	c.Addr, c.DataDir = addr, DataDir(dataDir)
	if fs.NArg() > 0 {
		r.errs = append(r.errs, fmt.Errorf("unexpected argument %q (see gooni --help)", fs.Arg(0)))
	}
	if c.DemoDriver != "gooni" && c.DemoDriver != "comfyui" {
		r.errs = append(r.errs, fmt.Errorf("--demo-driver=%q: must be gooni or comfyui", c.DemoDriver))
	}
	if c.SessionMode != "open" && c.SessionMode != "key" && c.SessionMode != "invite" {
		r.errs = append(r.errs, fmt.Errorf("GG_SESSION_MODE=%q: must be open, key or invite", c.SessionMode))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		r.errs = append(r.errs, errors.New("GG_TLS_CERT and GG_TLS_KEY must be set together"))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		r.errs = append(r.errs, fmt.Errorf("GG_ADDR=%q: must be host:port", c.Addr))
	}
	if !strings.Contains(c.WorkspaceURL, "{workspace}") {
		r.errs = append(r.errs, fmt.Errorf("GG_WORKSPACE_URL must contain {workspace}"))
	}
	return c, errors.Join(r.errs...)
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

// LoopbackAddr reports whether a listen address (host:port) only accepts local clients.
func LoopbackAddr(addr string) bool {
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
