package scheduler_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/scheduler"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestRacingSchedulersNeverOverbook runs two schedulers over the same pending
// instances at once: batches collide, fall back to one-at-a-time, and still
// no cluster is promised more GPUs than it has.
func TestRacingSchedulersNeverOverbook(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	for _, id := range []string{"c1", "c2"} {
		c := &model.Cluster{ID: id, Status: model.ClusterReady,
			Inventory: model.Inventory{Nodes: []model.Node{{Name: id, GPUModel: "H100", GPUs: 8}}}}
		if err := st.CreateCluster(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	var reqsA, reqsB []scheduler.Request
	for i := 0; i < 100; i++ {
		inst := &model.Instance{ID: fmt.Sprintf("i%03d", i), GPU: "H100", GPUCount: 1, CreatedAt: time.Now()}
		if err := st.CreateInstance(ctx, inst); err != nil {
			t.Fatal(err)
		}
		copyA, copyB := *inst, *inst
		reqsA = append(reqsA, scheduler.Request{Instance: &copyA, Spec: model.GPUSpec{GPU: "H100"}})
		reqsB = append(reqsB, scheduler.Request{Instance: &copyB, Spec: model.GPUSpec{GPU: "H100"}})
	}
	var wg sync.WaitGroup
	for _, reqs := range [][]scheduler.Request{reqsA, reqsB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Losing every race on an instance the other placed is expected;
			// what matters is what the store ends up promising.
			_, _ = scheduler.New(st).Place(ctx, reqs)
		}()
	}
	wg.Wait()
	insts, err := st.ListInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]int{}
	for _, in := range insts {
		used[in.ClusterID] += in.GPUCount
	}
	allocs, err := st.ListAllocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "c2"} {
		if used[id] > 8 || allocs[id].Used["H100"] != used[id] {
			t.Fatalf("cluster %s: %d GPUs placed, allocation says %d, has 8", id, used[id], allocs[id].Used["H100"])
		}
	}
	if used["c1"]+used["c2"] != 16 {
		t.Fatalf("placed %v; 16 GPUs were free", used)
	}
}
