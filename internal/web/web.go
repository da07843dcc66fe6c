// Package web is the HTTP plumbing the management API and the invocation
// gateway share: one guard that authenticates the caller and checks the
// route's scope, request ids, JSON answers, and the single place where errors
// become RFC 9457 problem bodies.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/store"
)

// HandlerFunc is a route handler: it gets the authenticated principal and
// returns an error instead of writing one.
type HandlerFunc func(w http.ResponseWriter, r *http.Request, p auth.Principal) error

// Guard wraps handlers with authentication, scope checks and error mapping.
type Guard struct {
	Auth auth.Authenticator
	Log  *slog.Logger
}

type ctxKey struct{}

// RequestID returns the id Guard gave the request.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// Route returns a handler that requires scope (empty: any valid credential).
func (g Guard) Route(scope string, h HandlerFunc) http.Handler {
	if scope == "" {
		return g.RouteAny(nil, h)
	}
	return g.RouteAny([]string{scope}, h)
}

// RouteAny returns a handler that requires one of scopes (none: any valid
// credential), for the routes NVCF opens to either of two scopes, such as
// the function reads (list_functions or list_functions_details).
func (g Guard) RouteAny(scopes []string, h HandlerFunc) http.Handler {
	return g.wrap(func(w http.ResponseWriter, r *http.Request) error {
		p, err := g.Auth.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gantry"`)
			detail := "missing credential: send 'Authorization: Bearer <token>' (gantry dev writes an admin token to <data-dir>/admin-token)"
			if !errors.Is(err, auth.ErrNoCredential) {
				detail = "credential not accepted: it is malformed, expired, revoked or unknown"
			}
			return problem.Errorf(http.StatusUnauthorized, "%s", detail)
		}
		if len(scopes) > 0 && !slices.ContainsFunc(scopes, p.Has) {
			if len(scopes) == 1 {
				return problem.Errorf(http.StatusForbidden, "the credential lacks scope %q that this endpoint needs", scopes[0])
			}
			return problem.Errorf(http.StatusForbidden, "the credential lacks the scope this endpoint needs: one of %s", strings.Join(scopes, ", "))
		}
		return h(w, r, p)
	})
}

// Unguarded wraps a handler that authenticates its caller itself (an agent
// presenting a bootstrap token or cluster credential), with the same request
// ids, panic recovery and problem bodies as guarded routes.
func Unguarded(log *slog.Logger, h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return Guard{Log: log}.wrap(h)
}

// wrap gives a handler a request id, recovers its panics and maps its error.
func (g Guard) wrap(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 64 {
			id = uuid.NewString()
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, id))
		w.Header().Set("X-Request-Id", id)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				g.log().Error("web: handler panicked", "path", r.URL.Path, "requestId", id, "panic", v)
				problem.Write(w, r, id, errors.New("panic"))
			}
		}()
		if err := h(w, r); err != nil {
			g.fail(w, r, id, err)
		}
	})
}

func (g Guard) log() *slog.Logger {
	if g.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Log
}

// fail maps an error to a problem. Store sentinels that escaped a handler
// still get a sensible status; anything unknown is logged and answered with a
// generic 500 that carries no internal text.
func (g Guard) fail(w http.ResponseWriter, r *http.Request, id string, err error) {
	var pe *problem.Error
	switch {
	case errors.As(err, &pe):
	case errors.Is(err, store.ErrNotFound):
		err = problem.NotFound("%s not found", r.URL.Path)
	case errors.Is(err, store.ErrConflict):
		err = problem.Conflict("the resource changed while this request was applied; retry it")
	case errors.Is(err, context.Canceled):
		return // the client went away
	default:
		g.log().Error("web: request failed", "method", r.Method, "path", r.URL.Path, "requestId", id, "err", err)
	}
	problem.Write(w, r, id, err)
}

// JSON writes v with status.
func JSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// ProblemFallback serves mux, turning its own plain-text answers for requests
// no route takes (404, or 405 with the Allow header when the path exists
// with other methods) into problem bodies.
func ProblemFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{h: http.Header{}}
		mux.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			w.Header()["Allow"] = rec.h["Allow"]
			problem.Write(w, r, "", problem.Errorf(http.StatusMethodNotAllowed,
				"%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, rec.h.Get("Allow")))
			return
		}
		problem.Write(w, r, "", problem.NotFound("no route %s %s; see docs/api.md for the endpoints Gantry serves", r.Method, r.URL.Path))
	})
}

// headerRecorder captures the status and headers of the mux's fallback
// answer and discards its body.
type headerRecorder struct {
	h      http.Header
	status int
}

func (r *headerRecorder) Header() http.Header         { return r.h }
func (r *headerRecorder) WriteHeader(code int)        { r.status = code }
func (r *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
