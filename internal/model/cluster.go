package model

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// ClusterStatus says whether a cluster's agent is heartbeating.
type ClusterStatus string

// Cluster statuses.
const (
	ClusterReady    ClusterStatus = "READY"
	ClusterNotReady ClusterStatus = "NOT_READY"
)

// Cluster is a registered GPU cluster with one agent.
type Cluster struct {
	ID        string `json:"clusterId"`
	Name      string `json:"clusterName"`
	GroupID   string `json:"clusterGroupId"`
	GroupName string `json:"clusterGroupName"`
	NCAID     string `json:"ncaId"`
	// AuthorizedNCAIDs are the other accounts whose functions may run on
	// the cluster (NVCF's authorizedNCAIds); it serves its own account
	// always, and no other unless listed.
	AuthorizedNCAIDs []string          `json:"authorizedNCAIds,omitempty"`
	CloudProvider    string            `json:"cloudProvider,omitempty"`
	Region           string            `json:"region,omitempty"`
	Zone             string            `json:"zone,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	Capabilities     []string          `json:"capabilities,omitempty"`
	// JWKS and OIDCIssuer let the cluster's agent authenticate with tokens
	// its own issuer signs (a Kubernetes service-account token, say).
	JWKS          json.RawMessage `json:"jwks,omitempty"`
	OIDCIssuer    string          `json:"oidcIssuer,omitempty"`
	Status        ClusterStatus   `json:"status"`
	Inventory     Inventory       `json:"inventory"`
	AgentVersion  string          `json:"nvcaVersion,omitempty"`
	LastHeartbeat time.Time       `json:"lastHeartbeat"`
	// HeartbeatMillis is the agent's reporting period; three missed
	// periods make the cluster NOT_READY.
	HeartbeatMillis int64 `json:"heartbeatMillis,omitempty"`
	// NotReadySince is when the cluster last became NOT_READY; its
	// instances move elsewhere once the grace period after it passes.
	NotReadySince time.Time `json:"notReadySince,omitempty"`
	// Cordoned clusters take no new placements; Draining ones also move
	// their instances away, one at a time.
	Cordoned bool `json:"cordoned,omitempty"`
	Draining bool `json:"draining,omitempty"`
	// UsedGPUs is how many GPUs of each model are promised to instances;
	// the API fills it in from the allocations, it is not stored here.
	UsedGPUs map[string]int `json:"usedGpus,omitempty"`
	// InstanceTypes, IdleInstances and StandbyInstances come from the
	// agent's latest heartbeat; the API fills them in, they are not stored
	// in the cluster record (see store.Heartbeat).
	InstanceTypes    []InstanceTypeUsage `json:"instanceTypes,omitempty"`
	IdleInstances    int                 `json:"idleInstances"`
	StandbyInstances int                 `json:"standbyInstances"`
	CreatedAt        time.Time           `json:"createdAt"`

	// NVCALastConnected and HealthyHeartbeatReportTime are NVCF's names
	// for when the cluster's agent last reported (nvcf-cli's cluster list
	// reads them); Gantry's agents report only while they run, so every
	// heartbeat is a healthy one and both are its time. K8sVersion repeats
	// Inventory.KubernetesVersion and GPUs describes the inventory as
	// NVCF's cluster answers do. The API fills all four in; they are not
	// stored in the cluster record.
	NVCALastConnected          time.Time  `json:"nvcaLastConnected,omitzero"`
	HealthyHeartbeatReportTime time.Time  `json:"healthyHeartbeatReportTime,omitzero"`
	K8sVersion                 string     `json:"k8sVersion,omitempty"`
	GPUs                       []GroupGPU `json:"gpus,omitempty"`

	Revision int64 `json:"-"`
}

// Schedulable reports whether new instances may be placed on the cluster:
// it is READY, and neither an operator (cordon, drain) nor its agent
// (maintenance mode) has taken it out of placement.
func (c Cluster) Schedulable() bool {
	return c.Status == ClusterReady && !c.Cordoned && !c.Draining && !c.Inventory.Maintenance
}

// Inventory is the GPU capacity an agent reports for its cluster: what the
// cluster is, as opposed to how it is used right now (see
// InstanceTypeUsage), so it changes rarely.
type Inventory struct {
	Nodes []Node `json:"nodes"`
	// KubernetesVersion is the API server's version when the agent runs
	// functions on Kubernetes; empty for the process runtime.
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// Maintenance is set by the cluster's operator on the agent: the
	// cluster keeps its instances but takes no new ones.
	Maintenance bool `json:"maintenance,omitempty"`
}

// Node is one machine of a cluster and the GPUs on it.
type Node struct {
	Name        string `json:"name"`
	GPUModel    string `json:"gpuModel"`
	GPUMemoryGB int    `json:"gpuMemoryGB"`
	GPUs        int    `json:"gpus"`
	// CPUCores and MemoryGiB are the node's allocatable CPU and memory;
	// instance types get a share proportional to their GPUs.
	CPUCores  int `json:"cpuCores,omitempty"`
	MemoryGiB int `json:"memoryGiB,omitempty"`
}

// InstanceTypeUsage is one instance type a cluster offers, the size of one
// instance of it, and how the cluster's capacity for it is used.
type InstanceTypeUsage struct {
	Name      string `json:"name"`
	GPUModel  string `json:"gpu"`
	GPUs      int    `json:"gpuCount"`
	CPUCores  int    `json:"cpuCores"`
	MemoryGiB int    `json:"memoryGiB"`
	// Capacity is how many instances of the type fit on the empty cluster;
	// Available how many more fit now; InUse how many run or start there.
	Capacity  int `json:"capacity"`
	Available int `json:"available"`
	InUse     int `json:"inUse"`
}

// Usage describes every instance type the inventory offers, given the GPUs
// of each model that are taken and the instances of each type that run.
// GPUs are counted per cluster, so Available assumes free GPUs of a model
// can be combined across nodes; that holds for the process runtime, whose
// GPUs the agent hands out itself. UsageFree counts per node.
func (inv Inventory) Usage(usedGPUs map[string]int, inUse map[string]int) []InstanceTypeUsage {
	byName := map[string]*InstanceTypeUsage{}
	var order []string
	for _, n := range inv.Nodes {
		for _, t := range n.InstanceTypes() {
			u, ok := byName[t.Name]
			if !ok {
				u = &InstanceTypeUsage{Name: t.Name, GPUModel: t.GPUModel, GPUs: t.GPUCount,
					CPUCores: n.CPUCores * t.GPUCount / n.GPUs, MemoryGiB: n.MemoryGiB * t.GPUCount / n.GPUs}
				byName[t.Name] = u
				order = append(order, t.Name)
			}
			u.Capacity += n.GPUs / t.GPUCount
		}
	}
	totals := inv.GPUTotals()
	out := make([]InstanceTypeUsage, 0, len(order))
	for _, name := range order {
		u := byName[name]
		free := max(0, totals[u.GPUModel]-usedGPUs[u.GPUModel])
		u.Available = min(u.Capacity, free/u.GPUs)
		u.InUse = inUse[name]
		out = append(out, *u)
	}
	return out
}

// UsageFree describes every instance type the inventory offers, as Usage
// does, but from the GPUs free on each node rather than from cluster totals:
// a runtime on a cluster manager (Kubernetes) sees GPUs held by pods that
// Gantry did not start, and an instance must fit on one node, so free GPUs
// on different nodes do not add up to one instance. Available for a type of
// n GPUs is the sum, over the nodes that offer it (those Capacity counts), of
// each node's free GPUs divided by n, rounded down.
//
// free maps node names to free GPUs. A node that is missing counts as having
// none free: a runtime reports every node of its inventory, so a node it
// leaves out has gone since the inventory was read, and offering its GPUs
// would offer capacity that is not there. Values outside 0..node.GPUs are
// clamped. inUse is as for Usage.
func (inv Inventory) UsageFree(free map[string]int, inUse map[string]int) []InstanceTypeUsage {
	out := inv.Usage(nil, inUse)
	for i := range out {
		u := &out[i]
		avail := 0
		for _, n := range inv.Nodes {
			if n.Offers(u.GPUModel, u.GPUs) {
				avail += min(max(free[n.Name], 0), n.GPUs) / u.GPUs
			}
		}
		u.Available = min(u.Capacity, avail)
	}
	return out
}

// GPUTotals returns the number of GPUs of each model across the inventory.
func (inv Inventory) GPUTotals() map[string]int {
	out := map[string]int{}
	for _, n := range inv.Nodes {
		out[n.GPUModel] += n.GPUs
	}
	return out
}

// InstanceType is one shape of GPUs that an instance can take on a
// cluster, with the fields of NVCF's instance type entries (ICMS's
// InstanceTypeDetails, NVCA's manual instance configuration). Value,
// CPUCores, SystemMemory and GPUMemory are set by InstanceTypeDetails only.
type InstanceType struct {
	Name string `json:"name"`
	// Value is the name without the GPU count (ON-PREM.GPU.H100), what
	// NVCA matches against its nodes' instance-type label.
	Value       string `json:"value,omitempty"`
	Description string `json:"description"`
	Default     bool   `json:"default"`
	// CPUCores and SystemMemory are one instance's share of its node's CPU
	// and memory, in proportion to its GPUs; GPUMemory is the memory of
	// all its GPUs. Memory is a Kubernetes quantity ("128Gi").
	CPUCores     int    `json:"cpuCores,omitempty"`
	SystemMemory string `json:"systemMemory,omitempty"`
	GPUMemory    string `json:"gpuMemory,omitempty"`
	GPUCount     int    `json:"gpuCount"`
	GPUModel     string `json:"-"`
}

// instanceTypePrefix is the provider part of the instance type names
// Gantry gives its clusters' shapes.
const instanceTypePrefix = "ON-PREM.GPU."

// InstanceTypeName names an instance type the NVCF way: ON-PREM.GPU.H100_2x.
func InstanceTypeName(model string, count int) string {
	return fmt.Sprintf(instanceTypePrefix+"%s_%dx", model, count)
}

// InstanceTypeValue is NVCF's value of the instance types of a GPU model,
// the name without the count: ON-PREM.GPU.H100.
func InstanceTypeValue(model string) string {
	return instanceTypePrefix + model
}

// ParseInstanceTypeName splits an NVCF instance type name,
// <PREFIX>.GPU.<MODEL>_<N>x, into GPU model and count. The prefix names the
// provider (ON-PREM, NCP, OCI, ...) and may be left out (GPU.H100_1x, as NVCF
// task examples write it); it does not change the shape, so NCP.GPU.H100_1x
// maps onto the same cluster inventory as ON-PREM.GPU.H100_1x.
func ParseInstanceTypeName(name string) (model string, count int, ok bool) {
	const gpu = "GPU."
	rest, found := strings.CutPrefix(name, gpu)
	if !found {
		prefix, after, cut := strings.Cut(name, "."+gpu)
		if !cut || prefix == "" || strings.ContainsFunc(prefix, func(r rune) bool {
			return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}) {
			return "", 0, false
		}
		rest = after
	}
	us := strings.LastIndexByte(rest, '_')
	if us <= 0 || us == len(rest)-1 || rest[len(rest)-1] != 'x' {
		return "", 0, false
	}
	n := 0
	for _, c := range rest[us+1 : len(rest)-1] {
		if c < '0' || c > '9' || n > 1<<16 {
			return "", 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n == 0 {
		return "", 0, false
	}
	return rest[:us], n, true
}

// Offers reports whether the node offers an instance of count GPUs of
// gpuModel: InstanceTypes without building them, for the scheduler's inner
// loop.
func (n Node) Offers(gpuModel string, count int) bool {
	return n.GPUModel == gpuModel && count > 0 && count <= n.GPUs && (count&(count-1) == 0 || count == n.GPUs)
}

// InstanceTypes lists the instance types a node offers: powers of two up to
// its GPU count, plus the whole node. The 1x type is the default.
func (n Node) InstanceTypes() []InstanceType {
	var out []InstanceType
	add := func(c int) {
		for _, t := range out {
			if t.GPUCount == c {
				return
			}
		}
		out = append(out, InstanceType{
			Name:        InstanceTypeName(n.GPUModel, c),
			Description: fmt.Sprintf("%d x %s %dGB", c, n.GPUModel, n.GPUMemoryGB),
			Default:     c == 1,
			GPUModel:    n.GPUModel,
			GPUCount:    c,
		})
	}
	for c := 1; c <= n.GPUs; c *= 2 {
		add(c)
	}
	if n.GPUs > 0 {
		add(n.GPUs)
	}
	return out
}

// InstanceTypeDetails lists the instance types the node offers, as
// InstanceTypes does, each with what one instance of it gets (see
// InstanceType). The API describes clusters with it; the scheduler, which
// matches names only, uses the cheaper InstanceTypes.
func (n Node) InstanceTypeDetails() []InstanceType {
	ts := n.InstanceTypes()
	for i := range ts {
		t := &ts[i]
		t.Value = InstanceTypeValue(n.GPUModel)
		t.CPUCores = n.CPUCores * t.GPUCount / n.GPUs // InstanceTypes offers none on a node without GPUs
		if mem := n.MemoryGiB * t.GPUCount / n.GPUs; mem > 0 {
			t.SystemMemory = fmt.Sprintf("%dGi", mem)
		}
		if n.GPUMemoryGB > 0 {
			t.GPUMemory = fmt.Sprintf("%dGi", n.GPUMemoryGB*t.GPUCount)
		}
	}
	return ts
}

// GPUOffers describes what nodes offer the way NVCF's gpus entries do: one
// entry per GPU model, sorted by model, with the model's GPUs in total and
// its instance types, fewest GPUs first. Where nodes of a model differ, an
// instance type is described by the first node that offers it.
func GPUOffers(nodes []Node) []GroupGPU {
	byModel := map[string]*GroupGPU{}
	for _, n := range nodes {
		if n.GPUModel == "" || n.GPUs <= 0 {
			continue
		}
		g, ok := byModel[n.GPUModel]
		if !ok {
			g = &GroupGPU{Name: n.GPUModel}
			byModel[n.GPUModel] = g
		}
		g.Capacity += n.GPUs
		for _, t := range n.InstanceTypeDetails() {
			if !slices.ContainsFunc(g.InstanceTypes, func(o InstanceType) bool { return o.Name == t.Name }) {
				g.InstanceTypes = append(g.InstanceTypes, t)
			}
		}
	}
	out := make([]GroupGPU, 0, len(byModel))
	for _, m := range slices.Sorted(maps.Keys(byModel)) {
		g := byModel[m]
		slices.SortStableFunc(g.InstanceTypes, func(a, b InstanceType) int { return a.GPUCount - b.GPUCount })
		out = append(out, *g)
	}
	return out
}

// ClusterGroup is the NVCF view of clusters that share a group name (the
// deployment's "backend") in one account.
type ClusterGroup struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	NCAID string `json:"ncaId"`
	// AuthorizedNCAIDs are the other accounts the group's clusters serve
	// (note NVCF's spelling here, unlike the clusters' authorizedNCAIds).
	AuthorizedNCAIDs []string       `json:"authorizedNcaIds"`
	GPUs             []GroupGPU     `json:"gpus"`
	Clusters         []ClusterBrief `json:"clusters"`
}

// GroupGPU is one GPU model a cluster group, or one cluster, offers: how
// many GPUs of it there are and the instance types they make.
type GroupGPU struct {
	Name          string         `json:"name"`
	Capacity      int            `json:"capacity"`
	InstanceTypes []InstanceType `json:"instanceTypes"`
}

// ClusterBrief names a cluster inside a group listing.
type ClusterBrief struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	K8sVersion string `json:"k8sVersion,omitempty"`
}

// SupportedGPU is one entry of GET /v2/nvcf/supportedGpus, NVCF's
// deprecated list of the GPUs each backend (cluster group) offers.
type SupportedGPU struct {
	GPU     string `json:"gpu"`
	Backend string `json:"backend"`
}

// Serves reports whether functions of account may run on the cluster: its
// own account's, and those of the accounts it lists in AuthorizedNCAIDs.
func (c Cluster) Serves(account string) bool {
	return c.NCAID == account || slices.Contains(c.AuthorizedNCAIDs, account)
}
