package ui

import (
	"context"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/web"
)

// Store is what the summary reads; *store.Store is one.
type Store interface {
	ListFunctions(ctx context.Context) ([]model.Function, error)
	ListDeployments(ctx context.Context) ([]model.Deployment, error)
	ListClusters(ctx context.Context) ([]model.Cluster, error)
	ListAllocations(ctx context.Context) (map[string]store.Allocation, error)
	ListInstances(ctx context.Context) ([]model.Instance, error)
	ListInstanceStates(ctx context.Context) (map[string]model.InstanceState, error)
}

var _ Store = (*store.Store)(nil)

// Summary is the JSON the page polls: everything it draws but the events.
type Summary struct {
	Account     string           `json:"account"`
	GeneratedAt time.Time        `json:"generatedAt"`
	Clusters    []ClusterRow     `json:"clusters"`
	Functions   []FunctionRow    `json:"functions"`
	QueueDepth  int              `json:"queueDepth"`
	Invocations *InvocationStats `json:"invocations,omitempty"` // nil: metrics disabled
}

// ClusterRow is one cluster and its GPUs by model.
type ClusterRow struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Status   string    `json:"status"`
	Region   string    `json:"region,omitempty"`
	Cordoned bool      `json:"cordoned,omitempty"`
	Draining bool      `json:"draining,omitempty"`
	GPUs     []GPULoad `json:"gpus"`
}

// GPULoad is a cluster's GPUs of one model and how many are promised to
// instances.
type GPULoad struct {
	Model string `json:"model"`
	Total int    `json:"total"`
	Used  int    `json:"used"`
}

// FunctionRow is one function version and its deployment, if any.
type FunctionRow struct {
	ID          string    `json:"id"`
	VersionID   string    `json:"versionId"`
	Name        string    `json:"name"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"createdAt"`
	Deployed    bool      `json:"deployed"`
	Desired     int       `json:"desired"`
	Running     int       `json:"running"`
	QueueDepth  int       `json:"queueDepth"`
	Invocations uint64    `json:"invocations"`
	// Reason is the deployment's first health message (why instances are
	// pending or failing), if any.
	Reason string `json:"reason,omitempty"`
}

// InvocationStats are this replica's cumulative invocation counts and
// latency histogram over the account's functions; the page turns two
// polls into a rate and quantiles.
type InvocationStats struct {
	Total  uint64    `json:"total"`
	Errors uint64    `json:"errors"` // answers 5xx
	Sum    float64   `json:"sum"`    // seconds, over count calls
	Count  uint64    `json:"count"`
	Bounds []float64 `json:"bounds"` // upper bounds, seconds
	Counts []uint64  `json:"counts"` // cumulative, one per bound
}

// queueReads bounds the queue-depth reads a summary runs at once.
const queueReads = 8

func (u *UI) summary(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	s, err := u.buildSummary(r.Context(), p.Account)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return web.JSON(w, http.StatusOK, s)
}

func (u *UI) buildSummary(ctx context.Context, account string) (Summary, error) {
	st := u.cfg.Store
	out := Summary{Account: account, GeneratedAt: u.cfg.Now().UTC(), Clusters: []ClusterRow{}, Functions: []FunctionRow{}}
	clusters, err := st.ListClusters(ctx)
	if err != nil {
		return out, err
	}
	allocs, err := st.ListAllocations(ctx)
	if err != nil {
		return out, err
	}
	for _, c := range clusters {
		if c.NCAID != account && !slices.Contains(c.AuthorizedNCAIDs, account) {
			continue
		}
		row := ClusterRow{ID: c.ID, Name: c.Name, Status: string(c.Status), Region: c.Region, Cordoned: c.Cordoned, Draining: c.Draining, GPUs: []GPULoad{}}
		total := map[string]int{}
		for _, n := range c.Inventory.Nodes {
			total[n.GPUModel] += n.GPUs
		}
		for m, n := range total {
			row.GPUs = append(row.GPUs, GPULoad{Model: m, Total: n, Used: allocs[c.ID].Used[m]})
		}
		sort.Slice(row.GPUs, func(i, j int) bool { return row.GPUs[i].Model < row.GPUs[j].Model })
		out.Clusters = append(out.Clusters, row)
	}
	sort.Slice(out.Clusters, func(i, j int) bool { return out.Clusters[i].Name < out.Clusters[j].Name })

	fns, err := st.ListFunctions(ctx)
	if err != nil {
		return out, err
	}
	deps, err := st.ListDeployments(ctx)
	if err != nil {
		return out, err
	}
	insts, err := st.ListInstances(ctx)
	if err != nil {
		return out, err
	}
	states, err := st.ListInstanceStates(ctx)
	if err != nil {
		return out, err
	}
	byVersion := make(map[string]model.Deployment, len(deps))
	for _, d := range deps {
		if d.NCAID == account {
			byVersion[d.FunctionVersionID] = d
		}
	}
	running := map[string]int{}
	for _, in := range insts {
		if is, ok := states[in.ID]; ok && in.ClusterID != "" && is.Status == model.InstanceRunning {
			running[in.FunctionVersionID]++
		}
	}
	mine := map[string]bool{}
	for _, f := range fns {
		if f.NCAID != account {
			continue
		}
		mine[f.ID] = true
		row := FunctionRow{ID: f.ID, VersionID: f.VersionID, Name: f.Name, Status: string(model.StatusInactive), CreatedAt: f.CreatedAt}
		if d, ok := byVersion[f.VersionID]; ok {
			row.Deployed, row.Status, row.Running = true, string(d.FunctionStatus), running[f.VersionID]
			for _, sp := range d.Specs {
				row.Desired += sp.MinInstances
			}
			if len(d.HealthInfo) > 0 {
				row.Reason = d.HealthInfo[0].Error
			}
		}
		out.Functions = append(out.Functions, row)
	}
	sort.Slice(out.Functions, func(i, j int) bool {
		a, b := out.Functions[i], out.Functions[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.VersionID < b.VersionID
	})
	u.queueDepths(ctx, out.Functions)
	for _, f := range out.Functions {
		out.QueueDepth += f.QueueDepth
	}
	if u.cfg.Calls != nil {
		perFn, stats, err := invocationStats(u.cfg.Calls, mine)
		if err != nil {
			u.log.Warn("ui: gather invocation metrics", "err", err)
		} else {
			out.Invocations = stats
			for i := range out.Functions {
				out.Functions[i].Invocations = perFn[out.Functions[i].ID]
			}
		}
	}
	return out, nil
}

// queueDepths fills in the depth of each deployed version's work queue, a
// few reads at a time, each bounded by a second; one that fails is left at
// zero and logged.
func (u *UI) queueDepths(ctx context.Context, rows []FunctionRow) {
	if u.cfg.QueueDepth == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	sem := make(chan struct{}, queueReads)
	var wg sync.WaitGroup
	for i := range rows {
		if !rows[i].Deployed {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n, err := u.cfg.QueueDepth(ctx, rows[i].VersionID)
			if err != nil {
				u.log.Debug("ui: queue depth", "versionId", rows[i].VersionID, "err", err)
				return
			}
			rows[i].QueueDepth = n
		})
	}
	wg.Wait()
}

// Gatherer is what invocationStats reads (prometheus.Gatherer).
type Gatherer interface {
	Gather() ([]*dto.MetricFamily, error)
}

// invocationStats sums gantry_invocations_total and
// gantry_invocation_duration_seconds over the functions in mine (another
// account's, and the "unknown"/"other" buckets, are left out).
func invocationStats(g Gatherer, mine map[string]bool) (map[string]uint64, *InvocationStats, error) {
	fams, err := g.Gather()
	if err != nil {
		return nil, nil, err
	}
	perFn := map[string]uint64{}
	stats := &InvocationStats{Bounds: []float64{}, Counts: []uint64{}}
	label := func(m *dto.Metric, name string) string {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	for _, f := range fams {
		switch f.GetName() {
		case "gantry_invocations_total":
			for _, m := range f.GetMetric() {
				fn := label(m, "function_id")
				if !mine[fn] {
					continue
				}
				n := uint64(math.Round(m.GetCounter().GetValue()))
				perFn[fn] += n
				stats.Total += n
				if strings.HasPrefix(label(m, "status"), "5") {
					stats.Errors += n
				}
			}
		case "gantry_invocation_duration_seconds":
			for _, m := range f.GetMetric() {
				if !mine[label(m, "function_id")] {
					continue
				}
				h := m.GetHistogram()
				stats.Sum += h.GetSampleSum()
				stats.Count += h.GetSampleCount()
				for i, b := range h.GetBucket() {
					if i == len(stats.Bounds) {
						stats.Bounds = append(stats.Bounds, b.GetUpperBound())
						stats.Counts = append(stats.Counts, 0)
					}
					stats.Counts[i] += b.GetCumulativeCount()
				}
			}
		}
	}
	return perFn, stats, nil
}
