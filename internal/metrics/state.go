package metrics

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
)

// Source is what State reads at each scrape; *store.Store is one.
type Source interface {
	ListClusters(ctx context.Context) ([]model.Cluster, error)
	ListHeartbeats(ctx context.Context) (map[string]store.Heartbeat, error)
	ListAllocations(ctx context.Context) (map[string]store.Allocation, error)
	ListInstances(ctx context.Context) ([]model.Instance, error)
	ListInstanceStates(ctx context.Context) (map[string]model.InstanceState, error)
	ListDeployments(ctx context.Context) ([]model.Deployment, error)
	ListRotations(ctx context.Context) ([]store.Rotation, error)
	ListScales(ctx context.Context) (map[string]model.Scale, error)
	GetESSMeta(ctx context.Context) (store.ESSMeta, error)
}

// QueueDepth reads how many calls wait for or run on a function version
// (its work queue's pending plus unacknowledged messages).
type QueueDepth func(ctx context.Context, versionID string) (int, error)

// State is a collector that reads the platform's state from the store when
// scraped, so nothing on the write paths keeps counters of it.
type State struct {
	src     Source
	queues  QueueDepth
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	clusters, heartbeat, gpusTotal, gpusAlloc *prometheus.Desc
	instances, desired, running, rotations    *prometheus.Desc
	scaled, lastDecision, queue, mek          *prometheus.Desc
	scrapeErrors                              prometheus.Counter
}

// NewState returns a collector over src and, when queues is not nil, the
// work queues of deployed versions; each scrape reads for at most timeout
// (default 5s).
func NewState(src Source, queues QueueDepth, timeout time.Duration, log *slog.Logger) *State {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spec := []string{"function_id", "version_id", "spec"}
	return &State{src: src, queues: queues, timeout: timeout, log: log, now: time.Now,
		clusters:     prometheus.NewDesc("gantry_clusters", "Registered GPU clusters by status.", []string{"status"}, nil),
		heartbeat:    prometheus.NewDesc("gantry_cluster_heartbeat_age_seconds", "Time since the cluster's agent last reported.", []string{"cluster"}, nil),
		gpusTotal:    prometheus.NewDesc("gantry_gpus", "GPUs in the cluster's inventory, by model.", []string{"cluster", "gpu"}, nil),
		gpusAlloc:    prometheus.NewDesc("gantry_gpus_allocated", "GPUs the scheduler has placed instances on, by cluster and model.", []string{"cluster", "gpu"}, nil),
		instances:    prometheus.NewDesc("gantry_instances", "Function instances by the state their agent last reported (PENDING: not placed yet).", []string{"state"}, nil),
		desired:      prometheus.NewDesc("gantry_deployment_instances_desired", "Minimum instances a deployment specification asks for.", []string{"function_id", "version_id", "gpu"}, nil),
		running:      prometheus.NewDesc("gantry_deployment_instances_running", "Instances of a deployment specification reported RUNNING.", []string{"function_id", "version_id", "gpu"}, nil),
		scaled:       prometheus.NewDesc("gantry_autoscale_desired_instances", "Instances the autoscaler last decided a deployment specification needs.", spec, nil),
		lastDecision: prometheus.NewDesc("gantry_autoscale_last_decision_timestamp_seconds", "When the autoscaler last changed a specification's desired count.", spec, nil),
		queue:        prometheus.NewDesc("gantry_queue_depth", "Calls queued for or running on a deployed function version.", []string{"function_id", "version_id"}, nil),
		mek:          prometheus.NewDesc("gantry_secret_store_active_mek_version", "Version of the secret store's active master key; each completed MEK rotation adds one.", nil, nil),
		rotations:    prometheus.NewDesc("gantry_secret_store_rotations_in_progress", "Key rotations of the secret store under way, by kind.", []string{"kind"}, nil),
		scrapeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "gantry_metrics_state_errors_total",
			Help: "Scrapes that could not read part of the platform state from the store."}),
	}
}

// Describe implements prometheus.Collector.
func (s *State) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.clusters, s.heartbeat, s.gpusTotal, s.gpusAlloc, s.instances, s.desired, s.running, s.rotations, s.scaled, s.lastDecision, s.queue, s.mek} {
		ch <- d
	}
	s.scrapeErrors.Describe(ch)
}

// Collect implements prometheus.Collector: it reads the store once per
// scrape. A part that cannot be read is left out and counted.
func (s *State) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	fail := func(what string, err error) {
		s.scrapeErrors.Inc()
		s.log.Warn("metrics: read state", "what", what, "err", err)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if clusters, err := s.src.ListClusters(ctx); err != nil {
		fail("clusters", err)
	} else {
		s.collectClusters(ctx, clusters, gauge, fail)
	}
	if err := s.collectInstances(ctx, gauge); err != nil {
		fail("instances", err)
	}
	if rots, err := s.src.ListRotations(ctx); err != nil {
		fail("rotations", err)
	} else {
		byKind := map[string]int{}
		for _, r := range rots {
			byKind[r.Kind]++
		}
		for k, n := range byKind {
			gauge(s.rotations, float64(n), k)
		}
	}
	if meta, err := s.src.GetESSMeta(ctx); err != nil {
		fail("secret store", err)
	} else {
		gauge(s.mek, float64(meta.ActiveMEK))
	}
	s.scrapeErrors.Collect(ch)
}

type gaugeFunc func(d *prometheus.Desc, v float64, labels ...string)

func (s *State) collectClusters(ctx context.Context, clusters []model.Cluster, gauge gaugeFunc, fail func(string, error)) {
	hbs, err := s.src.ListHeartbeats(ctx)
	if err != nil {
		fail("heartbeats", err)
	}
	allocs, err := s.src.ListAllocations(ctx)
	if err != nil {
		fail("allocations", err)
	}
	byStatus := map[model.ClusterStatus]int{model.ClusterReady: 0, model.ClusterNotReady: 0}
	now := s.now()
	for _, c := range clusters {
		byStatus[c.Status]++
		last := c.LastHeartbeat
		if hb, ok := hbs[c.ID]; ok && hb.At.After(last) {
			last = hb.At
		}
		if !last.IsZero() {
			gauge(s.heartbeat, now.Sub(last).Seconds(), c.ID)
		}
		total := map[string]int{}
		for _, n := range c.Inventory.Nodes {
			total[n.GPUModel] += n.GPUs
		}
		for gpu, n := range total {
			gauge(s.gpusTotal, float64(n), c.ID, gpu)
			gauge(s.gpusAlloc, float64(allocs[c.ID].Used[gpu]), c.ID, gpu)
		}
	}
	for st, n := range byStatus {
		gauge(s.clusters, float64(n), string(st))
	}
}

func (s *State) collectInstances(ctx context.Context, gauge gaugeFunc) error {
	insts, err := s.src.ListInstances(ctx)
	if err != nil {
		return err
	}
	states, err := s.src.ListInstanceStates(ctx)
	if err != nil {
		return err
	}
	deps, err := s.src.ListDeployments(ctx)
	if err != nil {
		return err
	}
	type spec struct{ fn, version, gpu string }
	byState := map[model.InstanceStatus]int{model.InstancePending: 0, model.InstanceStarting: 0, model.InstanceRunning: 0}
	running := map[spec]int{}
	for _, in := range insts {
		st := model.InstancePending
		if in.ClusterID != "" {
			st = model.InstanceStarting
			if is, ok := states[in.ID]; ok && is.Status != "" {
				st = is.Status
			}
		}
		byState[st]++
		if st == model.InstanceRunning {
			running[spec{in.FunctionID, in.FunctionVersionID, in.GPU}]++
		}
	}
	for st, n := range byState {
		gauge(s.instances, float64(n), string(st))
	}
	seen := map[spec]bool{}
	fnOf := map[string]string{}
	for _, d := range deps {
		fnOf[d.FunctionVersionID] = d.FunctionID
		if s.queues != nil {
			if n, err := s.queues(ctx, d.FunctionVersionID); err == nil {
				gauge(s.queue, float64(n), d.FunctionID, d.FunctionVersionID)
			} else {
				s.log.Warn("metrics: read queue depth", "versionId", d.FunctionVersionID, "err", err)
			}
		}
		for _, sp := range d.Specs {
			k := spec{d.FunctionID, d.FunctionVersionID, sp.GPU}
			if seen[k] {
				continue // two specs of one GPU: one series
			}
			seen[k] = true
			gauge(s.desired, float64(sp.MinInstances), k.fn, k.version, k.gpu)
			gauge(s.running, float64(running[k]), k.fn, k.version, k.gpu)
		}
	}
	scales, err := s.src.ListScales(ctx)
	if err != nil {
		return err
	}
	for version, sc := range scales {
		fn, ok := fnOf[version]
		if !ok {
			continue // the deployment is gone
		}
		for i, sp := range sc.Specs {
			idx := strconv.Itoa(i)
			gauge(s.scaled, float64(sp.Desired), fn, version, idx)
			if n := len(sp.Decisions); n > 0 {
				gauge(s.lastDecision, float64(sp.Decisions[n-1].At.UnixNano())/1e9, fn, version, idx)
			}
		}
	}
	return nil
}
