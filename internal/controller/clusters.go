package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
)

// missedHeartbeats is how many reporting periods a cluster may miss before it
// is NOT_READY.
const missedHeartbeats = 3

// defaultHeartbeat applies to clusters whose agent has not said its period.
const defaultHeartbeat = 5 * time.Second

// checkHeartbeats marks READY clusters whose agent missed three heartbeats
// NOT_READY, noting when, so their instances can move after the grace period.
func (c *Controller) checkHeartbeats(ctx context.Context, w *world) error {
	now := c.cfg.Now()
	var errs []error
	for id, cl := range w.clusters {
		if cl.Status != model.ClusterReady {
			continue
		}
		period := time.Duration(cl.HeartbeatMillis) * time.Millisecond
		if period <= 0 {
			period = defaultHeartbeat
		}
		if now.Sub(cl.LastHeartbeat) <= missedHeartbeats*period {
			continue
		}
		cl.Status, cl.NotReadySince = model.ClusterNotReady, now.UTC()
		if err := c.st.UpdateCluster(ctx, &cl); err != nil {
			if !errors.Is(err, store.ErrConflict) { // a heartbeat just arrived
				errs = append(errs, err)
			}
			continue
		}
		c.log.Warn("controller: cluster missed heartbeats; NOT_READY", "cluster", id, "name", cl.Name,
			"lastHeartbeat", cl.LastHeartbeat, "grace", c.cfg.Grace)
		w.clusters[id] = cl
	}
	return errors.Join(errs...)
}

// lost says why a placed instance has to be given up: its cluster is gone, or
// has been NOT_READY for longer than the grace period. Its replacement is
// created by sizing; if the cluster comes back, the instance is no longer in
// its desired state and its agent stops it, so nothing runs twice.
func (c *Controller) lost(w *world, inst model.Instance) string {
	if inst.ClusterID == "" {
		return ""
	}
	cl, ok := w.clusters[inst.ClusterID]
	switch {
	case !ok:
		return "its cluster was deleted"
	case cl.Status == model.ClusterNotReady && !cl.NotReadySince.IsZero() && c.cfg.Now().Sub(cl.NotReadySince) > c.cfg.Grace:
		return fmt.Sprintf("its cluster has been NOT_READY for more than %v", c.cfg.Grace)
	case inst.NCAID != "" && !cl.Serves(inst.NCAID):
		return "its cluster no longer serves account " + inst.NCAID + " (authorizedNCAIds)"
	}
	return ""
}

// outdated returns the instances that must be replaced, one at a time: those
// on draining clusters, and those started before their function version's
// secrets last changed (they hold the old values in their environment).
func (c *Controller) outdated(w *world, insts []*model.Instance) []*model.Instance {
	var out []*model.Instance
	for _, inst := range insts {
		if replaceReason(w, inst) != "" {
			out = append(out, inst)
		}
	}
	return out
}

// replaceReason says why an instance is being replaced, or "" if it is not.
func replaceReason(w *world, inst *model.Instance) string {
	if cl, ok := w.clusters[inst.ClusterID]; ok && cl.Draining {
		return "its cluster is draining"
	}
	if f, ok := w.functions[inst.FunctionVersionID]; ok && inst.SecretsGeneration < f.SecretsGeneration {
		return "its function's secrets changed"
	}
	return ""
}

// drainStep replaces a spec's outdated instances (see outdated) one at a
// time without dropping below what the spec wants running:
//
//   - an outdated instance that is not RUNNING serves nothing: release it;
//   - while a replacement is on its way (placed, not RUNNING yet), wait
//     for it;
//   - when one fewer RUNNING instance would still be enough, release one
//     outdated instance;
//   - otherwise create one replacement (the scheduler never places it on a
//     draining cluster, and it starts with the current secrets).
//
// It returns the instances the spec keeps.
func (c *Controller) drainStep(ctx context.Context, w *world, d model.Deployment, si int,
	have, draining []*model.Instance, want int) ([]*model.Instance, error) {
	isDraining := map[string]bool{}
	for _, inst := range draining {
		isDraining[inst.ID] = true
	}
	running, inFlight := 0, false
	for _, inst := range have {
		if w.states[inst.ID].Status == model.InstanceRunning {
			running++
		} else if !isDraining[inst.ID] {
			inFlight = true
		}
	}
	drop := func(inst *model.Instance, why string) ([]*model.Instance, error) {
		kept := make([]*model.Instance, 0, len(have)-1)
		for _, h := range have {
			if h != inst {
				kept = append(kept, h)
			}
		}
		return kept, c.release(ctx, *inst, why)
	}
	for _, inst := range draining {
		if w.states[inst.ID].Status != model.InstanceRunning {
			return drop(inst, replaceReason(w, inst)+" and it was not running")
		}
	}
	switch {
	case inFlight:
		return have, nil
	case running-1 >= want:
		return drop(draining[0], replaceReason(w, draining[0])+" and a replacement is running")
	default:
		inst, err := c.newInstance(ctx, w, d, si)
		if err != nil {
			return have, err
		}
		c.log.Info("controller: replacing an instance", "why", replaceReason(w, draining[0]), "cluster", draining[0].ClusterID,
			"old", draining[0].ID, "new", inst.ID)
		return append(have, inst), nil
	}
}
