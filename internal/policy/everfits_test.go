package policy

import (
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestEverFits(t *testing.T) {
	h100 := model.Cluster{ID: "c1", Name: "east", Region: "us-east", Inventory: model.Inventory{Nodes: []model.Node{
		{Name: "n1", GPUModel: "H100", GPUs: 8, GPUMemoryGB: 80, CPUCores: 64, MemoryGiB: 512}}}}
	unreported := model.Cluster{ID: "c2", Name: "new", Region: "us-west"}
	h100nvlink := h100
	h100nvlink.ID, h100nvlink.Capabilities = "c3", []string{"nvlink"}
	tests := []struct {
		name     string
		spec     model.GPUSpec
		clusters []model.Cluster
		ok       bool
		why      string
	}{
		{"offered", model.GPUSpec{GPU: "H100"}, []model.Cluster{h100}, true, ""},
		{"no cluster at all", model.GPUSpec{GPU: "H100"}, nil, false, "no cluster is registered"},
		{"gpu nobody has", model.GPUSpec{GPU: "B200"}, []model.Cluster{h100}, false, "has a node offering instance type ON-PREM.GPU.B200_1x"},
		{"shape too big for any node", model.GPUSpec{GPU: "H100", InstanceType: "ON-PREM.GPU.H100_16x"}, []model.Cluster{h100}, false, "ON-PREM.GPU.H100_16x"},
		{"a region nobody is in", model.GPUSpec{GPU: "H100", Regions: []string{"eu-west"}}, []model.Cluster{h100}, false, "no registered cluster matches regions eu-west"},
		{"a cluster that has not reported yet might fit", model.GPUSpec{GPU: "B200"}, []model.Cluster{h100, unreported}, true, ""},
		{"attributes a cluster has", model.GPUSpec{GPU: "H100", Attributes: []string{"nvlink"}}, []model.Cluster{h100nvlink}, true, ""},
		{"attributes no cluster has", model.GPUSpec{GPU: "H100", Attributes: []string{"nvlink", "gpudirect"}}, []model.Cluster{h100, h100nvlink}, false,
			"no registered cluster matches attributes nvlink,gpudirect (cluster capabilities): of the 2 that its other placement fields allow, " +
				"none has every capability its attributes name (missing: nvlink, gpudirect); add them to a cluster's capabilities " +
				"(PUT /v1/accounts/{ncaId}/clusters/{clusterId}) or remove them from attributes"},
		{"attributes and a region nobody is in", model.GPUSpec{GPU: "H100", Regions: []string{"eu-west"}, Attributes: []string{"nvlink"}}, []model.Cluster{h100nvlink}, false,
			"no registered cluster matches regions eu-west, attributes nvlink (cluster capabilities)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := EverFits(tc.spec, tc.clusters)
			if ok != tc.ok || !strings.Contains(why, tc.why) {
				t.Errorf("EverFits = %v %q, want %v and %q", ok, why, tc.ok, tc.why)
			}
		})
	}
}
