// Package controller is the control plane's reconciler. It is level-triggered:
// on any change in the store (and on a timer) it reads the whole picture —
// deployments, instances, observed instance states, clusters — and makes one
// pass that converges it: creates or releases instances so every GPU spec has
// the instances it asks for, asks the scheduler to place pending ones,
// computes each deployment's status, and publishes every cluster's desired
// state for its agent. Nothing depends on seeing a particular event, so a
// restart or a missed notification loses nothing.
//
// Only one replica reconciles at a time (etcd leader election, see
// controlplane); the agent-facing handlers in reports.go run on every replica.
package controller

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/policy"
	"github.com/gantry-dev/gantry/internal/scheduler"
	"github.com/gantry-dev/gantry/internal/store"
)

// Store is what the reconciler reads and writes.
type Store interface {
	scheduler.Store
	ListDeployments(ctx context.Context) ([]model.Deployment, error)
	UpdateDeployment(ctx context.Context, d *model.Deployment) error
	ListFunctions(ctx context.Context) ([]model.Function, error)
	ListInstances(ctx context.Context) ([]model.Instance, error)
	CreateInstance(ctx context.Context, inst *model.Instance) error
	CreateInstances(ctx context.Context, insts []*model.Instance) (int, error)
	UpdateInstance(ctx context.Context, inst *model.Instance) error
	ListInstanceStates(ctx context.Context) (map[string]model.InstanceState, error)
	UpdateCluster(ctx context.Context, c *model.Cluster) error
	ListPolicies(ctx context.Context) ([]policy.Policy, error)
	ListHeartbeats(ctx context.Context) (map[string]store.Heartbeat, error)
	ListScales(ctx context.Context) (map[string]model.Scale, error)
	Notify(ctx context.Context, sub string) <-chan struct{}
}

// Publisher receives each cluster's desired state after every pass.
type Publisher interface {
	Publish(ctx context.Context, states map[string]model.DesiredState) error
}

// Config tunes the controller.
type Config struct {
	// Resync is how often a pass runs even without notifications.
	Resync time.Duration
	// Grace is how long a cluster may stay NOT_READY before its instances
	// are placed elsewhere (default 30s). A cluster is NOT_READY after
	// three missed heartbeats.
	Grace  time.Duration
	Logger *slog.Logger
	// Now is the clock (tests move it); default time.Now.
	Now func() time.Time
}

// Controller reconciles deployments.
type Controller struct {
	st    Store
	sched *scheduler.Scheduler
	pub   Publisher
	cfg   Config
	log   *slog.Logger
}

// New builds a controller.
func New(st Store, pub Publisher, cfg Config) *Controller {
	if cfg.Resync <= 0 {
		cfg.Resync = 5 * time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Controller{st: st, sched: scheduler.New(st), pub: pub, cfg: cfg, log: log}
}

// Run reconciles until ctx ends. Call it while holding leadership.
func (c *Controller) Run(ctx context.Context) {
	changes := c.watch(ctx)
	tick := time.NewTicker(c.cfg.Resync)
	defer tick.Stop()
	for {
		if err := c.Reconcile(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("controller: pass failed; will retry", "err", err)
		}
		// A pass reads the whole world, so a burst of changes is better
		// served by one pass a moment later than by a pass per change.
		select {
		case <-ctx.Done():
			return
		case <-time.After(minPassGap):
		}
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-tick.C:
		}
	}
}

// minPassGap spaces passes out under a stream of changes.
const minPassGap = 100 * time.Millisecond

// watched are the prefixes whose changes call for a pass. Heartbeats are
// not among them: they change nothing to reconcile, and missed ones are
// noticed on the periodic resync.
var watched = []string{"deployments/", "functions/", "instances/", "instance-state/", "clusters/", "policies/", "scales/"}

// watch merges the notifications of every watched prefix into one channel.
func (c *Controller) watch(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	for _, p := range watched {
		ch := c.st.Notify(ctx, p)
		go func() {
			for range ch {
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}()
	}
	return out
}

// world is one consistent-enough read of everything a pass needs.
type world struct {
	deployments map[string]model.Deployment // by version id
	functions   map[string]model.Function   // by version id
	instances   []model.Instance
	states      map[string]model.InstanceState
	clusters    map[string]model.Cluster
	scales      map[string]model.Scale // the autoscaler's counts, by version id
	policies    []policy.Policy
	busy        map[string]bool // running instances with requests in flight at the last heartbeat
}

func (c *Controller) read(ctx context.Context) (*world, error) {
	deps, err := c.st.ListDeployments(ctx)
	if err != nil {
		return nil, err
	}
	fns, err := c.st.ListFunctions(ctx)
	if err != nil {
		return nil, err
	}
	insts, err := c.st.ListInstances(ctx)
	if err != nil {
		return nil, err
	}
	states, err := c.st.ListInstanceStates(ctx)
	if err != nil {
		return nil, err
	}
	clusters, err := c.st.ListClusters(ctx)
	if err != nil {
		return nil, err
	}
	beats, err := c.st.ListHeartbeats(ctx)
	if err != nil {
		return nil, err
	}
	scales, err := c.st.ListScales(ctx)
	if err != nil {
		return nil, err
	}
	policies, err := c.st.ListPolicies(ctx)
	if err != nil {
		return nil, err
	}
	busy := map[string]bool{}
	for i, cl := range clusters {
		if hb, ok := beats[cl.ID]; ok {
			clusters[i].LastHeartbeat, clusters[i].HeartbeatMillis = hb.At, hb.PeriodMillis
			for _, id := range hb.Busy {
				busy[id] = true
			}
		}
	}
	w := &world{
		deployments: make(map[string]model.Deployment, len(deps)),
		functions:   make(map[string]model.Function, len(fns)),
		instances:   insts,
		states:      states,
		clusters:    make(map[string]model.Cluster, len(clusters)),
		scales:      scales,
		policies:    policies,
		busy:        busy,
	}
	for _, cl := range clusters {
		w.clusters[cl.ID] = cl
	}
	for _, d := range deps {
		w.deployments[d.FunctionVersionID] = d
	}
	for _, f := range fns {
		w.functions[f.VersionID] = f
	}
	return w, nil
}

// Reconcile makes one pass.
func (c *Controller) Reconcile(ctx context.Context) error {
	w, err := c.read(ctx)
	if err != nil {
		return err
	}
	var errs []error
	// 0. Clusters whose agent went quiet are NOT_READY.
	errs = append(errs, c.checkHeartbeats(ctx, w))
	// 1. Size every spec: create missing instances, release surplus ones and
	// ones that no longer belong to any spec.
	keep, err := c.size(ctx, w)
	errs = append(errs, err)
	// 2. Place what is pending.
	errs = append(errs, c.placePending(ctx, w, keep))
	// 3. Status of every deployment, from what agents observed.
	errs = append(errs, c.updateStatuses(ctx, w, keep))
	// 4. Tell every cluster what to run.
	if c.pub != nil {
		errs = append(errs, c.pub.Publish(ctx, desiredStates(w, keep)))
	}
	return errors.Join(errs...)
}

type specKey struct {
	version string
	index   int
}

// size returns the instances that remain, grouped by spec.
func (c *Controller) size(ctx context.Context, w *world) (map[specKey][]*model.Instance, error) {
	keep := map[specKey][]*model.Instance{}
	var fresh []*model.Instance
	var errs []error
	for i := range w.instances {
		inst := &w.instances[i]
		d, ok := w.deployments[inst.FunctionVersionID]
		if !ok || d.ID != inst.DeploymentID || inst.SpecIndex >= len(d.Specs) || !matchesSpec(*inst, d.Specs[inst.SpecIndex]) {
			errs = append(errs, c.release(ctx, *inst, "no longer part of its deployment"))
			continue
		}
		if why := c.lost(w, *inst); why != "" {
			errs = append(errs, c.release(ctx, *inst, why))
			continue
		}
		k := specKey{inst.FunctionVersionID, inst.SpecIndex}
		keep[k] = append(keep[k], inst)
	}
	for _, d := range w.deployments {
		for si := range d.Specs {
			k := specKey{d.FunctionVersionID, si}
			have := keep[k]
			want := w.desired(d, si)
			if draining := c.outdated(w, have); len(draining) > 0 {
				kept, err := c.drainStep(ctx, w, d, si, have, draining, want)
				errs = append(errs, err)
				keep[k] = kept
				continue
			}
			if len(have) > want {
				pol := policy.Select(w.policies, w.functions[d.FunctionVersionID])
				sortForRemoval(have, w.states, w.busy, func(clusterID string) int { return pol.SpillRank(w.clusters[clusterID]) })
				for _, inst := range have[want:] {
					errs = append(errs, c.release(ctx, *inst, "scaled down"))
				}
				keep[k] = have[:want]
				continue
			}
			for len(keep[k]) < want {
				inst := c.buildInstance(w, d, si)
				fresh = append(fresh, inst)
				keep[k] = append(keep[k], inst)
			}
		}
	}
	// New instances are written together (then placed together, in
	// placePending); any not written leave keep again.
	if n, err := c.st.CreateInstances(ctx, fresh); err != nil {
		errs = append(errs, err)
		lost := map[*model.Instance]bool{}
		for _, inst := range fresh[n:] {
			lost[inst] = true
		}
		for k, insts := range keep {
			keep[k] = slices.DeleteFunc(insts, func(i *model.Instance) bool { return lost[i] })
		}
	}
	return keep, errors.Join(errs...)
}

// newInstance creates one pending instance for spec si of d.
func (c *Controller) newInstance(ctx context.Context, w *world, d model.Deployment, si int) (*model.Instance, error) {
	inst := c.buildInstance(w, d, si)
	return inst, c.st.CreateInstance(ctx, inst)
}

// buildInstance is a new pending instance for spec si of d, recording the
// secrets generation it will start with; nothing is written.
func (c *Controller) buildInstance(w *world, d model.Deployment, si int) *model.Instance {
	spec := d.Specs[si]
	itype, n := spec.Shape()
	inst := &model.Instance{
		ID:                uuid.NewString(),
		FunctionID:        d.FunctionID,
		FunctionVersionID: d.FunctionVersionID,
		NCAID:             d.NCAID,
		DeploymentID:      d.ID,
		SpecIndex:         si,
		GPU:               spec.GPU,
		InstanceType:      itype,
		GPUCount:          n,
		SecretsGeneration: w.functions[d.FunctionVersionID].SecretsGeneration,
		CreatedAt:         c.cfg.Now().UTC(),
	}
	return inst
}

// floorCount is how many instances a spec must have whatever its load:
// minInstances (at least the bound the API validated). Status counts
// against it.
func floorCount(spec model.GPUSpec) int {
	return min(spec.MinInstances, spec.MaxInstances)
}

// desired is how many instances spec si of d should have: the
// autoscaler's count for this deployment, within the spec's bounds, or its
// floor until the autoscaler has decided.
func (w *world) desired(d model.Deployment, si int) int {
	spec := d.Specs[si]
	if sc, ok := w.scales[d.FunctionVersionID]; ok && sc.DeploymentID == d.ID && si < len(sc.Specs) {
		return min(max(sc.Specs[si].Desired, spec.MinInstances), spec.MaxInstances)
	}
	return floorCount(spec)
}

func matchesSpec(inst model.Instance, spec model.GPUSpec) bool {
	itype, _ := spec.Shape()
	return inst.GPU == spec.GPU && inst.InstanceType == itype
}

// sortForRemoval orders instances so that the least useful come last:
// running ones are kept, pending and failing ones go first; among equals,
// those on later fillAndSpill tiers (higher spill rank) go first, so a
// spec shrinks in the reverse of the order it grew, and within a tier idle
// ones go before busy ones (which finish their calls before they stop).
func sortForRemoval(insts []*model.Instance, states map[string]model.InstanceState, busy map[string]bool, spill func(clusterID string) int) {
	rank := func(i *model.Instance) int {
		switch {
		case i.ClusterID == "":
			return 3
		case states[i.ID].Status == model.InstanceErrored:
			return 2
		case states[i.ID].Status == model.InstanceRunning:
			return 0
		default:
			return 1
		}
	}
	sort.SliceStable(insts, func(a, b int) bool {
		ra, rb := rank(insts[a]), rank(insts[b])
		if ra != rb {
			return ra < rb
		}
		if insts[a].ClusterID == "" || insts[b].ClusterID == "" {
			return false
		}
		if sa, sb := spill(insts[a].ClusterID), spill(insts[b].ClusterID); sa != sb {
			return sa < sb
		}
		return busy[insts[a].ID] && !busy[insts[b].ID]
	})
}

func (c *Controller) release(ctx context.Context, inst model.Instance, why string) error {
	if err := c.sched.Release(ctx, inst); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	c.log.Info("controller: released instance", "instance", inst.ID, "function", inst.FunctionID, "reason", why)
	return nil
}

func (c *Controller) placePending(ctx context.Context, w *world, keep map[specKey][]*model.Instance) error {
	policies := w.policies
	var reqs []scheduler.Request
	for k, insts := range keep {
		spec := w.deployments[k.version].Specs[k.index]
		pol := policy.Select(policies, w.functions[k.version])
		placed := map[string]int{}
		for _, inst := range insts {
			if inst.ClusterID != "" {
				placed[inst.ClusterID]++
			}
		}
		for _, inst := range insts {
			if inst.ClusterID == "" {
				reqs = append(reqs, scheduler.Request{Instance: inst, Spec: spec, Policy: pol, Placed: placed})
			}
		}
	}
	if len(reqs) == 0 {
		return nil
	}
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].Instance.CreatedAt.Before(reqs[j].Instance.CreatedAt) })
	clusters := slices.Collect(maps.Values(w.clusters))
	results, err := c.sched.PlaceOn(ctx, clusters, reqs)
	var errs []error
	for i, r := range results {
		inst := reqs[i].Instance
		if r.Placed {
			c.log.Info("controller: placed instance", "instance", inst.ID, "cluster", inst.ClusterID, "gpu", inst.GPU)
			continue
		}
		if r.Reason != "" && r.Reason != inst.PendingReason {
			inst.PendingReason = r.Reason
			errs = append(errs, c.st.UpdateInstance(ctx, inst))
		}
	}
	return errors.Join(append(errs, err)...)
}
