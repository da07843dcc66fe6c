// Package api serves the NVCF-compatible management API (/v2/nvcf/...):
// functions, versions, deployments, cluster groups and secrets. Each handler
// validates with package validate, reads and writes through the narrow Store
// interface below, and returns problem errors; web.Guard does authentication,
// scopes and error bodies. Invocation lives in package invoke.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// Store is what the management API reads and writes.
type Store interface {
	PolicyStore
	ShareStore
	CreateFunction(ctx context.Context, f *model.Function, secrets []store.SealedSecret) error
	GetFunction(ctx context.Context, fnID, versionID string) (model.Function, error)
	ListFunctions(ctx context.Context) ([]model.Function, error)
	ListFunctionVersions(ctx context.Context, fnID string) ([]model.Function, error)
	UpdateFunction(ctx context.Context, f *model.Function) error
	DeleteFunction(ctx context.Context, fnID, versionID string) error
	PutSecrets(ctx context.Context, fnID, versionID string, secrets []store.SealedSecret) error

	CreateDeployment(ctx context.Context, d *model.Deployment) error
	GetDeployment(ctx context.Context, versionID string) (model.Deployment, error)
	GetDeploymentByID(ctx context.Context, id string) (model.Deployment, error)
	ListDeployments(ctx context.Context) ([]model.Deployment, error)
	UpdateDeployment(ctx context.Context, d *model.Deployment) error
	DeleteDeployment(ctx context.Context, d model.Deployment) error
	GetScale(ctx context.Context, versionID string) (model.Scale, error)

	ListInstances(ctx context.Context) ([]model.Instance, error)
	ListInstanceStates(ctx context.Context) (map[string]model.InstanceState, error)
	ListClusters(ctx context.Context) ([]model.Cluster, error)
	GetCluster(ctx context.Context, id string) (model.Cluster, error)
	UpdateCluster(ctx context.Context, c *model.Cluster) error
	ListHeartbeats(ctx context.Context) (map[string]store.Heartbeat, error)
	ListAllocations(ctx context.Context) (map[string]store.Allocation, error)
}

// Sealer encrypts secret values before they are stored.
type Sealer interface {
	Seal(ctx context.Context, place secrets.Place, plaintext []byte) (secrets.Sealed, error)
}

// Registry registers clusters and issues agent credentials.
type Registry interface {
	Register(ctx context.Context, c model.Cluster) (model.Cluster, string, time.Time, error)
	Deregister(ctx context.Context, clusterID string) error
	Exchange(ctx context.Context, bootstrap string) (model.AgentCredential, error)
	Renew(ctx context.Context, credential string) (model.AgentCredential, error)
	ExchangeJWT(ctx context.Context, clusterID, token string) (model.AgentCredential, error)
}

// Config wires the API.
type Config struct {
	Store    Store
	Sealer   Sealer
	Registry Registry
	Auth     auth.Authenticator
	// NATSURL is what agents are told to connect to.
	NATSURL string
	Logger  *slog.Logger
}

// API is the management API.
type API struct {
	st      Store
	seal    Sealer
	reg     Registry
	natsURL string
	guard   web.Guard
	log     *slog.Logger
}

// New builds the API.
func New(cfg Config) *API {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{st: cfg.Store, seal: cfg.Sealer, reg: cfg.Registry, natsURL: cfg.NATSURL,
		guard: web.Guard{Auth: cfg.Auth, Log: log}, log: log}
}

// maxBody bounds management request bodies; function definitions with their
// secrets fit comfortably.
const maxBody = 4 << 20

// Register adds every management route to mux.
func (a *API) Register(mux *http.ServeMux) {
	route := func(pattern, scope string, h web.HandlerFunc) { mux.Handle(pattern, a.guard.Route(scope, h)) }
	// NVCF opens the function reads to either listing scope.
	reads := []string{auth.ScopeListFunctions, auth.ScopeListFunctionsDetails}
	read := func(pattern string, h web.HandlerFunc) { mux.Handle(pattern, a.guard.RouteAny(reads, h)) }

	route("POST /v2/nvcf/functions", auth.ScopeRegisterFunction, a.createFunction)
	read("GET /v2/nvcf/functions", a.listFunctions)
	read("GET /v2/nvcf/functions/ids", a.listFunctionIDs)
	route("POST /v2/nvcf/functions/{functionId}/versions", auth.ScopeRegisterFunction, a.createVersion)
	read("GET /v2/nvcf/functions/{functionId}/versions", a.listVersions)
	read("GET /v2/nvcf/functions/{functionId}/versions/{versionId}", a.getVersion)
	route("PUT /v2/nvcf/functions/{functionId}/versions/{versionId}", auth.ScopeUpdateFunction, a.updateFunction)
	route("DELETE /v2/nvcf/functions/{functionId}/versions/{versionId}", auth.ScopeDeleteFunction, a.deleteVersion)
	// NVCF's deprecated form of the same update, with the same body.
	route("PUT /v2/nvcf/metadata/functions/{functionId}/versions/{versionId}", auth.ScopeUpdateFunction, a.updateFunction)
	route("PUT /v2/nvcf/ratelimit/functions/{functionId}/versions/{versionId}", auth.ScopeUpdateFunction, a.putRateLimit)
	route("DELETE /v2/nvcf/ratelimit/functions/{functionId}/versions/{versionId}", auth.ScopeUpdateFunction, a.deleteRateLimit)
	route("PUT /v2/nvcf/secrets/functions/{functionId}/versions/{versionId}", auth.ScopeUpdateSecrets, a.putSecrets)

	route("POST /v2/nvcf/deployments/functions/{functionId}/versions/{versionId}", auth.ScopeDeployFunction, a.createDeployment)
	route("GET /v2/nvcf/deployments/functions/{functionId}/versions/{versionId}", auth.ScopeDeployFunction, a.getDeployment)
	route("PUT /v2/nvcf/deployments/functions/{functionId}/versions/{versionId}", auth.ScopeDeployFunction, a.updateDeployment)
	route("DELETE /v2/nvcf/deployments/functions/{functionId}/versions/{versionId}", auth.ScopeDeployFunction, a.deleteDeployment)
	route("GET /v2/nvcf/deployments/{deploymentId}", auth.ScopeDeployFunction, a.getDeploymentByID)
	route("PATCH /v2/nvcf/deployments/{deploymentId}/gpu-specifications/{gpuSpecId}", auth.ScopeDeployFunction, a.patchGPUSpec)

	route("POST /v1/accounts/{ncaId}/clusters", auth.ScopeClusterManagement, a.registerCluster)
	route("GET /v1/accounts/{ncaId}/clusters", auth.ScopeClusterManagement, a.listClusters)
	route("GET /v1/accounts/{ncaId}/clusters/{clusterId}", auth.ScopeClusterManagement, a.getCluster)
	route("PUT /v1/accounts/{ncaId}/clusters/{clusterId}", auth.ScopeClusterManagement, a.updateCluster)
	route("DELETE /v1/accounts/{ncaId}/clusters/{clusterId}", auth.ScopeClusterManagement, a.deleteCluster)
	route("POST /v1/accounts/{ncaId}/clusters/{clusterId}/cordon", auth.ScopeClusterManagement, a.cordonCluster)
	route("POST /v1/accounts/{ncaId}/clusters/{clusterId}/uncordon", auth.ScopeClusterManagement, a.uncordonCluster)
	route("POST /v1/accounts/{ncaId}/clusters/{clusterId}/drain", auth.ScopeClusterManagement, a.drainCluster)
	mux.Handle("POST /v1/gantry/agents/credentials", web.Unguarded(a.log, a.agentCredential))

	// NVCF's scope is list_cluster_groups; Gantry's keys had list_functions.
	mux.Handle("GET /v2/nvcf/clusterGroups", a.guard.RouteAny([]string{auth.ScopeListClusterGroups, auth.ScopeListFunctions}, a.clusterGroups))
	NewPolicies(a.st, a.guard).Register(mux)
	route("GET /v2/nvcf/supportedGpus", auth.ScopeRegisterFunction, a.supportedGPUs)
	registerRegistryCredentials(mux, a.st, a.seal, a.guard)
	registerTelemetries(mux, a.st, a.seal, a.guard)
	a.registerAuthorizations(route)
	registerUnserved(mux, a.log)
}

// pathIDs validates the path ids a route has, so that a malformed id is a
// 400 rather than a lookup of garbage.
func pathIDs(r *http.Request, names ...string) ([]string, error) {
	out := make([]string, len(names))
	for i, n := range names {
		v := r.PathValue(n)
		if err := validate.ID(n, v); err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// ownVersion reads a function version of the caller's account, to change
// it. Another account's version, or one the caller's API key is not for, is
// reported as missing, never as forbidden; one shared with the caller's
// account is forbidden, saying why.
func (a *API) ownVersion(ctx context.Context, p auth.Principal, fnID, versionID string) (model.Function, error) {
	f, err := a.st.GetFunction(ctx, fnID, versionID)
	if errors.Is(err, store.ErrNotFound) {
		return model.Function{}, problem.NotFound("function %s version %s not found", fnID, versionID)
	}
	if err != nil {
		return f, err
	}
	if f.NCAID != p.Account || !p.CanUseFunction(fnID) {
		if a.sharedWith(ctx, p, f) {
			return model.Function{}, sharedReadOnly(f)
		}
		return model.Function{}, problem.NotFound("function %s version %s not found", fnID, versionID)
	}
	return f, nil
}

// ownVersions reads every version of a function of the caller's account,
// to change it, as ownVersion does for one.
func (a *API) ownVersions(ctx context.Context, p auth.Principal, fnID string) ([]model.Function, error) {
	fs, err := a.st.ListFunctionVersions(ctx, fnID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(fs) == 0) {
		return nil, problem.NotFound("function %s not found", fnID)
	}
	if err != nil {
		return nil, err
	}
	if fs[0].NCAID != p.Account || !p.CanUseFunction(fnID) {
		for _, f := range fs {
			if a.sharedWith(ctx, p, f) {
				return nil, sharedReadOnly(f)
			}
		}
		return nil, problem.NotFound("function %s not found", fnID)
	}
	return fs, nil
}

// visibleVersions reads the versions of a function the caller may list: all
// of one its account owns, or those another account shares with it (marked
// ownedByDifferentAccount). None is a 404.
func (a *API) visibleVersions(ctx context.Context, p auth.Principal, fnID string) ([]model.Function, error) {
	fs, err := a.st.ListFunctionVersions(ctx, fnID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(fs) == 0) {
		return nil, problem.NotFound("function %s not found", fnID)
	}
	if err != nil {
		return nil, err
	}
	if fs[0].NCAID == p.Account {
		if !p.CanUseFunction(fnID) {
			return nil, problem.NotFound("function %s not found", fnID)
		}
		return fs, nil
	}
	share, err := a.st.GetAuthorization(ctx, fnID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, problem.NotFound("function %s not found", fnID)
	}
	if err != nil {
		return nil, err
	}
	out := sharedVersions(fs, share, p)
	if len(out) == 0 {
		return nil, problem.NotFound("function %s not found", fnID)
	}
	return out, nil
}

// sharedVersions keeps the versions of fs that share lets p reach, marked
// as another account's.
func sharedVersions(fs []model.Function, share model.FunctionAuthorization, p auth.Principal) []model.Function {
	var out []model.Function
	for _, f := range fs {
		if share.NCAID == f.NCAID && share.Allows(p.Account, f.VersionID) && p.CanUse(f.ID, f.NCAID, true) {
			f.OwnedByDifferentAccount = true
			out = append(out, f)
		}
	}
	return out
}

// sharedWith reports whether f's owner shares it with p's account and p's
// credential reaches it.
func (a *API) sharedWith(ctx context.Context, p auth.Principal, f model.Function) bool {
	if f.NCAID == p.Account {
		return false
	}
	share, err := a.st.GetAuthorization(ctx, f.ID)
	return err == nil && len(sharedVersions([]model.Function{f}, share, p)) == 1
}

// sharedReadOnly is the answer to a change of a function shared with the
// caller's account.
func sharedReadOnly(f model.Function) error {
	return problem.Errorf(http.StatusForbidden,
		"function %s belongs to account %s, which shares it with yours to list and invoke only; ask its owner to change it", f.ID, f.NCAID)
}
