package agent

import (
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

// TestAddUsage checks the process runtime's free capacity: the GPUs the
// agent handed out, combined across the cluster. On Kubernetes it is the
// nodes' free GPUs, which see pods Gantry did not start and keep an instance
// to one node; that is checked end to end in test/e2e (TestKubernetesRuntime,
// "free capacity counts every pod").
func TestAddUsage(t *testing.T) {
	inv := model.Inventory{Nodes: []model.Node{
		{Name: "a", GPUModel: "H100", GPUMemoryGB: 80, GPUs: 4},
		{Name: "b", GPUModel: "H100", GPUMemoryGB: 80, GPUs: 4},
	}}
	one := model.DesiredInstance{InstanceID: "i-1", GPU: "H100", GPUCount: 1}
	a := &Agent{want: map[string]model.DesiredInstance{one.InstanceID: one}, gpus: newGPUPool(8), workers: map[string]*worker{}}
	if _, err := a.gpus.assign(one.InstanceID, one.GPUCount); err != nil {
		t.Fatal(err)
	}
	rep := model.AgentReport{Inventory: inv}
	a.addUsage(&rep)
	// 1 of 8 GPUs handed out: H100_1x, _2x, _4x.
	want := []struct{ available, inUse int }{{7, 1}, {3, 0}, {1, 0}}
	if len(rep.InstanceTypes) != len(want) {
		t.Fatalf("instance types: %+v", rep.InstanceTypes)
	}
	for i, u := range rep.InstanceTypes {
		if u.Available != want[i].available || u.InUse != want[i].inUse {
			t.Errorf("%s: available %d, in use %d; want %d, %d", u.Name, u.Available, u.InUse, want[i].available, want[i].inUse)
		}
	}
}
