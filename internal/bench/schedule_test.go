package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/scheduler"
	"github.com/gantry-dev/gantry/internal/store"
)

func TestSplitSizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		total, n int
	}{
		{"issue's numbers", 10000, 2000},
		{"all ones", 50, 50},
		{"all max", 500, 50},
		{"one deployment", 7, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sizes := splitSizes(tc.total, tc.n, maxDeploymentSize, rand.New(rand.NewPCG(1, 2)))
			if len(sizes) != tc.n {
				t.Fatalf("got %d sizes, want %d", len(sizes), tc.n)
			}
			sum := 0
			for _, s := range sizes {
				if s < 1 || s > maxDeploymentSize {
					t.Fatalf("size %d out of 1-%d", s, maxDeploymentSize)
				}
				sum += s
			}
			if sum != tc.total {
				t.Fatalf("sizes add up to %d, want %d", sum, tc.total)
			}
		})
	}
}

func TestSchedulePlan(t *testing.T) {
	t.Parallel()
	cfg := ScheduleConfig{Clusters: 100, GPUsPerCluster: 8, Deployments: 200, Instances: 1000}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	p := newSchedulePlan(cfg, time.Unix(0, 0))
	res := p.summary(cfg)
	if res.CapacityGPUs != 800 || len(res.Models) != len(benchGPUs) {
		t.Fatalf("capacity %d over %d models, want 800 over %d", res.CapacityGPUs, len(res.Models), len(benchGPUs))
	}
	instances := 0
	for n, count := range res.Shapes {
		if n != 1 && n != 2 && n != 4 {
			t.Errorf("unexpected shape %dx", n)
		}
		instances += count
	}
	if instances != 1000 || len(p.deployments) != 200 {
		t.Fatalf("%d instances in %d deployments, want 1000 in 200", instances, len(p.deployments))
	}
	// Every spec must have a cluster that could hold one instance: the
	// plan never asks for what no cluster offers.
	for _, d := range p.deployments {
		if cid, why := scheduler.Choose(d.Specs[0], p.clusters, nil); cid == "" {
			t.Fatalf("%s: %+v fits nowhere: %s", d.ID, d.Specs[0], why)
		}
	}
	again := newSchedulePlan(cfg, time.Unix(0, 0))
	for i := range p.deployments {
		if a, b := p.deployments[i].Specs[0], again.deployments[i].Specs[0]; a.GPU != b.GPU || a.MinInstances != b.MinInstances || a.InstanceType != b.InstanceType {
			t.Fatalf("the same seed gave different deployment %d: %+v and %+v", i, a, b)
		}
	}
}

func TestBenchSpecShapeFitsNode(t *testing.T) {
	t.Parallel()
	clusters := benchClusters(4, 1, time.Unix(0, 0))
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		spec := benchSpec(rng, i, clusters, 1, 3)
		if _, n := spec.Shape(); n != 1 {
			t.Fatalf("a 1-GPU node got a %dx spec", n)
		}
	}
}

func TestCheckPlacements(t *testing.T) {
	t.Parallel()
	clusters := benchClusters(2, 8, time.Unix(0, 0)) // bench-00000 H100, bench-00001 A100
	dep := model.Deployment{ID: "d", Specs: []model.GPUSpec{{GPU: "H100", MinInstances: 1, MaxInstances: 1}}}
	inst := func(id, cluster string, gpus int) model.Instance {
		return model.Instance{ID: id, DeploymentID: "d", ClusterID: cluster, GPU: "H100", GPUCount: gpus}
	}
	alloc := func(n int) map[string]store.Allocation {
		return map[string]store.Allocation{"bench-00000": {ClusterID: "bench-00000", Used: map[string]int{"H100": n}}}
	}
	tests := []struct {
		name   string
		insts  []model.Instance
		allocs map[string]store.Allocation
		want   ScheduleChecks // without Problems: OK() must hold exactly when nothing is wrong
	}{
		{
			name:   "full and consistent, pending does not fit",
			insts:  []model.Instance{inst("a", "bench-00000", 4), inst("b", "bench-00000", 4), inst("c", "", 1)},
			allocs: alloc(8),
			want:   ScheduleChecks{Instances: 3, Placed: 2, Pending: 1},
		},
		{
			name:   "pending instance that fits",
			insts:  []model.Instance{inst("a", "bench-00000", 4), inst("c", "", 1), inst("d", "", 1)},
			allocs: alloc(4),
			want:   ScheduleChecks{Instances: 3, Placed: 1, Pending: 2, PendingThatFit: 2},
		},
		{
			name:   "overbooked cluster",
			insts:  []model.Instance{inst("a", "bench-00000", 8), inst("b", "bench-00000", 1)},
			allocs: alloc(9),
			want:   ScheduleChecks{Instances: 2, Placed: 2, OverbookedClusters: 1},
		},
		{
			name:   "allocation differs from instances",
			insts:  []model.Instance{inst("a", "bench-00000", 2)},
			allocs: alloc(3),
			want:   ScheduleChecks{Instances: 1, Placed: 1, AllocationMismatches: 1},
		},
		{
			name:   "allocation without instances",
			insts:  nil,
			allocs: alloc(1),
			want:   ScheduleChecks{AllocationMismatches: 1},
		},
		{
			name:   "zero allocation without instances is fine",
			insts:  nil,
			allocs: alloc(0),
			want:   ScheduleChecks{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := checkPlacements(clusters, tc.insts, tc.allocs, []model.Deployment{dep})
			wrong := tc.want.OverbookedClusters+tc.want.AllocationMismatches+tc.want.PendingThatFit > 0
			if got.OK() == wrong {
				t.Errorf("OK() = %v with problems %q", got.OK(), got.Problems)
			}
			got.Problems = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestScheduleConfigDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     ScheduleConfig
		wantErr string
	}{
		{"defaults are the issue's numbers", ScheduleConfig{}, ""},
		{"too many instances", ScheduleConfig{Deployments: 10, Instances: 101}, "cannot be split"},
		{"too few instances", ScheduleConfig{Deployments: 10, Instances: 9}, "cannot be split"},
		{"bad workers", ScheduleConfig{Workers: []int{0}}, "workers"},
		{"negative clusters", ScheduleConfig{Clusters: -1}, "clusters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.defaults()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c := tc.cfg; c.Clusters != 1000 || c.GPUsPerCluster != 8 || c.Deployments != 2000 || c.Instances != 10000 || len(c.Workers) != 2 {
					t.Fatalf("defaults: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error about %q", err, tc.wantErr)
			}
		})
	}
}

func TestForEachStopsAtFirstError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	var calls atomic.Int64
	err := forEachConcurrently(context.Background(), 1000, 4, func(ctx context.Context, i int) error {
		calls.Add(1)
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if n := calls.Load(); n >= 1000 {
		t.Fatalf("%d calls: it kept going after the error", n)
	}
	calls.Store(0)
	if err := forEachConcurrently(context.Background(), 37, 4, func(context.Context, int) error { calls.Add(1); return nil }); err != nil || calls.Load() != 37 {
		t.Fatalf("got %v after %d calls, want nil after 37", err, calls.Load())
	}
}

func TestPhaseProfilePath(t *testing.T) {
	t.Parallel()
	tests := []struct{ path, tag, want string }{
		{"/tmp/sched.pprof", "bulk", "/tmp/sched-bulk.pprof"},
		{"/tmp/sched", "w4", "/tmp/sched-w4"},
		{"out.cpu.prof", "w1", "out.cpu-w1.prof"},
	}
	for _, tc := range tests {
		if got := phaseProfilePath(tc.path, tc.tag); got != tc.want {
			t.Errorf("phaseProfilePath(%q, %q) = %q, want %q", tc.path, tc.tag, got, tc.want)
		}
	}
}

func TestScheduleTargets(t *testing.T) {
	t.Parallel()
	got := scheduleTargets([]SchedulePhase{
		{Name: PhaseBulk, Schedulers: 1, PlacementsPerSecond: 5000},
		{Name: PhasePerDeployment, Schedulers: 4, PlacementsPerSecond: 4999.6},
	})
	if len(got) != 2 || !got[0].Pass || got[1].Pass {
		t.Fatalf("got %+v", got)
	}
	if !strings.Contains(got[1].Name, "4 schedulers") {
		t.Fatalf("target name %q does not say how many schedulers", got[1].Name)
	}
}

// TestRunScheduleSmall runs every phase on a small world over real etcd:
// demand above capacity, so pending instances, full clusters and racing
// schedulers all occur, and the checks must still hold.
func TestRunScheduleSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts embedded etcd three times")
	}
	res, err := RunSchedule(context.Background(), ScheduleConfig{
		Clusters: 8, GPUsPerCluster: 4, Deployments: 12, Instances: 40, Workers: []int{3},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 2 || res.DemandGPUs <= res.CapacityGPUs {
		t.Fatalf("want 2 phases with demand above capacity, got %+v", res)
	}
	for _, p := range res.Phases {
		if !p.Checks.OK() || p.Placed == 0 || p.Pending == 0 || p.Placed+p.Pending != 40 {
			t.Errorf("%s x%d: placed %d, pending %d, checks %+v", p.Name, p.Schedulers, p.Placed, p.Pending, p.Checks)
		}
		// A commit places a batch of instances or loses a race, so there
		// are never more commits than placements plus conflicts.
		if p.Commits == 0 || p.Commits > p.Placed+p.Conflicts {
			t.Errorf("%s x%d: %d commits, but %d placed and %d conflicts", p.Name, p.Schedulers, p.Commits, p.Placed, p.Conflicts)
		}
	}
}
