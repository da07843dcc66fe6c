package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestPlacementAcrossClusters: placement honours gpu, instanceType, backend
// and regions; an impossible request waits with a reason and is placed as
// soon as a fitting cluster registers.
func TestPlacementAcrossClusters(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
	f := startFleet(t)
	a := f.join("a", "prod", "r1", 4, "H100")
	b := f.join("b", "prod", "r2", 4, "H100")
	fn := f.deployEcho("mover", model.GPUSpec{GPU: "H100", MinInstances: 2, MaxInstances: 2, Clusters: nil})
	f.waitStatus(fn, model.StatusActive)
	a, b = packedOn(t, f, fn, a, b)
	if err := f.invokeOK(fn); err != nil {
		t.Fatal(err)
	}

	// Traffic runs through the whole cut: calls that start once the
	// instances have moved must all succeed, and they must move within the
	// grace period plus the time to start an instance.
	traffic := startTraffic(f, fn)
	a.proxy.Cut() // the agent keeps its processes but can no longer talk
	began := time.Now()
	testutil.WaitFor(t, 30*time.Second, func() error {
		if got := f.placements(fn); got[b.clusterID] != 2 {
			return testutil.Errorf("placements %v", got)
		}
		return nil
	})
	f.waitStatus(fn, model.StatusActive)
	moved := time.Now()
	t.Logf("serving again on the other cluster %v after the cut (grace %v)", moved.Sub(began).Round(10*time.Millisecond), fleetGrace)
	if budget := 3*fleetHeartbeat + fleetGrace + 10*time.Second; moved.Sub(began) > budget {
		t.Errorf("instances moved %v after the cut; budget (NOT_READY + grace + start) is %v", moved.Sub(began), budget)
	}
	traffic.waitOKAfter(t, moved, 5)
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
	calls, failed := traffic.stop(t, moved)
	t.Logf("%d invocations through the cut; %d failed or timed out before the instances moved, none after", calls, failed)
}

// traffic invokes a function back to back, each call bounded, and records
// when each call started and whether it succeeded.
type traffic struct {
	mu    sync.Mutex
	calls []trafficCall
	done  chan struct{}
	wg    sync.WaitGroup
}

type trafficCall struct {
	start time.Time
	err   error
}

func startTraffic(f *fleet, fn model.Function) *traffic {
	tr := &traffic{done: make(chan struct{})}
	for range 2 { // two callers, so one call stuck on the lost cluster does not stall the other
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for {
				select {
				case <-tr.done:
					return
				default:
				}
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := f.c.Invoke(ctx, client.InvokeRequest{FunctionID: fn.ID, PollSeconds: 5})
				cancel()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				tr.mu.Lock()
				tr.calls = append(tr.calls, trafficCall{start, err})
				tr.mu.Unlock()
			}
		}()
	}
	return tr
}

// waitOKAfter waits until n calls that started after since have succeeded.
func (tr *traffic) waitOKAfter(t *testing.T, since time.Time, n int) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, func() error {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		ok := 0
		for _, c := range tr.calls {
			if c.start.After(since) && c.err == nil {
				ok++
			}
		}
		if ok < n {
			return testutil.Errorf("%d successful calls since the move, want %d", ok, n)
		}
		return nil
	})
}

// stop ends the traffic and fails the test if any call that started after
// since failed. It returns how many calls ran and how many failed before.
func (tr *traffic) stop(t *testing.T, since time.Time) (calls, failedBefore int) {
	t.Helper()
	close(tr.done)
	tr.wg.Wait()
	for _, c := range tr.calls {
		switch {
		case c.err == nil:
		case c.start.After(since):
			t.Errorf("a call started %v after the instances moved failed: %v", c.start.Sub(since).Round(time.Millisecond), c.err)
		default:
			failedBefore++
		}
	}
	return len(tr.calls), failedBefore
}

// TestCordonAndDrain: a cordoned cluster takes no new placements; draining
// moves every instance off it while invocations keep succeeding.
func TestCordonAndDrain(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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

// TestHeartbeatInventoryAndMaintenance: the agent's heartbeat tells what
// each instance type is (GPUs, CPU, memory), how many fit and how many run;
// an agent in maintenance mode keeps its instances and takes no new ones.
func TestHeartbeatInventoryAndMaintenance(t *testing.T) {
	t.Parallel()
	f := startFleet(t)
	a := f.join("a", "prod", "r1", 4, "H100")
	ctx := testutil.Context(t)
	fn := f.deployEcho("resident", model.GPUSpec{GPU: "H100", InstanceType: "ON-PREM.GPU.H100_2x", MinInstances: 1, MaxInstances: 1})
	f.waitStatus(fn, model.StatusActive)

	want := map[string]model.InstanceTypeUsage{
		"ON-PREM.GPU.H100_1x": {Name: "ON-PREM.GPU.H100_1x", GPUModel: "H100", GPUs: 1, CPUCores: 8, MemoryGiB: 64, Capacity: 4, Available: 2},
		"ON-PREM.GPU.H100_2x": {Name: "ON-PREM.GPU.H100_2x", GPUModel: "H100", GPUs: 2, CPUCores: 16, MemoryGiB: 128, Capacity: 2, Available: 1, InUse: 1},
		"ON-PREM.GPU.H100_4x": {Name: "ON-PREM.GPU.H100_4x", GPUModel: "H100", GPUs: 4, CPUCores: 32, MemoryGiB: 256, Capacity: 1, Available: 0},
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		cl, err := f.c.GetCluster(ctx, controlplane.DefaultAccount, a.clusterID)
		if err != nil {
			return err
		}
		if len(cl.InstanceTypes) != len(want) {
			return testutil.Errorf("instance types %+v", cl.InstanceTypes)
		}
		for _, u := range cl.InstanceTypes {
			if u != want[u.Name] {
				return testutil.Errorf("%s: %+v, want %+v", u.Name, u, want[u.Name])
			}
		}
		if cl.IdleInstances != 1 || cl.StandbyInstances != 0 || cl.UsedGPUs["H100"] != 2 {
			return testutil.Errorf("idle %d standby %d used %v", cl.IdleInstances, cl.StandbyInstances, cl.UsedGPUs)
		}
		return nil
	})

	// Maintenance mode is the agent's own switch: restart it with it on.
	a.stop()
	a.inv.Maintenance = true
	a.start()
	testutil.WaitFor(t, 30*time.Second, func() error {
		cl, err := f.c.GetCluster(ctx, controlplane.DefaultAccount, a.clusterID)
		if err != nil {
			return err
		}
		if !cl.Inventory.Maintenance || cl.Status != model.ClusterReady {
			return testutil.Errorf("maintenance %v status %s", cl.Inventory.Maintenance, cl.Status)
		}
		return nil
	})
	late := f.deployEcho("latecomer", model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1})
	testutil.WaitFor(t, 30*time.Second, func() error {
		d, err := f.c.GetDeployment(ctx, late.ID, late.VersionID)
		if err != nil {
			return err
		}
		if len(d.HealthInfo) == 0 || !strings.Contains(d.HealthInfo[0].Error, "maintenance") {
			return testutil.Errorf("healthInfo %+v", d.HealthInfo)
		}
		return nil
	})
	if got := f.placements(fn); got[a.clusterID] != 1 {
		t.Fatalf("the resident instance left the cluster in maintenance: %v", got)
	}
	f.waitStatus(fn, model.StatusActive)
}

// TestClusterAnswersAsNVCF: the cluster routes answer what NVCF's servers
// do, so NVCF clients decode them: the cluster list is a bare array with
// nvcf-cli's fields (ICMS), one cluster is answered bare, cluster groups
// carry authorized accounts, GPU capacity, instance type hardware and
// Kubernetes versions, and supportedGpus is NVCF's list of {gpu, backend}.
// An account a cluster is authorized for sees that cluster's group, only
// itself among the authorized, and none of the owner's other clusters.
func TestClusterAnswersAsNVCF(t *testing.T) {
	t.Parallel()
	f := startFleet(t)
	ctx := testutil.Context(t)
	a := f.join("a", "prod", "r1", 4, "H100")
	b := f.join("b", "prod", "r2", 2, "L40S")
	lab := f.join("lab", "dev", "r1", 1, "H100")
	owner := controlplane.DefaultAccount
	testutil.WaitFor(t, 30*time.Second, func() error {
		cs, err := f.c.ListClusters(ctx, owner)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Status != model.ClusterReady || c.NVCALastConnected.IsZero() || len(c.GPUs) == 0 {
				return testutil.Errorf("cluster %s: %s, last connected %v, gpus %+v", c.Name, c.Status, c.NVCALastConnected, c.GPUs)
			}
		}
		if len(cs) != 3 {
			return testutil.Errorf("%d clusters", len(cs))
		}
		return nil
	})
	tok := func(account string) string {
		t.Helper()
		k, err := f.c.MintAdminToken(ctx, model.AdminKeyRequest{NCAID: account})
		if err != nil {
			t.Fatal(err)
		}
		return k.Value
	}
	guest, third := tok("guest-account"), tok("third-account")
	get := func(bearer, path string, out any) {
		t.Helper()
		status, body := call(t, f.cp.URL(), "GET", path, bearer, "")
		if status != 200 {
			t.Fatalf("GET %s: %d %s", path, status, body)
		}
		if err := json.Unmarshal([]byte(body), out); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	clusters := "/v1/accounts/" + owner + "/clusters"

	t.Run("cluster list is a bare array nvcf-cli decodes", func(t *testing.T) {
		var list []nvcfCLICluster // nvcf-cli's ICMSCluster
		get(f.cp.AdminToken(), clusters, &list)
		if len(list) != 3 {
			t.Fatalf("%d clusters: %+v", len(list), list)
		}
		for _, c := range list {
			last, err := time.Parse(time.RFC3339Nano, c.NVCALastConnected)
			healthy, herr := time.Parse(time.RFC3339Nano, c.HealthyHeartbeatReportTime)
			if c.ClusterID == "" || c.ClusterName == "" || c.ClusterGroupID == "" || c.ClusterStatus != "READY" ||
				err != nil || herr != nil || time.Since(last) > time.Minute || healthy.IsZero() {
				t.Errorf("cluster %+v (%v, %v)", c, err, herr)
			}
		}
		// Gantry's own fields stay, and each cluster describes its GPUs as NVCF's do.
		var full []model.Cluster
		get(f.cp.AdminToken(), clusters, &full)
		for _, c := range full {
			if c.ID == a.clusterID && (len(c.InstanceTypes) != 3 || c.Inventory.GPUTotals()["H100"] != 4 ||
				len(c.GPUs) != 1 || c.GPUs[0].Capacity != 4 || c.GPUs[0].InstanceTypes[2].GPUMemory != "320Gi") {
				t.Errorf("cluster a: %+v", c)
			}
		}
		var none []model.Cluster
		get(guest, "/v1/accounts/guest-account/clusters", &none)
		if none == nil || len(none) != 0 {
			t.Errorf("another account's clusters: %+v, want []", none)
		}
	})

	t.Run("one cluster is answered bare", func(t *testing.T) {
		var c nvcfCLICluster
		get(f.cp.AdminToken(), clusters+"/"+lab.clusterID, &c)
		if c.ClusterID != lab.clusterID || c.ClusterName != "lab" || c.NVCALastConnected == "" {
			t.Fatalf("cluster %+v", c)
		}
	})

	// The owner authorizes two accounts on cluster a, and the answer to
	// the PUT is the cluster, bare.
	status, body := call(t, f.cp.URL(), "PUT", clusters+"/"+a.clusterID, f.cp.AdminToken(),
		`{"clusterName":"a","clusterGroupName":"prod","authorizedNCAIds":["third-account","guest-account"]}`)
	var updated model.Cluster
	if status != 200 || json.Unmarshal([]byte(body), &updated) != nil || updated.ID != a.clusterID ||
		!slices.Equal(updated.AuthorizedNCAIDs, []string{"guest-account", "third-account"}) {
		t.Fatalf("PUT: %d %s", status, body)
	}

	h100 := func(n int, cpu int, mem string) nvcfInstanceType {
		return nvcfInstanceType{Name: fmt.Sprintf("ON-PREM.GPU.H100_%dx", n), Value: "ON-PREM.GPU.H100",
			Description: fmt.Sprintf("%d x H100 80GB", n), Default: n == 1, CPUCores: cpu, SystemMemory: mem,
			GPUMemory: fmt.Sprintf("%dGi", 80*n), GPUCount: n}
	}
	prodH100 := nvcfGPU{Name: "H100", Capacity: 4, InstanceTypes: []nvcfInstanceType{h100(1, 8, "64Gi"), h100(2, 16, "128Gi"), h100(4, 32, "256Gi")}}
	groupTests := []struct {
		name, bearer string
		want         map[string]nvcfClusterGroup // by name; ids and instance types of L40S are checked loosely
	}{
		{"the owner sees every group and every authorized account", f.cp.AdminToken(), map[string]nvcfClusterGroup{
			"dev": {Name: "dev", NCAID: owner, AuthorizedNCAIDs: []string{},
				GPUs:     []nvcfGPU{{Name: "H100", Capacity: 1, InstanceTypes: []nvcfInstanceType{h100(1, 8, "64Gi")}}},
				Clusters: []nvcfClusterBrief{{ID: lab.clusterID, Name: "lab"}}},
			"prod": {Name: "prod", NCAID: owner, AuthorizedNCAIDs: []string{"guest-account", "third-account"},
				GPUs:     []nvcfGPU{prodH100, {Name: "L40S", Capacity: 2}},
				Clusters: []nvcfClusterBrief{{ID: a.clusterID, Name: "a"}, {ID: b.clusterID, Name: "b"}}},
		}},
		{"an authorized account sees the cluster it may use, and only itself", guest, map[string]nvcfClusterGroup{
			"prod": {Name: "prod", NCAID: owner, AuthorizedNCAIDs: []string{"guest-account"},
				GPUs:     []nvcfGPU{prodH100},
				Clusters: []nvcfClusterBrief{{ID: a.clusterID, Name: "a"}}},
		}},
	}
	for _, tc := range groupTests {
		t.Run("cluster groups: "+tc.name, func(t *testing.T) {
			var resp struct {
				ClusterGroups []nvcfClusterGroup `json:"clusterGroups"`
			}
			get(tc.bearer, "/v2/nvcf/clusterGroups", &resp)
			if len(resp.ClusterGroups) != len(tc.want) {
				t.Fatalf("groups %+v", resp.ClusterGroups)
			}
			for _, g := range resp.ClusterGroups {
				want, ok := tc.want[g.Name]
				if !ok || g.ID == "" {
					t.Fatalf("unexpected group %+v", g)
				}
				g.ID = ""
				for i := range g.GPUs {
					if g.GPUs[i].Name == "L40S" {
						if len(g.GPUs[i].InstanceTypes) != 2 || g.GPUs[i].InstanceTypes[1].GPUCount != 2 {
							t.Errorf("L40S instance types %+v", g.GPUs[i].InstanceTypes)
						}
						g.GPUs[i].InstanceTypes = nil
					}
				}
				if !reflect.DeepEqual(g, want) {
					t.Errorf("group %s:\n got %+v\nwant %+v", g.Name, g, want)
				}
			}
		})
	}

	supportedTests := []struct {
		name, bearer string
		want         []model.SupportedGPU
	}{
		{"owner", f.cp.AdminToken(), []model.SupportedGPU{{GPU: "H100", Backend: "dev"}, {GPU: "H100", Backend: "prod"}, {GPU: "L40S", Backend: "prod"}}},
		{"authorized account", third, []model.SupportedGPU{{GPU: "H100", Backend: "prod"}}},
	}
	for _, tc := range supportedTests {
		t.Run("supportedGpus: "+tc.name, func(t *testing.T) {
			var got []model.SupportedGPU
			get(tc.bearer, "/v2/nvcf/supportedGpus", &got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("supportedGpus = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// nvcfCLICluster is what nvcf-cli decodes from each element of the cluster
// list (its ICMSCluster).
type nvcfCLICluster struct {
	ClusterID                  string `json:"clusterId,omitempty"`
	ClusterName                string `json:"clusterName,omitempty"`
	ClusterGroupID             string `json:"clusterGroupId,omitempty"`
	NVCAVersion                string `json:"nvcaVersion,omitempty"`
	ClusterStatus              string `json:"status,omitempty"`
	NVCALastConnected          string `json:"nvcaLastConnected,omitempty"`
	HealthyHeartbeatReportTime string `json:"healthyHeartbeatReportTime,omitempty"`
}

// nvcfClusterGroup and the types below are NVCF's cluster group shape
// (nvcf-core's ClusterGroupsResponse, NVCA's instance type entries).
type nvcfClusterGroup struct {
	ID               string             `json:"id"`
	Name             string             `json:"name"`
	NCAID            string             `json:"ncaId"`
	AuthorizedNCAIDs []string           `json:"authorizedNcaIds"`
	GPUs             []nvcfGPU          `json:"gpus"`
	Clusters         []nvcfClusterBrief `json:"clusters"`
}

type nvcfGPU struct {
	Name          string             `json:"name"`
	Capacity      int                `json:"capacity"`
	InstanceTypes []nvcfInstanceType `json:"instanceTypes"`
}

type nvcfInstanceType struct {
	Name         string `json:"name"`
	Value        string `json:"value"`
	Description  string `json:"description"`
	Default      bool   `json:"default"`
	CPUCores     int    `json:"cpuCores"`
	SystemMemory string `json:"systemMemory"`
	GPUMemory    string `json:"gpuMemory"`
	GPUCount     int    `json:"gpuCount"`
}

type nvcfClusterBrief struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	K8sVersion string `json:"k8sVersion"`
}
