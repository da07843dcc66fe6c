package model

import "testing"

func TestInstanceTypeNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		model string
		n     int
		ok    bool
	}{
		{"ON-PREM.GPU.H100_1x", "H100", 1, true},
		{"ON-PREM.GPU.L40S_8x", "L40S", 8, true},
		{"ON-PREM.GPU.A100_80GB_2x", "A100_80GB", 2, true},
		{"ON-PREM.GPU.H100_0x", "", 0, false},
		{"ON-PREM.GPU.H100_x", "", 0, false},
		{"ON-PREM.GPU.H100", "", 0, false},
		{"GPU.H100_1x", "", 0, false},
		{"ON-PREM.GPU._1x", "", 0, false},
	} {
		m, n, ok := ParseInstanceTypeName(tc.name)
		if m != tc.model || n != tc.n || ok != tc.ok {
			t.Errorf("ParseInstanceTypeName(%q) = %q, %d, %v", tc.name, m, n, ok)
		}
		if ok && InstanceTypeName(m, n) != tc.name {
			t.Errorf("round trip of %q gave %q", tc.name, InstanceTypeName(m, n))
		}
	}
}

func TestNodeInstanceTypes(t *testing.T) {
	for _, tc := range []struct {
		gpus int
		want []string
	}{
		{8, []string{"ON-PREM.GPU.H100_1x", "ON-PREM.GPU.H100_2x", "ON-PREM.GPU.H100_4x", "ON-PREM.GPU.H100_8x"}},
		{6, []string{"ON-PREM.GPU.H100_1x", "ON-PREM.GPU.H100_2x", "ON-PREM.GPU.H100_4x", "ON-PREM.GPU.H100_6x"}},
		{1, []string{"ON-PREM.GPU.H100_1x"}},
		{0, nil},
	} {
		got := Node{GPUModel: "H100", GPUMemoryGB: 80, GPUs: tc.gpus}.InstanceTypes()
		if len(got) != len(tc.want) {
			t.Fatalf("%d GPUs: got %+v", tc.gpus, got)
		}
		for i, it := range got {
			if it.Name != tc.want[i] || it.Default != (it.GPUCount == 1) {
				t.Errorf("%d GPUs: type %d = %+v, want %s", tc.gpus, i, it, tc.want[i])
			}
		}
	}
}

func TestSpecShapeAndNodeOffers(t *testing.T) {
	for _, tc := range []struct {
		spec  GPUSpec
		itype string
		n     int
	}{
		{GPUSpec{GPU: "H100"}, "ON-PREM.GPU.H100_1x", 1},
		{GPUSpec{GPU: "H100", InstanceType: "ON-PREM.GPU.H100_4x"}, "ON-PREM.GPU.H100_4x", 4},
	} {
		if it, n := tc.spec.Shape(); it != tc.itype || n != tc.n {
			t.Errorf("Shape(%+v) = %s, %d", tc.spec, it, n)
		}
	}
	// Offers agrees with InstanceTypes for every node size and count.
	for gpus := 0; gpus <= 16; gpus++ {
		node := Node{GPUModel: "H100", GPUs: gpus}
		offered := map[int]bool{}
		for _, it := range node.InstanceTypes() {
			offered[it.GPUCount] = true
		}
		for count := 0; count <= 17; count++ {
			if node.Offers("H100", count) != offered[count] {
				t.Errorf("%d-GPU node: Offers(%d) = %v, InstanceTypes says %v", gpus, count, !offered[count], offered[count])
			}
		}
		if node.Offers("L40S", 1) {
			t.Errorf("%d-GPU H100 node offers L40S", gpus)
		}
	}
}
