// Package invoke is the invocation gateway: it turns an HTTP call of a
// function (pexec, or pass-through by Host header) into a message on the
// function version's JetStream work queue, waits up to the poll window for a
// worker's answer on a per-gateway reply subject, and otherwise answers 202
// with NVCF-REQID so the caller can poll for the result, which the worker
// then leaves in the results bucket.
//
// The hot path touches no store: functions resolve from the watch-driven
// catalog, and each request costs one JetStream publish plus one reply.
package invoke

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/catalog"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
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
	Catalog Catalog
	Auth    auth.Authenticator
	Logger  *slog.Logger
	// ID names this gateway's reply subject; defaults to a random id.
	ID string
	// DefaultPollSeconds applies when a call has no NVCF-POLL-SECONDS (60).
	DefaultPollSeconds int
}

// Gateway serves invocations.
type Gateway struct {
	cfg     Config
	guard   web.Guard
	log     *slog.Logger
	sub     *nats.Subscription
	waiters sync.Map // request id -> chan *nats.Msg
}

// New builds a gateway; Start subscribes it to its reply subject.
func New(cfg Config) *Gateway {
	if cfg.ID == "" {
		cfg.ID = strings.ReplaceAll(uuid.NewString(), "-", "")
	}
	if cfg.DefaultPollSeconds <= 0 {
		cfg.DefaultPollSeconds = 60
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gateway{cfg: cfg, guard: web.Guard{Auth: cfg.Auth, Log: log}, log: log}
}

// Start subscribes to the reply subject.
func (g *Gateway) Start() error {
	sub, err := g.cfg.Conn.Subscribe(bus.ReplyPrefix(g.cfg.ID)+"*", g.onReply)
	if err != nil {
		return fmt.Errorf("invoke: subscribe replies: %w", err)
	}
	// Replies can be large and bursty; never drop one for a slow consumer.
	_ = sub.SetPendingLimits(-1, -1)
	g.sub = sub
	return nil
}

// Close stops receiving replies. Callers still waiting time out into 202s,
// and their results land in the results bucket.
func (g *Gateway) Close() error {
	if g.sub != nil {
		return g.sub.Unsubscribe()
	}
	return nil
}

// onReply hands a worker's answer to the waiting request, and tells the
// worker whether it was taken; if not, the worker stores it for polling.
func (g *Gateway) onReply(msg *nats.Msg) {
	reqID := bus.ClusterFromSubject(msg.Subject)
	taken := "0"
	if ch, ok := g.waiters.LoadAndDelete(reqID); ok {
		ch.(chan *nats.Msg) <- msg
		taken = "1"
	}
	if msg.Reply != "" {
		_ = msg.Respond([]byte(taken))
	}
}

// Register adds the pexec, status and queue routes.
func (g *Gateway) Register(mux *http.ServeMux) {
	mux.Handle("POST /v2/nvcf/pexec/functions/{functionId}", g.guard.Route(auth.ScopeInvokeFunction, g.pexec))
	mux.Handle("POST /v2/nvcf/pexec/functions/{functionId}/versions/{versionId}", g.guard.Route(auth.ScopeInvokeFunction, g.pexec))
	mux.Handle("GET /v2/nvcf/pexec/status/{requestId}", g.guard.Route(auth.ScopeInvokeFunction, g.status))
	mux.Handle("GET /v2/nvcf/queues/functions/{functionId}", g.guard.Route(auth.ScopeQueueDetails, g.queues))
	mux.Handle("GET /v2/nvcf/queues/functions/{functionId}/versions/{versionId}", g.guard.Route(auth.ScopeQueueDetails, g.queues))
}

// HostRouting sends requests whose Host is <fn>.invocation.<domain> or
// <version>.<fn>.invocation.<domain> to the function, path as is; everything
// else goes to next.
func (g *Gateway) HostRouting(next http.Handler) http.Handler {
	passthrough := g.guard.Route(auth.ScopeInvokeFunction, g.passthrough)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := ParseInvocationHost(r.Host); ok {
			passthrough.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
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
	return g.invoke(w, r, p, e, http.MethodPost, path, poll)
}

func (g *Gateway) passthrough(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	fnID, versionID, _ := ParseInvocationHost(r.Host)
	poll, err := validate.PollSeconds(r.Header.Get("NVCF-POLL-SECONDS"), g.cfg.DefaultPollSeconds)
	if err != nil {
		return err
	}
	e, err := g.target(r.Context(), p, fnID, versionID)
	if err != nil {
		return err
	}
	return g.invoke(w, r, p, e, r.Method, r.URL.RequestURI(), poll)
}

// target resolves the version to invoke and checks that it can take work.
// It answers from the catalog; only when the catalog says "unknown" or "not
// invocable" does it re-read the store, so that the catalog's watch lag never
// turns into a wrong 404 or 503 (and the hot path never reads the store).
func (g *Gateway) target(ctx context.Context, p auth.Principal, fnID, versionID string) (catalog.Entry, error) {
	var e catalog.Entry
	var ok bool
	if !p.CanUseFunction(fnID) {
		// An API key limited to other functions: missing, as for another
		// account's function.
		return e, functionNotFound(fnID, versionID)
	}
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
	if !ok {
		return e, functionNotFound(fnID, versionID)
	}
	f := e.Function
	switch st := e.Status(); st {
	case model.StatusActive, model.StatusDegrading:
		if want := minInstances(e.Deployment); want == 0 {
			return e, problem.Unavailable(30, "function %s version %s is deployed with minInstances 0, so no instance runs and none is coming; set minInstances to at least 1 (gantry deploy update)", f.ID, f.VersionID)
		}
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

func functionNotFound(fnID, versionID string) error {
	if versionID != "" {
		return problem.NotFound("function %s version %s not found", fnID, versionID)
	}
	return problem.NotFound("function %s not found", fnID)
}

func minInstances(d *model.Deployment) int {
	n := 0
	for _, s := range d.Specs {
		n += min(s.MinInstances, s.MaxInstances)
	}
	return n
}

// hopHeaders are not forwarded to functions: they describe this connection,
// carry the caller's credential, or are ours to set.
var hopHeaders = map[string]bool{
	"Authorization": true, "Connection": true, "Keep-Alive": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
	"Host": true, "Nvcf-Poll-Seconds": true,
}

// stripped reports whether a caller header must not reach the function:
// hop-by-hop ones, and our own control headers, which a caller must not spoof.
func stripped(name string) bool {
	return hopHeaders[name] || strings.HasPrefix(name, "Gantry-") || strings.HasPrefix(name, "Nvcf-")
}

// invoke enqueues one call and answers with the result or a 202. Callers
// validate the request (ids, poll window) before resolving the function, so
// a malformed request is a 400 whatever the function's state.
func (g *Gateway) invoke(w http.ResponseWriter, r *http.Request, p auth.Principal, e catalog.Entry, method, path string, poll int) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bus.MaxRequestBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return problem.Errorf(http.StatusRequestEntityTooLarge,
			"request body exceeds the %d MiB inline limit; send a smaller body or pass large inputs as assets (NVCF-INPUT-ASSET-REFERENCES)", bus.MaxRequestBody>>20)
	}
	if err != nil {
		return problem.BadRequest("could not read the request body: %v", err)
	}

	reqID := uuid.NewString()
	f := e.Function
	msg := nats.NewMsg(bus.InvokeSubject(f.ID, f.VersionID))
	for k, vs := range r.Header {
		if !stripped(k) {
			msg.Header[k] = vs
		}
	}
	msg.Header.Set(bus.HeaderReqID, reqID)
	msg.Header.Set(bus.HeaderReply, bus.ReplyPrefix(g.cfg.ID)+reqID)
	msg.Header.Set(bus.HeaderMethod, method)
	msg.Header.Set(bus.HeaderPath, path)
	msg.Header.Set(bus.HeaderAccount, p.Account)
	msg.Header.Set("NVCF-NCAID", p.Account)
	msg.Header.Set("NVCF-FUNCTION-ID", f.ID)
	msg.Header.Set("NVCF-FUNCTION-VERSION-ID", f.VersionID)
	msg.Header.Set("NVCF-MAX-RESPONSE-SIZE-BYTES", strconv.Itoa(bus.MaxResponseBody))
	msg.Data = body

	ch := make(chan *nats.Msg, 1)
	g.waiters.Store(reqID, ch)
	if _, err := g.cfg.JS.PublishMsg(r.Context(), msg, jetstream.WithMsgID(reqID)); err != nil {
		g.waiters.Delete(reqID)
		g.log.Error("invoke: enqueue failed", "function", f.ID, "requestId", reqID, "err", err)
		return &problem.Error{Status: http.StatusServiceUnavailable, RetryAfter: 5,
			Detail:  "the work queue did not accept the request; retry shortly",
			Headers: map[string]string{"NVCF-REQID": reqID, "NVCF-STATUS": statusErrored}}
	}

	timer := time.NewTimer(time.Duration(poll) * time.Second)
	defer timer.Stop()
	select {
	case reply := <-ch:
		return writeReply(w, reqID, reply.Header, reply.Data)
	case <-timer.C:
	case <-r.Context().Done():
	}
	if _, ok := g.waiters.LoadAndDelete(reqID); !ok {
		// The answer arrived as we gave up: it is in the channel.
		reply := <-ch
		return writeReply(w, reqID, reply.Header, reply.Data)
	}
	return g.deferResult(w, r.Context(), reqID, p.Account)
}

// deferResult leaves a pending marker so the worker's late answer is kept,
// and answers 202. If the answer is already stored, it is served instead.
func (g *Gateway) deferResult(w http.ResponseWriter, ctx context.Context, reqID, account string) error {
	ctx = context.WithoutCancel(ctx)
	_, err := g.cfg.Results.Create(ctx, reqID, bus.Result{Account: account, Pending: true}.Encode())
	if errors.Is(err, jetstream.ErrKeyExists) {
		if entry, gerr := g.cfg.Results.Get(ctx, reqID); gerr == nil {
			if res, derr := bus.DecodeResult(entry.Value()); derr == nil && !res.Pending {
				return writeResult(w, reqID, res)
			}
		}
	} else if err != nil {
		g.log.Error("invoke: could not record pending request", "requestId", reqID, "err", err)
	}
	pending(w, reqID)
	return nil
}

func pending(w http.ResponseWriter, reqID string) {
	h := w.Header()
	h.Set("NVCF-REQID", reqID)
	h.Set("NVCF-STATUS", statusPending)
	h.Set("Access-Control-Expose-Headers", "NVCF-REQID, NVCF-STATUS")
	w.WriteHeader(http.StatusAccepted)
}

// writeReply sends a worker's answer, given as NATS headers and body.
func writeReply(w http.ResponseWriter, reqID string, hdr nats.Header, body []byte) error {
	status, _ := strconv.Atoi(hdr.Get(bus.HeaderStatus))
	return writeResult(w, reqID, bus.Result{Status: status, Header: http.Header(hdr), Body: body})
}

func writeResult(w http.ResponseWriter, reqID string, res bus.Result) error {
	h := w.Header()
	for k, vs := range res.Header {
		if !strings.HasPrefix(k, "Gantry-") && !hopHeaders[k] {
			h[k] = vs
		}
	}
	status := res.Status
	nvcfStatus := statusFulfilled
	if res.Header.Get(bus.HeaderError) != "" || status == 0 {
		nvcfStatus = statusErrored
	}
	if status == 0 {
		status = http.StatusBadGateway
	}
	h.Set("NVCF-REQID", reqID)
	h.Set("NVCF-STATUS", nvcfStatus)
	h.Set("Access-Control-Expose-Headers", "NVCF-REQID, NVCF-STATUS")
	h.Set("Content-Length", strconv.Itoa(len(res.Body)))
	w.WriteHeader(status)
	_, err := w.Write(res.Body)
	return err
}
