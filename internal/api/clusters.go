package api

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// clusterGroups lists groups with the GPUs and instance types their clusters
// offer, merged across clusters.
func (a *API) clusterGroups(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	clusters, err := a.accountClusters(r.Context(), p)
	if err != nil {
		return err
	}
	groups := map[string]*model.ClusterGroup{}
	offered := map[string]map[string]map[string]model.InstanceType{} // group -> gpu -> type name -> type
	for _, c := range clusters {
		g, ok := groups[c.GroupName]
		if !ok {
			g = &model.ClusterGroup{ID: c.GroupID, Name: c.GroupName, NCAID: c.NCAID, GPUs: []model.GroupGPU{}}
			groups[c.GroupName] = g
			offered[c.GroupName] = map[string]map[string]model.InstanceType{}
		}
		g.Clusters = append(g.Clusters, model.ClusterBrief{ID: c.ID, Name: c.Name})
		for _, n := range c.Inventory.Nodes {
			if offered[c.GroupName][n.GPUModel] == nil {
				offered[c.GroupName][n.GPUModel] = map[string]model.InstanceType{}
			}
			for _, t := range n.InstanceTypes() {
				offered[c.GroupName][n.GPUModel][t.Name] = t
			}
		}
	}
	out := model.ClusterGroupsResponse{ClusterGroups: []model.ClusterGroup{}}
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		g := groups[name]
		for _, gpu := range slices.Sorted(maps.Keys(offered[name])) {
			its := slices.SortedFunc(maps.Values(offered[name][gpu]), func(a, b model.InstanceType) int { return a.GPUCount - b.GPUCount })
			g.GPUs = append(g.GPUs, model.GroupGPU{Name: gpu, InstanceTypes: its})
		}
		out.ClusterGroups = append(out.ClusterGroups, *g)
	}
	return web.JSON(w, http.StatusOK, out)
}

func (a *API) supportedGPUs(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	clusters, err := a.accountClusters(r.Context(), p)
	if err != nil {
		return err
	}
	gpus := []string{}
	for _, c := range clusters {
		for m := range c.Inventory.GPUTotals() {
			gpus = append(gpus, m)
		}
	}
	slices.Sort(gpus)
	return web.JSON(w, http.StatusOK, model.SupportedGPUsResponse{GPUs: slices.Compact(gpus)})
}

// accountClusters lists the clusters that serve the caller's account: its
// own and those whose owners authorized it. No other account's clusters,
// groups or GPUs are shown.
func (a *API) accountClusters(ctx context.Context, p auth.Principal) ([]model.Cluster, error) {
	all, err := a.st.ListClusters(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(c model.Cluster) bool { return !c.Serves(p.Account) }), nil
}

// ownAccount checks the {ncaId} of a cluster route against the caller's
// account; another account's path answers 404.
func ownAccount(r *http.Request, p auth.Principal) error {
	if r.PathValue("ncaId") != p.Account {
		return problem.NotFound("account %s not found", r.PathValue("ncaId"))
	}
	return nil
}

func (a *API) registerCluster(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if err := ownAccount(r, p); err != nil {
		return err
	}
	var req model.ClusterRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if err := validate.Cluster(&req); err != nil {
		return err
	}
	if req.NCAID != "" && req.NCAID != p.Account {
		return problem.BadRequest("ncaId %q in the body differs from the account %q in the path", req.NCAID, p.Account)
	}
	clusters, err := a.st.ListClusters(r.Context())
	if err != nil {
		return err
	}
	for _, c := range clusters {
		if c.NCAID == p.Account && c.Name == req.ClusterName {
			return problem.Conflict("cluster %q is already registered as %s; delete it first, or keep using its agent's identity", c.Name, c.ID)
		}
	}
	c := clusterFromRequest(model.Cluster{NCAID: p.Account}, req)
	c, token, expires, err := a.reg.Register(r.Context(), c)
	if err != nil {
		return err
	}
	a.log.Info("api: cluster registered", "cluster", c.ID, "name", c.Name, "group", c.GroupName)
	return web.JSON(w, http.StatusOK, model.ClusterRegistration{Cluster: c, ClusterID: c.ID, ClusterGroupID: c.GroupID,
		BootstrapToken: token, BootstrapExpiresAt: expires})
}

// clusterFromRequest applies the fields a registration or update may set.
func clusterFromRequest(c model.Cluster, req model.ClusterRequest) model.Cluster {
	c.Name, c.GroupName = req.ClusterName, req.ClusterGroupName
	c.CloudProvider, c.Region, c.Zone, c.Labels = req.CloudProvider, req.Region, req.Zone, req.Labels
	c.Capabilities, c.JWKS, c.OIDCIssuer = req.Capabilities, req.JWKS, req.OIDCIssuer
	c.AuthorizedNCAIDs = slices.Compact(slices.Sorted(slices.Values(req.AuthorizedNCAIDs)))
	if req.NVCAVersion != "" {
		c.AgentVersion = req.NVCAVersion
	}
	return c
}

func (a *API) listClusters(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if err := ownAccount(r, p); err != nil {
		return err
	}
	all, err := a.st.ListClusters(r.Context())
	if err != nil {
		return err
	}
	out := model.ClusterListResponse{Clusters: []model.Cluster{}}
	for _, c := range all {
		if c.NCAID == p.Account {
			out.Clusters = append(out.Clusters, c)
		}
	}
	if err := a.withHeartbeats(r.Context(), out.Clusters); err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, out)
}

// withHeartbeats fills in what the cluster records do not hold: when each
// cluster's agent last reported (see store.Heartbeat) and the GPUs promised
// to instances (the allocations).
func (a *API) withHeartbeats(ctx context.Context, cs []model.Cluster) error {
	beats, err := a.st.ListHeartbeats(ctx)
	if err != nil {
		return err
	}
	allocs, err := a.st.ListAllocations(ctx)
	if err != nil {
		return err
	}
	for i, c := range cs {
		if hb, ok := beats[c.ID]; ok {
			cs[i].LastHeartbeat, cs[i].HeartbeatMillis = hb.At, hb.PeriodMillis
			cs[i].InstanceTypes, cs[i].IdleInstances, cs[i].StandbyInstances = hb.InstanceTypes, hb.Idle, hb.Standby
		}
		cs[i].UsedGPUs = allocs[c.ID].Used
	}
	return nil
}

// ownCluster reads a cluster of the caller's account.
func (a *API) ownCluster(r *http.Request, p auth.Principal) (model.Cluster, error) {
	if err := ownAccount(r, p); err != nil {
		return model.Cluster{}, err
	}
	ids, err := pathIDs(r, "clusterId")
	if err != nil {
		return model.Cluster{}, err
	}
	c, err := a.st.GetCluster(r.Context(), ids[0])
	if errors.Is(err, store.ErrNotFound) || (err == nil && c.NCAID != p.Account) {
		return c, problem.NotFound("cluster %s not found", ids[0])
	}
	return c, err
}

func (a *API) getCluster(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	c, err := a.ownCluster(r, p)
	if err != nil {
		return err
	}
	cs := []model.Cluster{c}
	if err := a.withHeartbeats(r.Context(), cs); err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, model.ClusterResponse{Cluster: cs[0]})
}

func (a *API) updateCluster(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req model.ClusterRequest
	if err := validate.Decode(r.Body, maxBody, &req); err != nil {
		return err
	}
	if err := validate.Cluster(&req); err != nil {
		return err
	}
	return a.modifyCluster(w, r, p, func(c *model.Cluster) error {
		if req.ClusterName != c.Name {
			return problem.BadRequest("clusterName cannot change (it is %q); register a new cluster instead", c.Name)
		}
		*c = clusterFromRequest(*c, req)
		return nil
	})
}

func (a *API) cordonCluster(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.modifyCluster(w, r, p, func(c *model.Cluster) error { c.Cordoned = true; return nil })
}

func (a *API) uncordonCluster(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.modifyCluster(w, r, p, func(c *model.Cluster) error { c.Cordoned, c.Draining = false, false; return nil })
}

func (a *API) drainCluster(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	return a.modifyCluster(w, r, p, func(c *model.Cluster) error { c.Cordoned, c.Draining = true, true; return nil })
}

// modifyCluster applies change to a freshly read cluster and writes it,
// retrying when a heartbeat updated it meanwhile.
func (a *API) modifyCluster(w http.ResponseWriter, r *http.Request, p auth.Principal, change func(*model.Cluster) error) error {
	for attempt := 0; ; attempt++ {
		c, err := a.ownCluster(r, p)
		if err != nil {
			return err
		}
		if err := change(&c); err != nil {
			return err
		}
		err = a.st.UpdateCluster(r.Context(), &c)
		if errors.Is(err, store.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return err
		}
		return web.JSON(w, http.StatusOK, model.ClusterResponse{Cluster: c})
	}
}

func (a *API) deleteCluster(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	c, err := a.ownCluster(r, p)
	if err != nil {
		return err
	}
	if err := a.reg.Deregister(r.Context(), c.ID); err != nil {
		return err
	}
	a.log.Info("api: cluster deleted; its credentials are revoked", "cluster", c.ID, "name", c.Name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
