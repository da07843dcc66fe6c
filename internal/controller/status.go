package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
)

// Status computes a deployment's function status from its instances:
//
//	want 0                  -> ACTIVE (nothing has to run)
//	ready >= want           -> ACTIVE
//	every instance ERRORED  -> ERROR
//	never yet ACTIVE        -> DEPLOYING
//	ready == 0              -> DEGRADED
//	otherwise               -> DEGRADING
//
// It also returns the healthInfo that explains anything short of ACTIVE:
// pending instances, failed ones, and starting ones whose agent said why
// they are not running yet.
func Status(d model.Deployment, insts map[int][]*model.Instance, states map[string]model.InstanceState) (model.FunctionStatus, []model.HealthInfo) {
	want, ready, errored, total := 0, 0, 0, 0
	var info []model.HealthInfo
	add := func(spec model.GPUSpec, itype, msg string) {
		h := model.HealthInfo{GPU: spec.GPU, Backend: spec.Backend, InstanceType: itype, Error: msg}
		if !slices.Contains(info, h) {
			info = append(info, h)
		}
	}
	for si, spec := range d.Specs {
		want += floorCount(spec)
		for _, inst := range insts[si] {
			total++
			st := states[inst.ID]
			switch {
			case inst.ClusterID == "":
				add(spec, inst.InstanceType, "instance pending: "+inst.PendingReason)
			case st.Status == model.InstanceRunning:
				ready++
			case st.Status == model.InstanceErrored:
				errored++
				add(spec, inst.InstanceType, fmt.Sprintf("instance on cluster %s failed: %s", inst.ClusterID, st.Reason))
			case st.Reason != "":
				// Starting, but held up by something the user can act on
				// (a pod the cluster cannot schedule, say).
				add(spec, inst.InstanceType, fmt.Sprintf("instance on cluster %s is not running yet: %s", inst.ClusterID, st.Reason))
			}
		}
	}
	switch {
	case want == 0 || ready >= want:
		return model.StatusActive, nil
	case total > 0 && errored == total:
		return model.StatusError, info
	case !d.EverActive:
		return model.StatusDeploying, info
	case ready == 0:
		return model.StatusDegraded, info
	default:
		return model.StatusDegrading, info
	}
}

func (c *Controller) updateStatuses(ctx context.Context, w *world, keep map[specKey][]*model.Instance) error {
	var errs []error
	for _, d := range w.deployments {
		bySpec := map[int][]*model.Instance{}
		for si := range d.Specs {
			bySpec[si] = keep[specKey{d.FunctionVersionID, si}]
		}
		status, info := Status(d, bySpec, w.states)
		ever := d.EverActive || status == model.StatusActive
		if status == d.FunctionStatus && ever == d.EverActive && slices.Equal(info, d.HealthInfo) {
			continue
		}
		if status != d.FunctionStatus {
			c.log.Info("controller: deployment status", "function", d.FunctionID, "version", d.FunctionVersionID,
				"from", d.FunctionStatus, "to", status)
		}
		d.FunctionStatus, d.HealthInfo, d.EverActive = status, info, ever
		if err := c.st.UpdateDeployment(ctx, &d); err != nil && !errors.Is(err, store.ErrConflict) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
