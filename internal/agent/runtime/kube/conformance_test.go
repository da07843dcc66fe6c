package kube_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	corev1 "k8s.io/api/core/v1"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/kube"
	"github.com/gantry-dev/gantry/internal/agent/runtime/runtimetest"
	"github.com/gantry-dev/gantry/internal/agent/runtime/runtimetest/kubelet"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

// TestMain lets the test binary double as the conformance suite's program,
// which the simulated kubelet runs as the pods' containers.
func TestMain(m *testing.M) {
	runtimetest.MaybeRunProgram()
	os.Exit(m.Run())
}

// TestConformance runs the Kubernetes runtime through the runtime
// conformance suite on a real API server, scheduler and controller-manager,
// with a kubelet (package kubelet) that runs the pods of one GPU node as
// real processes. A case's state is a namespace of its own.
func TestConformance(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{NoKwok: true})
	kubelet.Start(t, env, kubelet.Node{Name: "conformance-h100", Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, GPUMemoryMiB: 81559}, "")
	port := freePort(t)
	var namespaces atomic.Int64
	runtimetest.Run(t, runtimetest.Harness{
		Name: "kube",
		NewState: func(*testing.T) string {
			return fmt.Sprintf("conformance-%d", namespaces.Add(1))
		},
		Open: func(t *testing.T, ns string, o runtimetest.Options) runtime.Runtime {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rt, err := kube.New(ctx, kube.Config{Client: env.Client, Namespace: ns, ClusterID: "conformance",
				Notify: o.Notify, Logger: o.Logger})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rt.Close() })
			return rt
		},
		Prepare: func(spec *runtime.Spec, gpus int) {
			spec.Image, spec.InferencePort = "registry.example.com/runtimetest:1", port
			if gpus > 0 {
				spec.GPUModel, spec.GPUCount = "H100", gpus
			}
		},
		WantGPUEnv: func(spec runtime.Spec, env map[string]string) error {
			// What the device plugin hands over for the pod's
			// nvidia.com/gpu limit: one device id per GPU.
			ids := strings.Split(env["NVIDIA_VISIBLE_DEVICES"], ",")
			slices.Sort(ids)
			if len(slices.Compact(ids)) != spec.GPUCount || !strings.HasPrefix(ids[0], "GPU-") {
				return fmt.Errorf("NVIDIA_VISIBLE_DEVICES = %q, want %d GPU ids", env["NVIDIA_VISIBLE_DEVICES"], spec.GPUCount)
			}
			return nil
		},
		Logs: func(t *testing.T, ns, id string) (string, error) {
			ctx := testutil.Context(t)
			pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.InstanceLabel + "=" + id})
			if err != nil || len(pods.Items) == 0 {
				return "", fmt.Errorf("pods of %s: %d, %v", id, len(pods.Items), err)
			}
			// As kubectl logs reads them: through the API server, from
			// the node's kubelet.
			b, err := env.Client.CoreV1().Pods(ns).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{Container: "function"}).DoRaw(ctx)
			return string(b), err
		},
		Held: func(t *testing.T, ns, id string) []string {
			return objects(t, env, ns, kube.InstanceLabel+"="+id)
		},
		Uninstall: func(t *testing.T, ns string) (string, []string) {
			var out bytes.Buffer
			err := kube.Uninstall(testutil.Context(t), env.Config, kube.UninstallOptions{Namespace: ns, Timeout: time.Minute, Out: &out})
			if err != nil {
				t.Errorf("Uninstall: %v", err)
			}
			left := objects(t, env, ns, kube.ManagedByLabel+"="+kube.ManagedByValue)
			if _, err := env.Client.CoreV1().Namespaces().Get(testutil.Context(t), ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				left = append(left, fmt.Sprintf("namespace/%s (%v)", ns, err))
			}
			return out.String(), left
		},
		UnsupportedImage: "process:///usr/bin/server",
		Caps: runtimetest.Capabilities{
			Adopts: true,
			// The kubelet restarts a container's first failure at once and
			// backs off from the second, which is when the pod shows
			// CrashLoopBackOff and the runtime says ERRORED.
			FailureThreshold: 2,
			Backoff:          kubelet.Backoff,
		},
	})
}

// objects lists the Deployments, ReplicaSets, pods and Secrets in ns that
// match selector.
func objects(t *testing.T, env *kubetest.Env, ns, selector string) []string {
	t.Helper()
	ctx := testutil.Context(t)
	sel := metav1.ListOptions{LabelSelector: selector}
	ds, err1 := env.Client.AppsV1().Deployments(ns).List(ctx, sel)
	rs, err2 := env.Client.AppsV1().ReplicaSets(ns).List(ctx, sel)
	pods, err3 := env.Client.CoreV1().Pods(ns).List(ctx, sel)
	secrets, err4 := env.Client.CoreV1().Secrets(ns).List(ctx, sel)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range ds.Items {
		out = append(out, "deployment/"+d.Name)
	}
	for _, r := range rs.Items {
		out = append(out, "replicaset/"+r.Name)
	}
	for _, p := range pods.Items {
		out = append(out, "pod/"+p.Name)
	}
	for _, s := range secrets.Items {
		out = append(out, "secret/"+s.Name)
	}
	return out
}

// freePort returns a port free on every address, which the program then
// binds on each pod's own loopback IP.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
