package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/invoke"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/web"
)

// startMetrics builds the server's registry and, with MetricsListen, the
// unauthenticated listener a scraper reads.
func (s *Server) startMetrics() error {
	if s.cfg.DisableMetrics {
		if s.cfg.MetricsListen != "" {
			return errors.New("controlplane: --metrics-listen needs the metrics, which are disabled")
		}
		return nil
	}
	s.metrics = metrics.New()
	s.metrics.MustRegister(metrics.NewState(s.st, s.queueDepth, 5*time.Second, s.log))
	if s.cfg.MetricsListen == "" {
		return nil
	}
	l, err := net.Listen("tcp", s.cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("controlplane: metrics listen on %s: %w (pick another address with --metrics-listen)", s.cfg.MetricsListen, err)
	}
	s.metricsLis = l
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.metricsSrv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("controlplane: metrics server stopped", "err", err)
		}
	}()
	return nil
}

// registerMetrics serves GET /metrics on the API listener to admin tokens.
func (s *Server) registerMetrics(mux *http.ServeMux, guard web.Guard) {
	if s.metrics == nil {
		return
	}
	h := s.metrics.Handler()
	mux.Handle("GET /metrics", guard.Route("", func(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
		if p.Kind != auth.KindAdminToken {
			return problem.Errorf(http.StatusForbidden, "GET /metrics needs an admin token (<data-dir>/admin-token), or scrape the unauthenticated --metrics-listen address")
		}
		h.ServeHTTP(w, r)
		return nil
	}))
}

// withMetrics observes the invocations h serves, unless metrics are off.
func (s *Server) withMetrics(h http.Handler) http.Handler {
	if s.metrics == nil {
		return h
	}
	return s.metrics.Middleware(h, invocationTarget)
}

// MetricsURL is the unauthenticated scrape URL, or "" without
// --metrics-listen.
func (s *Server) MetricsURL() string {
	if s.metricsLis == nil {
		return ""
	}
	return "http://" + s.metricsLis.Addr().String() + "/metrics"
}

func (s *Server) closeMetrics() {
	if s.metricsSrv != nil {
		_ = s.metricsSrv.Close()
	}
}

// queueDepth is a version's work-queue depth, as the queues API reports it.
func (s *Server) queueDepth(ctx context.Context, versionID string) (int, error) {
	return bus.QueueDepth(ctx, s.js, versionID)
}

// invocationTarget names the function of an invocation for the metrics:
// pexec paths, and pass-through calls by host or routing header.
func invocationTarget(r *http.Request) (fnID, versionID string, ok bool) {
	const pexec = "/v2/nvcf/pexec/functions/"
	if rest, found := strings.CutPrefix(r.URL.Path, pexec); found && r.Method == http.MethodPost {
		fnID, rest, _ = strings.Cut(rest, "/")
		versionID, _ = strings.CutPrefix(rest, "versions/")
		return fnID, versionID, fnID != ""
	}
	if fnID, versionID, ok := invoke.ParseInvocationHost(r.Host); ok {
		return fnID, versionID, true
	}
	if fnID = r.Header.Get(invoke.HeaderFunctionID); fnID != "" && !strings.HasPrefix(r.URL.Path, "/v2/nvcf/") && !strings.HasPrefix(r.URL.Path, "/v1/") {
		return fnID, r.Header.Get(invoke.HeaderFunctionVersionID), true
	}
	return "", "", false
}
