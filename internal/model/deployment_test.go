package model

import (
	"reflect"
	"testing"
)

func TestSelectsAttributes(t *testing.T) {
	t.Parallel()
	plain := Cluster{ID: "c1", Name: "plain", Status: ClusterReady}
	fast := Cluster{ID: "c2", Name: "fast", Status: ClusterReady, Capabilities: []string{"nvlink", "infiniband"}}
	for _, tc := range []struct {
		name    string
		attrs   []string
		c       Cluster
		selects bool
		missing []string
	}{
		{"no attributes select any cluster", nil, plain, true, nil},
		{"a capability the cluster has", []string{"nvlink"}, fast, true, nil},
		{"every capability, in any order", []string{"infiniband", "nvlink"}, fast, true, nil},
		{"a capability the cluster lacks", []string{"nvlink", "gpudirect"}, fast, false, []string{"gpudirect"}},
		{"a cluster without capabilities", []string{"nvlink"}, plain, false, []string{"nvlink"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := GPUSpec{GPU: "H100", Attributes: tc.attrs}
			if got := s.Selects(tc.c); got != tc.selects {
				t.Errorf("Selects = %v, want %v", got, tc.selects)
			}
			if got := s.Allows(tc.c); got != tc.selects {
				t.Errorf("Allows = %v, want %v", got, tc.selects)
			}
			if got := s.MissingCapabilities(tc.c); !reflect.DeepEqual(got, tc.missing) {
				t.Errorf("MissingCapabilities = %q, want %q", got, tc.missing)
			}
		})
	}
}
