package kube

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

func TestGPUModel(t *testing.T) {
	tests := []struct {
		product  string
		override string
		want     string
	}{
		{product: "NVIDIA-H100-80GB-HBM3", want: "H100"},
		{product: "NVIDIA-H100-NVL", want: "H100"},
		{product: "NVIDIA-H200", want: "H200"},
		{product: "NVIDIA-GH200-480GB", want: "GH200"},
		{product: "NVIDIA-B200", want: "B200"},
		{product: "NVIDIA-A100-SXM4-80GB", want: "A100"},
		{product: "NVIDIA-A100-PCIE-40GB", want: "A100"},
		{product: "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", want: "A100"},
		{product: "NVIDIA-A10G", want: "A10G"},
		{product: "NVIDIA-L40S", want: "L40S"},
		{product: "NVIDIA-L4", want: "L4"},
		{product: "Tesla-T4", want: "T4"},
		{product: "Tesla-T4-SHARED", want: "T4"},
		{product: "Tesla-V100-SXM2-16GB", want: "V100"},
		{product: "NVIDIA-Tesla-V100-PCIE-32GB", want: "V100"},
		{product: "NVIDIA-GeForce-RTX-4090", want: "RTX4090"},
		{product: "NVIDIA-GeForce-RTX-3090-Ti", want: "RTX3090"},
		{product: "NVIDIA-RTX-A6000", want: "RTXA6000"},
		{product: "NVIDIA-RTX-6000-Ada-Generation", want: "RTX6000"},
		{product: "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition", want: "RTXPRO6000"},
		{product: "Quadro-RTX-8000", want: "RTX8000"},
		{product: "nvidia-h100-80gb-hbm3", want: "H100"},
		{product: "NVIDIA-H100-80GB-HBM3", override: "H100-80G", want: "H100-80G"},
		{product: "", override: "MI300X", want: "MI300X"},
		{product: "", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.product+"/"+tc.override, func(t *testing.T) {
			t.Parallel()
			labels := map[string]string{ProductLabel: tc.product}
			if tc.override != "" {
				labels[GPUModelLabel] = tc.override
			}
			if got := GPUModel(labels); got != tc.want {
				t.Errorf("GPUModel(%q, override %q) = %q, want %q", tc.product, tc.override, got, tc.want)
			}
		})
	}
}

// TestInventory checks the inventory against nodes on a real API server:
// only Ready, uncordoned nodes with GPUs count, and a cordon shows up in the
// inventory with a notification. Free GPUs follow pods that Gantry did not
// start, in any namespace, with a notification too.
func TestInventory(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{NoScheduler: true, NoControllerManager: true})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "h100-a", Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, GPUMemoryMiB: 81559})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "a100-a", Product: "NVIDIA-A100-SXM4-80GB", GPUs: 4, GPUMemoryMiB: 81920,
		CPU: "31500m", Memory: "250Gi"})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "t4-cordoned", Product: "Tesla-T4", GPUs: 1, GPUMemoryMiB: 15360, Unschedulable: true})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "cpu-0", GPUs: 0})
	ctx := testutil.Context(t)
	// A node no kubelet (kwok) looks after stays NotReady.
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("512Gi"),
		GPUResource: resource.MustParse("8")}
	_, err := env.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "h100-notready", Labels: map[string]string{ProductLabel: "NVIDIA-H100-80GB-HBM3"}},
		Status: corev1.NodeStatus{Capacity: res, Allocatable: res,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	var notified atomic.Int64
	rt := newRuntime(t, env, Config{Notify: func() { notified.Add(1) }})
	h100 := model.Node{Name: "h100-a", GPUModel: "H100", GPUMemoryGB: 80, GPUs: 8, CPUCores: 64, MemoryGiB: 512}
	a100 := model.Node{Name: "a100-a", GPUModel: "A100", GPUMemoryGB: 80, GPUs: 4, CPUCores: 31, MemoryGiB: 250}

	t.Run("only ready uncordoned GPU nodes", func(t *testing.T) {
		inv := rt.Inventory()
		if want := []model.Node{a100, h100}; !slices.Equal(inv.Nodes, want) {
			t.Errorf("nodes:\n got %+v\nwant %+v", inv.Nodes, want)
		}
		// Test binaries are built without version stamps, so compare with
		// what discovery says rather than with "v1.36...".
		sv, err := env.Client.Discovery().ServerVersion()
		if err != nil || inv.KubernetesVersion == "" || inv.KubernetesVersion != sv.GitVersion {
			t.Errorf("KubernetesVersion = %q, want the server's %v (%v)", inv.KubernetesVersion, sv, err)
		}
	})

	t.Run("free GPUs count pods Gantry did not start", func(t *testing.T) {
		allFree := map[string]int{"h100-a": 8, "a100-a": 4}
		if got := rt.FreeGPUs(); !maps.Equal(got, allFree) {
			t.Fatalf("FreeGPUs = %v before any pod, want %v", got, allFree)
		}
		// The API server's ServiceAccount admission wants the namespace's
		// default ServiceAccount, which the controller manager (not run
		// here) would create.
		_, err := env.Client.CoreV1().ServiceAccounts("default").Create(ctx,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		pods := env.Client.CoreV1().Pods("default")
		foreignPod := func(name, node string, gpus int64) *corev1.Pod {
			return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
				NodeName: node,
				Containers: []corev1.Container{{Name: "train", Image: "nvcr.io/example/train:1",
					Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
						GPUResource: *resource.NewQuantity(gpus, resource.DecimalSI)}}}}}}
		}
		// Not bound: no scheduler runs here, so it stays Pending on no
		// node and holds no node's GPUs.
		if _, err := pods.Create(ctx, foreignPod("unbound", "", 2), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		before := notified.Load()
		if _, err := pods.Create(ctx, foreignPod("foreign", "h100-a", 3), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, step := range []struct {
			what string
			want map[string]int
			do   func() error
		}{
			{"a foreign pod with 3 GPUs on h100-a", map[string]int{"h100-a": 5, "a100-a": 4}, nil},
			{"the foreign pod deleted", allFree, func() error {
				return pods.Delete(ctx, "foreign", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
			}},
		} {
			if step.do != nil {
				before = notified.Load()
				if err := step.do(); err != nil {
					t.Fatal(err)
				}
			}
			testutil.WaitFor(t, 10*time.Second, func() error {
				if got := rt.FreeGPUs(); !maps.Equal(got, step.want) {
					return fmt.Errorf("%s: FreeGPUs = %v, want %v", step.what, got, step.want)
				}
				if notified.Load() == before {
					return fmt.Errorf("%s: free GPUs changed without a notification", step.what)
				}
				return nil
			})
		}
	})

	t.Run("cordon and uncordon", func(t *testing.T) {
		for _, step := range []struct {
			unschedulable bool
			want          []model.Node
		}{{true, []model.Node{h100}}, {false, []model.Node{a100, h100}}} {
			before := notified.Load()
			patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, step.unschedulable)
			if _, err := env.Client.CoreV1().Nodes().Patch(ctx, "a100-a", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 10*time.Second, func() error {
				if got := rt.Inventory().Nodes; !slices.Equal(got, step.want) {
					return fmt.Errorf("unschedulable=%t: nodes %+v, want %+v", step.unschedulable, got, step.want)
				}
				if notified.Load() == before {
					return errors.New("inventory changed without a notification")
				}
				return nil
			})
		}
	})
}

// FuzzGPUModel feeds product labels, which any node's feature discovery
// writes, through the model rule: it must not panic, and a model it derives
// must name instance types that parse back to it.
func FuzzGPUModel(f *testing.F) {
	for _, seed := range []string{"NVIDIA-H100-80GB-HBM3", "NVIDIA-GeForce-RTX-4090", "Tesla-T4", "RTX", "NVIDIA-NVIDIA-", "A_B C", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, product string) {
		m := GPUModel(map[string]string{ProductLabel: product})
		if m == "" {
			return
		}
		if strings.ContainsAny(m, "-_ ") {
			t.Fatalf("model %q of %q keeps a separator", m, product)
		}
		got, n, ok := model.ParseInstanceTypeName(model.InstanceTypeName(m, 2))
		if !ok || got != m || n != 2 {
			t.Fatalf("model %q of %q does not round-trip an instance type name: %q %d %v", m, product, got, n, ok)
		}
	})
}
