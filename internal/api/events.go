package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// EventLog is what the events route reads: one account's events.
type EventLog interface {
	List(ctx context.Context, account string, q events.Query) ([]events.Entry, bool, error)
	Follow(ctx context.Context, account string, q events.Query, fn func(events.Entry) error) error
}

var _ EventLog = (*events.Log)(nil)

// Events serves GET /v1/gantry/events: the caller's account's platform
// events, as a JSON list or, with ?follow=true (or Accept:
// text/event-stream), as Server-Sent Events that browsers' EventSource
// reads and resumes with Last-Event-ID. Either function-reading scope
// opens it (the default API key scopes include both).
type Events struct {
	log   EventLog
	guard web.Guard
	// Keepalive is how often an idle event stream gets a comment line, so
	// proxies do not cut it (default 15 s).
	Keepalive time.Duration
	now       func() time.Time
	logger    *slog.Logger
	closing   chan struct{}
	closeOnce sync.Once
}

// NewEvents builds the events route over log, guarded by g.
func NewEvents(log EventLog, g web.Guard) *Events {
	logger := g.Log
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Events{log: log, guard: g, Keepalive: 15 * time.Second, now: time.Now, logger: logger, closing: make(chan struct{})}
}

// Close ends every event stream being followed, so that they do not hold
// the HTTP server's shutdown (register it with RegisterOnShutdown). A
// browser reconnects to another replica with Last-Event-ID.
func (h *Events) Close() { h.closeOnce.Do(func() { close(h.closing) }) }

// Register adds the route to mux.
func (h *Events) Register(mux *http.ServeMux) { mux.Handle("GET /v1/gantry/events", h.Handler()) }

// Handler is the guarded route alone, for mounting elsewhere: the dashboard
// serves it at /ui/api/events behind its session cookie (package ui).
func (h *Events) Handler() http.Handler {
	return h.guard.RouteAny([]string{auth.ScopeListFunctions, auth.ScopeListFunctionsDetails}, h.serve)
}

// EventList is the JSON answer of a listing.
type EventList struct {
	Events []events.Event `json:"events"`
	// Truncated says older matching events were left out (limit).
	Truncated bool `json:"truncated"`
}

// visible says whether p sees e: e is of p's account (the read is filtered
// on it already); a credential limited to some functions sees only their
// events, and none of the account's clusters or keys.
func visible(p auth.Principal, e events.Event) bool {
	if e.Account != p.Account {
		return false
	}
	if p.Functions() == nil {
		return true
	}
	return e.Function != "" && p.CanUseFunction(e.Function)
}

func (h *Events) serve(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q, err := validate.Events(r.URL.Query(), r.Header.Get("Last-Event-ID"), h.now())
	if err != nil {
		return err
	}
	if !events.IsSubjectToken(p.Account) {
		return problem.BadRequest("account %q has no event log", p.Account)
	}
	query := events.Query{Since: q.Since, After: q.After, Limit: q.Limit}
	if q.Follow || strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		if query.Since.IsZero() && query.After == 0 {
			query.Since = h.now() // only what happens from now on
		}
		return h.follow(w, r, p, query)
	}
	entries, truncated, err := h.log.List(r.Context(), p.Account, query)
	if err != nil {
		return err
	}
	out := EventList{Events: make([]events.Event, 0, len(entries)), Truncated: truncated}
	for _, e := range entries {
		if visible(p, e.Event) {
			out.Events = append(out.Events, e.Event)
		}
	}
	return web.JSON(w, http.StatusOK, out)
}

// follow streams events as SSE: "id: <stream sequence>", "event: <type>",
// "data: <the CloudEvent>", and a comment every Keepalive. Errors before
// the first byte are problems; after it, the stream just ends (the browser
// reconnects with Last-Event-ID).
func (h *Events) follow(w http.ResponseWriter, r *http.Request, p auth.Principal, q events.Query) error {
	rc := http.NewResponseController(w)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	entries := make(chan events.Entry, 64)
	failed := make(chan error, 1)
	go func() {
		failed <- h.log.Follow(ctx, p.Account, q, func(e events.Entry) error {
			select {
			case entries <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, ": gantry events\n\n"); err != nil {
		return nil
	}
	_ = rc.Flush()
	tick := time.NewTicker(h.Keepalive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.closing:
			return nil
		case err := <-failed:
			if err != nil && ctx.Err() == nil {
				h.logger.Warn("api: event stream ended", "account", p.Account, "requestId", web.RequestID(r.Context()), "err", err)
			}
			return nil
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return nil
			}
		case e := <-entries:
			if !visible(p, e.Event) {
				continue
			}
			b, err := json.Marshal(e.Event)
			if err != nil {
				return nil
			}
			if _, err := fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", strconv.FormatUint(e.Seq, 10), e.Event.Type, b); err != nil {
				return nil
			}
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}
