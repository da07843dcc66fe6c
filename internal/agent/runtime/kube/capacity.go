package kube

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/internal/model"
)

// byNode indexes the cluster-wide pod cache by the node whose GPUs a pod
// holds; pods that hold none are not indexed.
const byNode = "node"

// gpuContainer names the one container a trimmed pod keeps (see trimPod).
const gpuContainer = "gpus"

// FreeGPUs returns, for every node of Inventory, how many of its allocatable
// GPUs no pod holds: allocatable minus the GPUs requested by the pods bound
// to it that have not finished, in any namespace and whoever started them,
// never below 0. Free GPUs are per node because an instance must fit on one.
func (r *Runtime) FreeGPUs() map[string]int {
	return r.freeGPUs(r.Inventory().Nodes)
}

func (r *Runtime) freeGPUs(nodes []model.Node) map[string]int {
	free := make(map[string]int, len(nodes))
	for _, n := range nodes {
		objs, _ := r.gpuPods.ByIndex(byNode, n.Name)
		held := 0
		for _, o := range objs {
			if p, ok := o.(*corev1.Pod); ok {
				held += int(podGPUs(&p.Spec))
			}
		}
		free[n.Name] = max(0, n.GPUs-held)
	}
	return free
}

// holdsGPUs reports whether a pod takes GPUs of a node: it asks for some, is
// bound to the node, and has not finished. A pod being deleted still holds
// them until its containers are gone, as the scheduler also counts it.
func holdsGPUs(p *corev1.Pod) bool {
	return p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed &&
		podGPUs(&p.Spec) > 0
}

func nodeIndex(obj any) ([]string, error) {
	if p, ok := obj.(*corev1.Pod); ok && holdsGPUs(p) {
		return []string{p.Spec.NodeName}, nil
	}
	return nil, nil
}

// podGPUs is how many GPUs a pod takes on its node, counted as the scheduler
// counts requests: the sum of its containers and sidecars (init containers
// that keep running), or the most any init container needs while it runs
// beside the sidecars started before it, whichever is more.
func podGPUs(spec *corev1.PodSpec) int64 {
	var sum int64
	for _, c := range spec.Containers {
		sum += containerGPUs(c)
	}
	var sidecars, initMax int64
	for _, c := range spec.InitContainers {
		n := containerGPUs(c)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars += n
			initMax = max(initMax, sidecars)
		} else {
			initMax = max(initMax, sidecars+n)
		}
	}
	return max(sum+sidecars, initMax)
}

// containerGPUs is a container's GPU request. An extended resource's request
// equals its limit, and the API server fills in a missing request from the
// limit, so the limit is only a fallback for objects that were not defaulted.
func containerGPUs(c corev1.Container) int64 {
	if q, ok := c.Resources.Requests[GPUResource]; ok {
		return q.Value()
	}
	q := c.Resources.Limits[GPUResource]
	return q.Value()
}

// trimPod is the cluster-wide pod informer's transform. That informer sees
// every pod of the cluster, which on a big cluster is most of the API
// server's data, only to count GPUs, so it keeps just what FreeGPUs needs:
// the pod's key and uid, its node, its phase, and one container holding the
// pod's GPU request as podGPUs counts it (none if zero). Counting the
// trimmed pod again gives the same request, so trimming twice is harmless.
func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	t := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
		Spec:       corev1.PodSpec{NodeName: p.Spec.NodeName},
		Status:     corev1.PodStatus{Phase: p.Status.Phase},
	}
	if n := podGPUs(&p.Spec); n > 0 {
		t.Spec.Containers = []corev1.Container{{Name: gpuContainer, Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{GPUResource: *resource.NewQuantity(n, resource.DecimalSI)}}}}
	}
	return t, nil
}

// onGPUPod checks the capacity when a pod that asks for GPUs changes; the
// many updates of pods without GPUs cannot change it.
func (r *Runtime) onGPUPod(obj any, _ bool) {
	if p, ok := unwrap[*corev1.Pod](obj); ok && podGPUs(&p.Spec) > 0 {
		r.checkCapacity()
	}
}

// onNode checks the capacity on node events; most are heartbeats that
// change nothing it reports.
func (r *Runtime) onNode(any, bool) { r.checkCapacity() }

// checkCapacity notifies when the inventory or the free GPUs differ from
// what was last notified. Two informers call it concurrently; at worst one
// stores a view a moment old, which costs one spare notification later,
// never a missed one: each call reads the caches after its event landed.
func (r *Runtime) checkCapacity() {
	nodes := r.Inventory().Nodes
	free := r.freeGPUs(nodes)
	r.mu.Lock()
	changed := !slices.Equal(nodes, r.lastNodes) || !maps.Equal(free, r.lastFree)
	r.lastNodes, r.lastFree = nodes, free
	r.mu.Unlock()
	if changed {
		r.notify()
	}
}
