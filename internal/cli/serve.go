package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"gooni/internal/audit"
	"gooni/internal/catalog"
	"gooni/internal/config"
	"gooni/internal/dispatch"
	"gooni/internal/secrets"
	"gooni/internal/workspace"
	"gooni/internal/workspace/comfyui"
	"gooni/server"
	"gooni/store"
)

// serve runs the appliance until SIGINT/SIGTERM.
func serve(cfg *config.Config, a Assets, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir := cfg.DataDir
	unlock, err := dir.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.MkdirAll(dir.Media(), 0o700); err != nil {
		return fmt.Errorf("create media dir: %w", err)
	}
	sec, err := secrets.Load(dir.Path(), cfg.Secrets)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	for _, name := range []string{secrets.APIKey, secrets.AdminKey, secrets.SessionKeys, secrets.AccountKey, secrets.AuditKey} {
		if sec.Generated[name] {
			log.Info("generated secret", "secret", name, "path", sec.Sources[name])
		} else {
			log.Info("loaded secret", "secret", name, "from", sec.Sources[name])
		}
	}
	cat, err := loadCatalog(cfg, a)
	if err != nil {
		return err
	}
	db, err := store.Open(dir.Path(), a.Schema, store.Options{AccountKeys: sec.AccountKeys, AuditKey: sec.AuditKey, RetiredAuditKeys: sec.RetiredAuditKeys})
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer db.Close()
	if err := checkOrphans(ctx, db, sec); err != nil {
		// Take back the key just generated, so the next start refuses too
		// instead of adopting it.
		for _, name := range []string{secrets.AuditKey, secrets.AccountKey} {
			if sec.Generated[name] {
				os.Remove(sec.Sources[name])
			}
		}
		return err
	}
	wfs, err := comfyui.LoadWorkflows(comfyui.EmbeddedWorkflows(), cfg.WorkflowsDir)
	if err != nil {
		return fmt.Errorf("workflows: %w", err)
	}
	auditLog := audit.NewWriter(db, log, nil)
	metrics := server.NewMetrics(db)
	d := dispatch.New(dispatch.Config{
		Observer: metrics.DispatchObserver(),
		DB:       db, DataDir: dir.Path(), WorkspaceURL: cfg.WorkspaceURL,
		TTLImage: cfg.TTLImage, TTLVideo: cfg.TTLVideo, HealthInterval: cfg.HealthInterval,
		DeployCommand: cfg.DeployCommand, Logger: log, Audit: auditLog,
		RequestTimeout: cfg.WorkspaceTimeout, TTLQueued: cfg.TTLQueued,
		Models: cat.ModelIDs(), Workflows: wfs,
	})
	srv := server.New(server.Config{
		DB: db, Catalog: cat, Secrets: sec, Dispatcher: d, DataDir: dir.Path(), UI: a.UI, Version: a.Version, Audit: auditLog,
		FrontendOrigins: cfg.FrontendOrigins, TrustedProxies: cfg.TrustedProxies, SessionMode: cfg.SessionMode,
		SessionTTL: cfg.SessionTTL, AdminSessionTTL: cfg.AdminSessionTTL, QueueMax: cfg.QueueMax,
		InputQuota: cfg.InputQuota, MaxUploads: cfg.MaxUploads, MaxStreams: cfg.MaxStreams,
		TLS: cfg.TLSCert != "", Logger: log, ExtraAPIKeys: sec.PreviousAPIKeys, Metrics: metrics,
		ListenAddr: cfg.Addr, PublicURL: cfg.PublicURL, WorkspaceURL: cfg.WorkspaceURL, Docs: a.Docs,
	})
	warnHosts(cfg, log)

	fileLimit, err := server.RaiseFileLimit()
	if err != nil {
		return fmt.Errorf("file limit: %w", err)
	}
	lim := server.DefaultConnLimits(fileLimit, cfg.TrustedProxies)
	if lim.Total < cfg.MaxStreams {
		log.Warn("the open-file limit allows fewer connections than GG_MAX_STREAMS; raise the hard limit (LimitNOFILE)",
			"file_limit", fileLimit, "connections", lim.Total, "max_streams", cfg.MaxStreams)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	ln = server.LimitConns(ln, lim)
	log.Info("connection limits", "file_limit", fileLimit, "connections", lim.Total, "per_client", lim.PerIP)
	bg, cancelBG := context.WithCancel(context.Background())
	defer cancelBG()
	var simDone chan struct{}
	if cfg.Demo {
		simDone, err = startDemo(ctx, bg, db, d, cfg.DemoDriver, wfs, log)
		if err != nil {
			return fmt.Errorf("demo workspace: %w", err)
		}
	}
	go maintain(bg, db, cfg.AuditRetention, log)
	// Before anything can upload: what a crash left in media/ goes first.
	d.CleanMedia(ctx)
	dispatchDone := make(chan struct{})
	go func() { d.Run(bg); close(dispatchDone) }()

	hs := &http.Server{
		Addr:              cfg.Addr,
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// A shutdown ends the event streams instead of waiting out its timeout
	// for clients that never leave; browsers reconnect to the next start.
	hs.RegisterOnShutdown(srv.EndStreams)
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else if !config.LoopbackAddr(cfg.Addr) {
		log.Warn("serving plain HTTP on a non-loopback address: sessions and keys cross the network unencrypted; set GG_TLS_CERT and GG_TLS_KEY or put a TLS proxy in front", "addr", cfg.Addr)
	}
	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.Metrics().Handler())
		ms := &http.Server{Addr: cfg.MetricsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listen on %s: %w", cfg.MetricsAddr, err)
		}
		go ms.Serve(mln)
		defer ms.Close()
		if !config.LoopbackAddr(cfg.MetricsAddr) {
			log.Warn("metrics are served without authentication on a non-loopback address", "addr", cfg.MetricsAddr)
		}
		log.Info("metrics listening", "url", "http://"+mln.Addr().String()+"/metrics")
	}
	log.Info("gooni listening", "url", scheme+"://"+ln.Addr().String(), "version", a.Version, "data_dir", dir.Path(), "demo", cfg.Demo)
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			errc <- hs.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	case <-ctx.Done():
		log.Info("shutting down: finishing in-flight requests")
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		log.Warn("in-flight requests cut short", "error", err.Error())
	}
	cancelBG()
	<-dispatchDone
	if simDone != nil {
		<-simDone
	}
	log.Info("gooni stopped cleanly")
	return nil
}

func loadCatalog(cfg *config.Config, a Assets) (*catalog.Catalog, error) {
	data, src := a.Catalog, "built-in inference_settings.json"
	if cfg.CatalogFile != "" {
		b, err := os.ReadFile(cfg.CatalogFile)
		if err != nil {
			return nil, fmt.Errorf("catalog %s: %w", cfg.CatalogFile, err)
		}
		data, src = b, cfg.CatalogFile
	}
	cat, err := catalog.Load(data)
	if err != nil {
		return nil, fmt.Errorf("catalog %s is broken: %w", src, err)
	}
	return cat, nil
}

// checkOrphans refuses to start when a secret was just generated although
// the database holds data sealed or chained under the lost one.
func checkOrphans(ctx context.Context, db *store.DB, sec *secrets.Set) error {
	if sec.Generated[secrets.AuditKey] {
		items, _, err := db.ListAudit(ctx, store.AuditFilter{Limit: 1})
		if err != nil {
			return fmt.Errorf("database: %w", err)
		}
		if len(items) > 0 {
			return fmt.Errorf("the audit key file %s was missing and has been generated anew, but the database already holds audit events chained under the old key; restore the old key file (and delete the new one) or the audit chain cannot be verified", sec.Sources[secrets.AuditKey])
		}
	}
	if sec.Generated[secrets.AccountKey] {
		accs, err := db.ListAccounts(ctx)
		if err != nil {
			return fmt.Errorf("database: %w", err)
		}
		for _, a := range accs {
			if a.HasCredentials {
				return fmt.Errorf("the account key file %s was missing and has been generated anew, but worker account %d holds credentials sealed under the old key; restore the old key file (and delete the new one)", sec.Sources[secrets.AccountKey], a.ID)
			}
		}
	}
	return nil
}

// startDemo runs the simulated workspace in-process on a loopback port and
// registers it as the ready worker account "demo".
func startDemo(ctx, bg context.Context, db *store.DB, d *dispatch.Dispatcher, driver string, wfs *comfyui.Workflows, log *slog.Logger) (chan struct{}, error) {
	var handler http.Handler
	capacity := 2
	if driver == store.DriverComfyUI {
		// comfy-sim runs one prompt at a time, as ComfyUI does.
		sim, err := comfyui.NewSim(comfyui.SimConfig{Duration: 3 * time.Second, Workflows: wfs})
		if err != nil {
			return nil, err
		}
		handler, capacity = sim.Handler(), 1
	} else {
		sim, err := workspace.NewSim(workspace.SimConfig{Addr: "127.0.0.1:0", Duration: 3 * time.Second, Capacity: 2})
		if err != nil {
			return nil, err
		}
		handler = sim.Handler()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		hs.Serve(ln)
		close(done)
	}()
	go func() {
		<-bg.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	base := "http://" + ln.Addr().String()
	acc, err := db.GetAccountByName(ctx, "demo")
	switch {
	case errors.Is(err, store.ErrNotFound):
		acc = &store.Account{Name: "demo", Workspace: "demo", BaseURL: base, Capacity: capacity, Status: store.AccountPending, Driver: driver}
		if err := db.CreateAccount(ctx, acc, map[string]string{}); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		if _, err := db.UpdateAccount(ctx, acc.ID, store.AccountPatch{BaseURL: &base, Driver: &driver, Capacity: &capacity}); err != nil {
			return nil, err
		}
	}
	acc, err = d.HealthCheck(ctx, acc.ID)
	if err != nil {
		return nil, err
	}
	log.Info("demo workspace ready", "account_id", acc.ID, "base_url", base, "status", acc.Status)
	return done, nil
}

// maintenanceEvery is how often maintain runs: expired sessions go at least
// hourly (CONTRACT section 18); audit retention is checked on the same beat.
var maintenanceEvery = time.Hour

// maintain purges expired sessions (every row a loop of POST /auth/session
// left) and Idempotency-Keys older than 24 h and, with GG_AUDIT_RETENTION, audit events past it, at once and then
// every maintenanceEvery until ctx ends.
func maintain(ctx context.Context, db *store.DB, retention time.Duration, log *slog.Logger) {
	t := time.NewTicker(maintenanceEvery)
	defer t.Stop()
	for {
		now := time.Now()
		if n, err := db.PurgeExpiredSessions(ctx, now); err != nil && ctx.Err() == nil {
			log.Error("session purge", "error", err.Error())
		} else if n > 0 {
			log.Info("expired sessions purged", "removed", n)
		}
		if n, err := db.PurgeIdempotencyKeys(ctx, now.Add(-store.IdempotencyTTL)); err != nil && ctx.Err() == nil {
			log.Error("idempotency key purge", "error", err.Error())
		} else if n > 0 {
			log.Info("expired idempotency keys purged", "removed", n)
		}
		if retention > 0 {
			n, err := db.PruneAudit(ctx, now.Add(-retention))
			if err != nil && ctx.Err() == nil {
				log.Error("audit retention", "error", err.Error())
			} else if n > 0 {
				log.Info("audit retention removed old events", "removed", n, "older_than", retention.String())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
