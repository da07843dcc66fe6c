// Package ui is Gantry's live dashboard at /ui on the API listener: static
// HTML, CSS and JavaScript embedded in the binary (no framework, nothing
// fetched from elsewhere at run time), one JSON summary the page polls
// (clusters and their GPUs, functions and deployments, queue depth,
// invocation counts and latency histogram) and the platform events as
// Server-Sent Events.
//
// A browser logs in once with a one-time code: `gantry dev` and `gantry
// dashboard` print /ui/login#code=<code>; the page posts the code (a URL
// fragment, so it never reaches a server log or proxy), which is exchanged
// for an HttpOnly, SameSite=Strict session cookie. Codes and sessions are
// kept by hash in a JetStream KV bucket, so any replica redeems them. A
// session reads its account's state only (ReadScopes); it never carries the
// admin token.
package ui

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/internal/api"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/web"
)

//go:embed assets
var assets embed.FS

// Defaults of Config.
const (
	DefaultCodeTTL    = 5 * time.Minute
	DefaultSessionTTL = 12 * time.Hour
)

// CodesPath is the API route that mints a login code for the caller's
// account (admin tokens only).
const CodesPath = "/v1/gantry/dashboard/codes"

// Config configures the dashboard.
type Config struct {
	// JS holds the bucket of codes and sessions.
	JS jetstream.JetStream
	// Store is read for the summary.
	Store Store
	// QueueDepth reads a deployed version's work-queue depth (nil: none
	// shown).
	QueueDepth func(ctx context.Context, versionID string) (int, error)
	// Calls gathers the invocation counters and latency histograms
	// (metrics.Metrics.Calls); nil when metrics are disabled.
	Calls prometheus.Gatherer
	// Events is the platform event log the page follows.
	Events api.EventLog
	// Auth authenticates the callers of CodesPath (admin tokens).
	Auth auth.Authenticator
	// CodeTTL is how long a login code works (default 5 minutes);
	// SessionTTL how long a session lasts (default 12 hours).
	CodeTTL, SessionTTL time.Duration
	Logger              *slog.Logger
	Now                 func() time.Time
}

// UI is the dashboard: New, Start (opens the bucket), Register, Close.
type UI struct {
	cfg      Config
	log      *slog.Logger
	sessions *sessions
	events   *api.Events
	static   http.Handler
}

// New applies defaults; nothing is opened until Start.
func New(cfg Config) (*UI, error) {
	if cfg.JS == nil || cfg.Store == nil || cfg.Events == nil || cfg.Auth == nil {
		return nil, errors.New("ui: JetStream, a store, an event log and an authenticator are required")
	}
	if cfg.CodeTTL <= 0 {
		cfg.CodeTTL = DefaultCodeTTL
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		return nil, err
	}
	u := &UI{cfg: cfg, log: log, static: http.StripPrefix("/ui/static/", http.FileServerFS(static))}
	u.events = api.NewEvents(cfg.Events, web.Guard{Auth: u, Log: log})
	return u, nil
}

// Start opens the bucket of codes and sessions.
func (u *UI) Start(ctx context.Context) error {
	s, err := openSessions(ctx, u.cfg.JS, u.cfg.CodeTTL, u.cfg.SessionTTL, u.cfg.Now)
	if err != nil {
		return err
	}
	u.sessions = s
	return nil
}

// Close ends the event streams being followed, so they do not hold the
// HTTP server's shutdown (register it with RegisterOnShutdown).
func (u *UI) Close() { u.events.Close() }

// Register adds the dashboard's routes to mux. The pages and static files
// answer HTML; the routes under /ui/api/ and CodesPath answer RFC 9457
// problems.
func (u *UI) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	mux.HandleFunc("GET /ui/{$}", u.index)
	mux.HandleFunc("GET /ui/login", u.loginPage)
	mux.HandleFunc("POST /ui/login", u.login)
	mux.HandleFunc("POST /ui/logout", u.logout)
	mux.Handle("GET /ui/static/", u.staticFiles())
	guard := web.Guard{Auth: u, Log: u.log}
	mux.Handle("GET /ui/api/summary", guard.RouteAny(ReadScopes[:2], u.summary))
	mux.Handle("GET /ui/api/events", u.events.Handler())
	mux.Handle("/ui/api/", web.Unguarded(u.log, func(w http.ResponseWriter, r *http.Request) error {
		return problem.NotFound("no dashboard route %s %s", r.Method, r.URL.Path)
	}))
	mux.Handle("POST "+CodesPath, web.Guard{Auth: u.cfg.Auth, Log: u.log}.Route("", u.mintCode))
}

// staticFiles serves the embedded CSS and JavaScript, which hold no data,
// without a session.
func (u *UI) staticFiles() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w)
		w.Header().Set("Cache-Control", "no-cache")
		u.static.ServeHTTP(w, r)
	})
}

// secureHeaders are on every page and file: only this origin's scripts,
// styles and connections, no framing, no referrer (the login URL's
// fragment is never sent anyway).
func secureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// page writes one of the embedded HTML pages.
func page(w http.ResponseWriter, status int, name string) {
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		http.Error(w, "ui: missing page", http.StatusInternalServerError)
		return
	}
	secureHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
