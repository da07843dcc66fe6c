package policy_test

import (
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/policy"
)

// h100 is a cluster with one node of n H100s.
func h100(id, region, zone string, n int) model.Cluster {
	return model.Cluster{ID: id, Name: id + "-name", GroupName: "local", Region: region, Zone: zone,
		Status: model.ClusterReady, Inventory: model.Inventory{Nodes: []model.Node{{Name: id + "-n1", GPUModel: "H100", GPUMemoryGB: 80, GPUs: n}}}}
}

var oneH100 = model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1}

// sim places instances one at a time as the scheduler does: choose, then
// count the placement in used and placed before the next choice.
type sim struct {
	p        *policy.Policy
	spec     model.GPUSpec
	clusters []model.Cluster
	used     map[string]map[string]int
	placed   map[string]int
	order    []string // cluster of each placement
	reasons  []string // one per instance left pending
}

func newSim(p *policy.Policy, spec model.GPUSpec, clusters ...model.Cluster) *sim {
	return &sim{p: p, spec: spec, clusters: clusters, used: map[string]map[string]int{}, placed: map[string]int{}}
}

func (s *sim) place(n int) *sim {
	_, gpus, _ := model.ParseInstanceTypeName(s.spec.InstanceType)
	gpus = max(gpus, 1)
	for range n {
		id, why := s.p.Choose(s.spec, s.clusters, s.used, s.placed)
		if id == "" {
			if why == "" {
				panic("Choose returned neither a cluster nor a reason")
			}
			s.reasons = append(s.reasons, why)
			continue
		}
		if s.used[id] == nil {
			s.used[id] = map[string]int{}
		}
		s.used[id][s.spec.GPU] += gpus
		s.placed[id]++
		s.order = append(s.order, id)
	}
	return s
}

func (s *sim) perCluster() map[string]int { return maps.Clone(s.placed) }

// perValue counts placed instances per value of a cluster field.
func (s *sim) perValue(field func(model.Cluster) string) map[string]int {
	out := map[string]int{}
	for _, c := range s.clusters {
		if n := s.placed[c.ID]; n > 0 {
			out[field(c)] += n
		}
	}
	return out
}

func region(c model.Cluster) string { return c.Region }
func zone(c model.Cluster) string   { return c.Zone }

func ids(tiers [][]model.Cluster) [][]string {
	out := [][]string{}
	for _, t := range tiers {
		var row []string
		for _, c := range t {
			row = append(row, c.ID)
		}
		out = append(out, row)
	}
	return out
}

func regionSel(v string) policy.Selector {
	return policy.Selector{MatchLabels: map[string]string{policy.LabelRegion: v}}
}

func TestFillAndSpill(t *testing.T) {
	t.Parallel()
	p := &policy.Policy{Name: "fs", Strategy: policy.StrategyBinPack,
		FillAndSpill: []policy.Selector{regionSel("us-east"), regionSel("us-west")}}
	clusters := []model.Cluster{
		h100("e1", "us-east", "a", 4), h100("e2", "us-east", "b", 2),
		h100("w1", "us-west", "c", 8), h100("x1", "eu-central", "d", 8),
	}
	if got, want := ids(p.Tiers(oneH100, clusters, nil, nil)), [][]string{{"e1", "e2"}, {"w1"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Tiers = %v, want %v (clusters outside every tier are not candidates)", got, want)
	}
	s := newSim(p, oneH100, clusters...).place(15)
	// Bin-pack within the first tier (the fuller e2 first), then spill.
	want := []string{"e2", "e2", "e1", "e1", "e1", "e1", "w1", "w1", "w1", "w1", "w1", "w1", "w1", "w1"}
	if !reflect.DeepEqual(s.order, want) {
		t.Errorf("placement order = %v, want %v", s.order, want)
	}
	if len(s.reasons) != 1 || !strings.Contains(s.reasons[0],
		`policy "fs": it fills and spills over region=us-east > region=us-west; not enough free GPUs: an instance needs 1 x H100, the most free on a cluster it allows is 0`) {
		t.Errorf("reasons = %q", s.reasons)
	}
}

func TestFillAndSpillClusterInFirstMatchingTierOnly(t *testing.T) {
	t.Parallel()
	gold := h100("g1", "us-east", "a", 8)
	gold.Labels = map[string]string{"tier": "gold"}
	p := &policy.Policy{Name: "fs", FillAndSpill: []policy.Selector{
		{MatchLabels: map[string]string{"tier": "gold"}}, regionSel("us-east"), {}}}
	clusters := []model.Cluster{h100("e1", "us-east", "a", 8), gold, h100("w1", "us-west", "b", 8)}
	if got, want := ids(p.Tiers(oneH100, clusters, nil, nil)), [][]string{{"g1"}, {"e1"}, {"w1"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Tiers = %v, want %v", got, want)
	}
}

func TestSpreadFiftyFifty(t *testing.T) {
	t.Parallel()
	split := &policy.Spread{TopologyKey: policy.LabelRegion, Splits: []policy.Split{{Value: "us-east", Percent: 50}, {Value: "us-west", Percent: 50}}}
	clusters := []model.Cluster{h100("e1", "us-east", "a", 8), h100("e2", "us-east", "b", 8), h100("w1", "us-west", "c", 8), h100("x1", "eu-central", "d", 8)}
	tests := []struct {
		strategy   string
		perCluster map[string]int
	}{
		{policy.StrategyBinPack, map[string]int{"e1": 5, "w1": 5}},
		{policy.StrategySpread, map[string]int{"e1": 3, "e2": 2, "w1": 5}},
	}
	for _, tc := range tests {
		t.Run(tc.strategy, func(t *testing.T) {
			t.Parallel()
			p := &policy.Policy{Name: "half", Spread: split, Strategy: tc.strategy}
			s := newSim(p, oneH100)
			s.clusters = clusters
			for i := 1; i <= 10; i++ {
				s.place(1)
				by := s.perValue(region)
				if d := by["us-east"] - by["us-west"]; d < -1 || d > 1 || by["eu-central"] != 0 {
					t.Fatalf("after %d instances the split is %v", i, by)
				}
			}
			if got := s.perValue(region); !reflect.DeepEqual(got, map[string]int{"us-east": 5, "us-west": 5}) {
				t.Errorf("per region = %v, want 5/5", got)
			}
			if got := s.perCluster(); !reflect.DeepEqual(got, tc.perCluster) {
				t.Errorf("per cluster = %v, want %v", got, tc.perCluster)
			}
			if len(s.reasons) != 0 {
				t.Errorf("pending: %q", s.reasons)
			}
		})
	}
}

func TestSpreadUnevenSplit(t *testing.T) {
	t.Parallel()
	p := &policy.Policy{Name: "p", Spread: &policy.Spread{TopologyKey: policy.LabelZone,
		Splits: []policy.Split{{Value: "a", Percent: 70}, {Value: "b", Percent: 30}}}}
	s := newSim(p, oneH100, h100("a1", "r", "a", 16), h100("b1", "r", "b", 16)).place(10)
	if got := s.perValue(zone); !reflect.DeepEqual(got, map[string]int{"a": 7, "b": 3}) {
		t.Errorf("per zone = %v, want 7/3", got)
	}
}

// TestSpreadIsStrict: when the domain furthest below its share is full, the
// instance waits instead of tipping the split.
func TestSpreadIsStrict(t *testing.T) {
	t.Parallel()
	p := &policy.Policy{Name: "half", Spread: &policy.Spread{TopologyKey: policy.LabelRegion,
		Splits: []policy.Split{{Value: "us-east", Percent: 50}, {Value: "us-west", Percent: 50}}}}
	s := newSim(p, oneH100, h100("e1", "us-east", "a", 8), h100("w1", "us-west", "b", 2)).place(10)
	if got := s.perValue(region); !reflect.DeepEqual(got, map[string]int{"us-east": 3, "us-west": 2}) {
		t.Errorf("per region = %v, want 3/2 (a tie may go either way, then west is full)", got)
	}
	if len(s.reasons) != 5 {
		t.Fatalf("pending = %d, want 5: %q", len(s.reasons), s.reasons)
	}
	want := `policy "half": it spreads by region and this instance belongs in region=us-west (2 of 5 placed there, 50% wanted); not enough free GPUs`
	if !strings.Contains(s.reasons[0], want) {
		t.Errorf("reason = %q, want it to contain %q", s.reasons[0], want)
	}
}

func TestSpreadDomainWithoutClusters(t *testing.T) {
	t.Parallel()
	p := &policy.Policy{Name: "half", Spread: &policy.Spread{TopologyKey: policy.LabelRegion,
		Splits: []policy.Split{{Value: "us-east", Percent: 50}, {Value: "mars", Percent: 50}}}}
	s := newSim(p, oneH100, h100("e1", "us-east", "a", 8)).place(3)
	if len(s.order) != 1 || len(s.reasons) != 2 || !strings.Contains(s.reasons[0], "belongs in region=mars (0 of 1 placed there, 50% wanted), where no schedulable cluster") {
		t.Errorf("order %v, reasons %q", s.order, s.reasons)
	}
}

func TestGroupBy(t *testing.T) {
	t.Parallel()
	clusters := []model.Cluster{h100("a1", "r", "a", 4), h100("a2", "r", "a", 4), h100("b1", "r", "b", 6), h100("nz", "r", "", 16)}
	p := &policy.Policy{Name: "together", GroupBy: policy.LabelZone}

	t.Run("first instance picks the roomiest zone, the rest follow", func(t *testing.T) {
		t.Parallel()
		if got, want := ids(p.Tiers(oneH100, clusters, nil, nil)), [][]string{{"a1", "a2"}, {"b1"}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("Tiers = %v, want %v (zone a has 8 free, b 6; a cluster without a zone is no domain)", got, want)
		}
		s := newSim(p, oneH100, clusters...).place(10)
		if got := s.perValue(zone); !reflect.DeepEqual(got, map[string]int{"a": 8}) {
			t.Errorf("per zone = %v, want all 8 that fit in zone a", got)
		}
		if len(s.reasons) != 2 || !strings.Contains(s.reasons[0], `policy "together": it groups instances by zone and this spec's are in zone=a; not enough free GPUs`) {
			t.Errorf("reasons = %q", s.reasons)
		}
	})
	t.Run("sticks to the zone already holding instances", func(t *testing.T) {
		t.Parallel()
		s := newSim(p, oneH100, clusters...)
		s.placed["b1"] = 1
		s.used["b1"] = map[string]int{"H100": 1}
		s.place(6)
		if got := s.perCluster(); !reflect.DeepEqual(got, map[string]int{"b1": 6}) {
			t.Errorf("per cluster = %v, want b1 filled", got)
		}
		if len(s.reasons) != 1 {
			t.Errorf("reasons = %q", s.reasons)
		}
	})
	t.Run("free capacity decides the first zone", func(t *testing.T) {
		t.Parallel()
		used := map[string]map[string]int{"a1": {"H100": 4}}
		if got, want := ids(p.Tiers(oneH100, clusters, used, nil)), [][]string{{"b1"}, {"a1", "a2"}}; !reflect.DeepEqual(got, want) {
			t.Errorf("Tiers = %v, want %v", got, want)
		}
	})
}

func TestNarrowing(t *testing.T) {
	t.Parallel()
	east, west := h100("e1", "us-east", "a", 8), h100("w1", "us-west", "b", 8)
	l40s := model.Cluster{ID: "l1", Name: "l1-name", Region: "us-west", Status: model.ClusterReady,
		Inventory: model.Inventory{Nodes: []model.Node{{GPUModel: "L40S", GPUs: 8}}}}
	down := h100("d1", "us-west", "b", 8)
	down.Status = model.ClusterNotReady
	cordoned := h100("k1", "us-west", "b", 8)
	cordoned.Cordoned, cordoned.Capabilities = true, []string{"nvlink", "gpudirect"}
	west.Capabilities = []string{"nvlink"}
	all := []model.Cluster{down, east, l40s, west, cordoned}
	gpuH100 := &policy.Selector{MatchExpressions: []policy.Requirement{{Key: policy.LabelGPUProduct, Operator: policy.OpIn, Values: []string{"H100"}}}}
	spec := func(mod func(*model.GPUSpec)) model.GPUSpec {
		s := oneH100
		mod(&s)
		return s
	}
	tests := []struct {
		name   string
		p      *policy.Policy
		spec   model.GPUSpec
		tiers  [][]string
		reason string
	}{
		{"no policy: every schedulable cluster", nil, oneH100, [][]string{{"e1", "l1", "w1"}}, ""},
		{"cluster selector on gpu model", &policy.Policy{Name: "h", ClusterSelector: gpuH100}, oneH100, [][]string{{"e1", "w1"}}, ""},
		{"spec regions narrow the policy", &policy.Policy{Name: "h", ClusterSelector: gpuH100},
			spec(func(s *model.GPUSpec) { s.Regions = []string{"us-west"} }), [][]string{{"w1"}}, ""},
		{"spec clusters by name narrow the policy", &policy.Policy{Name: "h", ClusterSelector: gpuH100},
			spec(func(s *model.GPUSpec) { s.Clusters = []string{"e1-name"} }), [][]string{{"e1"}}, ""},
		{"spec narrowing and selector disjoint", &policy.Policy{Name: "h", ClusterSelector: gpuH100},
			spec(func(s *model.GPUSpec) { s.Clusters = []string{"l1"} }), [][]string{},
			`policy "h": its clusterSelector gpu In (H100) matches none of the 1 schedulable clusters the deployment allows`},
		{"fill-and-spill tiers narrowed by the spec", &policy.Policy{Name: "fs", FillAndSpill: []policy.Selector{regionSel("us-east"), regionSel("us-west")}},
			spec(func(s *model.GPUSpec) { s.Regions = []string{"us-west"} }), [][]string{{"l1", "w1"}}, ""},
		{"no READY cluster in the spec's regions", &policy.Policy{Name: "h"},
			spec(func(s *model.GPUSpec) { s.Regions = []string{"mars"} }), [][]string{}, `policy "h": no schedulable cluster (READY, not cordoned, draining or in maintenance) matches regions mars`},
		{"spec attributes narrow to clusters with the capabilities", nil,
			spec(func(s *model.GPUSpec) { s.Attributes = []string{"nvlink"} }), [][]string{{"w1"}}, ""},
		{"no schedulable cluster has the spec's attributes", &policy.Policy{Name: "h"},
			spec(func(s *model.GPUSpec) { s.Attributes = []string{"nvlink", "gpudirect"} }), [][]string{},
			`policy "h": no schedulable cluster (READY, not cordoned, draining or in maintenance) matches attributes nvlink,gpudirect (cluster capabilities): ` +
				"of the 3 that its other placement fields allow, none has every capability its attributes name (missing: nvlink, gpudirect); " +
				"add them to a cluster's capabilities"},
		{"fill-and-spill tiers match nothing", &policy.Policy{Name: "fs", FillAndSpill: []policy.Selector{regionSel("mars")}},
			oneH100, [][]string{}, `none of its fillAndSpill tiers (region=mars) matches`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := ids(tc.p.Tiers(tc.spec, all, nil, nil)); !reflect.DeepEqual(got, tc.tiers) {
				t.Errorf("Tiers = %v, want %v", got, tc.tiers)
			}
			id, why := tc.p.Choose(tc.spec, all, nil, nil)
			if tc.reason == "" && (id == "" || why != "") {
				t.Errorf("Choose = %q, %q; want a cluster", id, why)
			}
			if tc.reason != "" && (id != "" || !strings.Contains(why, tc.reason)) {
				t.Errorf("Choose = %q, %q; want reason %q", id, why, tc.reason)
			}
		})
	}
}

func TestChooseShapeNotOffered(t *testing.T) {
	t.Parallel()
	p := &policy.Policy{Name: "p"}
	spec := model.GPUSpec{GPU: "H100", InstanceType: "ON-PREM.GPU.H100_4x", MinInstances: 1, MaxInstances: 1}
	_, why := p.Choose(spec, []model.Cluster{h100("c1", "r", "z", 2)}, nil, nil)
	if want := `policy "p": no cluster it allows offers instance type ON-PREM.GPU.H100_4x (gpus offered: H100)`; why != want {
		t.Errorf("reason = %q, want %q", why, want)
	}
	s := newSim(p, model.GPUSpec{GPU: "H100", InstanceType: "ON-PREM.GPU.H100_2x"}, h100("c1", "r", "z", 4)).place(3)
	if len(s.order) != 2 || len(s.reasons) != 1 || !strings.Contains(s.reasons[0], "an instance needs 2 x H100, the most free on a cluster it allows is 0") {
		t.Errorf("order %v reasons %q", s.order, s.reasons)
	}
}

func TestOrder(t *testing.T) {
	t.Parallel()
	cs := []model.Cluster{h100("c", "r", "z", 8), h100("a", "r", "z", 4), h100("b", "r", "z", 4), h100("d", "r", "z", 8)}
	used := map[string]map[string]int{"d": {"H100": 6}}
	order := func(strategy string) []string {
		var out []string
		for _, c := range policy.Order(strategy, oneH100, cs, used) {
			out = append(out, c.ID)
		}
		return out
	}
	if got, want := order(policy.StrategyBinPack), []string{"d", "a", "b", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("binpack = %v, want %v", got, want)
	}
	if got, want := order(policy.StrategySpread), []string{"c", "a", "b", "d"}; !reflect.DeepEqual(got, want) {
		t.Errorf("spread = %v, want %v", got, want)
	}
	if cs[0].ID != "c" {
		t.Error("Order sorted its input in place")
	}
}
