package api

import (
	"context"
	"errors"
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

func (a *API) createFunction(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.create(w, r, p, uuid.NewString())
}

func (a *API) createVersion(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId")
	if err != nil {
		return err
	}
	if _, err := a.ownVersions(r.Context(), p, ids[0]); err != nil {
		return err
	}
	return a.create(w, r, p, ids[0])
}

// create stores a new version of function fnID from the request body.
func (a *API) create(w http.ResponseWriter, r *http.Request, p auth.Principal, fnID string) error {
	var req model.CreateFunctionRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if err := validate.Function(&req); err != nil {
		return err
	}
	telemetries, err := checkFunctionTelemetries(r.Context(), a.st, p.Account, req.Telemetries)
	if err != nil {
		return err
	}
	f := model.Function{
		ID: fnID, VersionID: uuid.NewString(), NCAID: p.Account,
		Name: req.Name, InferenceURL: req.InferenceURL, InferencePort: req.InferencePort,
		Health: req.Health, HealthURI: req.HealthURI,
		ContainerImage: req.ContainerImage, ContainerArgs: req.ContainerArgs, ContainerEnvironment: req.ContainerEnvironment,
		Models: req.Models, Resources: req.Resources, HelmChart: req.HelmChart, HelmChartServiceName: req.HelmChartServiceName,
		APIBodyFormat: req.APIBodyFormat, Tags: req.Tags, Description: req.Description,
		FunctionType: req.FunctionType, RateLimit: req.RateLimit, Telemetries: telemetries,
		CreatedAt: time.Now().UTC(),
	}
	for _, s := range req.Secrets {
		f.Secrets = append(f.Secrets, s.Name)
	}
	err = a.withSealed(r.Context(), p.Account, f.ID, f.VersionID, req.Secrets, func(sealed []store.SealedSecret) error {
		return a.st.CreateFunction(r.Context(), &f, sealed)
	})
	if err != nil {
		return err
	}
	f.Status = model.StatusInactive
	a.log.Info("api: function version created", "function", f.ID, "version", f.VersionID, "name", f.Name)
	return web.JSON(w, http.StatusOK, model.FunctionResponse{Function: f})
}

// sealAll seals every secret value for its place in the version.
func (a *API) sealAll(ctx context.Context, account, fnID, versionID string, in []model.Secret) ([]store.SealedSecret, error) {
	out := make([]store.SealedSecret, 0, len(in))
	for _, s := range in {
		sealed, err := a.seal.Seal(ctx, secrets.Place{Account: account, FunctionID: fnID, VersionID: versionID, Name: s.Name}, []byte(s.Value))
		if err != nil {
			return nil, err
		}
		out = append(out, store.SealedSecret{Name: s.Name, Account: account, NEK: sealed.NEK,
			Ciphertext: sealed.Ciphertext, HeadRevision: sealed.HeadRevision})
	}
	return out, nil
}

// withSealed seals the secrets and hands them to write. When the write
// fails with a conflict because the account's key rotated after sealing,
// it seals them again under the new key and retries.
func (a *API) withSealed(ctx context.Context, account, fnID, versionID string, in []model.Secret, write func([]store.SealedSecret) error) error {
	for attempt := 0; ; attempt++ {
		sealed, err := a.sealAll(ctx, account, fnID, versionID, in)
		if err != nil {
			return err
		}
		err = write(sealed)
		if errors.Is(err, store.ErrConflict) && len(in) > 0 && attempt < 3 {
			continue
		}
		return err
	}
}

// withStatus fills the derived status of each version from its deployment.
func (a *API) withStatus(ctx context.Context, fs []model.Function) ([]model.Function, error) {
	deps, err := a.st.ListDeployments(ctx)
	if err != nil {
		return nil, err
	}
	byVersion := make(map[string]model.FunctionStatus, len(deps))
	for _, d := range deps {
		byVersion[d.FunctionVersionID] = d.FunctionStatus
	}
	for i := range fs {
		fs[i].Status = model.StatusInactive
		if s, ok := byVersion[fs[i].VersionID]; ok {
			fs[i].Status = s
		}
	}
	return fs, nil
}

// listFunctions answers the versions of the functions the caller may list,
// by NVCF's visibility query: private (its account's own, the default),
// authorized (shared with it by other accounts), public (none: Gantry has no
// public functions); several may be given, comma-separated or repeated.
func (a *API) listFunctions(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	vis, err := validate.Visibility(r.URL.Query()["visibility"])
	if err != nil {
		return err
	}
	all, err := a.st.ListFunctions(r.Context())
	if err != nil {
		return err
	}
	own := make([]model.Function, 0, len(all))
	var shares map[string]model.FunctionAuthorization
	if vis.Authorized {
		list, err := a.st.ListAuthorizations(r.Context())
		if err != nil {
			return err
		}
		shares = make(map[string]model.FunctionAuthorization, len(list))
		for _, sh := range list {
			shares[sh.FunctionID] = sh
		}
	}
	for _, f := range all {
		switch {
		case f.NCAID == p.Account:
			if vis.Private && p.CanUseFunction(f.ID) {
				own = append(own, f)
			}
		case vis.Authorized:
			if sh, ok := shares[f.ID]; ok {
				own = append(own, sharedVersions([]model.Function{f}, sh, p)...)
			}
		}
	}
	own, err = a.withStatus(r.Context(), own)
	if err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, model.FunctionListResponse{Functions: own})
}

func (a *API) listFunctionIDs(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	all, err := a.st.ListFunctions(r.Context())
	if err != nil {
		return err
	}
	ids := []string{}
	seen := map[string]bool{}
	for _, f := range all {
		if f.NCAID == p.Account && p.CanUseFunction(f.ID) && !seen[f.ID] {
			seen[f.ID] = true
			ids = append(ids, f.ID)
		}
	}
	return web.JSON(w, http.StatusOK, model.FunctionIDsResponse{FunctionIDs: ids})
}

func (a *API) listVersions(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId")
	if err != nil {
		return err
	}
	fs, err := a.visibleVersions(r.Context(), p, ids[0])
	if err != nil {
		return err
	}
	fs, err = a.withStatus(r.Context(), fs)
	if err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, model.FunctionListResponse{Functions: fs})
}

func (a *API) getVersion(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId", "versionId")
	if err != nil {
		return err
	}
	vs, err := a.visibleVersions(r.Context(), p, ids[0])
	if err != nil {
		return err
	}
	i := slices.IndexFunc(vs, func(f model.Function) bool { return f.VersionID == ids[1] })
	if i < 0 {
		return problem.NotFound("function %s version %s not found", ids[0], ids[1])
	}
	fs, err := a.withStatus(r.Context(), vs[i:i+1])
	if err != nil {
		return err
	}
	f := fs[0]
	if f.ActiveInstances, err = a.activeInstances(r.Context(), f.VersionID); err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, model.FunctionResponse{Function: f})
}

// activeInstances lists the placed instances of a version with their states.
func (a *API) activeInstances(ctx context.Context, versionID string) ([]model.InstanceDetail, error) {
	insts, err := a.st.ListInstances(ctx)
	if err != nil {
		return nil, err
	}
	states, err := a.st.ListInstanceStates(ctx)
	if err != nil {
		return nil, err
	}
	var out []model.InstanceDetail
	for _, in := range insts {
		if in.FunctionVersionID != versionID {
			continue
		}
		st := states[in.ID]
		status := st.Status
		if in.ClusterID == "" {
			status = model.InstancePending
		} else if status == "" {
			status = model.InstanceStarting
		}
		updated := st.UpdatedAt
		if updated.IsZero() {
			updated = in.CreatedAt
		}
		out = append(out, model.InstanceDetail{
			InstanceID: in.ID, FunctionID: in.FunctionID, FunctionVersionID: in.FunctionVersionID,
			GPU: in.GPU, InstanceType: in.InstanceType, InstanceStatus: status, NCAID: in.NCAID,
			Location: in.ClusterID, InstanceCreatedAt: in.CreatedAt, InstanceUpdatedAt: updated,
		})
	}
	return out, nil
}

func (a *API) deleteVersion(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId", "versionId")
	if err != nil {
		return err
	}
	if _, err := a.ownVersion(r.Context(), p, ids[0], ids[1]); err != nil {
		return err
	}
	err = a.st.DeleteFunction(r.Context(), ids[0], ids[1])
	if errors.Is(err, store.ErrDeployed) {
		return problem.Conflict("function %s version %s is deployed; delete its deployment first (gantry deploy delete %s --version %s)",
			ids[0], ids[1], ids[0], ids[1])
	}
	if err != nil {
		return err
	}
	if err := a.forgetShares(r.Context(), ids[0], ids[1]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// updateVersion applies change to a freshly read version of the caller's
// account and writes it, retrying when a concurrent writer got there first.
func (a *API) updateVersion(ctx context.Context, p auth.Principal, fnID, versionID string, change func(*model.Function)) (model.Function, error) {
	for attempt := 0; ; attempt++ {
		f, err := a.ownVersion(ctx, p, fnID, versionID)
		if err != nil {
			return f, err
		}
		change(&f)
		err = a.st.UpdateFunction(ctx, &f)
		if errors.Is(err, store.ErrConflict) && attempt < 5 {
			continue
		}
		return f, err
	}
}

func (a *API) putSecrets(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId", "versionId")
	if err != nil {
		return err
	}
	var req model.SecretsRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if err := validate.Secrets(&req); err != nil {
		return err
	}
	f, err := a.ownVersion(r.Context(), p, ids[0], ids[1])
	if err != nil {
		return err
	}
	err = a.withSealed(r.Context(), p.Account, f.ID, f.VersionID, req.Secrets, func(sealed []store.SealedSecret) error {
		return a.st.PutSecrets(r.Context(), f.ID, f.VersionID, sealed)
	})
	if err != nil {
		return err
	}
	// Record the names on the version so instances learn about new secrets,
	// and bump the generation, so running instances are replaced, one at a
	// time, by ones that start with the new values.
	_, err = a.updateVersion(r.Context(), p, f.ID, f.VersionID, func(f *model.Function) {
		f.SecretsGeneration++
		for _, s := range req.Secrets {
			if !slices.Contains(f.Secrets, s.Name) {
				f.Secrets = append(f.Secrets, s.Name)
			}
		}
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
