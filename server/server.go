// Package server is Gooni's HTTP surface: the router, the middleware chain
// (correlation id -> recover -> headers -> Host -> CORS -> throttle -> auth), the
// handlers, the one error writer, and the embedded UI.
package server

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/securecookie"

	"gooni/internal/audit"
	"gooni/internal/catalog"
	"gooni/internal/config"
	"gooni/internal/dispatch"
	"gooni/internal/secrets"
	"gooni/server/apierr"
	"gooni/store"
)

// Dispatcher is what the HTTP surface needs of internal/dispatch.
type Dispatcher interface {
	Wake()
	LiveMedia(ctx context.Context, t *store.Task, preview bool) (*dispatch.LiveMedia, error)
	HealthCheckAudited(ctx context.Context, accountID int64, ev store.AuditOf[*store.Account]) (*store.Account, error)
	HealthCheckInBackground(accountID int64, trigger string)
	CancelRemote(ctx context.Context, taskID string, accountID int64)
	Deploy(ctx context.Context, accountID int64, ev store.AuditOf[*store.Account]) (*store.Account, error)
	RemoveAccount(ctx context.Context, accountID int64, ev store.AuditOf[*store.Account]) error
	LastReap() time.Time
}

// Config is everything the server needs, resolved by main.
type Config struct {
	DB              *store.DB
	Catalog         *catalog.Catalog
	Secrets         *secrets.Set
	Dispatcher      Dispatcher
	DataDir         string
	UI              fs.FS // the built UI (dist/), or nil
	Version         string
	FrontendOrigins []string
	TrustedProxies  []netip.Prefix
	SessionMode     string // open | key | invite
	// ListenAddr is GG_ADDR and PublicURL GG_PUBLIC_URL (nil when unset):
	// together they decide which Host headers are answered and which
	// Origin is this server's own (CONTRACT section 17). With both empty
	// there is no Host check (handler tests only; serve always sets them).
	ListenAddr string
	PublicURL  *config.PublicURL
	// WorkspaceURL is GG_WORKSPACE_URL, to show the base URL an account
	// without one is reached at.
	WorkspaceURL string
	// Docs holds docs/WORKSPACES.md and modal/README.md, served read-only
	// for the Admin page's guide, and docs/openapi.json, served at
	// /openapi.json; nil serves none.
	Docs            fs.FS
	SessionTTL      time.Duration
	AdminSessionTTL time.Duration
	QueueMax        int
	// InputQuota bounds the bytes of queued input images (0 = no limit).
	InputQuota int64
	// MaxUploads bounds large generate bodies read at once (0 = 4).
	MaxUploads int
	// UploadWait is how long a large body waits for a turn (0 = 10 s).
	UploadWait time.Duration
	// MaxStreams bounds open event streams in all (0 = 2000).
	MaxStreams int
	// StreamAuthCheck is how often a stream rechecks its credential (0 = 30 s).
	StreamAuthCheck time.Duration
	// WriteTimeout bounds writing one answer of an ordinary route (0 = 60 s);
	// media answers get MediaIdle per chunk instead (0 = 60 s), event
	// streams a deadline per event.
	WriteTimeout, MediaIdle time.Duration
	TLS                     bool
	// ThrottleKeys bounds the keys each rate limiter remembers (0 = DefaultLimiterKeys).
	ThrottleKeys int
	// ExtraAPIKeys are older API keys still accepted (rotation grace).
	ExtraAPIKeys []string
	// Audit is the audit writer shared with the dispatcher; nil = one on DB.
	Audit *audit.Writer
	// Metrics, or nil for a fresh registry.
	Metrics   *Metrics
	Logger    *slog.Logger
	Now       func() time.Time
	StartedAt time.Time
}

// Server holds the live state of the HTTP surface.
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	cookies *securecookie.SecureCookie
	admin   *securecookie.SecureCookie
	// events feeds GET /events and GET /events/{id} (hub.go).
	events *eventHub
	// shutdown is closed by EndStreams: every event stream ends.
	shutdown     chan struct{}
	shutdownOnce sync.Once
	// auditLog is the one audit writer, shared with the dispatcher.
	auditLog *audit.Writer
	origins  map[string]bool
	apiKeys  [][]byte
	hosts    hosts

	authLimit       *Limiter
	adminLoginLimit *Limiter
	adminLimit      *Limiter

	metrics *Metrics
	handler http.Handler
	uploads *uploadGate
	streams *streamLimits
	// eta computes eta_seconds (CONTRACT section 12).
	eta *etaEstimator
	// openapi is GET /openapi.json (nil: the binary carries none); router
	// is the route table, which server/openapi_test.go walks.
	openapi *openAPIDoc
	router  *mux.Router
}

// Route body limits.
const (
	maxGenerateBody = 16 << 20
	maxSmallBody    = 64 << 10
)

// New builds the server and its routes.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 24 * time.Hour
	}
	if cfg.AdminSessionTTL <= 0 {
		cfg.AdminSessionTTL = 8 * time.Hour
	}
	if cfg.StartedAt.IsZero() {
		cfg.StartedAt = cfg.Now()
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		now:     cfg.Now,
		origins: map[string]bool{},
		hosts:   newHosts(cfg.ListenAddr, cfg.PublicURL),
	}
	s.uploads = newUploadGate(cfg.MaxUploads, cfg.UploadWait)
	s.streams = newStreamLimits(cfg.MaxStreams)
	s.shutdown = make(chan struct{})
	s.auditLog = cfg.Audit
	if s.auditLog == nil {
		s.auditLog = audit.NewWriter(cfg.DB, cfg.Logger, cfg.Now)
	}
	s.eta = newETA(cfg.DB, cfg.Now)
	// Every committed task change reaches the event streams through one hub.
	s.events = newEventHub(s.loadView, eventsRefresh)
	cfg.DB.ListenTasks(s.events.notify)
	s.cookies = newCodec(cfg.Secrets, cfg.SessionTTL)
	s.admin = newCodec(cfg.Secrets, cfg.AdminSessionTTL)
	for _, o := range cfg.FrontendOrigins {
		s.origins[o] = true
	}
	s.apiKeys = append(s.apiKeys, []byte(cfg.Secrets.APIKey))
	for _, k := range cfg.ExtraAPIKeys {
		s.apiKeys = append(s.apiKeys, []byte(k))
	}
	s.authLimit = NewLimiter(10, time.Minute, cfg.Now, cfg.ThrottleKeys)
	s.authLimit.Name = "auth_session"
	s.adminLoginLimit = NewLimiter(30, time.Minute, cfg.Now, cfg.ThrottleKeys)
	s.adminLoginLimit.Name = "admin_session"
	s.adminLimit = NewLimiter(120, time.Minute, cfg.Now, cfg.ThrottleKeys)
	s.adminLimit.Name = "admin"
	s.metrics = cfg.Metrics
	if s.metrics == nil {
		s.metrics = NewMetrics(cfg.DB)
	}
	// Repeated denials that wrote no audit row are counted here (CONTRACT section 19).
	suppressed := s.metrics.auditSuppressed
	s.auditLog.OnSuppressed(func(action string) { suppressed.WithLabelValues(action).Inc() })
	if cfg.Docs != nil {
		doc, err := loadOpenAPI(cfg.Docs, s.basePath())
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("the OpenAPI document cannot be served", "err", err)
		}
		s.openapi = doc
	}
	s.handler = s.routes()
	return s
}

func (s *Server) mediaIdle() time.Duration {
	if s.cfg.MediaIdle > 0 {
		return s.cfg.MediaIdle
	}
	return 60 * time.Second
}

// writeDeadline gives every answer a write deadline, so a client that never
// reads cannot hold a connection (and its goroutine) forever; media and
// event streams set their own, per chunk or per event.
func (s *Server) writeDeadline(next http.Handler) http.Handler {
	d := s.cfg.WriteTimeout
	if d <= 0 {
		d = 60 * time.Second
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
		next.ServeHTTP(w, r)
	})
}

func newCodec(sec *secrets.Set, ttl time.Duration) *securecookie.SecureCookie {
	c := securecookie.New(sec.SessionHashKey, sec.SessionBlockKey)
	c.MaxAge(int(ttl / time.Second))
	c.SetSerializer(securecookie.NopEncoder{})
	return c
}

// Handler is the whole HTTP surface.
func (s *Server) Handler() http.Handler { return s.handler }

// EndStreams ends every open event stream (GET /events, GET
// /events/{task_id}) and any that starts afterwards; clients reconnect
// after the stream's retry interval. For http.Server.RegisterOnShutdown:
// Shutdown waits for active requests, and a stream stays active until its
// client leaves. Safe to call more than once.
func (s *Server) EndStreams() { s.shutdownOnce.Do(func() { close(s.shutdown) }) }

// Metrics is the server's Prometheus registry, for a separate listener.
func (s *Server) Metrics() *Metrics { return s.metrics }

// emptyTaskID holds the task routes below with their {task_id} left empty.
// The router matches no route there (a variable takes one character or
// more), but the contract answers an id outside ^[A-Za-z0-9_-]{1,64}$, the
// empty one too, with task_not_found (CONTRACT section 2).
var emptyTaskID = map[string]bool{"/status/": true, "/events/": true, "/tasks//cancel": true,
	"/results/": true, "/preview/": true, "/inputs/": true, "/gallery/": true}

func (s *Server) routes() http.Handler {
	// Paths are matched as sent: no cleaning redirects (a 301 is not the
	// contract's error), and escaped slashes stay inside one path segment.
	r := mux.NewRouter().SkipClean(true).UseEncodedPath()
	s.router = r
	r.NotFoundHandler = s.h(func(w http.ResponseWriter, r *http.Request) error {
		if emptyTaskID[r.URL.EscapedPath()] {
			return apierr.TaskNotFound()
		}
		return apierr.NotFound()
	})
	r.MethodNotAllowedHandler = s.h(func(w http.ResponseWriter, r *http.Request) error { return apierr.MethodNotAllowed() })

	r.Handle("/health", s.h(s.handleHealth)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/config", s.h(s.handleConfig)).Methods(http.MethodGet, http.MethodHead)

	r.Handle("/auth/session", s.throttleIP(s.authLimit, s.h(s.handleSessionCreate))).Methods(http.MethodPost)
	r.Handle("/auth/session", s.h(s.handleSessionGet)).Methods(http.MethodGet)
	r.Handle("/auth/session", s.h(s.handleSessionDelete)).Methods(http.MethodDelete)
	// An invite link is a way to a session like POST /auth/session: the same limit per IP.
	r.Handle("/auth/invite/{token}", s.throttleIP(s.authLimit, s.h(s.handleInviteUse))).Methods(http.MethodGet)

	user := func(fn handlerFunc) http.Handler { return s.h(s.requireUser(fn)) }
	r.Handle("/generate", user(s.handleGenerate)).Methods(http.MethodPost)
	r.Handle("/status/{task_id}", user(s.handleStatus)).Methods(http.MethodGet)
	r.Handle("/events", user(s.handleAllEvents)).Methods(http.MethodGet)
	r.Handle("/events/{task_id}", user(s.handleEvents)).Methods(http.MethodGet)
	r.Handle("/tasks", user(s.handleTasks)).Methods(http.MethodGet)
	r.Handle("/tasks/{task_id}/cancel", user(s.handleCancel)).Methods(http.MethodPost)
	r.Handle("/results/{task_id}", user(s.handleResult)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/preview/{task_id}", user(s.handlePreview)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/inputs/{task_id}", user(s.handleInput)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/gallery", user(s.handleGallery)).Methods(http.MethodGet)
	r.Handle("/gallery/{task_id}", user(s.handleGalleryDelete)).Methods(http.MethodDelete)

	r.Handle("/admin/session", s.throttleIP(s.adminLoginLimit, s.h(s.handleAdminLogin))).Methods(http.MethodPost)
	admin := func(fn handlerFunc) http.Handler { return s.throttleAdmin(s.h(s.requireAdmin(fn))) }
	r.Handle("/admin/session", admin(s.handleAdminLogout)).Methods(http.MethodDelete)
	r.Handle("/admin/health", admin(s.handleAdminHealth)).Methods(http.MethodGet)
	r.Handle("/admin/logs", admin(s.handleLogs)).Methods(http.MethodGet)
	r.Handle("/admin/logs/verify", admin(s.handleLogsVerify)).Methods(http.MethodGet)
	r.Handle("/admin/accounts", admin(s.handleAccountsList)).Methods(http.MethodGet)
	r.Handle("/admin/accounts", admin(s.handleAccountCreate)).Methods(http.MethodPost)
	r.Handle("/admin/accounts/{id}", admin(s.handleAccountGet)).Methods(http.MethodGet)
	r.Handle("/admin/accounts/{id}", admin(s.handleAccountPatch)).Methods(http.MethodPatch)
	r.Handle("/admin/accounts/{id}", admin(s.handleAccountDelete)).Methods(http.MethodDelete)
	r.Handle("/admin/accounts/{id}/health-check", admin(s.handleAccountHealthCheck)).Methods(http.MethodPost)
	r.Handle("/admin/accounts/{id}/deploy", admin(s.handleAccountDeploy)).Methods(http.MethodPost)
	r.Handle("/admin/invites", admin(s.handleInviteCreate)).Methods(http.MethodPost)
	r.Handle("/admin/invites", admin(s.handleInvitesList)).Methods(http.MethodGet)
	r.Handle("/admin/invites/{id}", admin(s.handleInviteRevoke)).Methods(http.MethodDelete)
	r.Handle("/metrics", s.throttleAdmin(s.h(s.requireAdmin(func(w http.ResponseWriter, r *http.Request) error {
		s.metrics.Handler().ServeHTTP(w, r)
		return nil
	})))).Methods(http.MethodGet)
	// Any other /admin/* path is still behind the admin throttle and session.
	// A path that exists with another method is method_not_allowed, as elsewhere.
	r.PathPrefix("/admin/").Handler(admin(func(w http.ResponseWriter, req *http.Request) error {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
			if m == req.Method {
				continue
			}
			probe := req.Clone(req.Context())
			probe.Method = m
			var match mux.RouteMatch
			if r.Match(probe, &match) && match.MatchErr == nil && match.Route != nil {
				if tpl, _ := match.Route.GetPathTemplate(); tpl != "/admin/" {
					return apierr.MethodNotAllowed()
				}
			}
		}
		return apierr.NotFound()
	}))

	if s.cfg.UI != nil {
		r.Handle("/", s.h(s.handleIndex)).Methods(http.MethodGet, http.MethodHead)
		r.PathPrefix("/assets/").Handler(s.h(s.handleAsset)).Methods(http.MethodGet, http.MethodHead)
		r.Handle("/favicon.svg", s.h(s.handleAsset)).Methods(http.MethodGet, http.MethodHead)
	}
	if s.cfg.Docs != nil {
		r.Handle("/openapi.json", s.h(s.handleOpenAPI)).Methods(http.MethodGet, http.MethodHead)
		for route, file := range servedDocs {
			r.Handle(route, s.h(s.handleDoc(file))).Methods(http.MethodGet, http.MethodHead)
		}
	}

	r.Use(routeName)
	return s.correlate(s.writeDeadline(s.metrics.instrument(s.recoverPanics(s.secureHeaders(s.checkHost(s.cors(r)))))))
}
