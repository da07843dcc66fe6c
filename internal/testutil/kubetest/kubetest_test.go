package kubetest_test

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

// TestDeploymentBecomesRunningPod checks the harness itself: a Deployment
// asking for GPUs turns into a pod that the scheduler binds to the GPU node
// and kwok reports Running with an IP.
func TestDeploymentBecomesRunningPod(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "gpu-0", Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, GPUMemoryMiB: 81559})
	ctx := testutil.Context(t)
	labels := map[string]string{"app": "smoke"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken: ptr.To(false),
					Containers: []corev1.Container{{Name: "c", Image: "example.com/smoke:1",
						Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
							kubetest.GPUResource: resource.MustParse("2")}}}},
				},
			},
		},
	}
	if _, err := env.Client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		pods, err := env.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=smoke"})
		if err != nil {
			return err
		}
		if len(pods.Items) != 1 {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		p := pods.Items[0]
		if p.Spec.NodeName != "gpu-0" || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("pod %s on %q, phase %s, ip %q", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP)
		}
		return nil
	})
}
