package model

import (
	"reflect"
	"strings"
	"testing"
)

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
		{"ON-PREM.GPU._1x", "", 0, false},
		// Other providers' prefixes, and none, name the same shapes.
		{"NCP.GPU.H100_1x", "H100", 1, true},
		{"OCI.GPU.H100_8x", "H100", 8, true},
		{"GPU.H100_1x", "H100", 1, true},
		{".GPU.H100_1x", "", 0, false},
		{"NCP.X.GPU.H100_1x", "", 0, false},
		{"NCP GPU.H100_1x", "", 0, false},
		{"NCP.CPU.H100_1x", "", 0, false},
	} {
		m, n, ok := ParseInstanceTypeName(tc.name)
		if m != tc.model || n != tc.n || ok != tc.ok {
			t.Errorf("ParseInstanceTypeName(%q) = %q, %d, %v", tc.name, m, n, ok)
		}
		if ok && strings.HasPrefix(tc.name, "ON-PREM.") && InstanceTypeName(m, n) != tc.name {
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
		// nvcf-cli's default; the cluster offers it under its own name.
		{GPUSpec{GPU: "H100", InstanceType: "NCP.GPU.H100_1x"}, "ON-PREM.GPU.H100_1x", 1},
		{GPUSpec{GPU: "A10G", InstanceType: "GPU.A10G_2x"}, "ON-PREM.GPU.A10G_2x", 2},
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

func TestInventoryUsage(t *testing.T) {
	inv := Inventory{Nodes: []Node{
		{Name: "a", GPUModel: "H100", GPUMemoryGB: 80, GPUs: 8, CPUCores: 64, MemoryGiB: 512},
		{Name: "b", GPUModel: "H100", GPUMemoryGB: 80, GPUs: 4, CPUCores: 32, MemoryGiB: 256},
	}}
	got := inv.Usage(map[string]int{"H100": 7}, map[string]int{"ON-PREM.GPU.H100_1x": 3, "ON-PREM.GPU.H100_4x": 1})
	want := []InstanceTypeUsage{
		{Name: "ON-PREM.GPU.H100_1x", GPUModel: "H100", GPUs: 1, CPUCores: 8, MemoryGiB: 64, Capacity: 12, Available: 5, InUse: 3},
		{Name: "ON-PREM.GPU.H100_2x", GPUModel: "H100", GPUs: 2, CPUCores: 16, MemoryGiB: 128, Capacity: 6, Available: 2},
		{Name: "ON-PREM.GPU.H100_4x", GPUModel: "H100", GPUs: 4, CPUCores: 32, MemoryGiB: 256, Capacity: 3, Available: 1, InUse: 1},
		{Name: "ON-PREM.GPU.H100_8x", GPUModel: "H100", GPUs: 8, CPUCores: 64, MemoryGiB: 512, Capacity: 1, Available: 0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Usage =\n%+v\nwant\n%+v", got, want)
	}
	if u := (Inventory{}).Usage(nil, nil); len(u) != 0 {
		t.Errorf("empty inventory: %+v", u)
	}
}

func TestInventoryUsageFree(t *testing.T) {
	h100 := func(name string, gpus int) Node {
		return Node{Name: name, GPUModel: "H100", GPUMemoryGB: 80, GPUs: gpus, CPUCores: 8 * gpus, MemoryGiB: 64 * gpus}
	}
	l40s := Node{Name: "l", GPUModel: "L40S", GPUMemoryGB: 48, GPUs: 2, CPUCores: 16, MemoryGiB: 128}
	twoH100 := Inventory{Nodes: []Node{h100("a", 4), h100("b", 4)}}
	tests := []struct {
		name  string
		inv   Inventory
		free  map[string]int
		inUse map[string]int
		// available per instance type name; every other field must be
		// what Usage says.
		want map[string]int
	}{
		{name: "all free", inv: twoH100, free: map[string]int{"a": 4, "b": 4},
			want: map[string]int{"ON-PREM.GPU.H100_1x": 8, "ON-PREM.GPU.H100_2x": 4, "ON-PREM.GPU.H100_4x": 2}},
		{name: "fragmented: 2+2 free fit no 4x", inv: twoH100, free: map[string]int{"a": 2, "b": 2},
			want: map[string]int{"ON-PREM.GPU.H100_1x": 4, "ON-PREM.GPU.H100_2x": 2, "ON-PREM.GPU.H100_4x": 0}},
		{name: "odd free rounds down per node", inv: twoH100, free: map[string]int{"a": 3, "b": 1},
			want: map[string]int{"ON-PREM.GPU.H100_1x": 4, "ON-PREM.GPU.H100_2x": 1, "ON-PREM.GPU.H100_4x": 0}},
		{name: "missing node has none free", inv: twoH100, free: map[string]int{"a": 4},
			want: map[string]int{"ON-PREM.GPU.H100_1x": 4, "ON-PREM.GPU.H100_2x": 2, "ON-PREM.GPU.H100_4x": 1}},
		{name: "nil free: nothing available", inv: twoH100,
			want: map[string]int{"ON-PREM.GPU.H100_1x": 0, "ON-PREM.GPU.H100_2x": 0, "ON-PREM.GPU.H100_4x": 0}},
		{name: "out of range clamped", inv: twoH100, free: map[string]int{"a": 9, "b": -3},
			want: map[string]int{"ON-PREM.GPU.H100_1x": 4, "ON-PREM.GPU.H100_2x": 2, "ON-PREM.GPU.H100_4x": 1}},
		{name: "models kept apart, in use counted", inv: Inventory{Nodes: []Node{h100("a", 8), l40s}},
			free:  map[string]int{"a": 5, "l": 2},
			inUse: map[string]int{"ON-PREM.GPU.H100_1x": 3},
			want: map[string]int{"ON-PREM.GPU.H100_1x": 5, "ON-PREM.GPU.H100_2x": 2, "ON-PREM.GPU.H100_4x": 1,
				"ON-PREM.GPU.H100_8x": 0, "ON-PREM.GPU.L40S_1x": 2, "ON-PREM.GPU.L40S_2x": 1}},
		// A 6x type exists only on the 6-GPU node; the 8-GPU node's free
		// GPUs do not count for it, as they do not count in its Capacity.
		{name: "type counted on the nodes that offer it", inv: Inventory{Nodes: []Node{h100("a", 8), h100("b", 6)}},
			free: map[string]int{"a": 8, "b": 5},
			want: map[string]int{"ON-PREM.GPU.H100_1x": 13, "ON-PREM.GPU.H100_2x": 6, "ON-PREM.GPU.H100_4x": 3,
				"ON-PREM.GPU.H100_8x": 1, "ON-PREM.GPU.H100_6x": 0}},
		{name: "empty inventory", inv: Inventory{}, free: map[string]int{"a": 4}, want: map[string]int{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.inv.UsageFree(tc.free, tc.inUse)
			want := tc.inv.Usage(nil, tc.inUse)
			if len(got) != len(want) || len(got) != len(tc.want) {
				t.Fatalf("UsageFree = %+v, want %d types", got, len(tc.want))
			}
			for i := range want {
				avail, ok := tc.want[want[i].Name]
				if !ok {
					t.Fatalf("unexpected type %s", want[i].Name)
				}
				want[i].Available = avail
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("UsageFree =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestMaintenanceIsNotSchedulable(t *testing.T) {
	c := Cluster{Status: ClusterReady}
	if !c.Schedulable() {
		t.Fatal("a READY cluster must be schedulable")
	}
	c.Inventory.Maintenance = true
	if c.Schedulable() {
		t.Error("a cluster in maintenance mode must take no new instances")
	}
}

func TestNodeInstanceTypeDetails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		node Node
		want []InstanceType
	}{
		{
			name: "shares of the node in proportion to the GPUs",
			node: Node{GPUModel: "H100", GPUMemoryGB: 80, GPUs: 4, CPUCores: 64, MemoryGiB: 512},
			want: []InstanceType{
				{Name: "ON-PREM.GPU.H100_1x", Value: "ON-PREM.GPU.H100", Description: "1 x H100 80GB", Default: true,
					CPUCores: 16, SystemMemory: "128Gi", GPUMemory: "80Gi", GPUCount: 1, GPUModel: "H100"},
				{Name: "ON-PREM.GPU.H100_2x", Value: "ON-PREM.GPU.H100", Description: "2 x H100 80GB",
					CPUCores: 32, SystemMemory: "256Gi", GPUMemory: "160Gi", GPUCount: 2, GPUModel: "H100"},
				{Name: "ON-PREM.GPU.H100_4x", Value: "ON-PREM.GPU.H100", Description: "4 x H100 80GB",
					CPUCores: 64, SystemMemory: "512Gi", GPUMemory: "320Gi", GPUCount: 4, GPUModel: "H100"},
			},
		},
		{
			name: "what the agent did not report is left out",
			node: Node{GPUModel: "L40S", GPUs: 1},
			want: []InstanceType{{Name: "ON-PREM.GPU.L40S_1x", Value: "ON-PREM.GPU.L40S", Description: "1 x L40S 0GB", Default: true,
				GPUCount: 1, GPUModel: "L40S"}},
		},
		{name: "no GPUs, no instance types", node: Node{GPUModel: "H100", CPUCores: 8, MemoryGiB: 8}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.node.InstanceTypeDetails(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("InstanceTypeDetails =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestGPUOffers(t *testing.T) {
	t.Parallel()
	names := func(g GroupGPU) []string {
		var out []string
		for _, t := range g.InstanceTypes {
			out = append(out, t.Name)
		}
		return out
	}
	tests := []struct {
		name  string
		nodes []Node
		want  []GroupGPU // names only for the instance types, see names
		types [][]string
	}{
		{name: "none", want: []GroupGPU{}},
		{
			name: "per model, sorted, totals across nodes, each type once",
			nodes: []Node{
				{Name: "a", GPUModel: "L40S", GPUs: 2, CPUCores: 16},
				{Name: "b", GPUModel: "H100", GPUs: 4, CPUCores: 32},
				{Name: "c", GPUModel: "H100", GPUs: 2, CPUCores: 64},
				{Name: "d", GPUModel: "", GPUs: 3},
				{Name: "e", GPUModel: "A10", GPUs: 0},
			},
			want: []GroupGPU{{Name: "H100", Capacity: 6}, {Name: "L40S", Capacity: 2}},
			types: [][]string{
				{"ON-PREM.GPU.H100_1x", "ON-PREM.GPU.H100_2x", "ON-PREM.GPU.H100_4x"},
				{"ON-PREM.GPU.L40S_1x", "ON-PREM.GPU.L40S_2x"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := GPUOffers(tc.nodes)
			if len(got) != len(tc.want) {
				t.Fatalf("GPUOffers = %+v, want %d models", got, len(tc.want))
			}
			for i, g := range got {
				if g.Name != tc.want[i].Name || g.Capacity != tc.want[i].Capacity || !reflect.DeepEqual(names(g), tc.types[i]) {
					t.Errorf("model %d = %s x%d %v, want %s x%d %v", i, g.Name, g.Capacity, names(g), tc.want[i].Name, tc.want[i].Capacity, tc.types[i])
				}
			}
		})
	}
	// The first node offering a type describes it.
	got := GPUOffers([]Node{{GPUModel: "H100", GPUs: 2, CPUCores: 32}, {GPUModel: "H100", GPUs: 2, CPUCores: 8}})
	if c := got[0].InstanceTypes[0].CPUCores; c != 16 {
		t.Errorf("H100_1x has %d CPU cores, want 16 (the first node's share)", c)
	}
}
