package e2e

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestPlacementAcrossClusters: placement honours gpu, instanceType, backend
// and regions; an impossible request waits with a reason and is placed as
// soon as a fitting cluster registers.
func TestPlacementAcrossClusters(t *testing.T) {
	f := startFleet(t)
	east := f.join("us-east", "prod", "us-east", 8, "H100")
	west := f.join("us-west", "prod", "us-west", 4, "L40S")
	eu := f.join("eu", "research", "eu", 8, "H100")

	for _, tc := range []struct {
		name string
		spec model.GPUSpec
		want *member
	}{
		{"gpu model", model.GPUSpec{GPU: "L40S", MinInstances: 1, MaxInstances: 1}, west},
		{"backend", model.GPUSpec{GPU: "H100", Backend: "research", MinInstances: 1, MaxInstances: 1}, eu},
		{"regions", model.GPUSpec{GPU: "H100", Regions: []string{"us-east"}, MinInstances: 1, MaxInstances: 1}, east},
		{"clusters and instance type", model.GPUSpec{GPU: "H100", InstanceType: "ON-PREM.GPU.H100_2x", Clusters: []string{"eu"}, MinInstances: 1, MaxInstances: 1}, eu},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn := f.deployEcho(strings.ReplaceAll(tc.name, " ", "-"), tc.spec)
			f.waitStatus(fn, model.StatusActive)
			if got := f.placements(fn); got[tc.want.clusterID] != 1 || len(got) != 1 {
				t.Fatalf("placed %v, want one instance on %s", got, tc.want.name)
			}
		})
	}

	t.Run("impossible until a fitting cluster registers", func(t *testing.T) {
		fn := f.deployEcho("whole-node", model.GPUSpec{GPU: "H100", InstanceType: "ON-PREM.GPU.H100_8x", MinInstances: 1, MaxInstances: 1})
		var d model.Deployment
		testutil.WaitFor(t, 30*time.Second, func() error {
			var err error
			d, err = f.c.GetDeployment(testutil.Context(t), fn.ID, fn.VersionID)
			if err != nil {
				return err
			}
			if len(d.HealthInfo) == 0 || !strings.Contains(d.HealthInfo[0].Error, "needs 8 x H100") {
				return testutil.Errorf("healthInfo %+v", d.HealthInfo)
			}
			return nil
		})
		if d.FunctionStatus != model.StatusDeploying {
			t.Fatalf("status %s while pending", d.FunctionStatus)
		}
		big := f.join("big", "prod", "us-east", 8, "H100")
		f.waitStatus(fn, model.StatusActive)
		if got := f.placements(fn); got[big.clusterID] != 1 {
			t.Fatalf("placed %v, want it on the new cluster", got)
		}
	})
}

// TestConcurrentDeploymentsNeverOverbook creates 20 deployments at once on
// 16 GPUs: no cluster may ever be promised more GPUs than it has.
func TestConcurrentDeploymentsNeverOverbook(t *testing.T) {
	f := startFleet(t)
	a := f.join("a", "prod", "r1", 8, "H100")
	b := f.join("b", "prod", "r2", 8, "H100")
	ctx := testutil.Context(t)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn, err := f.c.CreateFunction(ctx, model.CreateFunctionRequest{Name: "crowd", InferenceURL: "/", ContainerImage: "process://sleep", ContainerArgs: "3600"})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := f.c.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{{GPU: "H100", MinInstances: 1, MaxInstances: 1}}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	testutil.WaitFor(t, 30*time.Second, func() error {
		insts, err := f.cp.Store().ListInstances(ctx)
		if err != nil {
			return err
		}
		used, pending := map[string]int{}, 0
		for _, in := range insts {
			if in.ClusterID == "" {
				pending++
				continue
			}
			used[in.ClusterID] += in.GPUCount
		}
		for _, m := range []*member{a, b} {
			if used[m.clusterID] > 8 {
				t.Fatalf("cluster %s promised %d GPUs of 8", m.name, used[m.clusterID])
			}
		}
		if len(insts) != 20 || used[a.clusterID]+used[b.clusterID] != 16 || pending != 4 {
			return testutil.Errorf("%d instances, used %v, %d pending", len(insts), used, pending)
		}
		return nil
	})
}

// TestLostClusterMovesInstancesAndNothingDoubles cuts one agent off: its
// cluster goes NOT_READY, its instances move and invocations succeed again;
// when it comes back, its stale instances are stopped.
func TestLostClusterMovesInstancesAndNothingDoubles(t *testing.T) {
	f := startFleet(t)
	a := f.join("a", "prod", "r1", 4, "H100")
	b := f.join("b", "prod", "r2", 4, "H100")
	fn := f.deployEcho("mover", model.GPUSpec{GPU: "H100", MinInstances: 2, MaxInstances: 2, Clusters: nil})
	f.waitStatus(fn, model.StatusActive)
	a, b = packedOn(t, f, fn, a, b)
	if err := f.invokeOK(fn); err != nil {
		t.Fatal(err)
	}

	a.proxy.Cut() // the agent keeps its processes but can no longer talk
	began := time.Now()
	testutil.WaitFor(t, 30*time.Second, func() error {
		if got := f.placements(fn); got[b.clusterID] != 2 {
			return testutil.Errorf("placements %v", got)
		}
		return nil
	})
	f.waitStatus(fn, model.StatusActive)
	if err := f.invokeOK(fn); err != nil {
		t.Fatalf("invocation after the move: %v", err)
	}
	t.Logf("serving again on the other cluster %v after the cut (grace %v)", time.Since(began).Round(10*time.Millisecond), fleetGrace)
	cl, err := f.cp.Store().GetCluster(testutil.Context(t), a.clusterID)
	if err != nil || cl.Status != model.ClusterNotReady {
		t.Fatalf("cut-off cluster is %s (%v)", cl.Status, err)
	}
	if a.running() != 2 {
		t.Fatalf("the cut-off agent should still run its 2 (now stale) instances, runs %d", a.running())
	}

	a.proxy.Heal()
	testutil.WaitFor(t, 30*time.Second, func() error {
		if n := len(a.rt.List()); n != 0 {
			return testutil.Errorf("returned agent still runs %d stale instances", n)
		}
		return nil
	})
	if got := f.placements(fn); got[b.clusterID] != 2 || len(got) != 1 {
		t.Fatalf("after the return: %v", got)
	}
	if err := f.invokeOK(fn); err != nil {
		t.Fatal(err)
	}
}

// TestCordonAndDrain: a cordoned cluster takes no new placements; draining
// moves every instance off it while invocations keep succeeding.
func TestCordonAndDrain(t *testing.T) {
	f := startFleet(t)
	a := f.join("a", "prod", "r1", 4, "H100")
	b := f.join("b", "prod", "r2", 4, "H100")
	ctx := testutil.Context(t)
	fn := f.deployEcho("steady", model.GPUSpec{GPU: "H100", MinInstances: 2, MaxInstances: 2})
	f.waitStatus(fn, model.StatusActive)
	a, b = packedOn(t, f, fn, a, b)

	setCluster(t, f, a.clusterID, func(c *model.Cluster) { c.Cordoned = true })
	other := f.deployEcho("newcomer", model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1})
	f.waitStatus(other, model.StatusActive)
	if got := f.placements(other); got[b.clusterID] != 1 {
		t.Fatalf("cordoned cluster took a new placement: %v", got)
	}

	var failures, calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			calls.Add(1)
			if err := f.invokeOK(fn); err != nil {
				failures.Add(1)
				t.Logf("invocation during drain: %v", err)
			}
		}
	}()
	setCluster(t, f, a.clusterID, func(c *model.Cluster) { c.Draining = true })
	testutil.WaitFor(t, 60*time.Second, func() error {
		if got := f.placements(fn); got[b.clusterID] != 2 || len(got) != 1 {
			return testutil.Errorf("placements %v", got)
		}
		if n := a.running(); n != 0 {
			return testutil.Errorf("drained cluster still runs %d", n)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d invocations failed during the drain", failures.Load(), calls.Load())
	}
	t.Logf("%d invocations during the drain, none failed", calls.Load())
	_ = ctx
}

// TestAgentIdentity: a restarted agent keeps its cluster; a deleted
// cluster's agent is refused, stops its instances and says why.
func TestAgentIdentity(t *testing.T) {
	f := startFleet(t)
	a := f.join("a", "prod", "r1", 4, "H100")
	first := a.clusterID
	fn := f.deployEcho("kept", model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1})
	f.waitStatus(fn, model.StatusActive)

	a.stop()
	a.start()
	if a.clusterID != first {
		t.Fatalf("restarted agent is cluster %s, was %s", a.clusterID, first)
	}
	clusters, err := f.cp.Store().ListClusters(testutil.Context(t))
	if err != nil || len(clusters) != 1 {
		t.Fatalf("restart registered another cluster: %d clusters (%v)", len(clusters), err)
	}
	f.waitStatus(fn, model.StatusActive)

	if err := f.cp.Registry().Deregister(testutil.Context(t), a.clusterID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.agent.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the deleted cluster's agent kept running")
	}
	if err := a.agent.Err(); err == nil || !strings.Contains(err.Error(), "no longer registered") {
		t.Fatalf("agent stopped without saying why: %v", err)
	}
	if n := len(a.rt.List()); n != 0 {
		t.Fatalf("deleted cluster's agent left %d instances running", n)
	}
	// Revocation takes effect within the registry's one-second cache.
	testutil.WaitFor(t, 5*time.Second, func() error {
		if _, ok := f.cp.Registry().Verify(testutil.Context(t), mustIdentity(t, a).Credential); ok {
			return testutil.Errorf("the deleted cluster's credential is still accepted")
		}
		return nil
	})
}

// packedOn checks that bin-packing put both instances of fn on one cluster
// and returns that cluster first.
func packedOn(t *testing.T, f *fleet, fn model.Function, x, y *member) (*member, *member) {
	t.Helper()
	got := f.placements(fn)
	switch {
	case got[x.clusterID] == 2:
		return x, y
	case got[y.clusterID] == 2:
		return y, x
	}
	t.Fatalf("bin-packing should put both instances on one cluster: %v", got)
	return nil, nil
}

func setCluster(t *testing.T, f *fleet, id string, change func(*model.Cluster)) {
	t.Helper()
	ctx := testutil.Context(t)
	testutil.WaitFor(t, 10*time.Second, func() error {
		c, err := f.cp.Store().GetCluster(ctx, id)
		if err != nil {
			return err
		}
		change(&c)
		return f.cp.Store().UpdateCluster(ctx, &c)
	})
}

func mustIdentity(t *testing.T, m *member) agentIdentity {
	t.Helper()
	id, ok, err := loadIdentity(m.stateDir)
	if err != nil || !ok {
		t.Fatal(err)
	}
	return id
}
