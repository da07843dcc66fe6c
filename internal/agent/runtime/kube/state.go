package kube

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
)

// observation is everything known about one instance at one moment: what the
// informers hold and what Gantry itself did to it. stateOf turns it into a
// status; keeping that a pure function lets the tests cover every pod
// condition without a cluster that can produce it.
type observation struct {
	InstanceID string
	// Deployment is nil while the cache has none: not created yet, or gone.
	Deployment *appsv1.Deployment
	Pods       []*corev1.Pod
	// Stopping is set once Stop was called, so a deletion in progress is
	// Gantry's own and not news for the user.
	Stopping bool
	// Gone is set when the Deployment disappeared while nobody stopped it.
	Gone bool
	// Helm marks a Helm release. Service is its inference Service (nil
	// while the cache has none); only the pods it selects speak for the
	// instance. Failed is why the release could not be installed;
	// UpgradeFailed why the last upgrade was rolled back.
	Helm          bool
	Service       *corev1.Service
	Failed        string
	UpgradeFailed string
}

// Waiting reasons of a container that the kubelet will not get past on its
// own: the user has to fix the image, the command or the configuration.
var (
	imagePullReasons = map[string]bool{
		"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true,
		"ErrImageNeverPull": true, "RegistryUnavailable": true,
	}
	createReasons = map[string]bool{
		"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
	}
)

// deletedOutside is the reason of an instance whose Deployment someone
// deleted with kubectl or another tool. Gantry does not recreate it: the
// control plane sees the instance end and places a new one.
const deletedOutside = "deleted outside Gantry: its Deployment was deleted in Kubernetes"

// stateOf maps what Kubernetes shows about an instance onto a runtime status,
// with a reason a user can act on whenever it is not simply starting or
// running.
func stateOf(o observation) (st runtime.Status) {
	st = runtime.Status{InstanceID: o.InstanceID, State: runtime.StateStarting}
	if o.Helm {
		if o.Failed != "" {
			st.State, st.Reason = runtime.StateErrored, o.Failed
			return st
		}
		if o.Service == nil {
			if !o.Stopping && o.Gone {
				st.State, st.Reason = runtime.StateTerminated, deletedOutside
			}
			return st
		}
		o.Pods = selectedBy(o.Service, o.Pods)
		defer func() {
			if o.UpgradeFailed != "" && st.Reason == "" {
				st.Reason = o.UpgradeFailed
			}
		}()
	}
	d := o.Deployment
	if !o.Stopping && (o.Gone || (d != nil && d.DeletionTimestamp != nil)) {
		st.State, st.Reason = runtime.StateTerminated, deletedOutside
		return st
	}
	pod := newestPod(o.Pods)
	if pod == nil {
		if c := deploymentCondition(d, appsv1.DeploymentReplicaFailure); c != nil && c.Status == corev1.ConditionTrue {
			st.State, st.Reason = runtime.StateErrored, "cannot create the pod: "+c.Message
		}
		return st
	}
	cs := functionStatus(pod)
	if cs != nil {
		st.Restarts = int(cs.RestartCount)
	}
	switch pod.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		st.State, st.Reason = runtime.StateErrored, podEnded(pod)
		return st
	}
	if c := podCondition(pod, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse &&
		c.Reason == corev1.PodReasonUnschedulable {
		st.Reason = "unschedulable: " + c.Message
		return st
	}
	if cs != nil && cs.State.Waiting != nil {
		w := cs.State.Waiting
		switch {
		case imagePullReasons[w.Reason]:
			st.State, st.Reason = runtime.StateErrored, "image pull failed: "+orReason(w.Message, w.Reason)
			return st
		case w.Reason == "CrashLoopBackOff":
			st.State, st.Reason = runtime.StateErrored, "restart loop: "+describeTermination(cs.LastTerminationState.Terminated)
			return st
		case createReasons[w.Reason]:
			st.State, st.Reason = runtime.StateErrored, "cannot start the container: "+orReason(w.Message, w.Reason)
			return st
		}
	}
	if pod.DeletionTimestamp != nil {
		st.Reason = "the pod is being deleted; a replacement will start"
		return st
	}
	if c := podCondition(pod, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue && pod.Status.PodIP != "" {
		port := inferencePort(pod)
		if o.Helm {
			port = servicePort(o.Service, pod)
		}
		if port > 0 {
			st.State = runtime.StateRunning
			st.Endpoint = "http://" + net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(port))
			return st
		}
	}
	if cs != nil && cs.LastTerminationState.Terminated != nil {
		st.Reason = "restarted after it " + describeTermination(cs.LastTerminationState.Terminated)
	}
	return st
}

// selectedBy returns the pods a Service sends traffic to.
func selectedBy(svc *corev1.Service, pods []*corev1.Pod) []*corev1.Pod {
	if len(svc.Spec.Selector) == 0 {
		return pods
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var out []*corev1.Pod
	for _, p := range pods {
		if sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

// servicePort is the pod port behind the Service's inferencePort, as the
// endpoints controller resolves it: the agent calls the pod directly, as
// it does container instances, so no kube-proxy is in the way.
func servicePort(svc *corev1.Service, pod *corev1.Pod) int {
	want, _ := strconv.Atoi(svc.Annotations[inferencePortAnnotation])
	for _, sp := range svc.Spec.Ports {
		if int(sp.Port) != want {
			continue
		}
		switch {
		case sp.TargetPort.Type == intstr.String:
			for _, c := range pod.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == sp.TargetPort.StrVal {
						return int(cp.ContainerPort)
					}
				}
			}
			return 0
		case sp.TargetPort.IntVal > 0:
			return int(sp.TargetPort.IntVal)
		default:
			return int(sp.Port)
		}
	}
	return 0
}

// newestPod picks the pod that speaks for the instance: the newest one not
// being deleted, since a replacement matters more than the pod it replaces.
func newestPod(pods []*corev1.Pod) *corev1.Pod {
	var best *corev1.Pod
	for _, p := range pods {
		if best == nil || newer(p, best) {
			best = p
		}
	}
	return best
}

func newer(a, b *corev1.Pod) bool {
	if (a.DeletionTimestamp == nil) != (b.DeletionTimestamp == nil) {
		return a.DeletionTimestamp == nil
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Name > b.Name
}

// functionStatus returns the status of the function's container, or of the
// first container if a mutating webhook renamed or reordered them.
func functionStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == containerName {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	if len(pod.Status.ContainerStatuses) > 0 {
		return &pod.Status.ContainerStatuses[0]
	}
	return nil
}

// inferencePort reads the serving port from the pod itself, so that adopted
// instances, whose spec this agent never saw, get an endpoint too.
func inferencePort(pod *corev1.Pod) int {
	for _, c := range pod.Spec.Containers {
		if c.Name == containerName && len(c.Ports) > 0 {
			return int(c.Ports[0].ContainerPort)
		}
	}
	return 0
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	if d == nil {
		return nil
	}
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// podEnded explains a pod that will not run again, such as one evicted for
// lack of memory on its node.
func podEnded(pod *corev1.Pod) string {
	if cs := functionStatus(pod); cs != nil && cs.State.Terminated != nil {
		return "the pod ended: it " + describeTermination(cs.State.Terminated)
	}
	msg := "the pod failed"
	if pod.Status.Reason != "" {
		msg += " (" + pod.Status.Reason + ")"
	}
	if pod.Status.Message != "" {
		msg += ": " + pod.Status.Message
	}
	return msg
}

// describeTermination words how the container last ended, e.g. "exited with
// code 1: ModuleNotFoundError: No module named 'torch'". The message is the
// last line of the container's termination log, which holds the tail of its
// output when it fails (TerminationMessageFallbackToLogsOnError).
func describeTermination(t *corev1.ContainerStateTerminated) string {
	if t == nil {
		return "the container keeps exiting"
	}
	var b strings.Builder
	switch {
	case t.Reason == "OOMKilled":
		b.WriteString("ran out of memory (OOMKilled)")
	case t.Signal != 0:
		fmt.Fprintf(&b, "was killed by signal %d", t.Signal)
	default:
		fmt.Fprintf(&b, "exited with code %d", t.ExitCode)
		if t.Reason != "" && t.Reason != "Error" && t.Reason != "Completed" {
			fmt.Fprintf(&b, " (%s)", t.Reason)
		}
	}
	if line := lastLine(t.Message); line != "" {
		b.WriteString(": ")
		b.WriteString(line)
	}
	return b.String()
}

// lastLine returns the last non-empty line of s, cut to a length that fits
// in a status reason.
func lastLine(s string) string {
	const maxLen = 200
	lines := strings.Split(strings.TrimSpace(s), "\n")
	line := strings.TrimSpace(lines[len(lines)-1])
	if len(line) > maxLen {
		line = strings.ToValidUTF8(line[:maxLen], "") + "..."
	}
	return line
}

func orReason(message, reason string) string {
	if message != "" {
		return message
	}
	return reason
}
