package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// SecretKeyService is what the key-management routes need from the encrypted
// secret store.
type SecretKeyService interface {
	RotateMEK(ctx context.Context, progress func(done, total int)) (secrets.RotationResult, error)
	RotateNEK(ctx context.Context, account string, progress func(done, total int)) (secrets.RotationResult, error)
	Status(ctx context.Context) (secrets.Status, error)
	Progress(ctx context.Context) (secrets.Status, error)
}

var _ SecretKeyService = (*secrets.Service)(nil)

// ESS serves the installation-level key management routes under
// /v1/gantry/keys: rotating the master key and an account's key, and the
// status of both tiers. They act on the whole installation, so an
// installation admin gate guards them rather than an account's scopes.
type ESS struct {
	svc  SecretKeyService
	gate func(http.Handler) http.Handler
	log  *slog.Logger
}

// NewESS builds the routes; gate wraps each of them.
func NewESS(svc SecretKeyService, gate func(http.Handler) http.Handler, log *slog.Logger) *ESS {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ESS{svc: svc, gate: gate, log: log}
}

// Register adds the routes to mux.
func (e *ESS) Register(mux *http.ServeMux) {
	route := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(pattern, e.gate(web.Unguarded(e.log, h)))
	}
	route("POST /v1/gantry/keys/mek/rotate", e.rotateMEK)
	route("POST /v1/gantry/keys/nek/rotate", e.rotateNEK)
	route("GET /v1/gantry/keys/status", e.status)
}

// A rotation runs within the request: if the caller goes away it stops
// where it is, and running it again finishes it with the same target.
func (e *ESS) rotateMEK(w http.ResponseWriter, r *http.Request) error {
	res, err := e.svc.RotateMEK(r.Context(), nil)
	if err != nil {
		return keyProblem(err, "")
	}
	return web.JSON(w, http.StatusOK, res)
}

func (e *ESS) rotateNEK(w http.ResponseWriter, r *http.Request) error {
	var req model.NEKRotateRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if req.Account == "" {
		return problem.BadRequest(`account is required: {"account": "<ncaId>"}`)
	}
	if req.Account != secrets.SystemAccount {
		if err := validate.ID("account", req.Account); err != nil {
			return err
		}
	}
	res, err := e.svc.RotateNEK(r.Context(), req.Account, nil)
	if err != nil {
		return keyProblem(err, req.Account)
	}
	return web.JSON(w, http.StatusOK, res)
}

// status counts every NEK and secret; ?counts=false skips that, for
// polling progress while a rotation runs.
func (e *ESS) status(w http.ResponseWriter, r *http.Request) error {
	get := e.svc.Status
	switch r.URL.Query().Get("counts") {
	case "", "true":
	case "false":
		get = e.svc.Progress
	default:
		return problem.BadRequest("counts must be true or false")
	}
	st, err := get(r.Context())
	if err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, st)
}

// keyProblem maps the secret store's errors a caller can act on.
func keyProblem(err error, account string) error {
	switch {
	case errors.Is(err, secrets.ErrRotationRunning):
		return problem.Conflict("another key rotation is running; watch it with `gantry keys status` and try again when it has finished")
	case errors.Is(err, secrets.ErrNoAccountKey):
		return problem.NotFound("account %s has no key yet: it gets one when its first secret is sealed", account)
	case errors.Is(err, secrets.ErrSystemAccount):
		return problem.BadRequest("the system account's key seals internal keys held outside the secret store; it is not rotated on its own")
	}
	return err
}
