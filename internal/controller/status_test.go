package controller

import (
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestStatus(t *testing.T) {
	spec := model.GPUSpec{GPU: "H100", MinInstances: 2, MaxInstances: 2}
	placed := func(id string) *model.Instance { return &model.Instance{ID: id, ClusterID: "c", GPU: "H100"} }
	pending := &model.Instance{ID: "p", PendingReason: "no capacity"}
	st := func(pairs ...string) map[string]model.InstanceState {
		m := map[string]model.InstanceState{}
		for i := 0; i+1 < len(pairs); i += 2 {
			m[pairs[i]] = model.InstanceState{Status: model.InstanceStatus(pairs[i+1])}
			if pairs[i+1] == "ERRORED" {
				m[pairs[i]] = model.InstanceState{Status: model.InstanceErrored, Reason: "why"}
			}
		}
		return m
	}
	tests := []struct {
		name      string
		spec      model.GPUSpec
		ever      bool
		insts     []*model.Instance
		states    map[string]model.InstanceState
		want      model.FunctionStatus
		wantInfos int
	}{
		{"min 0 is active at once", model.GPUSpec{GPU: "H100", MaxInstances: 1}, false, nil, nil, model.StatusActive, 0},
		{"starting is deploying", spec, false, []*model.Instance{placed("a"), placed("b")}, st("a", "STARTING"), model.StatusDeploying, 0},
		{"enough ready is active", spec, false, []*model.Instance{placed("a"), placed("b")}, st("a", "RUNNING", "b", "RUNNING"), model.StatusActive, 0},
		{"pending explains itself", spec, false, []*model.Instance{placed("a"), pending}, st("a", "RUNNING"), model.StatusDeploying, 1},
		{"all errored is error", spec, false, []*model.Instance{placed("a"), placed("b")}, st("a", "ERRORED", "b", "ERRORED"), model.StatusError, 1},
		{"a held-up start explains itself", spec, false, []*model.Instance{placed("a"), placed("b")},
			map[string]model.InstanceState{"a": {Status: model.InstanceStarting, Reason: "unschedulable: 0/3 nodes are available"}},
			model.StatusDeploying, 1},
		{"some ready after active is degrading", spec, true, []*model.Instance{placed("a"), placed("b")}, st("a", "RUNNING", "b", "STARTING"), model.StatusDegrading, 0},
		{"none ready after active is degraded", spec, true, []*model.Instance{placed("a"), placed("b")}, st("a", "STARTING"), model.StatusDegraded, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := model.Deployment{Specs: []model.GPUSpec{tc.spec}, EverActive: tc.ever}
			got, info := Status(d, map[int][]*model.Instance{0: tc.insts}, tc.states)
			if got != tc.want || len(info) != tc.wantInfos {
				t.Fatalf("got %s with %d healthInfo (%+v), want %s with %d", got, len(info), info, tc.want, tc.wantInfos)
			}
		})
	}
}
