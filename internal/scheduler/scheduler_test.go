package scheduler

import (
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func cluster(id, group, region string, status model.ClusterStatus, gpu string, n int) model.Cluster {
	return model.Cluster{ID: id, Name: id, GroupName: group, Region: region, Status: status,
		Inventory: model.Inventory{Nodes: []model.Node{{Name: id + "-n1", GPUModel: gpu, GPUMemoryGB: 80, GPUs: n}}}}
}

func TestChoose(t *testing.T) {
	clusters := []model.Cluster{
		cluster("east", "prod", "us-east", model.ClusterReady, "H100", 8),
		cluster("west", "prod", "us-west", model.ClusterReady, "L40S", 4),
		cluster("eu", "research", "eu", model.ClusterReady, "H100", 8),
		cluster("down", "prod", "us-east", model.ClusterNotReady, "H100", 8),
	}
	clusters[2].Capabilities = []string{"nvlink"}
	tests := []struct {
		name      string
		spec      model.GPUSpec
		used      map[string]map[string]int
		want      string
		reasonHas string
	}{
		{name: "bin-pack picks the fuller cluster", spec: model.GPUSpec{GPU: "H100"},
			used: map[string]map[string]int{"eu": {"H100": 5}}, want: "eu"},
		{name: "ties break by id", spec: model.GPUSpec{GPU: "H100"}, want: "east"},
		{name: "gpu model filters", spec: model.GPUSpec{GPU: "L40S"}, want: "west"},
		{name: "backend filters", spec: model.GPUSpec{GPU: "H100", Backend: "research"}, want: "eu"},
		{name: "region filters", spec: model.GPUSpec{GPU: "H100", Regions: []string{"us-east"}}, want: "east"},
		{name: "clusters filter by name", spec: model.GPUSpec{GPU: "H100", Clusters: []string{"eu"}}, want: "eu"},
		{name: "instance type needs a big enough node", spec: model.GPUSpec{GPU: "L40S", InstanceType: "ON-PREM.GPU.L40S_8x"},
			reasonHas: "offers instance type ON-PREM.GPU.L40S_8x"},
		{name: "full clusters leave it pending", spec: model.GPUSpec{GPU: "L40S", InstanceType: "ON-PREM.GPU.L40S_2x"},
			used: map[string]map[string]int{"west": {"L40S": 3}}, reasonHas: "needs 2 x L40S, the most free on a matching cluster is 1"},
		{name: "unknown gpu says what is offered", spec: model.GPUSpec{GPU: "A100"}, reasonHas: "gpus offered: H100, L40S"},
		{name: "not-ready clusters are skipped", spec: model.GPUSpec{GPU: "H100", Clusters: []string{"down"}},
			reasonHas: "no schedulable cluster (READY, not cordoned, draining or in maintenance) matches clusters down"},
		{name: "attributes filter by capability", spec: model.GPUSpec{GPU: "H100", Attributes: []string{"nvlink"}}, want: "eu"},
		{name: "attributes no cluster has say which", spec: model.GPUSpec{GPU: "H100", Attributes: []string{"gpudirect"}},
			reasonHas: "matches attributes gpudirect (cluster capabilities): of the 3 that its other placement fields allow, none has every capability its attributes name (missing: gpudirect)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := Choose(tc.spec, clusters, tc.used)
			if got != tc.want {
				t.Fatalf("chose %q (%s), want %q", got, reason, tc.want)
			}
			if tc.want == "" && !strings.Contains(reason, tc.reasonHas) {
				t.Fatalf("reason %q does not contain %q", reason, tc.reasonHas)
			}
		})
	}
}
