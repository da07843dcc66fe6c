package e2e

import (
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/policy"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestFillAndSpill: a policy that prefers us-east fills it before spilling
// to us-west.
func TestFillAndSpill(t *testing.T) {
	t.Parallel()
	f := startFleet(t)
	east := f.join("east", "prod", "us-east", 2, "H100")
	west := f.join("west", "prod", "us-west", 4, "H100")
	ctx := testutil.Context(t)
	if _, err := f.c.CreatePolicy(ctx, policy.Policy{Name: "east-first", Strategy: policy.StrategyBinPack,
		FunctionSelector: policy.FunctionSelector{MatchTags: []string{"tier=web"}},
		FillAndSpill: []policy.Selector{
			{MatchLabels: map[string]string{policy.LabelRegion: "us-east"}},
			{MatchLabels: map[string]string{policy.LabelRegion: "us-west"}},
		}}); err != nil {
		t.Fatal(err)
	}
	req := selfFunction(t, "spiller", "echo")
	req.Tags = []string{"tier=web"}
	fn, err := f.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// Two instances fit in east; the third must spill to west.
	for _, n := range []int{2, 3} {
		spec := model.GPUSpec{GPU: "H100", MinInstances: n, MaxInstances: n}
		if n == 2 {
			if _, err := f.c.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{spec}}); err != nil {
				t.Fatal(err)
			}
		} else if _, err := f.c.UpdateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{spec}}); err != nil {
			t.Fatal(err)
		}
		f.waitStatus(fn, model.StatusActive)
		want := map[string]int{east.clusterID: 2}
		if n == 3 {
			want[west.clusterID] = 1
		}
		testutil.WaitFor(t, 10*time.Second, func() error {
			got := f.placements(fn)
			for id, c := range want {
				if got[id] != c {
					return testutil.Errorf("with %d instances placed %v, want %v", n, got, want)
				}
			}
			return nil
		})
	}
}

// TestSpreadFiftyFifty: a 50/50 spread across two regions splits ten
// instances five and five, although bin-packing alone would fill one first.
func TestSpreadFiftyFifty(t *testing.T) {
	t.Parallel()
	f := startFleet(t)
	east := f.join("east", "prod", "us-east", 8, "H100")
	west := f.join("west", "prod", "us-west", 8, "H100")
	ctx := testutil.Context(t)
	if _, err := f.c.CreatePolicy(ctx, policy.Policy{Name: "halves", Strategy: policy.StrategyBinPack,
		Spread: &policy.Spread{TopologyKey: policy.LabelRegion, Splits: []policy.Split{{Value: "us-east", Percent: 50}, {Value: "us-west", Percent: 50}}}}); err != nil {
		t.Fatal(err)
	}
	fn, err := f.c.CreateFunction(ctx, model.CreateFunctionRequest{Name: "halved", InferenceURL: "/", ContainerImage: "process://sleep", ContainerArgs: "3600"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{{GPU: "H100", MinInstances: 10, MaxInstances: 10}}}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		got := f.placements(fn)
		if got[east.clusterID] != 5 || got[west.clusterID] != 5 {
			return testutil.Errorf("placed %v, want 5 and 5", got)
		}
		return nil
	})
}
