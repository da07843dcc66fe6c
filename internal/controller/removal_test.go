package controller

import (
	"slices"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

// TestSortForRemoval: what scale-down removes first comes last: pending,
// then failed, then starting instances; of running ones, those on the last
// fillAndSpill tier, and within a tier the idle before the busy.
func TestSortForRemoval(t *testing.T) {
	insts := []*model.Instance{
		{ID: "busy-first-tier", ClusterID: "a"},
		{ID: "pending"},
		{ID: "idle-second-tier", ClusterID: "b"},
		{ID: "failed", ClusterID: "a"},
		{ID: "idle-first-tier", ClusterID: "a"},
		{ID: "busy-second-tier", ClusterID: "b"},
		{ID: "starting", ClusterID: "a"},
	}
	states := map[string]model.InstanceState{
		"busy-first-tier":  {Status: model.InstanceRunning},
		"idle-second-tier": {Status: model.InstanceRunning},
		"failed":           {Status: model.InstanceErrored},
		"idle-first-tier":  {Status: model.InstanceRunning},
		"busy-second-tier": {Status: model.InstanceRunning},
		"starting":         {Status: model.InstanceStarting},
	}
	busy := map[string]bool{"busy-first-tier": true, "busy-second-tier": true}
	tier := map[string]int{"a": 0, "b": 1}
	sortForRemoval(insts, states, busy, func(c string) int { return tier[c] })
	var got []string
	for _, in := range insts {
		got = append(got, in.ID)
	}
	// Kept first, removed from the end.
	want := []string{"busy-first-tier", "idle-first-tier", "busy-second-tier", "idle-second-tier", "starting", "failed", "pending"}
	if !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}
