package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// TelemetryStore is what the telemetry routes read and write. Every read
// is by account, so one account never reaches another's.
type TelemetryStore interface {
	CreateTelemetry(ctx context.Context, t *model.Telemetry, sealed store.SealedSecret) error
	GetTelemetry(ctx context.Context, account, id string) (model.Telemetry, error)
	ListTelemetries(ctx context.Context, account string) ([]model.Telemetry, error)
	PutTelemetrySecret(ctx context.Context, account, id string, sealed store.SealedSecret) error
	DeleteTelemetry(ctx context.Context, account, id string) error
	// ListFunctions finds the functions that still name a telemetry.
	ListFunctions(ctx context.Context) ([]model.Function, error)
}

// MaxTelemetries bounds the telemetries of one account (NVCF has a
// per-account limit too).
const MaxTelemetries = 100

// Telemetries serves NVCF's bring-your-own-observability endpoints
// (/v2/nvcf/telemetries). The secret is sealed with the account's NEK
// before it is stored and is never answered, logged or put in an error;
// the agent receives it only over its own inbox to export an instance's
// logs and metrics.
type Telemetries struct {
	st    TelemetryStore
	seal  Sealer
	guard web.Guard
}

// NewTelemetries builds the telemetry routes.
func NewTelemetries(st TelemetryStore, seal Sealer, g web.Guard) *Telemetries {
	if g.Log == nil {
		g.Log = slog.New(slog.DiscardHandler)
	}
	return &Telemetries{st: st, seal: seal, guard: g}
}

// registerTelemetries hooks the routes up when the API's store holds
// telemetries (the etcd store does; narrow test stores may not).
func registerTelemetries(mux *http.ServeMux, st Store, seal Sealer, g web.Guard) {
	if ts, ok := st.(TelemetryStore); ok && seal != nil {
		NewTelemetries(ts, seal, g).Register(mux)
	}
}

// Register adds the routes to mux, all under NVCF's manage_telemetries
// scope.
func (h *Telemetries) Register(mux *http.ServeMux) {
	route := func(pattern string, fn web.HandlerFunc) {
		mux.Handle(pattern, h.guard.Route(auth.ScopeManageTelemetries, fn))
	}
	route("POST /v2/nvcf/telemetries", h.create)
	route("GET /v2/nvcf/telemetries", h.list)
	route("GET /v2/nvcf/telemetries/{telemetryId}", h.get)
	route("DELETE /v2/nvcf/telemetries/{telemetryId}", h.delete)
	route("PUT /v2/nvcf/secrets/telemetries/{telemetryId}", h.putSecret)
}

// withSealed seals a telemetry's secret value at its own place and hands
// it to write.
func (h *Telemetries) withSealed(ctx context.Context, account, id string, value []byte, write func(store.SealedSecret) error) error {
	return withSealed(ctx, h.seal, secrets.Place{Account: account, FunctionID: store.TelemetrySecrets,
		VersionID: id, Name: store.TelemetrySecretName}, value, write)
}

func (h *Telemetries) create(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req model.TelemetryRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if err := validate.Telemetry(&req); err != nil {
		return err
	}
	have, err := h.st.ListTelemetries(r.Context(), p.Account)
	if err != nil {
		return err
	}
	if len(have) >= MaxTelemetries {
		return problem.BadRequest("the account has %d telemetries, the limit: delete one first (DELETE /v2/nvcf/telemetries/{telemetryId})", len(have))
	}
	for _, t := range have {
		if strings.EqualFold(t.Name, req.Secret.Name) {
			return problem.BadRequest("a telemetry named %q exists already (%s): give secret.name another name, or delete that one", t.Name, t.ID)
		}
	}
	t := model.Telemetry{ID: uuid.NewString(), NCAID: p.Account, Name: req.Secret.Name, Endpoint: req.Endpoint,
		Protocol: req.Protocol, Provider: req.Provider, Types: req.Types, CreatedAt: time.Now().UTC()}
	err = h.withSealed(r.Context(), p.Account, t.ID, req.Secret.Value, func(s store.SealedSecret) error {
		return h.st.CreateTelemetry(r.Context(), &t, s)
	})
	if err != nil {
		return err
	}
	h.guard.Log.Info("api: telemetry added", "telemetry", t.ID, "provider", t.Provider, "types", t.Types, "account", p.Account)
	return web.JSON(w, http.StatusOK, model.TelemetryResponse{Telemetry: t})
}

func (h *Telemetries) list(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	all, err := h.st.ListTelemetries(r.Context(), p.Account)
	if err != nil {
		return err
	}
	if all == nil {
		all = []model.Telemetry{}
	}
	return web.JSON(w, http.StatusOK, model.TelemetryList{Telemetries: all})
}

// own reads a telemetry of the caller's account; any other is missing.
func (h *Telemetries) own(r *http.Request, p auth.Principal) (model.Telemetry, error) {
	ids, err := pathIDs(r, "telemetryId")
	if err != nil {
		return model.Telemetry{}, err
	}
	t, err := h.st.GetTelemetry(r.Context(), p.Account, ids[0])
	if errors.Is(err, store.ErrNotFound) {
		return t, problem.NotFound("telemetry %s not found", ids[0])
	}
	return t, err
}

func (h *Telemetries) get(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	t, err := h.own(r, p)
	if err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, model.TelemetryResponse{Telemetry: t})
}

func (h *Telemetries) putSecret(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	t, err := h.own(r, p)
	if err != nil {
		return err
	}
	var req model.TelemetrySecretUpdate
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if err := validate.TelemetrySecretUpdate(&req); err != nil {
		return err
	}
	err = h.withSealed(r.Context(), p.Account, t.ID, req.Value, func(s store.SealedSecret) error {
		return h.st.PutTelemetrySecret(r.Context(), p.Account, t.ID, s)
	})
	if errors.Is(err, store.ErrNotFound) {
		return problem.NotFound("telemetry %s not found", t.ID)
	}
	if err != nil {
		return err
	}
	h.guard.Log.Info("api: telemetry secret replaced", "telemetry", t.ID, "account", p.Account)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Telemetries) delete(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	t, err := h.own(r, p)
	if err != nil {
		return err
	}
	fs, err := h.st.ListFunctions(r.Context())
	if err != nil {
		return err
	}
	var users []string
	for _, f := range fs {
		if f.NCAID == p.Account && namesTelemetry(f.Telemetries, t.ID) {
			users = append(users, f.ID+" version "+f.VersionID)
		}
	}
	if len(users) > 0 {
		more := ""
		if len(users) > 5 {
			users, more = users[:5], fmt.Sprintf(" and %d more", len(users)-5)
		}
		return problem.BadRequest("telemetry %s is used by function %s%s: delete those function versions first",
			t.ID, strings.Join(users, ", "), more)
	}
	err = h.st.DeleteTelemetry(r.Context(), p.Account, t.ID)
	if errors.Is(err, store.ErrNotFound) {
		return problem.NotFound("telemetry %s not found", t.ID)
	}
	if err != nil {
		return err
	}
	h.guard.Log.Info("api: telemetry deleted", "telemetry", t.ID, "account", p.Account)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func namesTelemetry(ts *model.Telemetries, id string) bool {
	return ts != nil && (ts.LogsTelemetryID == id || ts.MetricsTelemetryID == id || ts.TracesTelemetryID == id)
}

// checkFunctionTelemetries resolves the telemetries a new function version
// names: each must be one of the account's and take its signal. It
// returns what the version keeps (nil when none is named).
func checkFunctionTelemetries(ctx context.Context, st Store, account string, ts *model.Telemetries) (*model.Telemetries, error) {
	if ts == nil || (ts.LogsTelemetryID == "" && ts.MetricsTelemetryID == "" && ts.TracesTelemetryID == "") {
		return nil, nil
	}
	tst, ok := st.(TelemetryStore)
	if !ok {
		return nil, problem.BadRequest("telemetries cannot be used: this server keeps no telemetries; remove telemetries")
	}
	var msgs []string
	for _, c := range []struct{ field, id, typ string }{
		{"telemetries.logsTelemetryId", ts.LogsTelemetryID, model.TelemetryLogs},
		{"telemetries.metricsTelemetryId", ts.MetricsTelemetryID, model.TelemetryMetrics},
		{"telemetries.tracesTelemetryId", ts.TracesTelemetryID, model.TelemetryTraces},
	} {
		if c.id == "" {
			continue
		}
		t, err := tst.GetTelemetry(ctx, account, c.id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			msgs = append(msgs, fmt.Sprintf("%s %s is not a telemetry of this account: create one with POST /v2/nvcf/telemetries "+
				"(GET /v2/nvcf/telemetries lists them)", c.field, c.id))
		case err != nil:
			return nil, err
		case !t.Has(c.typ):
			msgs = append(msgs, fmt.Sprintf("%s %s does not take %s (its types are %s): name a telemetry with %s in its types",
				c.field, c.id, c.typ, strings.Join(t.Types, ", "), c.typ))
		}
	}
	if len(msgs) > 0 {
		return nil, problem.BadRequest("%s", strings.Join(msgs, "; "))
	}
	out := *ts
	return &out, nil
}
