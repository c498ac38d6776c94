package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/felixge/httpsnoop"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"gooni/store"
)

// Metrics are the Prometheus series of one server. Task counts are read
// from the database at scrape time, so they are right after a restart.
type Metrics struct {
	Registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	throttled *prometheus.CounterVec
	// auditSuppressed counts repeated denials folded into an earlier audit row.
	auditSuppressed *prometheus.CounterVec
	// QueueWait observes how long tasks waited before dispatch (fed by the dispatcher).
	QueueWait prometheus.Histogram
	// DispatchLatency observes how long a workspace took to accept a task.
	DispatchLatency prometheus.Histogram
	// WorkspaceErrors counts failed workspace calls per account.
	WorkspaceErrors *prometheus.CounterVec
}

// NewMetrics builds the registry with process and Go collectors.
func NewMetrics(db *store.DB) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gooni_http_requests_total", Help: "HTTP requests by route template, method and status code.",
	}, []string{"route", "method", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "gooni_http_request_duration_seconds", Help: "HTTP request latency by route template.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	}, []string{"route"})
	m.throttled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gooni_throttle_rejections_total", Help: "Requests rejected with rate_limited, by limiter.",
	}, []string{"limiter"})
	m.auditSuppressed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gooni_audit_suppressed_total",
		Help: "Repeated denials (same action and client within 60 s) counted instead of written to the audit log, by action.",
	}, []string{"action"})
	m.QueueWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gooni_queue_wait_seconds", Help: "Time tasks waited as pending before a workspace took them.",
		Buckets: prometheus.ExponentialBuckets(0.01, 3, 12),
	})
	m.DispatchLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gooni_dispatch_latency_seconds", Help: "Time a workspace took to accept a task.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
	})
	m.WorkspaceErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gooni_workspace_errors_total", Help: "Failed workspace calls by worker account.",
	}, []string{"account"})
	m.Registry.MustRegister(m.requests, m.duration, m.throttled, m.auditSuppressed, m.QueueWait, m.DispatchLatency, m.WorkspaceErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&dbCollector{db: db})
	return m
}

// Handler serves the exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// instrument counts requests by their route template (never the raw path,
// which would let clients create unbounded series).
func (m *Metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		code := http.StatusOK
		ww := httpsnoop.Wrap(w, httpsnoop.Hooks{
			WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
				return func(c int) { code = c; next(c) }
			},
		})
		route := "unmatched"
		next.ServeHTTP(ww, r.WithContext(context.WithValue(r.Context(), ctxRoute, &route)))
		m.requests.WithLabelValues(route, r.Method, strconv.Itoa(code)).Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// routeName records the matched route template for instrument; it runs
// inside the router, where the matched route is known.
func routeName(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := r.Context().Value(ctxRoute).(*string); ok {
			if rt := mux.CurrentRoute(r); rt != nil {
				if tpl, err := rt.GetPathTemplate(); err == nil {
					*p = tpl
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

type dbCollector struct{ db *store.DB }

var (
	tasksDesc = prometheus.NewDesc("gooni_tasks", "Tasks by status and type.", []string{"status", "type"}, nil)
	queueDesc = prometheus.NewDesc("gooni_queue_depth", "Pending tasks.", nil, nil)
	oldest    = prometheus.NewDesc("gooni_queue_oldest_pending_seconds", "Age of the oldest pending task.", nil, nil)
	accDesc   = prometheus.NewDesc("gooni_worker_accounts", "Worker accounts by status.", []string{"status"}, nil)
)

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tasksDesc
	ch <- queueDesc
	ch <- oldest
	ch <- accDesc
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pending := 0
	if counts, err := c.db.CountByStatusType(ctx); err == nil {
		for _, n := range counts {
			ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(n.N), n.Status, n.Type)
			if n.Status == store.StatusPending {
				pending += n.N
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(pending))
	age := 0.0
	if t, ok, err := c.db.OldestPending(ctx); err == nil && ok {
		age = time.Since(t).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(oldest, prometheus.GaugeValue, age)
	if accs, err := c.db.ListAccounts(ctx); err == nil {
		by := map[string]int{store.AccountPending: 0, store.AccountReady: 0, store.AccountFailed: 0, store.AccountDisabled: 0}
		for _, a := range accs {
			by[a.Status]++
		}
		for s, n := range by {
			ch <- prometheus.MustNewConstMetric(accDesc, prometheus.GaugeValue, float64(n), s)
		}
	}
}

// DispatchObserver adapts Metrics to the dispatcher's Observer.
func (m *Metrics) DispatchObserver() dispatchObserver { return dispatchObserver{m} }

type dispatchObserver struct{ m *Metrics }

func (o dispatchObserver) QueueWait(d time.Duration)       { o.m.QueueWait.Observe(d.Seconds()) }
func (o dispatchObserver) DispatchLatency(d time.Duration) { o.m.DispatchLatency.Observe(d.Seconds()) }
func (o dispatchObserver) WorkspaceError(account string) {
	o.m.WorkspaceErrors.WithLabelValues(account).Inc()
}
