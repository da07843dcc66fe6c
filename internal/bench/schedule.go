package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/scheduler"
	"github.com/gantry-dev/gantry/internal/store"
)

// TargetPlacementsPerSecond is the scheduler's throughput target at 1,000
// clusters.
const TargetPlacementsPerSecond = 5000

// Phases of RunSchedule.
const (
	// PhaseBulk places every pending instance in one Scheduler.Place call,
	// as one controller pass does after 2,000 deployments arrive at once.
	PhaseBulk = "bulk"
	// PhasePerDeployment places one deployment per Place call, on several
	// schedulers that race through etcd as replicas would.
	PhasePerDeployment = "per-deployment"
)

// maxDeploymentSize bounds the instances of one deployment; sizes are drawn
// from 1 to it.
const maxDeploymentSize = 10

// maxPlacePasses bounds how often one batch is handed to the scheduler again
// after it gave up on conflicts, as the controller's next pass would.
const maxPlacePasses = 50

// ScheduleConfig configures RunSchedule. Zero values take the defaults named.
type ScheduleConfig struct {
	// Clusters is the number of simulated READY clusters (default 1000).
	Clusters int
	// GPUsPerCluster is the GPUs on each cluster's one node (default 8).
	GPUsPerCluster int
	// Deployments is the number of deployments (default 2000), each with one
	// GPU spec of 1 to 10 instances.
	Deployments int
	// Instances is the total over all deployments (default 10000).
	Instances int
	// Workers are the numbers of concurrent schedulers to run the
	// per-deployment phase with (default 1 and 4).
	Workers []int
	// Seed makes the generated clusters and deployments (default 1).
	Seed uint64
	// CPUProfile, when set, profiles the timed part of every phase into this
	// file with the phase inserted before the extension (see
	// phaseProfilePath).
	CPUProfile string
	// Progress receives a line per step (nil discards them).
	Progress io.Writer
}

func (c *ScheduleConfig) defaults() error {
	if c.Clusters == 0 {
		c.Clusters = 1000
	}
	if c.GPUsPerCluster == 0 {
		c.GPUsPerCluster = 8
	}
	if c.Deployments == 0 {
		c.Deployments = 2000
	}
	if c.Instances == 0 {
		c.Instances = 10000
	}
	if len(c.Workers) == 0 {
		c.Workers = []int{1, 4}
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	switch {
	case c.Clusters < 1 || c.Clusters > 100000:
		return fmt.Errorf("bench: clusters %d is out of range 1-100000", c.Clusters)
	case c.GPUsPerCluster < 1 || c.GPUsPerCluster > 1024:
		return fmt.Errorf("bench: gpus per cluster %d is out of range 1-1024", c.GPUsPerCluster)
	case c.Deployments < 1:
		return fmt.Errorf("bench: deployments %d must be at least 1", c.Deployments)
	case c.Instances < c.Deployments || c.Instances > maxDeploymentSize*c.Deployments:
		return fmt.Errorf("bench: %d instances cannot be split over %d deployments of 1 to %d instances",
			c.Instances, c.Deployments, maxDeploymentSize)
	}
	for _, w := range c.Workers {
		if w < 1 || w > 256 {
			return fmt.Errorf("bench: workers %d is out of range 1-256", w)
		}
	}
	return nil
}

// ScheduleResult is what RunSchedule measured.
type ScheduleResult struct {
	Clusters       int `json:"clusters"`
	GPUsPerCluster int `json:"gpusPerCluster"`
	CapacityGPUs   int `json:"capacityGpus"`
	Deployments    int `json:"deployments"`
	Instances      int `json:"instances"`
	// DemandGPUs is what every instance together asks for; more than
	// CapacityGPUs means some instances must stay pending.
	DemandGPUs int `json:"demandGpus"`
	// Shapes counts instances by GPUs per instance.
	Shapes map[int]int `json:"instancesByGpuCount"`
	// Models is capacity and demand per GPU model.
	Models  []ModelLoad     `json:"models"`
	Phases  []SchedulePhase `json:"phases"`
	Targets []Target        `json:"targets"`
}

// ModelLoad is the capacity and demand of one GPU model.
type ModelLoad struct {
	GPU          string `json:"gpu"`
	Clusters     int    `json:"clusters"`
	CapacityGPUs int    `json:"capacityGpus"`
	Instances    int    `json:"instances"`
	DemandGPUs   int    `json:"demandGpus"`
}

// SchedulePhase is one timed run of the scheduler over a fresh store.
type SchedulePhase struct {
	Name       string `json:"name"`
	Schedulers int    `json:"schedulers"`
	// Setup is the untimed writing of clusters, functions, deployments and
	// pending instances.
	Setup time.Duration `json:"setupNs"`
	// Elapsed runs from the first Place call to the last one's return.
	Elapsed time.Duration `json:"elapsedNs"`
	// Placed and Pending are counted from the store afterwards.
	Placed              int     `json:"placed"`
	Pending             int     `json:"pending"`
	PlacementsPerSecond float64 `json:"placementsPerSecond"`
	// PlaceCalls counts Scheduler.Place calls; PlaceErrors those that gave
	// up after losing too many races, whose pending instances went into
	// another call as the controller's next pass would take them.
	PlaceCalls  int    `json:"placeCalls"`
	PlaceErrors int    `json:"placeErrors"`
	FirstError  string `json:"firstError,omitempty"`
	// Commits counts placement transactions (one per batch of placements),
	// Conflicts those that lost a race, and Reads the scheduler's ListClusters, ListAllocations and
	// GetAllocation calls. The times are summed over schedulers; Busy is
	// the schedulers' time inside Place, so Busy-ReadTime-CommitTime is
	// the scheduler's own work (mostly Choose).
	Commits    int           `json:"commits"`
	Conflicts  int           `json:"conflicts"`
	Reads      int           `json:"reads"`
	Busy       time.Duration `json:"busyNs"`
	ReadTime   time.Duration `json:"readNs"`
	CommitTime time.Duration `json:"commitNs"`
	// DeploymentLatency runs, for each deployment all of whose instances
	// were placed, from its instances existing (bulk: the start of the one
	// Place call; per deployment: a scheduler taking it up) to its last
	// placement (its RPS is such deployments per second of the phase).
	// DeploymentsPlaced counts those deployments.
	DeploymentsPlaced int     `json:"deploymentsPlaced"`
	DeploymentLatency Summary `json:"deploymentLatency"`
	// Checks were made on the store after the run.
	Checks     ScheduleChecks `json:"checks"`
	CPUProfile string         `json:"cpuProfile,omitempty"`
}

// ScheduleChecks is what the store held after a phase.
type ScheduleChecks struct {
	Instances int `json:"instances"`
	Placed    int `json:"placed"`
	Pending   int `json:"pending"`
	// OverbookedClusters have instances needing more GPUs of a model than
	// they have.
	OverbookedClusters int `json:"overbookedClusters"`
	// AllocationMismatches are clusters whose allocation record differs
	// from the sum of the instances placed on them.
	AllocationMismatches int `json:"allocationMismatches"`
	// PendingThatFit are pending instances for which scheduler.Choose finds
	// room in the final state: placements the scheduler missed.
	PendingThatFit int `json:"pendingThatFit"`
	// Problems describes the first few failures in words; empty means every
	// check passed.
	Problems []string `json:"problems,omitempty"`
}

// OK reports whether every check passed.
func (c ScheduleChecks) OK() bool { return len(c.Problems) == 0 }

// RunSchedule measures the scheduler at scale on the real engines: for each
// phase it starts an embedded etcd, writes READY clusters, deployments and
// their pending instances (as the controller creates them) through the
// store, and places them with scheduler.Scheduler, whose every placement is
// one etcd transaction with the cluster's allocation. The clusters are
// records only; no agent runs, since placement never talks to one.
func RunSchedule(ctx context.Context, cfg ScheduleConfig) (*ScheduleResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	plan := newSchedulePlan(cfg, time.Now().UTC())
	res := plan.summary(cfg)
	fmt.Fprintf(cfg.Progress, "%d clusters x %d GPUs = %d GPUs; %d deployments, %d instances needing %d GPUs\n",
		res.Clusters, res.GPUsPerCluster, res.CapacityGPUs, res.Deployments, res.Instances, res.DemandGPUs)
	if res.DemandGPUs > res.CapacityGPUs {
		fmt.Fprintf(cfg.Progress, "Demand exceeds capacity by %d GPUs: some instances will stay pending\n", res.DemandGPUs-res.CapacityGPUs)
	}

	dir, err := os.MkdirTemp("", "gantry-bench-schedule-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)

	type phaseSpec struct {
		name    string
		workers int
	}
	phases := []phaseSpec{{PhaseBulk, 1}}
	for _, w := range cfg.Workers {
		phases = append(phases, phaseSpec{PhasePerDeployment, w})
	}
	for i, p := range phases {
		ph, err := runSchedulePhase(ctx, cfg, plan, filepath.Join(dir, fmt.Sprintf("phase-%d", i)), p.name, p.workers)
		if err != nil {
			return nil, err
		}
		res.Phases = append(res.Phases, ph)
	}
	res.Targets = scheduleTargets(res.Phases)
	return res, nil
}

// PhaseLabel names a phase for people: "bulk (one Place call)" or "per
// deployment, 4 schedulers".
func PhaseLabel(name string, schedulers int) string {
	switch {
	case name == PhaseBulk:
		return "bulk (one Place call)"
	case schedulers == 1:
		return "per deployment, 1 scheduler"
	}
	return fmt.Sprintf("per deployment, %d schedulers", schedulers)
}

// scheduleTargets judges every phase against the throughput target; the
// issue's number is the bulk one, the others show contention.
func scheduleTargets(phases []SchedulePhase) []Target {
	var out []Target
	for _, p := range phases {
		out = append(out, Target{
			Name: "placements/s, " + PhaseLabel(p.Name, p.Schedulers),
			Want: fmt.Sprintf(">= %d", TargetPlacementsPerSecond),
			Got:  fmt.Sprintf("%.0f", p.PlacementsPerSecond),
			Pass: p.PlacementsPerSecond >= TargetPlacementsPerSecond,
		})
	}
	return out
}

// schedulePlan is the generated world: the same for every phase.
type schedulePlan struct {
	clusters    []model.Cluster
	functions   []model.Function
	deployments []model.Deployment
	now         time.Time
}

// Simulated hardware and geography.
var (
	benchGPUs = []struct {
		model string
		memGB int
	}{{"H100", 80}, {"A100", 80}, {"L40S", 48}, {"A10G", 24}}
	benchRegions = []string{"us-east-1", "us-west-2", "eu-west-1"}
)

// benchClusters builds n READY clusters of one node each. GPU models cycle
// fastest, then regions, then zones, so every model is in every zone once
// there are at least 36 clusters.
func benchClusters(n, gpus int, now time.Time) []model.Cluster {
	out := make([]model.Cluster, n)
	for i := range out {
		g := benchGPUs[i%len(benchGPUs)]
		region := benchRegions[(i/len(benchGPUs))%len(benchRegions)]
		zone := region + string(rune('a'+(i/(len(benchGPUs)*len(benchRegions)))%3))
		out[i] = model.Cluster{
			ID:            fmt.Sprintf("bench-%05d", i),
			Name:          fmt.Sprintf("bench-cluster-%05d", i),
			GroupID:       "bench-group",
			GroupName:     "bench",
			NCAID:         "bench",
			CloudProvider: "ON-PREM",
			Region:        region,
			Zone:          zone,
			Status:        model.ClusterReady,
			Inventory: model.Inventory{Nodes: []model.Node{
				{Name: "node-0", GPUModel: g.model, GPUMemoryGB: g.memGB, GPUs: gpus},
			}},
			AgentVersion:  "bench",
			LastHeartbeat: now,
			CreatedAt:     now,
		}
	}
	return out
}

// splitSizes draws n sizes from 1 to maxSize and nudges them, one at a time
// and at random, until they add up to total (n <= total <= n*maxSize).
func splitSizes(total, n, maxSize int, rng *rand.Rand) []int {
	sizes := make([]int, n)
	sum := 0
	for i := range sizes {
		sizes[i] = 1 + rng.IntN(maxSize)
		sum += sizes[i]
	}
	for sum != total {
		i := rng.IntN(n)
		switch {
		case sum > total && sizes[i] > 1:
			sizes[i]--
			sum--
		case sum < total && sizes[i] < maxSize:
			sizes[i]++
			sum++
		}
	}
	return sizes
}

// benchSpec builds deployment i's GPU spec. GPU models take turns (as
// they do among clusters, so demand per model follows capacity); a random
// cluster of the model picks the region (10% of deployments) or zone (5%)
// the spec is limited to, so every spec has somewhere to go. 15% ask for 2
// GPUs per instance and 5% for 4, when a node has that many.
func benchSpec(rng *rand.Rand, i int, clusters []model.Cluster, gpusPerCluster, size int) model.GPUSpec {
	models := min(len(benchGPUs), len(clusters))
	first := i % models // clusters first, first+models, ... have this model
	c := clusters[first+models*rng.IntN((len(clusters)-1-first)/models+1)]
	gpu := c.Inventory.Nodes[0].GPUModel
	shape := 1
	switch r := rng.Float64(); {
	case r < 0.05:
		shape = 4
	case r < 0.20:
		shape = 2
	}
	for shape > gpusPerCluster {
		shape /= 2
	}
	spec := model.GPUSpec{GPU: gpu, MinInstances: size, MaxInstances: size}
	if shape > 1 {
		spec.InstanceType = model.InstanceTypeName(gpu, shape)
	}
	switch r := rng.Float64(); {
	case r < 0.05:
		spec.AvailabilityZones = []string{c.Zone}
	case r < 0.15:
		spec.Regions = []string{c.Region}
	}
	return spec
}

func newSchedulePlan(cfg ScheduleConfig, now time.Time) *schedulePlan {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6761_6e74_7279))
	p := &schedulePlan{clusters: benchClusters(cfg.Clusters, cfg.GPUsPerCluster, now), now: now}
	for i, size := range splitSizes(cfg.Instances, cfg.Deployments, maxDeploymentSize, rng) {
		fn := model.Function{
			ID:             fmt.Sprintf("bench-fn-%05d", i),
			VersionID:      fmt.Sprintf("bench-ver-%05d", i),
			NCAID:          "bench",
			Name:           fmt.Sprintf("bench-%05d", i),
			Status:         model.StatusDeploying,
			InferenceURL:   "/infer",
			ContainerImage: "bench/none",
			CreatedAt:      now,
		}
		p.functions = append(p.functions, fn)
		p.deployments = append(p.deployments, model.Deployment{
			ID:                fmt.Sprintf("bench-dep-%05d", i),
			FunctionID:        fn.ID,
			FunctionVersionID: fn.VersionID,
			NCAID:             fn.NCAID,
			FunctionStatus:    model.StatusDeploying,
			Specs:             []model.GPUSpec{benchSpec(rng, i, p.clusters, cfg.GPUsPerCluster, size)},
			CreatedAt:         now,
		})
	}
	return p
}

// summary describes the plan's capacity and demand.
func (p *schedulePlan) summary(cfg ScheduleConfig) *ScheduleResult {
	res := &ScheduleResult{
		Clusters:       cfg.Clusters,
		GPUsPerCluster: cfg.GPUsPerCluster,
		Deployments:    cfg.Deployments,
		Instances:      cfg.Instances,
		Shapes:         map[int]int{},
	}
	byModel := map[string]*ModelLoad{}
	load := func(gpu string) *ModelLoad {
		if byModel[gpu] == nil {
			byModel[gpu] = &ModelLoad{GPU: gpu}
		}
		return byModel[gpu]
	}
	for _, c := range p.clusters {
		for gpu, n := range c.Inventory.GPUTotals() {
			l := load(gpu)
			l.Clusters++
			l.CapacityGPUs += n
			res.CapacityGPUs += n
		}
	}
	for _, d := range p.deployments {
		for _, spec := range d.Specs {
			_, n := spec.Shape()
			l := load(spec.GPU)
			l.Instances += spec.MinInstances
			l.DemandGPUs += n * spec.MinInstances
			res.DemandGPUs += n * spec.MinInstances
			res.Shapes[n] += spec.MinInstances
		}
	}
	for _, g := range benchGPUs {
		if l := byModel[g.model]; l != nil {
			res.Models = append(res.Models, *l)
		}
	}
	return res
}

// newInstances builds a deployment's pending instances as the controller's
// sizing step does. created is the CreatedAt of the first; each next one is
// a microsecond later, so sorting by CreatedAt keeps plan order.
func newInstances(d model.Deployment, created time.Time) []*model.Instance {
	var out []*model.Instance
	for si, spec := range d.Specs {
		itype, n := spec.Shape()
		for range min(spec.MinInstances, spec.MaxInstances) {
			out = append(out, &model.Instance{
				ID:                uuid.NewString(),
				FunctionID:        d.FunctionID,
				FunctionVersionID: d.FunctionVersionID,
				NCAID:             d.NCAID,
				DeploymentID:      d.ID,
				SpecIndex:         si,
				GPU:               spec.GPU,
				InstanceType:      itype,
				GPUCount:          n,
				CreatedAt:         created.Add(time.Duration(len(out)) * time.Microsecond),
			})
		}
	}
	return out
}

// setup writes the plan into a fresh store and returns each deployment's
// pending instances, in plan order.
func (p *schedulePlan) setup(ctx context.Context, st *store.Store) ([][]*model.Instance, error) {
	const writers = 16
	if err := st.Migrate(ctx); err != nil {
		return nil, err
	}
	if err := forEachConcurrently(ctx, len(p.clusters), writers, func(ctx context.Context, i int) error {
		c := p.clusters[i]
		return st.CreateCluster(ctx, &c)
	}); err != nil {
		return nil, err
	}
	if err := forEachConcurrently(ctx, len(p.functions), writers, func(ctx context.Context, i int) error {
		f := p.functions[i]
		return st.CreateFunction(ctx, &f, nil)
	}); err != nil {
		return nil, err
	}
	if err := forEachConcurrently(ctx, len(p.deployments), writers, func(ctx context.Context, i int) error {
		d := p.deployments[i]
		return st.CreateDeployment(ctx, &d)
	}); err != nil {
		return nil, err
	}
	byDep := make([][]*model.Instance, len(p.deployments))
	var all []*model.Instance
	created := time.Now().UTC()
	for i, d := range p.deployments {
		byDep[i] = newInstances(d, created.Add(time.Duration(len(all))*time.Microsecond))
		all = append(all, byDep[i]...)
	}
	err := forEachConcurrently(ctx, len(all), writers, func(ctx context.Context, i int) error {
		return st.CreateInstance(ctx, all[i])
	})
	return byDep, err
}

// timedStore is the store the scheduler is given: a pass-through that
// counts and times the scheduler's reads and commits, and reports each
// placement as it commits. One per scheduler, so it needs no locks.
type timedStore struct {
	*store.Store
	reads, commits, conflicts int
	readTime, commitTime      time.Duration
	placed                    func(inst *model.Instance, at time.Time)
}

var _ scheduler.Store = (*timedStore)(nil)

func (s *timedStore) read(began time.Time) {
	s.reads++
	s.readTime += time.Since(began)
}

// ListClusters implements scheduler.Store.
func (s *timedStore) ListClusters(ctx context.Context) ([]model.Cluster, error) {
	defer s.read(time.Now())
	return s.Store.ListClusters(ctx)
}

// ListAllocations implements scheduler.Store.
func (s *timedStore) ListAllocations(ctx context.Context) (map[string]store.Allocation, error) {
	defer s.read(time.Now())
	return s.Store.ListAllocations(ctx)
}

// GetAllocation implements scheduler.Store.
func (s *timedStore) GetAllocation(ctx context.Context, clusterID string) (store.Allocation, error) {
	defer s.read(time.Now())
	return s.Store.GetAllocation(ctx, clusterID)
}

// PlaceInstance implements scheduler.Store.
func (s *timedStore) PlaceInstance(ctx context.Context, inst *model.Instance, alloc *store.Allocation) error {
	began := time.Now()
	err := s.Store.PlaceInstance(ctx, inst, alloc)
	now := time.Now()
	s.commits++
	s.commitTime += now.Sub(began)
	switch {
	case err == nil && s.placed != nil:
		s.placed(inst, now)
	case errors.Is(err, store.ErrConflict):
		s.conflicts++
	}
	return err
}

// PlaceInstances implements scheduler.Store: one transaction for a batch.
func (s *timedStore) PlaceInstances(ctx context.Context, insts []*model.Instance, allocs []*store.Allocation) error {
	began := time.Now()
	err := s.Store.PlaceInstances(ctx, insts, allocs)
	now := time.Now()
	s.commits++
	s.commitTime += now.Sub(began)
	switch {
	case err == nil && s.placed != nil:
		for _, inst := range insts {
			s.placed(inst, now)
		}
	case errors.Is(err, store.ErrConflict):
		s.conflicts++
	}
	return err
}

// placeTally is what one scheduler did in a phase.
type placeTally struct {
	calls, errors int
	firstErr      string
	busy          time.Duration
	ts            *timedStore
}

// placeAll hands the pending instances of reqs to the scheduler as the
// controller's passes would: all of them in one Place call, and, when the
// scheduler gave up after losing races, what is still pending in the next.
// A call that ends without error leaves pending only what does not fit.
func placeAll(ctx context.Context, sched *scheduler.Scheduler, reqs []scheduler.Request, t *placeTally) error {
	began := time.Now()
	defer func() { t.busy += time.Since(began) }()
	for pass := 1; ; pass++ {
		t.calls++
		_, err := sched.Place(ctx, reqs)
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrConflict) || pass >= maxPlacePasses {
			return err
		}
		t.errors++
		if t.firstErr == "" {
			t.firstErr = err.Error()
		}
		reqs = slices.DeleteFunc(reqs, func(r scheduler.Request) bool { return r.Instance.ClusterID != "" })
	}
}

// requests builds the Place requests for a deployment's pending instances
// as the controller does: no schedule policy (plain bin-packing), and the
// requests of one spec share its count of placed instances per cluster.
func requests(d model.Deployment, insts []*model.Instance) []scheduler.Request {
	placed := make([]map[string]int, len(d.Specs))
	for i := range placed {
		placed[i] = map[string]int{}
	}
	for _, inst := range insts {
		if inst.ClusterID != "" {
			placed[inst.SpecIndex][inst.ClusterID]++
		}
	}
	var reqs []scheduler.Request
	for _, inst := range insts {
		if inst.ClusterID == "" {
			reqs = append(reqs, scheduler.Request{Instance: inst, Spec: d.Specs[inst.SpecIndex], Placed: placed[inst.SpecIndex]})
		}
	}
	return reqs
}

func allPlaced(insts []*model.Instance) bool {
	return !slices.ContainsFunc(insts, func(i *model.Instance) bool { return i.ClusterID == "" })
}

// runSchedulePhase runs one phase on its own embedded etcd in dir.
func runSchedulePhase(ctx context.Context, cfg ScheduleConfig, p *schedulePlan, dir, name string, workers int) (SchedulePhase, error) {
	ph := SchedulePhase{Name: name, Schedulers: workers}
	label := PhaseLabel(name, workers)
	e, err := store.StartEmbedded(dir, time.Minute)
	if err != nil {
		return ph, err
	}
	defer e.Close()
	st := store.New(e.Client(), "")

	began := time.Now()
	byDep, err := p.setup(ctx, st)
	if err != nil {
		return ph, fmt.Errorf("bench: set up %s: %w", label, err)
	}
	ph.Setup = time.Since(began)
	fmt.Fprintf(cfg.Progress, "%s: wrote %d clusters, %d deployments and their %d pending instances in %.1fs\n",
		label, len(p.clusters), len(p.deployments), cfg.Instances, ph.Setup.Seconds())

	var stop func() error
	if cfg.CPUProfile != "" {
		tag := "bulk"
		if name != PhaseBulk {
			tag = fmt.Sprintf("w%d", workers)
		}
		ph.CPUProfile = phaseProfilePath(cfg.CPUProfile, tag)
		if stop, err = startCPUProfile(ph.CPUProfile); err != nil {
			return ph, err
		}
	}
	var latencies []time.Duration
	var tallies []*placeTally
	if name == PhaseBulk {
		latencies, tallies, ph.Elapsed, err = runBulk(ctx, st, p, byDep)
	} else {
		latencies, tallies, ph.Elapsed, err = runPerDeployment(ctx, st, p, byDep, workers)
	}
	if stop != nil {
		if serr := stop(); err == nil {
			err = serr
		}
	}
	for _, t := range tallies {
		ph.PlaceCalls += t.calls
		ph.PlaceErrors += t.errors
		if ph.FirstError == "" {
			ph.FirstError = t.firstErr
		}
		ph.Busy += t.busy
		ph.Reads += t.ts.reads
		ph.ReadTime += t.ts.readTime
		ph.Commits += t.ts.commits
		ph.Conflicts += t.ts.conflicts
		ph.CommitTime += t.ts.commitTime
	}
	if err != nil {
		return ph, fmt.Errorf("bench: %s: %w", label, err)
	}
	ph.DeploymentsPlaced = len(latencies)
	ph.DeploymentLatency = Summarize(latencies, ph.Elapsed)

	if ph.Checks, err = checkStore(ctx, st, p); err != nil {
		return ph, err
	}
	ph.Placed, ph.Pending = ph.Checks.Placed, ph.Checks.Pending
	if ph.Elapsed > 0 {
		ph.PlacementsPerSecond = float64(ph.Placed) / ph.Elapsed.Seconds()
	}
	checks := "OK"
	if !ph.Checks.OK() {
		checks = "FAILED"
	}
	fmt.Fprintf(cfg.Progress, "%s: placed %d in %.2fs (%.0f/s), %d pending, %d conflicts, checks %s\n",
		label, ph.Placed, ph.Elapsed.Seconds(), ph.PlacementsPerSecond, ph.Pending, ph.Conflicts, checks)
	return ph, nil
}

// runBulk places every deployment's instances in one Place call, oldest
// first as the controller sorts them. A deployment's latency runs from the
// start of the call to the commit of its last instance.
func runBulk(ctx context.Context, st *store.Store, p *schedulePlan, byDep [][]*model.Instance) ([]time.Duration, []*placeTally, time.Duration, error) {
	depOf := map[string]int{}
	var reqs []scheduler.Request
	for di, insts := range byDep {
		for _, inst := range insts {
			depOf[inst.ID] = di
		}
		reqs = append(reqs, requests(p.deployments[di], insts)...)
	}
	slices.SortStableFunc(reqs, func(a, b scheduler.Request) int { return a.Instance.CreatedAt.Compare(b.Instance.CreatedAt) })
	last := make([]time.Time, len(byDep))
	t := &placeTally{ts: &timedStore{Store: st}}
	t.ts.placed = func(inst *model.Instance, at time.Time) { last[depOf[inst.ID]] = at }
	sched := scheduler.New(t.ts)

	began := time.Now()
	err := placeAll(ctx, sched, reqs, t)
	elapsed := time.Since(began)
	var latencies []time.Duration
	for di, insts := range byDep {
		if allPlaced(insts) {
			latencies = append(latencies, last[di].Sub(began))
		}
	}
	return latencies, []*placeTally{t}, elapsed, err
}

// runPerDeployment has workers schedulers, each its own scheduler.New over
// the store as a replica would be, take deployments in turn and place each
// one's instances in one Place call. A deployment's latency runs from a
// scheduler taking it up to its last placement; the time it waited for a
// free scheduler is not part of it.
func runPerDeployment(ctx context.Context, st *store.Store, p *schedulePlan, byDep [][]*model.Instance, workers int) ([]time.Duration, []*placeTally, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	tallies := make([]*placeTally, workers)
	latencies := make([][]time.Duration, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	began := time.Now()
	for w := range workers {
		t := &placeTally{ts: &timedStore{Store: st}}
		tallies[w] = t
		wg.Go(func() {
			sched := scheduler.New(t.ts)
			for ctx.Err() == nil {
				di := int(next.Add(1) - 1)
				if di >= len(byDep) {
					return
				}
				t0 := time.Now()
				if err := placeAll(ctx, sched, requests(p.deployments[di], byDep[di]), t); err != nil {
					errs[w] = err
					cancel()
					return
				}
				if allPlaced(byDep[di]) {
					latencies[w] = append(latencies[w], time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	return slices.Concat(latencies...), tallies, elapsed, errors.Join(errs...)
}

// checkStore reads back what a phase left in the store and checks it.
func checkStore(ctx context.Context, st *store.Store, p *schedulePlan) (ScheduleChecks, error) {
	clusters, err := st.ListClusters(ctx)
	if err != nil {
		return ScheduleChecks{}, err
	}
	insts, err := st.ListInstances(ctx)
	if err != nil {
		return ScheduleChecks{}, err
	}
	allocs, err := st.ListAllocations(ctx)
	if err != nil {
		return ScheduleChecks{}, err
	}
	return checkPlacements(clusters, insts, allocs, p.deployments), nil
}

// maxProblems bounds the failures ScheduleChecks describes in words.
const maxProblems = 5

// checkPlacements checks a final state: no cluster holds instances needing
// more GPUs of a model than it has, every allocation record equals the sum
// of the instances placed on its cluster, and no pending instance would fit
// anywhere by scheduler.Choose's own rules (so an instance is pending only
// because there is no room for it).
func checkPlacements(clusters []model.Cluster, insts []model.Instance, allocs map[string]store.Allocation, deps []model.Deployment) ScheduleChecks {
	var c ScheduleChecks
	problem := func(format string, args ...any) {
		if len(c.Problems) < maxProblems {
			c.Problems = append(c.Problems, fmt.Sprintf(format, args...))
		}
	}
	capacity := make(map[string]map[string]int, len(clusters))
	for _, cl := range clusters {
		capacity[cl.ID] = cl.Inventory.GPUTotals()
	}
	used := map[string]map[string]int{}
	var pending []model.Instance
	c.Instances = len(insts)
	for _, inst := range insts {
		if inst.ClusterID == "" {
			c.Pending++
			pending = append(pending, inst)
			continue
		}
		c.Placed++
		if _, ok := capacity[inst.ClusterID]; !ok {
			problem("instance %s is placed on unknown cluster %s", inst.ID, inst.ClusterID)
		}
		if used[inst.ClusterID] == nil {
			used[inst.ClusterID] = map[string]int{}
		}
		used[inst.ClusterID][inst.GPU] += inst.GPUCount
	}
	for _, id := range slices.Sorted(maps.Keys(used)) {
		for gpu, n := range used[id] {
			if have := capacity[id][gpu]; n > have {
				c.OverbookedClusters++
				problem("cluster %s: instances need %d x %s, it has %d", id, n, gpu, have)
				break
			}
		}
	}
	ids := slices.AppendSeq(slices.Collect(maps.Keys(used)), maps.Keys(allocs))
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		if !sameCounts(allocs[id].Used, used[id]) {
			c.AllocationMismatches++
			problem("cluster %s: allocation %v, instances %v", id, allocs[id].Used, used[id])
		}
	}

	specs := map[string]model.Deployment{}
	for _, d := range deps {
		specs[d.ID] = d
	}
	// Instances of one spec fit or not alike; ask Choose once per spec.
	fits := map[string]bool{}
	for _, inst := range pending {
		d, ok := specs[inst.DeploymentID]
		if !ok || inst.SpecIndex >= len(d.Specs) {
			problem("pending instance %s belongs to no deployment spec", inst.ID)
			continue
		}
		key := fmt.Sprintf("%s/%d", d.ID, inst.SpecIndex)
		fit, seen := fits[key]
		if !seen {
			cid, _ := scheduler.Choose(d.Specs[inst.SpecIndex], clusters, used)
			fit = cid != ""
			fits[key] = fit
			if fit {
				problem("instance %s of %s is pending but fits on %s", inst.ID, d.ID, cid)
			}
		}
		if fit {
			c.PendingThatFit++
		}
	}
	return c
}

// sameCounts compares GPU counts, taking a missing model as zero.
func sameCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// startCPUProfile profiles the process into path until the returned stop.
func startCPUProfile(path string) (func() error, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// phaseProfilePath inserts "-<tag>" before path's extension:
// sched.pprof -> sched-bulk.pprof.
func phaseProfilePath(path, tag string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-" + tag + ext
}
