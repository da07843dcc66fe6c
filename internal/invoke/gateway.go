// Package invoke is the invocation gateway: it turns an HTTP call of a
// function (pexec, or pass-through by Host header) into a call stream with a
// worker (package stream). A sync call goes straight to a free worker slot
// when one accepts its offer; otherwise it waits in the function version's
// durable JetStream work queue. The answer streams back as the function
// writes it. A pexec call not answering within its poll window gets 202
// with NVCF-REQID, and its worker leaves the result in the results bucket.
//
// The hot path touches no store and no disk: functions resolve from the
// watch-driven catalog, and an offered call costs four core NATS messages.
package invoke

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/catalog"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/stream"
	"github.com/gantry-dev/gantry/internal/tracing"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// Catalog resolves functions without a store round trip.
type Catalog interface {
	Lookup(account, fnID, versionID string) (catalog.Entry, bool)
	Resolve(account, fnID string) (catalog.Entry, bool)
	Versions(account, fnID string) []catalog.Entry
	Fresh(ctx context.Context, account, fnID string) ([]catalog.Entry, error)
}

// NVCF status header values.
const (
	statusFulfilled = "fulfilled"
	statusPending   = "pending-evaluation"
	statusErrored   = "errored"
)

// Config wires the gateway.
type Config struct {
	Conn    *nats.Conn
	JS      jetstream.JetStream
	Results jetstream.KeyValue
	// Large holds answers of polled calls too large for Results.
	Large jetstream.ObjectStore
	// Limits holds the rate-limit windows shared by every replica, for
	// limits with syncCheck; nil counts those per replica too.
	Limits  jetstream.KeyValue
	Catalog Catalog
	// Clusters, when set, lets a call to a version at zero instances fail
	// at once when no registered cluster could ever run an instance.
	Clusters Clusters
	Auth     auth.Authenticator
	Logger   *slog.Logger
	// ID names this gateway's reply subject; defaults to a random id.
	ID string
	// DefaultPollSeconds applies when a call has no NVCF-POLL-SECONDS (60).
	DefaultPollSeconds int
	// MaxRequestBody is the largest request body accepted (default
	// DefaultMaxRequestBody, NVCF's inline limit); larger ones get 413
	// before anything is queued. Bodies of any accepted size stream.
	MaxRequestBody int64
	// HostCallLimit is how long a Host-routed pass-through call may run
	// before the gateway gives up on it (default 1h); such calls never turn
	// into a 202, which plain HTTP clients cannot follow.
	HostCallLimit time.Duration
	// Stream tunes the call streams to workers.
	Stream stream.Options
	// WatchRecheck is how often a call answered 202 while running on a
	// worker slot is checked for its worker having gone (default 5s).
	WatchRecheck time.Duration
	// Assets checks and grants the assets calls name
	// (NVCF-INPUT-ASSET-REFERENCES); nil refuses calls that name any.
	Assets *Assets
	// Tracing exports a span per call (trace.go); nil: tracing off, and a
	// caller's traceparent reaches the function as it came.
	Tracing trace.TracerProvider
}

// Defaults of the call limits.
const (
	// DefaultMaxRequestBody is NVCF's inline request limit.
	DefaultMaxRequestBody = 5 << 20
	// DefaultHostCallLimit bounds a Host-routed pass-through call.
	DefaultHostCallLimit = time.Hour
)

// Gateway serves invocations.
type Gateway struct {
	cfg   Config
	guard web.Guard
	log   *slog.Logger
	mux   *stream.Mux
	// watcher keeps detached fast-path calls from being lost (watch.go).
	watcher *watcher
	// load reports the calls held on worker slots to the autoscaler.
	load *load
	// limits enforces functions' rateLimit.
	limits *limiter
	// fits tells whether a version at zero instances can ever get one.
	fits *fits
	// leases are the worker slots this gateway calls instances on
	// directly (direct.go), with instances, the transport it calls them
	// with.
	leases    *leases
	instances *http.Transport
	h2c       *http.Transport // for gRPC calls to instances that serve it
	// tracer starts the calls' spans; nil when tracing is off.
	tracer trace.Tracer
	// ctx ends with the gateway: direct calls end with it. detached
	// counts the direct calls answered 202 still running.
	ctx      context.Context
	cancel   context.CancelFunc
	detached sync.WaitGroup
}

// New builds a gateway; Start subscribes it to its reply subject.
func New(cfg Config) *Gateway {
	if cfg.ID == "" {
		cfg.ID = strings.ReplaceAll(uuid.NewString(), "-", "")
	}
	if cfg.DefaultPollSeconds <= 0 {
		cfg.DefaultPollSeconds = 60
	}
	if cfg.MaxRequestBody <= 0 {
		cfg.MaxRequestBody = DefaultMaxRequestBody
	}
	if cfg.HostCallLimit <= 0 {
		cfg.HostCallLimit = DefaultHostCallLimit
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gateway{cfg: cfg, guard: web.Guard{Auth: cfg.Auth, Log: log}, log: log, limits: newLimiter(cfg.Limits, log),
		fits: &fits{clusters: cfg.Clusters, answers: map[string]fitAnswer{}}, tracer: tracing.Tracer(cfg.Tracing, "invoke")}
}

// Start subscribes to this gateway's call streams and starts its watcher
// of detached calls.
func (g *Gateway) Start() error {
	prefix := bus.ReplyPrefix(g.cfg.ID)
	mux, err := stream.NewMux(g.cfg.Conn, prefix[:len(prefix)-1], g.cfg.Stream)
	if err != nil {
		return fmt.Errorf("invoke: %w", err)
	}
	g.mux = mux
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if g.watcher, err = startWatcher(ctx, g.cfg.JS, g.cfg.Conn, mux, g.cfg.Results, g.cfg.WatchRecheck, g.log); err != nil {
		mux.Close()
		return err
	}
	g.load = newLoad(g.cfg.Conn, g.cfg.ID)
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.instances, g.h2c = directTransport(), h2cTransport()
	if g.leases, err = newLeases(g.cfg.Conn, g.cfg.ID, g.log); err != nil {
		g.watcher.stop()
		mux.Close()
		return err
	}
	return nil
}

// Close ends every call in flight: a pexec call not yet answering becomes a
// 503 the caller can retry (or, once 202'd, its worker stores the answer),
// and a stream under way ends with an error event (SSE) or a cut-off body.
func (g *Gateway) Close() error {
	if g.watcher != nil {
		g.watcher.stop()
	}
	if g.load != nil {
		g.load.close()
	}
	if g.leases != nil {
		g.cancel()
		g.detached.Wait()
		g.leases.close()
		g.instances.CloseIdleConnections()
		g.h2c.CloseIdleConnections()
	}
	if g.mux != nil {
		return g.mux.Close()
	}
	return nil
}

// Register adds the pexec, status and queue routes.
func (g *Gateway) Register(mux *http.ServeMux) {
	mux.Handle("POST /v2/nvcf/pexec/functions/{functionId}", g.guard.Route(auth.ScopeInvokeFunction, g.pexec))
	mux.Handle("POST /v2/nvcf/pexec/functions/{functionId}/versions/{versionId}", g.guard.Route(auth.ScopeInvokeFunction, g.pexec))
	mux.Handle("GET /v2/nvcf/pexec/status/{requestId}", g.guard.Route(auth.ScopeInvokeFunction, g.status))
	mux.Handle("GET "+LargeResultPath+"{requestId}", g.guard.Route(auth.ScopeInvokeFunction, g.largeResult))
	mux.Handle("GET /v2/nvcf/queues/{a}/{b}", g.guard.Route(auth.ScopeQueueDetails, g.queueRoutes))
	mux.Handle("GET /v2/nvcf/queues/functions/{functionId}/versions/{versionId}", g.guard.Route(auth.ScopeQueueDetails, g.queues))
}

// Routing headers that name the function of a pass-through call where
// there is no wildcard DNS for <fn>.invocation.<domain>, as NVCF reads them.
const (
	HeaderFunctionID        = "Function-ID"
	HeaderFunctionVersionID = "Function-Version-ID"
)

// Routing sends pass-through calls to their function, path as is:
//   - requests whose Host is <fn>.invocation.<domain> or
//     <version>.<fn>.invocation.<domain>;
//   - requests with a Function-ID header (and optionally
//     Function-Version-ID) on a path that is none of Gantry's own routes
//     in api, so that a management call carrying the header by chance
//     still reaches the API.
//
// Everything else goes to next.
func (g *Gateway) Routing(api *http.ServeMux, next http.Handler) http.Handler {
	passthrough := g.guard.Route(auth.ScopeInvokeFunction, g.passthrough)
	llm := web.Unguarded(g.guard.Log, func(w http.ResponseWriter, r *http.Request) error {
		return problem.Errorf(http.StatusNotImplemented, "Gantry does not serve NVCF's LLM gateway (llm.invocation.<domain>) yet: "+
			"call the function's own OpenAI-compatible route on <function-id>.invocation.<domain>, e.g. POST /v1/chat/completions")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isLLMHost(r.Host) {
			llm.ServeHTTP(w, r)
			return
		}
		if _, _, ok := ParseInvocationHost(r.Host); ok {
			passthrough.ServeHTTP(w, r)
			return
		}
		if r.Header.Get(HeaderFunctionID) != "" {
			if _, pattern := api.Handler(r); pattern == "" {
				passthrough.ServeHTTP(w, r)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// isLLMHost reports whether host is NVCF's LLM gateway,
// llm.invocation.<domain>, which would otherwise read as a function named
// "llm".
func isLLMHost(host string) bool {
	return strings.HasPrefix(host, "llm.invocation.")
}

// passthroughTarget names the function of a pass-through call: by Host, or
// by the routing headers.
func passthroughTarget(r *http.Request) (fnID, versionID string, err error) {
	if fnID, versionID, ok := ParseInvocationHost(r.Host); ok {
		return fnID, versionID, nil
	}
	fnID, versionID = r.Header.Get(HeaderFunctionID), r.Header.Get(HeaderFunctionVersionID)
	if err := validate.ID("Function-ID header", fnID); err != nil {
		return "", "", err
	}
	if versionID != "" {
		if err := validate.ID("Function-Version-ID header", versionID); err != nil {
			return "", "", err
		}
	}
	return fnID, versionID, nil
}

// ParseInvocationHost extracts function and optional version ids from an
// invocation host name.
func ParseInvocationHost(host string) (fnID, versionID string, ok bool) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	labels := strings.Split(host, ".")
	for i, l := range labels {
		if l != "invocation" || i == 0 || i == len(labels)-1 {
			continue
		}
		fnID = labels[i-1]
		if i >= 2 {
			versionID = labels[i-2]
		}
		if i > 2 || validate.ID("function id", fnID) != nil || (versionID != "" && validate.ID("version id", versionID) != nil) {
			return "", "", false
		}
		return fnID, versionID, true
	}
	return "", "", false
}

func (g *Gateway) pexec(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	fnID, versionID := r.PathValue("functionId"), r.PathValue("versionId")
	if err := validate.ID("function id", fnID); err != nil {
		return err
	}
	if versionID != "" {
		if err := validate.ID("version id", versionID); err != nil {
			return err
		}
	}
	poll, err := validate.PollSeconds(r.Header.Get("NVCF-POLL-SECONDS"), g.cfg.DefaultPollSeconds)
	if err != nil {
		return err
	}
	e, err := g.target(r.Context(), p, fnID, versionID)
	if err != nil {
		return err
	}
	path := e.Function.InferenceURL
	if r.URL.RawQuery != "" {
		path += "?" + r.URL.RawQuery
	}
	return g.invoke(w, r, p, e, http.MethodPost, path, time.Duration(poll)*time.Second, true)
}

func (g *Gateway) passthrough(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	fnID, versionID, err := passthroughTarget(r)
	if err != nil {
		return err
	}
	e, err := g.target(r.Context(), p, fnID, versionID)
	if err != nil {
		return err
	}
	return g.invoke(w, r, p, e, r.Method, r.URL.RequestURI(), g.cfg.HostCallLimit, false)
}

// target resolves the version to invoke and checks that it can take work.
// It answers from the catalog; only when the catalog says "unknown" or "not
// invocable" does it re-read the store, so that the catalog's watch lag never
// turns into a wrong 404 or 503 (and the hot path never reads the store).
func (g *Gateway) target(ctx context.Context, p auth.Principal, fnID, versionID string) (catalog.Entry, error) {
	var e catalog.Entry
	var ok bool
	if versionID != "" {
		e, ok = g.cfg.Catalog.Lookup(p.Account, fnID, versionID)
	} else {
		e, ok = g.cfg.Catalog.Resolve(p.Account, fnID)
	}
	if !ok || !e.Status().AcceptsInvocations() {
		fresh, err := g.cfg.Catalog.Fresh(ctx, p.Account, fnID)
		if err != nil {
			return e, err
		}
		e, ok = catalog.Pick(fresh, versionID)
	}
	if !ok || !p.CanUse(fnID, e.Function.NCAID, e.Function.NCAID != p.Account) {
		// Another account's function that is not shared, or an API key
		// limited to other functions: missing either way, so a caller
		// learns nothing about functions it cannot reach.
		return catalog.Entry{}, functionNotFound(fnID, versionID)
	}
	f := e.Function
	switch st := e.Status(); st {
	case model.StatusActive, model.StatusDegrading:
		// With minInstances 0 there may be no instance yet: the call
		// waits in the queue while the autoscaler starts one.
		return e, nil
	case model.StatusInactive:
		return e, problem.Unavailable(30, "function %s version %s is not deployed; deploy it first (gantry deploy create %s --version %s --gpu <model>)", f.ID, f.VersionID, f.ID, f.VersionID)
	case model.StatusDeploying:
		return e, problem.Unavailable(5, "function %s version %s is still deploying; retry shortly (gantry deploy get %s shows progress)", f.ID, f.VersionID, f.ID)
	case model.StatusDegraded:
		return e, problem.Unavailable(10, "function %s version %s has no ready instance right now (DEGRADED); instances are being restarted", f.ID, f.VersionID)
	default:
		return e, problem.Unavailable(60, "function %s version %s cannot take work (status %s); see healthInfo in gantry deploy get %s", f.ID, f.VersionID, st, f.ID)
	}
}

// reaches reports whether p's credential reaches a version its account
// called: one of its own functions, or one shared with it.
func (g *Gateway) reaches(p auth.Principal, fnID, versionID string) bool {
	if e, ok := g.cfg.Catalog.Lookup(p.Account, fnID, versionID); ok {
		return p.CanUse(fnID, e.Function.NCAID, e.Function.NCAID != p.Account)
	}
	return p.CanUseFunction(fnID)
}

func functionNotFound(fnID, versionID string) error {
	if versionID != "" {
		return problem.NotFound("function %s version %s not found", fnID, versionID)
	}
	return problem.NotFound("function %s not found", fnID)
}
