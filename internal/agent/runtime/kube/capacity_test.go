package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// gpuReq is a container asking for n GPUs: requests, limits, or both.
func gpuReq(name string, requests, limits int64) corev1.Container {
	c := corev1.Container{Name: name}
	if requests > 0 {
		c.Resources.Requests = corev1.ResourceList{GPUResource: *resource.NewQuantity(requests, resource.DecimalSI),
			corev1.ResourceCPU: resource.MustParse("1")}
	}
	if limits > 0 {
		c.Resources.Limits = corev1.ResourceList{GPUResource: *resource.NewQuantity(limits, resource.DecimalSI)}
	}
	return c
}

func sidecar(c corev1.Container) corev1.Container {
	c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	return c
}

// TestPodGPUs checks the GPU count of a pod against the scheduler's rule,
// and that the informer's transform keeps it and what FreeGPUs reads.
func TestPodGPUs(t *testing.T) {
	tests := []struct {
		name  string
		init  []corev1.Container
		main  []corev1.Container
		phase corev1.PodPhase
		node  string
		want  int64
		holds bool
	}{
		{name: "no GPUs", main: []corev1.Container{{Name: "app"}}, node: "n", want: 0},
		{name: "requests", main: []corev1.Container{gpuReq("a", 2, 2)}, node: "n", want: 2, holds: true},
		{name: "limits only", main: []corev1.Container{gpuReq("a", 0, 3)}, node: "n", want: 3, holds: true},
		{name: "containers add up", main: []corev1.Container{gpuReq("a", 1, 1), gpuReq("b", 2, 0), {Name: "c"}},
			node: "n", want: 3, holds: true},
		{name: "an init container needing more wins", init: []corev1.Container{gpuReq("i", 4, 4)},
			main: []corev1.Container{gpuReq("a", 1, 1)}, node: "n", want: 4, holds: true},
		{name: "init containers run one at a time", init: []corev1.Container{gpuReq("i", 2, 2), gpuReq("j", 3, 3)},
			main: []corev1.Container{gpuReq("a", 1, 1)}, node: "n", want: 3, holds: true},
		{name: "sidecars add to containers", init: []corev1.Container{sidecar(gpuReq("s", 1, 1))},
			main: []corev1.Container{gpuReq("a", 2, 2)}, node: "n", want: 3, holds: true},
		{name: "init after a sidecar runs beside it",
			init: []corev1.Container{sidecar(gpuReq("s", 1, 1)), gpuReq("i", 4, 4)},
			main: []corev1.Container{gpuReq("a", 2, 2)}, node: "n", want: 5, holds: true},
		{name: "unbound pod holds none", main: []corev1.Container{gpuReq("a", 2, 2)}, want: 2},
		{name: "succeeded pod holds none", main: []corev1.Container{gpuReq("a", 2, 2)}, node: "n",
			phase: corev1.PodSucceeded, want: 2},
		{name: "failed pod holds none", main: []corev1.Container{gpuReq("a", 2, 2)}, node: "n",
			phase: corev1.PodFailed, want: 2},
		{name: "pending bound pod holds", main: []corev1.Container{gpuReq("a", 2, 2)}, node: "n",
			phase: corev1.PodPending, want: 2, holds: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u",
				Labels: map[string]string{"app": "x"}, Annotations: map[string]string{"big": "annotation"}},
				Spec:   corev1.PodSpec{NodeName: tc.node, InitContainers: tc.init, Containers: tc.main},
				Status: corev1.PodStatus{Phase: tc.phase, PodIP: "10.0.0.1"}}
			if got := podGPUs(&pod.Spec); got != tc.want {
				t.Errorf("podGPUs = %d, want %d", got, tc.want)
			}
			if got := holdsGPUs(pod); got != tc.holds {
				t.Errorf("holdsGPUs = %v, want %v", got, tc.holds)
			}
			once, err := trimPod(pod)
			if err != nil {
				t.Fatal(err)
			}
			twice, _ := trimPod(once)
			for i, obj := range []any{once, twice} {
				p := obj.(*corev1.Pod)
				if got := podGPUs(&p.Spec); got != tc.want || holdsGPUs(p) != tc.holds {
					t.Errorf("trimmed %d time(s): %d GPUs, holds %v; want %d, %v", i+1, got, holdsGPUs(p), tc.want, tc.holds)
				}
				if p.Name != "p" || p.Namespace != "ns" || p.UID != "u" || p.Spec.NodeName != tc.node || p.Status.Phase != tc.phase {
					t.Errorf("trimmed pod lost what FreeGPUs needs: %+v", p)
				}
				if p.Labels != nil || p.Annotations != nil || p.Status.PodIP != "" || len(p.Spec.InitContainers) > 0 || len(p.Spec.Containers) > 1 {
					t.Errorf("trimmed pod keeps more than it needs: %+v", p)
				}
			}
		})
	}
}
