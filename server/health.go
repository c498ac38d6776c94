package server

import (
	"context"
	"errors"
	"gooni/store"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"gooni/server/apierr"
)

func parseIntParam(v []string, min, max int) (int, error) {
	if len(v) != 1 {
		return 0, errors.New("one value expected")
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || n < min || n > max {
		return 0, errors.New("out of range")
	}
	return n, nil
}

// handleHealth is public and small: ok when the database answers a read.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.cfg.DB.Ping(ctx); err != nil {
		s.log.Error("health: database unreadable", "cause", err.Error(), "correlation_id", correlationID(r.Context()))
		// The contract's 503, in the error shape every non-2xx answer has.
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"status": "unavailable", "version": s.cfg.Version,
			"error": errorPayload{Code: "storage_failed", Message: "the database cannot be read", CorrelationID: correlationID(r.Context())},
		})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.cfg.Version})
	return nil
}

func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.Write(s.cfg.Catalog.Raw)
	return nil
}

type adminHealth struct {
	Status        string         `json:"status"`
	Version       string         `json:"version"`
	UptimeSeconds int64          `json:"uptime_seconds"`
	Database      componentState `json:"database"`
	DiskFreeBytes *uint64        `json:"disk_free_bytes"`
	MediaDir      componentState `json:"media_dir"`
	QueueDepth    int            `json:"queue_depth"`
	OldestPending *float64       `json:"oldest_pending_age_seconds"`
	Accounts      map[string]int `json:"accounts"`
	Tasks         map[string]int `json:"tasks"`
	LastReaperRun *string        `json:"last_reaper_run"`
}

type componentState struct {
	OK    bool   `json:"ok"`
	Path  string `json:"path,omitempty"`
	Error string `json:"error,omitempty"`
}

// handleAdminHealth reports operational readiness (CONTRACT.md section 6).
func (s *Server) handleAdminHealth(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	out := adminHealth{Status: "ok", Version: s.cfg.Version,
		UptimeSeconds: int64(s.now().Sub(s.cfg.StartedAt) / time.Second),
		Accounts:      map[string]int{store.AccountPending: 0, store.AccountReady: 0, store.AccountFailed: 0, store.AccountDisabled: 0},
		Tasks:         map[string]int{store.StatusPending: 0, store.StatusProcessing: 0, store.StatusDone: 0, store.StatusFailed: 0},
	}
	out.Database.OK = true
	if err := s.cfg.DB.Ping(ctx); err != nil {
		out.Database = componentState{OK: false, Error: "the database cannot be read"}
		out.Status = "degraded"
	}
	var st syscall.Statfs_t
	if syscall.Statfs(s.cfg.DataDir, &st) == nil {
		free := st.Bavail * uint64(st.Bsize)
		out.DiskFreeBytes = &free
	}
	media := filepath.Join(s.cfg.DataDir, "media")
	out.MediaDir = componentState{OK: true, Path: "media"}
	if fi, err := os.Stat(media); err != nil || !fi.IsDir() {
		out.MediaDir = componentState{OK: false, Path: "media", Error: "media directory is missing"}
		out.Status = "degraded"
	} else if f, err := os.CreateTemp(media, ".health-*"); err != nil {
		out.MediaDir = componentState{OK: false, Path: "media", Error: "media directory is not writable"}
		out.Status = "degraded"
	} else {
		f.Close()
		os.Remove(f.Name())
	}
	if counts, err := s.cfg.DB.CountByStatus(ctx); err == nil {
		for k, v := range counts {
			out.Tasks[k] = v
		}
		out.QueueDepth = counts[store.StatusPending]
	} else {
		return apierr.Internal(err)
	}
	if t, ok, err := s.cfg.DB.OldestPending(ctx); err == nil && ok {
		age := s.now().Sub(t).Seconds()
		out.OldestPending = &age
	}
	if accs, err := s.cfg.DB.ListAccounts(ctx); err == nil {
		for _, a := range accs {
			out.Accounts[a.Status]++
		}
	} else {
		return apierr.Internal(err)
	}
	if s.cfg.Dispatcher != nil {
		out.LastReaperRun = rfc3339(s.cfg.Dispatcher.LastReap())
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
