// Package metrics is Gantry's Prometheus instrumentation: one registry per
// server (never the global default, so several servers in one process do
// not collide), cheap counters and histograms on the invocation path, and a
// collector that reads the platform's state from the store at scrape time.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one server's registry and its invocation instruments.
type Metrics struct {
	reg *prometheus.Registry
	// calls holds only the invocation count and duration instruments (also
	// in reg), so the dashboard can read them without running the state
	// collector's store reads on every poll.
	calls *prometheus.Registry

	invocations *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	ttfb        *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	authFail    *prometheus.CounterVec

	mu       sync.RWMutex
	children map[childKey]*child // pre-resolved label children
}

type childKey struct {
	fn, version string
	code        int
}

type child struct {
	total    prometheus.Counter
	duration prometheus.Observer
	ttfb     prometheus.Observer
}

// maxChildren bounds the label sets the invocation instruments keep; calls
// past it are counted under function_id="other".
const maxChildren = 10000

// New returns a registry with the invocation instruments and the Go and
// process collectors registered.
func New() *Metrics {
	buckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &Metrics{
		reg:   prometheus.NewRegistry(),
		calls: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gantry_invocations_total",
			Help: "Invocations the gateway answered, by function, version and HTTP status."}, []string{"function_id", "version_id", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gantry_invocation_duration_seconds",
			Help: "Time from the gateway taking an invocation to its last byte.", Buckets: buckets}, []string{"function_id", "version_id"}),
		ttfb: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gantry_invocation_time_to_first_byte_seconds",
			Help: "Time from the gateway taking an invocation to its response header.", Buckets: buckets}, []string{"function_id", "version_id"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gantry_invocations_in_flight",
			Help: "Invocations the gateway holds open now."}),
		authFail: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gantry_auth_failures_total",
			Help: "Invocations refused for their credential, by reason (unauthenticated: 401, forbidden: 403)."}, []string{"reason"}),
		children: map[childKey]*child{},
	}
	m.reg.MustRegister(m.invocations, m.duration, m.ttfb, m.inFlight, m.authFail,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.calls.MustRegister(m.invocations, m.duration)
	return m
}

// Calls gathers gantry_invocations_total and
// gantry_invocation_duration_seconds alone: cheap enough for the
// dashboard's polls, which must not read the store as a scrape does.
func (m *Metrics) Calls() prometheus.Gatherer { return m.calls }

// MustRegister adds collectors (such as a State) to the registry.
func (m *Metrics) MustRegister(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// AuthFailure counts a refused credential; reason is one of a fixed set
// ("unauthenticated", "forbidden").
func (m *Metrics) AuthFailure(reason string) {
	if m != nil {
		m.authFail.WithLabelValues(reason).Inc()
	}
}

// Observe records one finished invocation. A call refused as malformed,
// unauthenticated, forbidden or for an unknown function is counted under
// function_id="unknown": its id is the caller's choice and may not exist.
func (m *Metrics) Observe(fnID, versionID string, code int, took, firstByte time.Duration) {
	switch code {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		fnID, versionID = "unknown", ""
	}
	c := m.child(fnID, versionID, code)
	c.total.Inc()
	c.duration.Observe(took.Seconds())
	c.ttfb.Observe(firstByte.Seconds())
}

func (m *Metrics) child(fnID, versionID string, code int) *child {
	k := childKey{fnID, versionID, code}
	m.mu.RLock()
	c, ok := m.children[k]
	m.mu.RUnlock()
	if ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok = m.children[k]; ok {
		return c
	}
	if len(m.children) >= maxChildren {
		k = childKey{"other", "", code}
		if c, ok = m.children[k]; ok {
			return c
		}
	}
	c = &child{
		total:    m.invocations.WithLabelValues(k.fn, k.version, strconv.Itoa(code)),
		duration: m.duration.WithLabelValues(k.fn, k.version),
		ttfb:     m.ttfb.WithLabelValues(k.fn, k.version),
	}
	m.children[k] = c
	return c
}
