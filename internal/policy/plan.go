package policy

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/gantry-dev/gantry/internal/model"
)

// Choose picks the cluster for one instance of spec under p, or says in
// words why no cluster can take it. It is what the scheduler calls in place
// of its own Choose for a function a policy governs, with the same inputs
// plus placed.
//
// clusters is every registered cluster (not only READY ones: instances on a
// cluster that went away still count for spread and group-by); used is the
// GPUs already promised per cluster and model; placed counts the instances
// of this spec per cluster, and the caller adds each placement it commits
// before choosing for the spec's next instance. Neither map is modified.
//
// The instance goes to the first of p.Tiers that has a cluster with room,
// and within it to the first cluster in Order(p.Strategy, ...). A nil p
// applies no policy: every schedulable cluster the spec allows, bin-packed.
func (p *Policy) Choose(spec model.GPUSpec, clusters []model.Cluster, used map[string]map[string]int, placed map[string]int) (clusterID, reason string) {
	pl := p.plan(spec, clusters, used, placed)
	if pl.why != "" {
		return "", p.explain(pl.why)
	}
	for _, tier := range pl.tiers {
		var fit []model.Cluster
		for _, c := range tier {
			if free, ok := freeGPUs(spec, c, used); ok && free >= need(spec) {
				fit = append(fit, c)
			}
		}
		if len(fit) > 0 {
			return Order(p.strategy(), spec, fit, used)[0].ID, ""
		}
	}
	return "", p.explain(strings.Join(append(pl.notes, capacity(spec, pl.tiers, used)), "; "))
}

// Tiers returns the clusters that may take the next instance of spec, as
// tiers in order of preference: the scheduler uses a later tier only when no
// cluster of the earlier ones has room. Each tier holds only schedulable
// clusters (READY, not cordoned or draining) that the spec allows (its
// backend, clusters, regions and availabilityZones) and p.ClusterSelector
// matches; then
//
//   - fillAndSpill makes one tier per selector, in order; a cluster belongs
//     to the first tier whose selector it matches;
//   - groupBy keeps only the domain that already holds the most of this
//     spec's instances; with none placed yet it splits each tier into one
//     tier per domain, the domain with the most free GPUs of the model first;
//   - spread keeps only the topology values furthest below their share given
//     what is placed (several when tied). This is strict: when those
//     clusters are full the instance waits, rather than break the split.
//
// See Choose for the arguments. An empty result means no cluster is allowed
// at all; Choose says why.
func (p *Policy) Tiers(spec model.GPUSpec, clusters []model.Cluster, used map[string]map[string]int, placed map[string]int) [][]model.Cluster {
	return p.plan(spec, clusters, used, placed).tiers
}

// SpillRank is the fillAndSpill tier cluster c belongs to: 0 for the
// first, and 0 for every cluster when the policy has no fillAndSpill; a
// cluster no tier matches ranks after them all. Scale-down removes
// instances from the highest rank first, the reverse of filling.
func (p *Policy) SpillRank(c model.Cluster) int {
	if p == nil || len(p.FillAndSpill) == 0 {
		return 0
	}
	labels := ClusterLabels(c)
	for i := range p.FillAndSpill {
		if p.FillAndSpill[i].Matches(labels) {
			return i
		}
	}
	return len(p.FillAndSpill)
}

// Order sorts candidates by preference under strategy and returns them in a
// new slice: StrategyBinPack puts first the cluster left with the fewest free
// GPUs of spec's model after placing one instance (so large shapes keep
// finding room elsewhere), StrategySpread the one left with the most. Ties
// go to the smaller cluster id, so the result is deterministic. An unknown
// strategy bin-packs.
func Order(strategy string, spec model.GPUSpec, candidates []model.Cluster, used map[string]map[string]int) []model.Cluster {
	n := need(spec)
	after := make(map[string]int, len(candidates))
	for _, c := range candidates {
		free, _ := freeGPUs(spec, c, used)
		after[c.ID] = free - n
	}
	out := slices.Clone(candidates)
	slices.SortStableFunc(out, func(a, b model.Cluster) int {
		d := cmp.Compare(after[a.ID], after[b.ID])
		if strategy == StrategySpread {
			d = -d
		}
		if d != 0 {
			return d
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// plan is the outcome of narrowing: the tiers, notes that explain the
// narrowing in a pending reason, or why nothing at all is allowed.
type plan struct {
	tiers [][]model.Cluster
	notes []string
	why   string
}

func (p *Policy) plan(spec model.GPUSpec, clusters []model.Cluster, used map[string]map[string]int, placed map[string]int) plan {
	if p == nil {
		p = &Policy{}
	}
	labels := make(map[string]map[string][]string, len(clusters))
	for _, c := range clusters {
		labels[c.ID] = ClusterLabels(c)
	}
	var ready, allowed []model.Cluster
	for _, c := range clusters {
		if !spec.Allows(c) {
			continue
		}
		ready = append(ready, c)
		if p.ClusterSelector.Matches(labels[c.ID]) {
			allowed = append(allowed, c)
		}
	}
	switch {
	case len(ready) == 0:
		return plan{why: Unmatched(spec, clusters, false)}
	case len(allowed) == 0:
		return plan{why: fmt.Sprintf("its clusterSelector %s matches none of the %d schedulable clusters the deployment allows",
			p.ClusterSelector, len(ready))}
	}

	var pl plan
	pl.tiers = [][]model.Cluster{allowed}
	if len(p.FillAndSpill) > 0 {
		taken := map[string]bool{}
		var tiers [][]model.Cluster
		names := make([]string, len(p.FillAndSpill))
		for i := range p.FillAndSpill {
			names[i] = p.FillAndSpill[i].String()
			var t []model.Cluster
			for _, c := range allowed {
				if !taken[c.ID] && p.FillAndSpill[i].Matches(labels[c.ID]) {
					taken[c.ID] = true
					t = append(t, c)
				}
			}
			if len(t) > 0 {
				tiers = append(tiers, t)
			}
		}
		if len(tiers) == 0 {
			return plan{why: fmt.Sprintf("none of its fillAndSpill tiers (%s) matches a schedulable cluster that the deployment and clusterSelector allow",
				strings.Join(names, " > "))}
		}
		pl.tiers = tiers
		pl.notes = append(pl.notes, "it fills and spills over "+strings.Join(names, " > "))
	}
	if p.GroupBy != "" {
		if pl = p.group(pl, spec, clusters, labels, used, placed); pl.why != "" {
			return pl
		}
	}
	if p.Spread != nil {
		pl = p.spread(pl, clusters, labels, placed)
	}
	return pl
}

// group narrows pl to one domain of p.GroupBy.
func (p *Policy) group(pl plan, spec model.GPUSpec, clusters []model.Cluster, labels map[string]map[string][]string, used map[string]map[string]int, placed map[string]int) plan {
	key := ShortKey(p.GroupBy)
	counts := domainCounts(clusters, labels, p.GroupBy, placed)
	if len(counts) > 0 {
		dom, most := "", 0
		for _, v := range slices.Sorted(maps.Keys(counts)) {
			if counts[v] > most {
				dom, most = v, counts[v]
			}
		}
		note := fmt.Sprintf("it groups instances by %s and this spec's are in %s=%s", key, key, dom)
		tiers := restrict(pl.tiers, func(c model.Cluster) bool {
			v, ok := topologyValue(labels[c.ID], p.GroupBy)
			return ok && v == dom
		})
		if len(tiers) == 0 {
			return plan{why: note + ", where no schedulable cluster that the deployment and policy allow remains"}
		}
		return plan{tiers: tiers, notes: append(pl.notes, note)}
	}
	var tiers [][]model.Cluster
	for _, t := range pl.tiers {
		byDomain := map[string][]model.Cluster{}
		free := map[string]int{}
		for _, c := range t {
			v, ok := topologyValue(labels[c.ID], p.GroupBy)
			if !ok {
				continue
			}
			byDomain[v] = append(byDomain[v], c)
			f, _ := freeGPUs(spec, c, used)
			free[v] += max(f, 0)
		}
		domains := slices.Sorted(maps.Keys(byDomain))
		slices.SortStableFunc(domains, func(a, b string) int { return cmp.Compare(free[b], free[a]) })
		for _, d := range domains {
			tiers = append(tiers, byDomain[d])
		}
	}
	if len(tiers) == 0 {
		return plan{why: fmt.Sprintf("it groups instances by %s, but no schedulable cluster that the deployment and policy allow has that label", key)}
	}
	return plan{tiers: tiers, notes: append(pl.notes, "it groups instances by "+key)}
}

// spread narrows pl to the split values furthest below their share.
func (p *Policy) spread(pl plan, clusters []model.Cluster, labels map[string]map[string][]string, placed map[string]int) plan {
	sp := p.Spread
	key := ShortKey(sp.TopologyKey)
	counts := domainCounts(clusters, labels, sp.TopologyKey, placed)
	total := 0
	for _, s := range sp.Splits {
		total += counts[s.Value]
	}
	// With the next instance there are total+1; a value's deficit is its
	// share of that minus what it holds, scaled by 100 to stay integral.
	best, want := math.MinInt, []Split(nil)
	for _, s := range sp.Splits {
		switch d := s.Percent*(total+1) - 100*counts[s.Value]; {
		case d > best:
			best, want = d, []Split{s}
		case d == best:
			want = append(want, s)
		}
	}
	var where []string
	for _, s := range want {
		where = append(where, fmt.Sprintf("%s=%s (%d of %d placed there, %d%% wanted)", key, s.Value, counts[s.Value], total, s.Percent))
	}
	note := fmt.Sprintf("it spreads by %s and this instance belongs in %s", key, strings.Join(where, " or "))
	tiers := restrict(pl.tiers, func(c model.Cluster) bool {
		v, ok := topologyValue(labels[c.ID], sp.TopologyKey)
		return ok && slices.ContainsFunc(want, func(s Split) bool { return s.Value == v })
	})
	if len(tiers) == 0 {
		return plan{why: note + ", where no schedulable cluster that the deployment and policy allow is; it waits rather than break the split"}
	}
	return plan{tiers: tiers, notes: append(pl.notes, note)}
}

// domainCounts sums placed instances per value of a topology key.
func domainCounts(clusters []model.Cluster, labels map[string]map[string][]string, key string, placed map[string]int) map[string]int {
	counts := map[string]int{}
	for _, c := range clusters {
		if n := placed[c.ID]; n > 0 {
			if v, ok := topologyValue(labels[c.ID], key); ok {
				counts[v] += n
			}
		}
	}
	return counts
}

// restrict keeps the clusters of each tier that satisfy keep, dropping
// tiers left empty.
func restrict(tiers [][]model.Cluster, keep func(model.Cluster) bool) [][]model.Cluster {
	var out [][]model.Cluster
	for _, t := range tiers {
		var nt []model.Cluster
		for _, c := range t {
			if keep(c) {
				nt = append(nt, c)
			}
		}
		if len(nt) > 0 {
			out = append(out, nt)
		}
	}
	return out
}

func (p *Policy) strategy() string {
	if p == nil || p.Strategy == "" {
		return StrategyBinPack
	}
	return p.Strategy
}

// explain prefixes a reason with the policy it comes from.
func (p *Policy) explain(s string) string {
	if p == nil {
		return s
	}
	return fmt.Sprintf("policy %q: %s", p.Name, s)
}

func need(spec model.GPUSpec) int { _, n := spec.Shape(); return n }

// freeGPUs returns the GPUs of spec's model not yet promised on c, and
// whether c offers spec's instance type at all.
func freeGPUs(spec model.GPUSpec, c model.Cluster, used map[string]map[string]int) (int, bool) {
	itype, _ := spec.Shape()
	total, offers := 0, false
	for _, n := range c.Inventory.Nodes {
		if n.GPUModel != spec.GPU {
			continue
		}
		total += n.GPUs
		if !offers {
			offers = slices.ContainsFunc(n.InstanceTypes(), func(t model.InstanceType) bool { return t.Name == itype })
		}
	}
	return total - used[c.ID][spec.GPU], offers
}

// EverFits reports whether some registered cluster the spec selects, in
// whatever state, has a node offering the spec's instance type: if none
// does, an instance can never be placed until the clusters change, and why
// says what is missing. A selected cluster whose agent has not reported an
// inventory yet might fit, so it counts as fitting.
func EverFits(spec model.GPUSpec, clusters []model.Cluster) (ok bool, why string) {
	itype, _ := spec.Shape()
	selected := 0
	for _, c := range clusters {
		if !spec.Selects(c) {
			continue
		}
		selected++
		if len(c.Inventory.Nodes) == 0 {
			return true, ""
		}
		for _, n := range c.Inventory.Nodes {
			if n.GPUModel == spec.GPU && slices.ContainsFunc(n.InstanceTypes(), func(t model.InstanceType) bool { return t.Name == itype }) {
				return true, ""
			}
		}
	}
	switch {
	case len(clusters) == 0:
		return false, "no cluster is registered; register one (gantry cluster register) with GPUs of model " + spec.GPU
	case selected == 0:
		return false, Unmatched(spec, clusters, true)
	}
	return false, fmt.Sprintf("none of the %d registered clusters it allows has a node offering instance type %s", selected, itype)
}

// capacity says why none of the clusters of tiers has room.
func capacity(spec model.GPUSpec, tiers [][]model.Cluster, used map[string]map[string]int) string {
	itype, n := spec.Shape()
	mostFree, anyShape := 0, false
	var offered []string
	for _, t := range tiers {
		for _, c := range t {
			for _, node := range c.Inventory.Nodes {
				offered = append(offered, node.GPUModel)
			}
			if free, ok := freeGPUs(spec, c, used); ok {
				anyShape = true
				mostFree = max(mostFree, free)
			}
		}
	}
	if !anyShape {
		slices.Sort(offered)
		return fmt.Sprintf("no cluster it allows offers instance type %s (gpus offered: %s)", itype, strings.Join(slices.Compact(offered), ", "))
	}
	return fmt.Sprintf("not enough free GPUs: an instance needs %d x %s, the most free on a cluster it allows is %d; it will be placed when capacity frees up",
		n, spec.GPU, mostFree)
}

// Unmatched says why no cluster of clusters takes spec when the spec's own
// fields rule them all out: model.GPUSpec.Allows does (schedulable clusters
// only), or with registered, model.GPUSpec.Selects (any state). It names
// what the spec asks for and, when its attributes are what rules out
// clusters that match everything else, the capabilities those lack and how
// to add them. Both placement's pending reason and a call at zero
// instances (through EverFits) say it.
func Unmatched(spec model.GPUSpec, clusters []model.Cluster, registered bool) string {
	allows, which := model.GPUSpec.Allows, "schedulable cluster (READY, not cordoned, draining or in maintenance)"
	if registered {
		allows, which = model.GPUSpec.Selects, "registered cluster"
	}
	why := "no " + which + " matches " + describeSpec(spec)
	if len(spec.Attributes) == 0 {
		return why
	}
	others := spec
	others.Attributes = nil
	n := 0
	var missing []string
	for _, c := range clusters {
		if !allows(others, c) {
			continue
		}
		n++
		for _, a := range spec.MissingCapabilities(c) {
			if !slices.Contains(missing, a) {
				missing = append(missing, a)
			}
		}
	}
	if n == 0 {
		return why
	}
	return fmt.Sprintf("%s: of the %d that its other placement fields allow, none has every capability its attributes name (missing: %s); "+
		"add them to a cluster's capabilities (PUT /v1/accounts/{ncaId}/clusters/{clusterId}) or remove them from attributes",
		why, n, strings.Join(missing, ", "))
}

func describeSpec(spec model.GPUSpec) string {
	var parts []string
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
	if len(spec.Attributes) > 0 {
		parts = append(parts, "attributes "+strings.Join(spec.Attributes, ",")+" (cluster capabilities)")
	}
	if len(parts) == 0 {
		return "(no cluster is READY)"
	}
	return strings.Join(parts, ", ")
}
