package controller

import (
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

// TestDesiredInstanceWhereabouts checks what an instance is told about
// itself and where it runs, which reaches it as NVCF_* variables.
func TestDesiredInstanceWhereabouts(t *testing.T) {
	t.Parallel()
	f := model.Function{ID: "fn-1", VersionID: "ver-1", NCAID: "nca-1", Name: "echo"}
	inst := model.Instance{ID: "i-1", ClusterID: "c-1", GPU: "H100", GPUCount: 2, InstanceType: "ON-PREM.GPU.H100_2x"}
	tests := []struct {
		name        string
		cluster     model.Cluster
		wantBackend string
		wantRegion  string
	}{
		{name: "group is the backend", cluster: model.Cluster{ID: "c-1", Name: "rack-1", GroupName: "group-a", Region: "eu-west"},
			wantBackend: "group-a", wantRegion: "eu-west"},
		{name: "no group: the cluster's name", cluster: model.Cluster{ID: "c-1", Name: "rack-1"}, wantBackend: "rack-1"},
		{name: "unknown cluster: its id", cluster: model.Cluster{}, wantBackend: "c-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := desiredInstance(f, model.GPUSpec{GPU: "H100"}, inst, tc.cluster)
			if d.Backend != tc.wantBackend || d.Region != tc.wantRegion {
				t.Errorf("backend %q region %q, want %q %q", d.Backend, d.Region, tc.wantBackend, tc.wantRegion)
			}
			if d.FunctionName != "echo" || d.NCAID != "nca-1" || d.InstanceType != "ON-PREM.GPU.H100_2x" || d.GPUCount != 2 {
				t.Errorf("desired instance %+v", d)
			}
		})
	}
}

// TestDesiredInstanceHealthOfGRPCFunctions checks that a function NVCF
// marks as gRPC (inferenceUrl /grpc) and that names no health check gets a
// gRPC one, on its inference port, as NVCF checks it; an HTTP probe of a
// gRPC server would never pass.
func TestDesiredInstanceHealthOfGRPCFunctions(t *testing.T) {
	t.Parallel()
	inst := model.Instance{ID: "i-1", ClusterID: "c-1", GPU: "H100", GPUCount: 1}
	tests := []struct {
		name string
		f    model.Function
		want string
	}{
		{"http function", model.Function{InferenceURL: "/infer"}, "HTTP"},
		{"grpc function", model.Function{InferenceURL: "/grpc"}, "gRPC"},
		{"grpc function with its own health", model.Function{InferenceURL: "/grpc",
			Health: &model.Health{Protocol: "HTTP", URI: "/ready", Port: 8000}}, "HTTP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := desiredInstance(tc.f, model.GPUSpec{GPU: "H100"}, inst, model.Cluster{})
			if d.Health.Protocol != tc.want {
				t.Errorf("health %+v, want protocol %s", d.Health, tc.want)
			}
		})
	}
}
