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
	"maps"
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
	PlaceInstances(ctx context.Context, insts []*model.Instance, allocs []*store.Allocation) error
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
		return "", policy.Unmatched(spec, clusters, false)
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

// batchSize is how many placements share one etcd transaction. Each adds at
// most two compares and two puts, which keeps a batch within etcd's default
// limit of 128 operations per transaction.
const batchSize = 48

// Place places pending instances, reading clusters and allocations first.
func (s *Scheduler) Place(ctx context.Context, reqs []Request) ([]Result, error) {
	clusters, err := s.st.ListClusters(ctx)
	if err != nil {
		return nil, err
	}
	return s.PlaceOn(ctx, clusters, reqs)
}

// PlaceOn is Place over a snapshot of the clusters the caller already read
// (the controller reads them once per pass). A stale snapshot is safe: every
// commit is guarded by the revision of the allocation it changes.
//
// Choices are made in memory and committed batchSize at a time in one
// transaction; if another scheduler got there first, that batch is redone one
// placement at a time against fresh allocations.
func (s *Scheduler) PlaceOn(ctx context.Context, clusters []model.Cluster, reqs []Request) ([]Result, error) {
	clusters = slices.Clone(clusters)
	sort.Slice(clusters, func(i, j int) bool { return clusters[i].ID < clusters[j].ID })
	allocs, err := s.st.ListAllocations(ctx)
	if err != nil {
		return nil, err
	}
	p := &placer{st: s.st, clusters: clusters, allocs: allocs, used: make(map[string]map[string]int, len(allocs))}
	for id, a := range allocs {
		p.used[id] = a.Used
	}
	out := make([]Result, len(reqs))
	for start := 0; start < len(reqs); start += batchSize {
		end := min(start+batchSize, len(reqs))
		if err := p.batch(ctx, reqs[start:end], out[start:end]); err != nil {
			return out, err
		}
	}
	return out, nil
}

// placer holds one Place call's view of the allocations. used mirrors allocs
// for Choose and moves with every choice, so later choices see earlier ones.
type placer struct {
	st       Store
	clusters []model.Cluster
	allocs   map[string]store.Allocation
	used     map[string]map[string]int
	// served caches, per account, the clusters that serve it.
	served map[string][]model.Cluster
}

// choose places r only on clusters that serve its instance's account: a
// cluster runs its own account's functions and those of the accounts it
// authorized, never another's.
func (p *placer) choose(r Request) (string, string) {
	account := r.Instance.NCAID
	clusters, ok := p.served[account]
	if !ok {
		for _, c := range p.clusters {
			if c.Serves(account) {
				clusters = append(clusters, c)
			}
		}
		if p.served == nil {
			p.served = map[string][]model.Cluster{}
		}
		p.served[account] = clusters
	}
	if len(clusters) == 0 {
		return "", fmt.Sprintf("no registered cluster serves account %s: register one for it, or have a cluster's owner list it in authorizedNCAIds", account)
	}
	if r.Policy != nil {
		return r.Policy.Choose(r.Spec, clusters, p.used, r.Placed)
	}
	return Choose(r.Spec, clusters, p.used)
}

// batch chooses for every request, then commits all placements at once.
func (p *placer) batch(ctx context.Context, reqs []Request, out []Result) error {
	next := map[string]*store.Allocation{}
	var insts []*model.Instance
	var chosen []int
	for i, r := range reqs {
		cid, reason := p.choose(r)
		if cid == "" {
			out[i] = Result{Reason: reason}
			continue
		}
		a, ok := next[cid]
		if !ok {
			cur := p.allocs[cid]
			a = &store.Allocation{ClusterID: cid, Used: cloneCounts(cur.Used), Revision: cur.Revision}
			next[cid] = a
		}
		_, need := r.Spec.Shape()
		a.Used[r.Spec.GPU] += need
		p.used[cid] = a.Used
		if r.Placed != nil {
			r.Placed[cid]++
		}
		placed := *r.Instance
		placed.ClusterID, placed.PendingReason = cid, ""
		insts, chosen = append(insts, &placed), append(chosen, i)
	}
	if len(insts) == 0 {
		return nil
	}
	touched := slices.Collect(maps.Values(next))
	err := p.st.PlaceInstances(ctx, insts, touched)
	if err == nil {
		for k, i := range chosen {
			*reqs[i].Instance = *insts[k]
			out[i] = Result{Placed: true}
		}
		for _, a := range touched {
			p.allocs[a.ClusterID] = *a
		}
		return nil
	}
	if !errors.Is(err, store.ErrConflict) {
		return err
	}
	// Someone else moved an allocation or an instance: forget this batch's
	// choices and place its requests one at a time on fresh data.
	for k, i := range chosen {
		if reqs[i].Placed != nil {
			reqs[i].Placed[insts[k].ClusterID]--
		}
	}
	for cid := range next {
		if err := p.refresh(ctx, cid); err != nil {
			return err
		}
	}
	for i, r := range reqs {
		res, err := p.one(ctx, r)
		if err != nil {
			return err
		}
		out[i] = res
	}
	return nil
}

func (p *placer) refresh(ctx context.Context, cid string) error {
	fresh, err := p.st.GetAllocation(ctx, cid)
	if err != nil {
		return err
	}
	p.allocs[cid], p.used[cid] = fresh, fresh.Used
	return nil
}

// one places a single request in its own transaction, retrying on conflict.
func (p *placer) one(ctx context.Context, r Request) (Result, error) {
	for attempt := 0; ; attempt++ {
		cid, reason := p.choose(r)
		if cid == "" {
			return Result{Reason: reason}, nil
		}
		cur := p.allocs[cid]
		_, need := r.Spec.Shape()
		next := store.Allocation{ClusterID: cid, Used: cloneCounts(cur.Used), Revision: cur.Revision}
		next.Used[r.Spec.GPU] += need
		placed := *r.Instance
		placed.ClusterID, placed.PendingReason = cid, ""
		err := p.st.PlaceInstance(ctx, &placed, &next)
		if err == nil {
			*r.Instance = placed
			p.allocs[cid], p.used[cid] = next, next.Used
			if r.Placed != nil {
				r.Placed[cid]++
			}
			return Result{Placed: true}, nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= maxAttempts {
			return Result{}, fmt.Errorf("scheduler: place %s: %w", r.Instance.ID, err)
		}
		// The allocation (or the instance) moved: refresh and choose again.
		if err := p.refresh(ctx, cid); err != nil {
			return Result{}, err
		}
	}
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
