package policy_test

import (
	"reflect"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/policy"
)

func TestSelect(t *testing.T) {
	t.Parallel()
	policies := []policy.Policy{
		{ID: "p1", Name: "all", NCAID: "acct"},
		{ID: "p2", Name: "llm", NCAID: "acct", Priority: 10, FunctionSelector: policy.FunctionSelector{MatchTags: []string{"llm"}}},
		{ID: "p3", Name: "llm-prod", NCAID: "acct", Priority: 20, FunctionSelector: policy.FunctionSelector{MatchTags: []string{"llm", "prod"}}},
		{ID: "p4", Name: "b-tie", NCAID: "acct", Priority: 5, FunctionSelector: policy.FunctionSelector{MatchTags: []string{"batch"}}},
		{ID: "p5", Name: "a-tie", NCAID: "acct", Priority: 5, FunctionSelector: policy.FunctionSelector{MatchTags: []string{"batch"}}},
		{ID: "p6", Name: "other-account", NCAID: "other", Priority: 100},
	}
	tests := []struct {
		name  string
		ncaID string
		tags  []string
		want  string // policy id, "" for none
	}{
		{"empty selector matches untagged function", "acct", nil, "p1"},
		{"one of two tags is not enough", "acct", []string{"prod"}, "p1"},
		{"higher priority wins", "acct", []string{"llm"}, "p2"},
		{"all tags present, highest priority", "acct", []string{"prod", "x", "llm"}, "p3"},
		{"tie goes to the name that sorts first", "acct", []string{"batch"}, "p5"},
		{"another account's policy never applies", "other", []string{"llm"}, "p6"},
		{"no policy in the account", "nobody", nil, ""},
		{"tags are case sensitive", "acct", []string{"LLM"}, "p1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := policy.Select(policies, model.Function{NCAID: tc.ncaID, Tags: tc.tags})
			id := ""
			if got != nil {
				id = got.ID
			}
			if id != tc.want {
				t.Errorf("Select = %q, want %q", id, tc.want)
			}
		})
	}
	if policy.Select(nil, model.Function{}) != nil {
		t.Error("Select over no policies returned one")
	}
}

func TestClusterLabels(t *testing.T) {
	t.Parallel()
	c := model.Cluster{
		ID: "c1", Name: "east-1", GroupName: "prod", Region: "us-east", Zone: "us-east-1a",
		Labels: map[string]string{"tier": "gold", policy.LabelRegion: "stale"},
		Inventory: model.Inventory{Nodes: []model.Node{
			{Name: "n1", GPUModel: "L40S", GPUs: 4}, {Name: "n2", GPUModel: "H100", GPUs: 8},
			{Name: "n3", GPUModel: "H100", GPUs: 8}, {Name: "n4", GPUModel: "A10", GPUs: 0},
		}},
	}
	want := map[string][]string{
		"tier":                   {"gold"},
		policy.LabelRegion:       {"us-east"},
		policy.LabelZone:         {"us-east-1a"},
		policy.LabelClusterGroup: {"prod"},
		policy.LabelCluster:      {"east-1"},
		policy.LabelGPUProduct:   {"H100", "L40S"},
	}
	if got := policy.ClusterLabels(c); !reflect.DeepEqual(got, want) {
		t.Errorf("ClusterLabels =\n%v\nwant\n%v", got, want)
	}
	bare := policy.ClusterLabels(model.Cluster{ID: "c2", Labels: map[string]string{policy.LabelZone: "z9"}})
	if want := map[string][]string{policy.LabelZone: {"z9"}}; !reflect.DeepEqual(bare, want) {
		t.Errorf("cluster without region/zone fields: %v, want %v (a registered label stays when the field is empty)", bare, want)
	}
}

func TestSelectorMatches(t *testing.T) {
	t.Parallel()
	c := model.Cluster{ID: "c1", Name: "east-1", GroupName: "prod", Region: "us-east", Zone: "us-east-1a",
		Labels:    map[string]string{"tier": "gold"},
		Inventory: model.Inventory{Nodes: []model.Node{{GPUModel: "H100", GPUs: 8}, {GPUModel: "L40S", GPUs: 4}}}}
	labels := policy.ClusterLabels(c)
	req := func(k string, op policy.Operator, v ...string) policy.Requirement {
		return policy.Requirement{Key: k, Operator: op, Values: v}
	}
	tests := []struct {
		name string
		sel  *policy.Selector
		want bool
	}{
		{"nil selector", nil, true},
		{"empty selector", &policy.Selector{}, true},
		{"own label", &policy.Selector{MatchLabels: map[string]string{"tier": "gold"}}, true},
		{"own label, other value", &policy.Selector{MatchLabels: map[string]string{"tier": "silver"}}, false},
		{"region", &policy.Selector{MatchLabels: map[string]string{policy.LabelRegion: "us-east"}}, true},
		{"region and zone", &policy.Selector{MatchLabels: map[string]string{policy.LabelRegion: "us-east", policy.LabelZone: "us-east-1b"}}, false},
		{"group and cluster name", &policy.Selector{MatchLabels: map[string]string{policy.LabelClusterGroup: "prod", policy.LabelCluster: "east-1"}}, true},
		{"gpu.product label matches any model", &policy.Selector{MatchLabels: map[string]string{policy.LabelGPUProduct: "L40S"}}, true},
		{"gpu.product In", &policy.Selector{MatchExpressions: []policy.Requirement{req(policy.LabelGPUProduct, policy.OpIn, "A100", "H100")}}, true},
		{"gpu.product In, absent model", &policy.Selector{MatchExpressions: []policy.Requirement{req(policy.LabelGPUProduct, policy.OpIn, "A100")}}, false},
		{"gpu.product NotIn a model it has", &policy.Selector{MatchExpressions: []policy.Requirement{req(policy.LabelGPUProduct, policy.OpNotIn, "L40S")}}, false},
		{"NotIn on an absent key holds", &policy.Selector{MatchExpressions: []policy.Requirement{req("spot", policy.OpNotIn, "true")}}, true},
		{"Exists", &policy.Selector{MatchExpressions: []policy.Requirement{req("tier", policy.OpExists)}}, true},
		{"Exists, absent", &policy.Selector{MatchExpressions: []policy.Requirement{req("spot", policy.OpExists)}}, false},
		{"DoesNotExist", &policy.Selector{MatchExpressions: []policy.Requirement{req("spot", policy.OpDoesNotExist)}}, true},
		{"DoesNotExist, present", &policy.Selector{MatchExpressions: []policy.Requirement{req(policy.LabelZone, policy.OpDoesNotExist)}}, false},
		{"labels and expressions must all hold", &policy.Selector{MatchLabels: map[string]string{"tier": "gold"},
			MatchExpressions: []policy.Requirement{req(policy.LabelRegion, policy.OpIn, "us-west")}}, false},
		{"unknown operator never holds", &policy.Selector{MatchExpressions: []policy.Requirement{req("tier", "in", "gold")}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.sel.Matches(labels); got != tc.want {
				t.Errorf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSelectorString(t *testing.T) {
	t.Parallel()
	s := &policy.Selector{
		MatchLabels: map[string]string{policy.LabelRegion: "us-east", "tier": "gold"},
		MatchExpressions: []policy.Requirement{
			{Key: policy.LabelGPUProduct, Operator: policy.OpIn, Values: []string{"H100", "A100"}},
			{Key: "spot", Operator: policy.OpDoesNotExist},
			{Key: "ssd", Operator: policy.OpExists},
		},
	}
	if got, want := s.String(), "tier=gold,region=us-east,gpu In (H100,A100),!spot,ssd"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got := (*policy.Selector)(nil).String(); got != "*" {
		t.Errorf("nil String = %q", got)
	}
	if policy.ExpandKey("zone") != policy.LabelZone || policy.ExpandKey("tier") != "tier" || policy.ShortKey(policy.LabelGPUProduct) != "gpu" {
		t.Error("key aliases do not round-trip")
	}
}
