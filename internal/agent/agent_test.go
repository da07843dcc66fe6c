package agent

import (
	"testing"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/model"
)

// fakeCluster is a clusterRuntime with fixed free GPUs; addUsage uses only
// FreeGPUs.
type fakeCluster struct {
	runtime.Runtime
	free map[string]int
}

func (f fakeCluster) Inventory() model.Inventory { return model.Inventory{} }
func (f fakeCluster) FreeGPUs() map[string]int   { return f.free }

var _ clusterRuntime = fakeCluster{}

// TestAddUsage checks where each runtime's free capacity comes from: on a
// cluster manager the nodes' free GPUs, which see pods Gantry did not start
// and keep an instance to one node; for the process runtime the GPUs the
// agent handed out.
func TestAddUsage(t *testing.T) {
	inv := model.Inventory{Nodes: []model.Node{
		{Name: "a", GPUModel: "H100", GPUMemoryGB: 80, GPUs: 4},
		{Name: "b", GPUModel: "H100", GPUMemoryGB: 80, GPUs: 4},
	}}
	one := model.DesiredInstance{InstanceID: "i-1", GPU: "H100", GPUCount: 1}
	tests := []struct {
		name    string
		cluster clusterRuntime
		// available per instance type name: H100_1x, _2x, _4x.
		want [3]int
	}{
		// Node a: Gantry's instance and a foreign pod hold 2; node b: a
		// foreign pod holds 2. 4 GPUs are free in all, but no 4-GPU
		// instance fits.
		{name: "cluster runtime: free GPUs per node", cluster: fakeCluster{free: map[string]int{"a": 2, "b": 2}},
			want: [3]int{4, 2, 0}},
		// The process runtime: 1 of 8 GPUs handed out.
		{name: "process runtime: GPUs the agent handed out", want: [3]int{7, 3, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := &Agent{cluster: tc.cluster, want: map[string]model.DesiredInstance{one.InstanceID: one},
				gpus: newGPUPool(8), workers: map[string]*worker{}}
			if tc.cluster == nil {
				if _, err := a.gpus.assign(one.InstanceID, one.GPUCount); err != nil {
					t.Fatal(err)
				}
			}
			rep := model.AgentReport{Inventory: inv}
			a.addUsage(&rep)
			if len(rep.InstanceTypes) != len(tc.want) {
				t.Fatalf("instance types: %+v", rep.InstanceTypes)
			}
			for i, u := range rep.InstanceTypes {
				wantInUse := 0
				if u.GPUs == 1 {
					wantInUse = 1
				}
				if u.Available != tc.want[i] || u.InUse != wantInUse {
					t.Errorf("%s: available %d, in use %d; want %d, %d", u.Name, u.Available, u.InUse, tc.want[i], wantInUse)
				}
			}
		})
	}
}
