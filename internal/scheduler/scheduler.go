// Package scheduler turns a deployment's GPU specifications into instance
// placements. Choosing is a pure function over a snapshot of clusters and
// allocations (filter, then score); committing is one etcd transaction per
// instance that also moves the cluster's allocation, so concurrent
// schedulers can race without ever overbooking a GPU: the loser re-reads and
// chooses again.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/policy"
	"github.com/gantry-dev/gantry/internal/store"
)

// Store is what the scheduler reads and commits.
type Store interface {
	ListClusters(ctx context.Context) ([]model.Cluster, error)
	ListAllocations(ctx context.Context) (map[string]store.Allocation, error)
	GetAllocation(ctx context.Context, clusterID string) (store.Allocation, error)
	PlaceInstance(ctx context.Context, inst *model.Instance, alloc *store.Allocation) error
	ReleaseInstance(ctx context.Context, inst model.Instance, alloc *store.Allocation) error
}

// Choose picks the cluster for one instance of spec, or says in words why no
// cluster fits. used is the GPUs already promised per cluster and model.
// Strategy: bin-pack, i.e. the fitting cluster left with the fewest free GPUs
// of the model, so large shapes keep finding room elsewhere.
func Choose(spec model.GPUSpec, clusters []model.Cluster, used map[string]map[string]int) (string, string) {
	itype, need := spec.Shape()
	best, bestFree := "", 0
	mostFree, anyShape, anyFilter := 0, false, false
	for _, c := range clusters {
		if !spec.Allows(c) {
			continue
		}
		anyFilter = true
		total := 0
		shape := false
		for _, n := range c.Inventory.Nodes {
			if n.GPUModel == spec.GPU {
				total += n.GPUs
				shape = shape || n.Offers(spec.GPU, need)
			}
		}
		if !shape {
			continue
		}
		anyShape = true
		free := total - used[c.ID][spec.GPU]
		mostFree = max(mostFree, free)
		if free < need {
			continue
		}
		after := free - need
		if best == "" || after < bestFree || (after == bestFree && c.ID < best) {
			best, bestFree = c.ID, after
		}
	}
	switch {
	case best != "":
		return best, ""
	case !anyFilter:
		return "", "no READY, uncordoned cluster matches " + describeFilter(spec)
	case !anyShape:
		return "", fmt.Sprintf("no matching cluster offers instance type %s (gpus offered: %s)",
			itype, strings.Join(offeredModels(spec, clusters), ", "))
	default:
		return "", fmt.Sprintf("not enough free GPUs: an instance needs %d x %s, the most free on a matching cluster is %d; it will be placed when capacity frees up",
			need, spec.GPU, mostFree)
	}
}

// offeredModels lists the GPU models of the clusters spec allows, for
// explaining why nothing fits (never on the path that places).
func offeredModels(spec model.GPUSpec, clusters []model.Cluster) []string {
	var out []string
	for _, c := range clusters {
		if spec.Allows(c) {
			for _, n := range c.Inventory.Nodes {
				out = append(out, n.GPUModel)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func describeFilter(spec model.GPUSpec) string {
	parts := []string{}
	if spec.Backend != "" {
		parts = append(parts, "backend "+spec.Backend)
	}
	if len(spec.Clusters) > 0 {
		parts = append(parts, "clusters "+strings.Join(spec.Clusters, ","))
	}
	if len(spec.Regions) > 0 {
		parts = append(parts, "regions "+strings.Join(spec.Regions, ","))
	}
	if len(spec.AvailabilityZones) > 0 {
		parts = append(parts, "zones "+strings.Join(spec.AvailabilityZones, ","))
	}
	if len(parts) == 0 {
		return "(no cluster is READY)"
	}
	return strings.Join(parts, ", ")
}

// Scheduler commits placements.
type Scheduler struct {
	st Store
}

// New builds a scheduler over st.
func New(st Store) *Scheduler { return &Scheduler{st: st} }

// Request is one pending instance and the spec it must satisfy.
type Request struct {
	Instance *model.Instance
	Spec     model.GPUSpec
	// Policy is the schedule policy that governs the instance's function,
	// or nil for plain bin-packing.
	Policy *policy.Policy
	// Placed counts the spec's placed instances per cluster, for spread and
	// group-by; the requests of one spec share it, and Place updates it.
	Placed map[string]int
}

// Result says what happened to one request: placed (Instance.ClusterID set),
// or pending with Reason.
type Result struct {
	Placed bool
	Reason string
}

// maxAttempts bounds retries of one placement under contention.
const maxAttempts = 16

// Place places pending instances, reading clusters and allocations once and
// re-reading only a cluster whose allocation changed under it.
func (s *Scheduler) Place(ctx context.Context, reqs []Request) ([]Result, error) {
	clusters, err := s.st.ListClusters(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(clusters, func(i, j int) bool { return clusters[i].ID < clusters[j].ID })
	allocs, err := s.st.ListAllocations(ctx)
	if err != nil {
		return nil, err
	}
	// used mirrors allocs for Choose and is kept in step with every commit
	// and re-read, rather than rebuilt per attempt.
	used := make(map[string]map[string]int, len(allocs))
	for id, a := range allocs {
		used[id] = a.Used
	}
	out := make([]Result, len(reqs))
	for i, r := range reqs {
		for attempt := 0; ; attempt++ {
			var cid, reason string
			if r.Policy != nil {
				cid, reason = r.Policy.Choose(r.Spec, clusters, used, r.Placed)
			} else {
				cid, reason = Choose(r.Spec, clusters, used)
			}
			if cid == "" {
				out[i] = Result{Reason: reason}
				break
			}
			a, ok := allocs[cid]
			if !ok {
				a = store.Allocation{ClusterID: cid, Used: map[string]int{}}
			}
			_, need := r.Spec.Shape()
			next := store.Allocation{ClusterID: cid, Used: cloneCounts(a.Used), Revision: a.Revision}
			next.Used[r.Spec.GPU] += need
			placed := *r.Instance
			placed.ClusterID = cid
			placed.PendingReason = ""
			err := s.st.PlaceInstance(ctx, &placed, &next)
			if err == nil {
				*r.Instance = placed
				allocs[cid], used[cid] = next, next.Used
				out[i] = Result{Placed: true}
				if r.Placed != nil {
					r.Placed[cid]++
				}
				break
			}
			if !errors.Is(err, store.ErrConflict) || attempt >= maxAttempts {
				return out, fmt.Errorf("scheduler: place %s: %w", r.Instance.ID, err)
			}
			// The allocation (or the instance) moved: refresh the allocation
			// and choose again.
			fresh, gerr := s.st.GetAllocation(ctx, cid)
			if gerr != nil {
				return out, gerr
			}
			allocs[cid], used[cid] = fresh, fresh.Used
		}
	}
	return out, nil
}

// Release deletes an instance and returns its GPUs to its cluster.
func (s *Scheduler) Release(ctx context.Context, inst model.Instance) error {
	for attempt := 0; ; attempt++ {
		var alloc *store.Allocation
		if inst.ClusterID != "" {
			a, err := s.st.GetAllocation(ctx, inst.ClusterID)
			if err != nil {
				return err
			}
			a.Used = cloneCounts(a.Used)
			a.Used[inst.GPU] = max(0, a.Used[inst.GPU]-inst.GPUCount)
			alloc = &a
		}
		err := s.st.ReleaseInstance(ctx, inst, alloc)
		if err == nil || !errors.Is(err, store.ErrConflict) || attempt >= maxAttempts {
			return err
		}
	}
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}
