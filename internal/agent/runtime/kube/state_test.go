package kube

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
)

// testPod builds an instance pod as the kubelet would report it, changed by
// the options.
func testPod(opts ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gantry-i1-abc", CreationTimestamp: metav1.NewTime(time.Unix(1000, 0))},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: containerName,
			Ports: []corev1.ContainerPort{{ContainerPort: 8000}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func condition(t corev1.PodConditionType, s corev1.ConditionStatus, reason, msg string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: t, Status: s, Reason: reason, Message: msg})
	}
}

func running(ip string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.NodeName = "gpu-0"
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = ip
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: containerName,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	}
}

func waiting(reason, msg string, restarts int32, last *corev1.ContainerStateTerminated) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.NodeName = "gpu-0"
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: containerName, RestartCount: restarts,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
			LastTerminationState: corev1.ContainerState{Terminated: last}}}
	}
}

func lastTerminated(t *corev1.ContainerStateTerminated, restarts int32) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses[0].LastTerminationState.Terminated = t
		p.Status.ContainerStatuses[0].RestartCount = restarts
	}
}

func deleting(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: time.Unix(2000, 0)} }

func created(sec int64) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(time.Unix(sec, 0)) }
}

var ready = condition(corev1.PodReady, corev1.ConditionTrue, "", "")

func TestStateOf(t *testing.T) {
	deletingDeployment := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "gantry-i1",
		DeletionTimestamp: &metav1.Time{Time: time.Unix(3000, 0)}}}
	failingDeployment := &appsv1.Deployment{Status: appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{{
		Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue,
		Message: `pods "gantry-i1-abc" is forbidden: exceeded quota: gpu-quota`}}}}
	oom := &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}

	tests := []struct {
		name string
		obs  observation
		want runtime.Status
	}{
		{name: "no pod yet", obs: observation{},
			want: runtime.Status{State: runtime.StateStarting}},
		{name: "pod cannot be created", obs: observation{Deployment: failingDeployment},
			want: runtime.Status{State: runtime.StateErrored,
				Reason: `cannot create the pod: pods "gantry-i1-abc" is forbidden: exceeded quota: gpu-quota`}},
		{name: "unschedulable", obs: observation{Pods: []*corev1.Pod{testPod(condition(corev1.PodScheduled, corev1.ConditionFalse,
			corev1.PodReasonUnschedulable, "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."))}},
			want: runtime.Status{State: runtime.StateStarting,
				Reason: "unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}},
		{name: "scheduled, container creating", obs: observation{Pods: []*corev1.Pod{testPod(
			condition(corev1.PodScheduled, corev1.ConditionTrue, "", ""), waiting("ContainerCreating", "", 0, nil))}},
			want: runtime.Status{State: runtime.StateStarting}},
		{name: "image pull error", obs: observation{Pods: []*corev1.Pod{testPod(waiting("ErrImagePull",
			`failed to pull image "nvcr.io/x:1": not found`, 0, nil))}},
			want: runtime.Status{State: runtime.StateErrored, Reason: `image pull failed: failed to pull image "nvcr.io/x:1": not found`}},
		{name: "image pull backoff without message", obs: observation{Pods: []*corev1.Pod{testPod(waiting("ImagePullBackOff", "", 0, nil))}},
			want: runtime.Status{State: runtime.StateErrored, Reason: "image pull failed: ImagePullBackOff"}},
		{name: "invalid image name", obs: observation{Pods: []*corev1.Pod{testPod(waiting("InvalidImageName",
			`Failed to apply default image tag "NVCR.IO/X": invalid reference format`, 0, nil))}},
			want: runtime.Status{State: runtime.StateErrored,
				Reason: `image pull failed: Failed to apply default image tag "NVCR.IO/X": invalid reference format`}},
		{name: "crash loop with the last output line", obs: observation{Pods: []*corev1.Pod{testPod(waiting("CrashLoopBackOff",
			"back-off 40s restarting failed container", 4, &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error",
				Message: "Traceback (most recent call last):\nModuleNotFoundError: No module named 'torch'\n"}))}},
			want: runtime.Status{State: runtime.StateErrored, Restarts: 4,
				Reason: "restart loop: exited with code 1: ModuleNotFoundError: No module named 'torch'"}},
		{name: "crash loop out of memory", obs: observation{Pods: []*corev1.Pod{testPod(waiting("CrashLoopBackOff", "", 2, oom))}},
			want: runtime.Status{State: runtime.StateErrored, Restarts: 2, Reason: "restart loop: ran out of memory (OOMKilled)"}},
		{name: "crash loop killed by signal", obs: observation{Pods: []*corev1.Pod{testPod(waiting("CrashLoopBackOff", "", 3,
			&corev1.ContainerStateTerminated{ExitCode: 139, Signal: 11}))}},
			want: runtime.Status{State: runtime.StateErrored, Restarts: 3, Reason: "restart loop: was killed by signal 11"}},
		{name: "missing secret", obs: observation{Pods: []*corev1.Pod{testPod(waiting("CreateContainerConfigError",
			`secret "gantry-i1" not found`, 0, nil))}},
			want: runtime.Status{State: runtime.StateErrored, Reason: `cannot start the container: secret "gantry-i1" not found`}},
		{name: "evicted", obs: observation{Pods: []*corev1.Pod{testPod(func(p *corev1.Pod) {
			p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "Evicted", "The node was low on resource: memory."
		})}},
			want: runtime.Status{State: runtime.StateErrored, Reason: "the pod failed (Evicted): The node was low on resource: memory."}},
		{name: "failed with a terminated container", obs: observation{Pods: []*corev1.Pod{testPod(running("10.0.0.1"), func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2}}
		})}},
			want: runtime.Status{State: runtime.StateErrored, Reason: "the pod ended: it exited with code 2"}},
		{name: "running and ready", obs: observation{Pods: []*corev1.Pod{testPod(running("10.244.0.7"), ready)}},
			want: runtime.Status{State: runtime.StateRunning, Endpoint: "http://10.244.0.7:8000"}},
		{name: "running and ready on IPv6", obs: observation{Pods: []*corev1.Pod{testPod(running("fd00::7"), ready)}},
			want: runtime.Status{State: runtime.StateRunning, Endpoint: "http://[fd00::7]:8000"}},
		{name: "ready with restarts", obs: observation{Pods: []*corev1.Pod{testPod(running("10.244.0.7"), ready, lastTerminated(oom, 1))}},
			want: runtime.Status{State: runtime.StateRunning, Endpoint: "http://10.244.0.7:8000", Restarts: 1}},
		{name: "running, health check not passing yet", obs: observation{Pods: []*corev1.Pod{testPod(running("10.244.0.7"),
			condition(corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady", ""))}},
			want: runtime.Status{State: runtime.StateStarting}},
		{name: "restarted after running out of memory", obs: observation{Pods: []*corev1.Pod{testPod(running("10.244.0.7"), lastTerminated(oom, 1))}},
			want: runtime.Status{State: runtime.StateStarting, Restarts: 1, Reason: "restarted after it ran out of memory (OOMKilled)"}},
		{name: "ready without an IP yet", obs: observation{Pods: []*corev1.Pod{testPod(running(""), ready)}},
			want: runtime.Status{State: runtime.StateStarting}},
		{name: "replacement pod speaks for the instance", obs: observation{Pods: []*corev1.Pod{
			testPod(running("10.244.0.7"), ready, deleting, created(1000)),
			testPod(created(999), condition(corev1.PodScheduled, corev1.ConditionFalse, corev1.PodReasonUnschedulable, "0/1 nodes are available"))}},
			want: runtime.Status{State: runtime.StateStarting, Reason: "unschedulable: 0/1 nodes are available"}},
		{name: "newest pod wins", obs: observation{Pods: []*corev1.Pod{
			testPod(created(1000), waiting("ErrImagePull", "old", 0, nil)),
			testPod(created(1001), running("10.244.0.8"), ready)}},
			want: runtime.Status{State: runtime.StateRunning, Endpoint: "http://10.244.0.8:8000"}},
		{name: "only pod is being deleted", obs: observation{Pods: []*corev1.Pod{testPod(running("10.244.0.7"), ready, deleting)}},
			want: runtime.Status{State: runtime.StateStarting, Reason: "the pod is being deleted; a replacement will start"}},
		{name: "deployment deleted outside gantry", obs: observation{Deployment: deletingDeployment,
			Pods: []*corev1.Pod{testPod(running("10.244.0.7"), ready)}},
			want: runtime.Status{State: runtime.StateTerminated, Reason: deletedOutside}},
		{name: "deployment gone outside gantry", obs: observation{Gone: true},
			want: runtime.Status{State: runtime.StateTerminated, Reason: deletedOutside}},
		{name: "deployment deleted by stop", obs: observation{Deployment: deletingDeployment, Stopping: true,
			Pods: []*corev1.Pod{testPod(running("10.244.0.7"), ready)}},
			want: runtime.Status{State: runtime.StateRunning, Endpoint: "http://10.244.0.7:8000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.obs.InstanceID = "i1"
			tc.want.InstanceID = "i1"
			if got := stateOf(tc.obs); got != tc.want {
				t.Errorf("stateOf:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
