package api

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// clusterGroups lists the cluster groups whose clusters serve the caller's
// account, in NVCF's shape: per group its GPUs and their instance types,
// merged across its clusters, the other accounts its clusters serve, and
// its clusters. A group is one account's: groups of the same name in two
// accounts are two groups, told apart by id and ncaId.
func (a *API) clusterGroups(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	clusters, err := a.accountClusters(r.Context(), p)
	if err != nil {
		return err
	}
	slices.SortFunc(clusters, func(x, y model.Cluster) int {
		return cmp.Or(strings.Compare(x.GroupName, y.GroupName), strings.Compare(x.GroupID, y.GroupID), strings.Compare(x.Name, y.Name))
	})
	out := model.ClusterGroupsResponse{ClusterGroups: []model.ClusterGroup{}}
	for len(clusters) > 0 {
		n := 1
		for n < len(clusters) && clusters[n].GroupID == clusters[0].GroupID {
			n++
		}
		group := clusters[:n]
		clusters = clusters[n:]
		g := model.ClusterGroup{ID: group[0].GroupID, Name: group[0].GroupName, NCAID: group[0].NCAID}
		var authorized []string
		var nodes []model.Node
		for _, c := range group {
			g.Clusters = append(g.Clusters, model.ClusterBrief{ID: c.ID, Name: c.Name, K8sVersion: c.Inventory.KubernetesVersion})
			authorized = append(authorized, authorizedFor(c, p)...)
			nodes = append(nodes, c.Inventory.Nodes...)
		}
		slices.Sort(authorized)
		g.AuthorizedNCAIDs = append([]string{}, slices.Compact(authorized)...)
		g.GPUs = model.GPUOffers(nodes)
		out.ClusterGroups = append(out.ClusterGroups, g)
	}
	return web.JSON(w, http.StatusOK, out)
}

// authorizedFor is the part of c's authorizedNCAIds the caller may see: all
// of it for the cluster's own account; for an account it is authorized on,
// only that account, so that no account learns which others share a
// cluster with it.
func authorizedFor(c model.Cluster, p auth.Principal) []string {
	if c.NCAID == p.Account {
		return c.AuthorizedNCAIDs
	}
	return []string{p.Account}
}

// supportedGPUs answers NVCF's deprecated GET /v2/nvcf/supportedGpus: a
// bare list of {gpu, backend}, one per GPU model each cluster group (the
// deployments' backend) serving the caller's account offers.
func (a *API) supportedGPUs(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	clusters, err := a.accountClusters(r.Context(), p)
	if err != nil {
		return err
	}
	out := []model.SupportedGPU{}
	for _, c := range clusters {
		for m, n := range c.Inventory.GPUTotals() {
			if m != "" && n > 0 {
				out = append(out, model.SupportedGPU{GPU: m, Backend: c.GroupName})
			}
		}
	}
	slices.SortFunc(out, func(x, y model.SupportedGPU) int {
		return cmp.Or(strings.Compare(x.Backend, y.Backend), strings.Compare(x.GPU, y.GPU))
	})
	return web.JSON(w, http.StatusOK, slices.Compact(out))
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

// listClusters answers NVCF's GET /v1/accounts/{ncaId}/clusters: a bare
// JSON array (what ICMS answers and nvcf-cli decodes) of the account's own
// clusters, each as getCluster describes it.
func (a *API) listClusters(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if err := ownAccount(r, p); err != nil {
		return err
	}
	all, err := a.st.ListClusters(r.Context())
	if err != nil {
		return err
	}
	out := slices.DeleteFunc(all, func(c model.Cluster) bool { return c.NCAID != p.Account })
	if out == nil {
		out = []model.Cluster{}
	}
	if err := a.describeClusters(r.Context(), out); err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, out)
}

// describeClusters fills in what the cluster records do not hold: from the
// latest heartbeat (see store.Heartbeat) when the agent reported, under
// Gantry's and NVCF's names, and how each instance type is used; the GPUs
// promised to instances (the allocations); and the inventory in NVCF's
// terms (k8sVersion, gpus).
func (a *API) describeClusters(ctx context.Context, cs []model.Cluster) error {
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
			cs[i].NVCALastConnected, cs[i].HealthyHeartbeatReportTime = hb.At, hb.At
			cs[i].InstanceTypes, cs[i].IdleInstances, cs[i].StandbyInstances = hb.InstanceTypes, hb.Idle, hb.Standby
		}
		cs[i].UsedGPUs = allocs[c.ID].Used
		cs[i].K8sVersion = c.Inventory.KubernetesVersion
		cs[i].GPUs = model.GPUOffers(c.Inventory.Nodes)
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
	return a.answerCluster(w, r, c)
}

// answerCluster answers one cluster bare, as NVCF's GET of one cluster
// does (ICMS's GetClusterResponse, unwrapped), described as in a listing.
// PUT, cordon, uncordon and drain answer the changed cluster the same way.
func (a *API) answerCluster(w http.ResponseWriter, r *http.Request, c model.Cluster) error {
	cs := []model.Cluster{c}
	if err := a.describeClusters(r.Context(), cs); err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, cs[0])
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
		return a.answerCluster(w, r, c)
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
