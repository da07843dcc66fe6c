package model

import "testing"

func TestServesGRPC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    Function
		want bool
	}{
		{"http", Function{InferenceURL: "/echo", Health: &Health{Protocol: "HTTP"}}, false},
		{"no health", Function{InferenceURL: "/echo"}, false},
		{"NVCF's /grpc marker", Function{InferenceURL: "/grpc"}, true},
		{"gRPC health", Function{InferenceURL: "/", Health: &Health{Protocol: "gRPC"}}, true},
		{"gRPC health, any case", Function{InferenceURL: "/", Health: &Health{Protocol: "GRPC"}}, true},
		{"a path under /grpc is HTTP", Function{InferenceURL: "/grpc/infer"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.f.ServesGRPC(); got != tc.want {
				t.Errorf("ServesGRPC() = %v, want %v", got, tc.want)
			}
			var h Health
			if tc.f.Health != nil {
				h = *tc.f.Health
			}
			if got := (DesiredInstance{InferenceURL: tc.f.InferenceURL, Health: h}).ServesGRPC(); got != tc.want {
				t.Errorf("DesiredInstance.ServesGRPC() = %v, want %v", got, tc.want)
			}
		})
	}
}
