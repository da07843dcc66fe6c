package policy_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/policy"
	"github.com/gantry-dev/gantry/internal/problem"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	sel := func(k, v string) policy.Selector { return policy.Selector{MatchLabels: map[string]string{k: v}} }
	spread := func(splits ...policy.Split) *policy.Spread {
		return &policy.Spread{TopologyKey: policy.LabelRegion, Splits: splits}
	}
	tests := []struct {
		name string
		p    policy.Policy
		want []string // substrings of the detail, in order; nil: valid
	}{
		{name: "minimal", p: policy.Policy{Name: "default"}},
		{name: "everything valid", p: policy.Policy{Name: "gpu_east-1", Priority: -5,
			FunctionSelector: policy.FunctionSelector{MatchTags: []string{"llm", "team:ml", "env=prod"}},
			ClusterSelector: &policy.Selector{MatchLabels: map[string]string{"tier": "gold"}, MatchExpressions: []policy.Requirement{
				{Key: policy.LabelGPUProduct, Operator: policy.OpIn, Values: []string{"H100", "A100-80GB"}},
				{Key: "example.com/spot", Operator: policy.OpDoesNotExist}}},
			Spread:   spread(policy.Split{Value: "us-east", Percent: 60}, policy.Split{Value: "us-west", Percent: 40}),
			GroupBy:  "",
			Strategy: "SPREAD"}},
		{name: "fill-and-spill with a catch-all last", p: policy.Policy{Name: "fs",
			FillAndSpill: []policy.Selector{sel(policy.LabelRegion, "us-east"), {}}}},
		{name: "group by region, spread by zone", p: policy.Policy{Name: "g", GroupBy: policy.LabelRegion,
			Spread: &policy.Spread{TopologyKey: policy.LabelZone, Splits: []policy.Split{{Value: "a", Percent: 50}, {Value: "b", Percent: 50}}}}},

		{name: "name required", p: policy.Policy{}, want: []string{"name is required"}},
		{name: "bad name", p: policy.Policy{Name: "-x y"}, want: []string{`name "-x y" is invalid`}},
		{name: "priority range", p: policy.Policy{Name: "p", Priority: 5000}, want: []string{"priority 5000 is out of range: use -1000 to 1000"}},
		{name: "bad and repeated tags", p: policy.Policy{Name: "p", FunctionSelector: policy.FunctionSelector{MatchTags: []string{"ok", "no spaces", "ok"}}},
			want: []string{`functionSelector.matchTags[1] "no spaces" is invalid`, `functionSelector.matchTags[2] "ok" repeats`}},
		{name: "bad label key and value", p: policy.Policy{Name: "p", ClusterSelector: &policy.Selector{MatchLabels: map[string]string{"Bad_Prefix.com/x": "", "ok": "a b"}}},
			want: []string{`clusterSelector.matchLabels key "Bad_Prefix.com/x" is invalid`, `clusterSelector.matchLabels["Bad_Prefix.com/x"] value "" is invalid`, "operator Exists", `clusterSelector.matchLabels["ok"] value "a b" is invalid`}},
		{name: "operators", p: policy.Policy{Name: "p", ClusterSelector: &policy.Selector{MatchExpressions: []policy.Requirement{
			{Key: "a", Operator: "in", Values: []string{"x"}},
			{Key: "b", Operator: policy.OpIn},
			{Key: "c", Operator: policy.OpExists, Values: []string{"x"}},
			{Key: "", Operator: ""},
		}}}, want: []string{
			`clusterSelector.matchExpressions[0].operator "in" is invalid: use In, NotIn, Exists or DoesNotExist`,
			"clusterSelector.matchExpressions[1].values is required with operator In",
			"clusterSelector.matchExpressions[2].values must be empty with operator Exists",
			"clusterSelector.matchExpressions[3].key is required",
			"clusterSelector.matchExpressions[3].operator is required",
		}},
		{name: "empty fill-and-spill tier before others", p: policy.Policy{Name: "p", FillAndSpill: []policy.Selector{{}, sel("tier", "gold")}},
			want: []string{"fillAndSpill[0] is empty, so it matches every cluster and the tiers after it are never used"}},
		{name: "splits must sum to 100", p: policy.Policy{Name: "p", Spread: spread(policy.Split{Value: "us-east", Percent: 50}, policy.Split{Value: "us-west", Percent: 40})},
			want: []string{"spread.splits percentages sum to 90: they must sum to 100, e.g. us-east=50, us-west=50"}},
		{name: "split entries", p: policy.Policy{Name: "p", Spread: spread(policy.Split{Value: "a", Percent: 0}, policy.Split{Value: "a", Percent: 100}, policy.Split{Percent: 101})},
			want: []string{"spread.splits[0].percent 0 is out of range", `spread.splits[1].value "a" repeats`, "spread.splits[2].value is required", "spread.splits[2].percent 101"}},
		{name: "spread needs key and splits", p: policy.Policy{Name: "p", Spread: &policy.Spread{}},
			want: []string{"spread.topologyKey is required", "spread.splits is required"}},
		{name: "fill-and-spill and spread exclude each other", p: policy.Policy{Name: "p",
			FillAndSpill: []policy.Selector{sel(policy.LabelRegion, "us-east")},
			Spread:       spread(policy.Split{Value: "us-east", Percent: 100})},
			want: []string{"fillAndSpill and spread cannot be combined: fill-and-spill fills one set of clusters before using the next, while spread keeps a fixed share"}},
		{name: "gpu.product is no topology key", p: policy.Policy{Name: "p", GroupBy: policy.LabelGPUProduct},
			want: []string{`groupBy cannot be "nvidia.com/gpu.product": a cluster may hold several GPU models`}},
		{name: "group-by and spread on one key", p: policy.Policy{Name: "p", GroupBy: policy.LabelRegion,
			Spread: spread(policy.Split{Value: "us-east", Percent: 50}, policy.Split{Value: "us-west", Percent: 50})},
			want: []string{`groupBy "topology.kubernetes.io/region" keeps all instances of a spec in one`}},
		{name: "strategy", p: policy.Policy{Name: "p", Strategy: "random"},
			want: []string{`strategy "random" is invalid: use "binpack"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := tc.p
			err := policy.Validate(&p)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if p.Strategy != policy.StrategyBinPack && p.Strategy != policy.StrategySpread {
					t.Errorf("strategy not normalised: %q", p.Strategy)
				}
				return
			}
			var pe *problem.Error
			if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest {
				t.Fatalf("Validate = %v, want a 400 problem", err)
			}
			rest := pe.Detail
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("detail lacks %q (in order):\n%s", w, pe.Detail)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestValidateDefaultsStrategy(t *testing.T) {
	t.Parallel()
	p := policy.Policy{Name: "p"}
	if err := policy.Validate(&p); err != nil || p.Strategy != policy.StrategyBinPack {
		t.Fatalf("Validate = %v, strategy %q", err, p.Strategy)
	}
	again := p
	if err := policy.Validate(&again); err != nil || again.Strategy != p.Strategy {
		t.Fatalf("normalising twice changed the policy: %v %q", err, again.Strategy)
	}
}
