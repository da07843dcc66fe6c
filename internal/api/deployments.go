package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

func (a *API) decodeDeployment(r *http.Request) (model.DeploymentRequest, error) {
	var req model.DeploymentRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return req, err
	}
	return req, validate.Deployment(&req)
}

func (a *API) createDeployment(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId", "versionId")
	if err != nil {
		return err
	}
	req, err := a.decodeDeployment(r)
	if err != nil {
		return err
	}
	f, err := a.ownVersion(r.Context(), p, ids[0], ids[1])
	if err != nil {
		return err
	}
	if f.HelmChart == "" && len(f.Models) > 0 && f.ContainerImage == "" {
		return problem.BadRequest("function %s version %s has no containerImage; this installation runs container and process:// images only", f.ID, f.VersionID)
	}
	if err := configurationFits(f, req.Specs); err != nil {
		return err
	}
	d := model.Deployment{
		ID: uuid.NewString(), FunctionID: f.ID, FunctionVersionID: f.VersionID, NCAID: p.Account,
		FunctionStatus: model.StatusDeploying, Specs: withSpecIDs(req.Specs, nil), CreatedAt: time.Now().UTC(),
	}
	err = a.st.CreateDeployment(r.Context(), &d)
	if errors.Is(err, store.ErrExists) {
		return problem.Conflict("function %s version %s is already deployed; change it with PUT (gantry deploy update) or delete it first", f.ID, f.VersionID)
	}
	if errors.Is(err, store.ErrNotFound) {
		return problem.NotFound("function %s version %s not found", f.ID, f.VersionID)
	}
	if err != nil {
		return err
	}
	a.log.Info("api: deployment created", "function", f.ID, "version", f.VersionID, "deployment", d.ID)
	return web.JSON(w, http.StatusOK, model.DeploymentResponse{Deployment: d})
}

// configurationFits refuses a specification's configuration (Helm values)
// for a function that is not a Helm chart: nothing would read it.
func configurationFits(f model.Function, specs []model.GPUSpec) error {
	if f.HelmChart != "" {
		return nil
	}
	for i, s := range specs {
		var values map[string]json.RawMessage
		if c := bytes.TrimSpace(s.Configuration); len(c) > 0 && !bytes.Equal(c, []byte("null")) &&
			(json.Unmarshal(c, &values) != nil || len(values) > 0) {
			return problem.BadRequest("deploymentSpecifications[%d].configuration is a Helm chart's values, and function %s version %s "+
				"runs containerImage, not a Helm chart; remove configuration and configure the container with containerEnvironment or containerArgs",
				i, f.ID, f.VersionID)
		}
	}
	return nil
}

// withSpecIDs gives each spec a stable gpuSpecificationId: a spec that keeps
// the shape of the previous spec at its index keeps that spec's id.
func withSpecIDs(specs, prev []model.GPUSpec) []model.GPUSpec {
	out := make([]model.GPUSpec, len(specs))
	for i, s := range specs {
		s.ID = ""
		if i < len(prev) && prev[i].GPU == s.GPU && prev[i].InstanceType == s.InstanceType && prev[i].Backend == s.Backend {
			s.ID = prev[i].ID
		}
		if s.ID == "" {
			s.ID = uuid.NewString()
		}
		out[i] = s
	}
	return out
}

// ownDeployment reads the deployment of a version of the caller's account.
func (a *API) ownDeployment(ctx context.Context, p auth.Principal, fnID, versionID string) (model.Deployment, error) {
	if _, err := a.ownVersion(ctx, p, fnID, versionID); err != nil {
		return model.Deployment{}, err
	}
	d, err := a.st.GetDeployment(ctx, versionID)
	if errors.Is(err, store.ErrNotFound) {
		return d, problem.NotFound("function %s version %s is not deployed", fnID, versionID)
	}
	return d, err
}

func (a *API) getDeployment(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId", "versionId")
	if err != nil {
		return err
	}
	d, err := a.ownDeployment(r.Context(), p, ids[0], ids[1])
	if err != nil {
		return err
	}
	a.showScale(r.Context(), &d)
	return web.JSON(w, http.StatusOK, model.DeploymentResponse{Deployment: d})
}

// showScale adds what the autoscaler wants of each spec, how many of its
// instances run, and the latest decisions, to a deployment about to be
// shown.
func (a *API) showScale(ctx context.Context, d *model.Deployment) {
	if insts, err := a.st.ListInstances(ctx); err == nil {
		if states, err := a.st.ListInstanceStates(ctx); err == nil {
			running := make([]int, len(d.Specs))
			for _, in := range insts {
				if in.DeploymentID == d.ID && in.SpecIndex < len(running) && states[in.ID].Status == model.InstanceRunning {
					running[in.SpecIndex]++
				}
			}
			for i := range d.Specs {
				d.Specs[i].RunningInstances = model.Int(running[i])
			}
		}
	}
	sc, err := a.st.GetScale(ctx, d.FunctionVersionID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			a.log.Warn("api: reading the autoscaler's record", "version", d.FunctionVersionID, "err", err)
		}
		return
	}
	if sc.DeploymentID != d.ID {
		return
	}
	for i := range d.Specs {
		if i < len(sc.Specs) {
			s := &d.Specs[i]
			s.DesiredInstances = model.Int(min(max(sc.Specs[i].Desired, s.MinInstances), s.MaxInstances))
			s.ScalingDecisions = sc.Specs[i].Decisions
		}
	}
}

func (a *API) getDeploymentByID(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "deploymentId")
	if err != nil {
		return err
	}
	d, err := a.ownDeploymentByID(r.Context(), p, ids[0])
	if err != nil {
		return err
	}
	a.showScale(r.Context(), &d)
	return web.JSON(w, http.StatusOK, model.DeploymentResponse{Deployment: d})
}

// ownDeploymentByID reads a deployment of the caller's account by its id.
func (a *API) ownDeploymentByID(ctx context.Context, p auth.Principal, id string) (model.Deployment, error) {
	d, err := a.st.GetDeploymentByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (d.NCAID != p.Account || !p.CanUseFunction(d.FunctionID))) {
		return d, problem.NotFound("deployment %s not found", id)
	}
	return d, err
}

func (a *API) updateDeployment(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId", "versionId")
	if err != nil {
		return err
	}
	req, err := a.decodeDeployment(r)
	if err != nil {
		return err
	}
	f, err := a.ownVersion(r.Context(), p, ids[0], ids[1])
	if err != nil {
		return err
	}
	if err := configurationFits(f, req.Specs); err != nil {
		return err
	}
	return a.modify(w, r.Context(), func() (model.Deployment, error) {
		return a.ownDeployment(r.Context(), p, ids[0], ids[1])
	}, func(d *model.Deployment) error {
		d.Specs = withSpecIDs(req.Specs, d.Specs)
		return nil
	})
}

func (a *API) patchGPUSpec(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "deploymentId", "gpuSpecId")
	if err != nil {
		return err
	}
	var patch model.GPUSpecPatch
	if err := validate.Decode(r.Body, maxBody, &patch); err != nil {
		return err
	}
	patched := -1
	return a.modifyAnd(w, r.Context(), func() (model.Deployment, error) {
		return a.ownDeploymentByID(r.Context(), p, ids[0])
	}, func(d *model.Deployment) error {
		for i, s := range d.Specs {
			if s.ID == ids[1] {
				next, err := validate.GPUSpecPatch(&patch, s)
				if err != nil {
					return err
				}
				d.Specs[i] = next
				patched = i
				return nil
			}
		}
		return problem.NotFound("deployment %s has no gpu specification %s", ids[0], ids[1])
	}, func(d model.Deployment) any {
		return gpuSpecResponse{GPUSpec: d.Specs[patched], Deployment: d}
	})
}

// gpuSpecResponse answers a PATCH of one specification: NVCF's body is the
// specification ({"gpuSpecification": ...}, which nvcf-cli reads); the
// whole deployment comes with it, for clients that show the rest.
type gpuSpecResponse struct {
	GPUSpec    model.GPUSpec    `json:"gpuSpecification"`
	Deployment model.Deployment `json:"deployment"`
}

// modify applies change to a freshly read deployment and writes it, retrying
// when another writer (the controller updating status) got there first, and
// answers with the deployment.
func (a *API) modify(w http.ResponseWriter, ctx context.Context, read func() (model.Deployment, error), change func(*model.Deployment) error) error {
	return a.modifyAnd(w, ctx, read, change, func(d model.Deployment) any { return model.DeploymentResponse{Deployment: d} })
}

// modifyAnd is modify answering with the body answer builds from the
// written deployment.
func (a *API) modifyAnd(w http.ResponseWriter, ctx context.Context, read func() (model.Deployment, error),
	change func(*model.Deployment) error, answer func(model.Deployment) any) error {
	for attempt := 0; ; attempt++ {
		d, err := read()
		if err != nil {
			return err
		}
		if err := change(&d); err != nil {
			return err
		}
		err = a.st.UpdateDeployment(ctx, &d)
		if errors.Is(err, store.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return err
		}
		a.showScale(ctx, &d)
		return web.JSON(w, http.StatusOK, answer(d))
	}
}

// deleteDeployment undeploys a function version. NVCF's graceful=true asks
// that calls in flight finish first; Gantry always does that (an instance
// being stopped takes no new call and finishes the ones it has), so both
// values are accepted and behave alike. The answer is NVCF's
// {"function": ...}, now INACTIVE, with the removed deployment beside it.
func (a *API) deleteDeployment(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	ids, err := pathIDs(r, "functionId", "versionId")
	if err != nil {
		return err
	}
	if g := r.URL.Query().Get("graceful"); g != "" && g != "true" && g != "false" {
		return problem.BadRequest("graceful %q is invalid: use true or false (calls in flight always finish before an instance stops)", g)
	}
	d, err := a.ownDeployment(r.Context(), p, ids[0], ids[1])
	if err != nil {
		return err
	}
	f, err := a.ownVersion(r.Context(), p, ids[0], ids[1])
	if err != nil {
		return err
	}
	if err := a.st.DeleteDeployment(r.Context(), d); err != nil {
		return err
	}
	a.log.Info("api: deployment deleted", "function", d.FunctionID, "version", d.FunctionVersionID, "deployment", d.ID)
	d.FunctionStatus = model.StatusInactive
	f.Status = model.StatusInactive
	return web.JSON(w, http.StatusOK, undeployResponse{Function: f, Deployment: d})
}

// undeployResponse answers DELETE of a deployment.
type undeployResponse struct {
	Function   model.Function   `json:"function"`
	Deployment model.Deployment `json:"deployment"`
}
