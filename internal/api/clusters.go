package api

import (
	"maps"
	"net/http"
	"slices"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/web"
)

// clusterGroups lists groups with the GPUs and instance types their clusters
// offer, merged across clusters.
func (a *API) clusterGroups(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	clusters, err := a.st.ListClusters(r.Context())
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
	clusters, err := a.st.ListClusters(r.Context())
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
