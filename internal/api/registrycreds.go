package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
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

// RegistryCredentialStore is what the registry credential routes read and
// write. Every read is by account, so one account never reaches another's.
type RegistryCredentialStore interface {
	CreateRegistryCredential(ctx context.Context, c *model.RegistryCredential, sealed store.SealedSecret) error
	GetRegistryCredential(ctx context.Context, account, id string) (model.RegistryCredential, error)
	ListRegistryCredentials(ctx context.Context, account string) ([]model.RegistryCredential, error)
	UpdateRegistryCredential(ctx context.Context, c *model.RegistryCredential, sealed *store.SealedSecret) error
	DeleteRegistryCredential(ctx context.Context, account, id string) error
}

// RegistryCredentials serves NVCF's registry credential management routes.
// The secret is sealed with the account's NEK before it is stored and is
// never answered, logged or put in an error.
type RegistryCredentials struct {
	st    RegistryCredentialStore
	seal  Sealer
	guard web.Guard
}

// NewRegistryCredentials builds the registry credential routes.
func NewRegistryCredentials(st RegistryCredentialStore, seal Sealer, g web.Guard) *RegistryCredentials {
	if g.Log == nil {
		g.Log = slog.New(slog.DiscardHandler)
	}
	return &RegistryCredentials{st: st, seal: seal, guard: g}
}

// registerRegistryCredentials hooks the routes up when the API's store
// holds registry credentials (the etcd store does; narrow test stores may
// not).
func registerRegistryCredentials(mux *http.ServeMux, st Store, seal Sealer, g web.Guard) {
	if rs, ok := st.(RegistryCredentialStore); ok && seal != nil {
		NewRegistryCredentials(rs, seal, g).Register(mux)
	}
}

// Register adds the routes to mux, all under NVCF's
// manage_registry_credentials scope.
func (h *RegistryCredentials) Register(mux *http.ServeMux) {
	route := func(pattern string, fn web.HandlerFunc) {
		mux.Handle(pattern, h.guard.Route(auth.ScopeManageRegistryCredentials, fn))
	}
	route("POST /v2/nvcf/registry-credentials", h.create)
	route("GET /v2/nvcf/registry-credentials", h.list)
	route("GET /v2/nvcf/registry-credentials/{registryCredentialId}", h.get)
	route("PATCH /v2/nvcf/registry-credentials/{registryCredentialId}", h.update)
	route("DELETE /v2/nvcf/registry-credentials/{registryCredentialId}", h.delete)
	route("GET /v2/nvcf/recognized-registries", h.recognized)
}

// recognizedRegistries lists well-known registries by artifact type, as
// NVCF does. Gantry is self-hosted and accepts a credential for any
// registry host; this list only names the common ones.
var recognizedRegistries = map[string][]model.RecognizedRegistry{
	model.ArtifactContainer: {
		{Name: "DockerHub", Hostname: "docker.io"},
		{Name: "GitHub", Hostname: "ghcr.io"},
		{Name: "NGC", Hostname: "nvcr.io"},
		{Name: "Quay", Hostname: "quay.io"},
	},
	model.ArtifactHelm:     {{Name: "NGC", Hostname: "helm.ngc.nvidia.com"}},
	model.ArtifactModel:    {{Name: "NGC", Hostname: "api.ngc.nvidia.com"}},
	model.ArtifactResource: {{Name: "NGC", Hostname: "api.ngc.nvidia.com"}},
}

// registryNames maps a recognized container host to its registry name.
func registryName(host string) string {
	for _, rs := range recognizedRegistries {
		for _, r := range rs {
			if r.Hostname == host {
				return r.Name
			}
		}
	}
	return host
}

// withSealed seals a credential's secret at its own place and hands it to
// write; with no secret (an update that keeps it) write gets nil.
func (h *RegistryCredentials) withSealed(ctx context.Context, account, id string, s *model.RegistrySecret, write func(*store.SealedSecret) error) error {
	if s == nil {
		return write(nil)
	}
	return withSealed(ctx, h.seal, secrets.Place{Account: account, FunctionID: store.RegistryCredentialSecrets,
		VersionID: id, Name: store.RegistrySecretName}, []byte(s.Value), func(sealed store.SealedSecret) error {
		return write(&sealed)
	})
}

func (h *RegistryCredentials) create(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req model.RegistryCredentialRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if err := validate.RegistryCredential(&req); err != nil {
		return err
	}
	types := slices.Compact(slices.Sorted(slices.Values(req.ArtifactTypes)))
	now := time.Now().UTC()
	c := model.RegistryCredential{ID: uuid.NewString(), NCAID: p.Account, Name: req.RegistryHostname,
		RegistryName: registryName(req.RegistryHostname), RegistryHostname: req.RegistryHostname,
		ArtifactTypes: types, Tags: req.Tags, Description: req.Description,
		ProvisionedBy: model.ProvisionedByUser, CreatedAt: now, LastUpdatedAt: now}
	err := h.withSealed(r.Context(), p.Account, c.ID, req.Secret, func(s *store.SealedSecret) error {
		return h.st.CreateRegistryCredential(r.Context(), &c, *s)
	})
	if err != nil {
		return err
	}
	h.guard.Log.Info("api: registry credential added", "registryCredential", c.ID, "host", c.RegistryHostname, "account", p.Account)
	return web.JSON(w, http.StatusOK, model.RegistryCredentialResponse{RegistryCredential: c})
}

func (h *RegistryCredentials) list(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	all, err := h.st.ListRegistryCredentials(r.Context(), p.Account)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	want, by := q["artifactType"], q["provisionedBy"]
	out := make([]model.RegistryCredential, 0, len(all))
	for _, c := range all {
		if len(want) > 0 && !slices.ContainsFunc(c.ArtifactTypes, func(t string) bool { return slices.Contains(want, t) }) {
			continue
		}
		if len(by) > 0 && !slices.Contains(by, c.ProvisionedBy) {
			continue
		}
		out = append(out, c)
	}
	return web.JSON(w, http.StatusOK, model.RegistryCredentialList{RegistryCredentials: out})
}

// own reads a credential of the caller's account; any other is missing.
func (h *RegistryCredentials) own(r *http.Request, p auth.Principal) (model.RegistryCredential, error) {
	ids, err := pathIDs(r, "registryCredentialId")
	if err != nil {
		return model.RegistryCredential{}, err
	}
	c, err := h.st.GetRegistryCredential(r.Context(), p.Account, ids[0])
	if errors.Is(err, store.ErrNotFound) {
		return c, problem.NotFound("registry credential %s not found", ids[0])
	}
	return c, err
}

func (h *RegistryCredentials) get(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	c, err := h.own(r, p)
	if err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, model.RegistryCredentialResponse{RegistryCredential: c})
}

func (h *RegistryCredentials) update(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	c, err := h.own(r, p)
	if err != nil {
		return err
	}
	var req model.RegistryCredentialUpdate
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if err := validate.RegistryCredentialUpdate(&req); err != nil {
		return err
	}
	c.ArtifactTypes = slices.Compact(slices.Sorted(slices.Values(append(c.ArtifactTypes, req.ArtifactTypeEnums...))))
	c.LastUpdatedAt = time.Now().UTC()
	err = h.withSealed(r.Context(), p.Account, c.ID, req.Secret, func(s *store.SealedSecret) error {
		return h.st.UpdateRegistryCredential(r.Context(), &c, s)
	})
	if errors.Is(err, store.ErrNotFound) {
		return problem.NotFound("registry credential %s not found", c.ID)
	}
	if err != nil {
		return err
	}
	h.guard.Log.Info("api: registry credential updated", "registryCredential", c.ID, "secretChanged", req.Secret != nil, "account", p.Account)
	return web.JSON(w, http.StatusOK, model.RegistryCredentialResponse{RegistryCredential: c})
}

func (h *RegistryCredentials) delete(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	c, err := h.own(r, p)
	if err != nil {
		return err
	}
	err = h.st.DeleteRegistryCredential(r.Context(), p.Account, c.ID)
	if errors.Is(err, store.ErrNotFound) {
		return problem.NotFound("registry credential %s not found", c.ID)
	}
	if err != nil {
		return err
	}
	h.guard.Log.Info("api: registry credential deleted", "registryCredential", c.ID, "account", p.Account)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *RegistryCredentials) recognized(w http.ResponseWriter, _ *http.Request, _ auth.Principal) error {
	return web.JSON(w, http.StatusOK, model.RecognizedRegistries{RecognizedRegistries: recognizedRegistries})
}
