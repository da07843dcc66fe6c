package kube_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/kube"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

// TestUninstall removes the workloads of an agent that is gone, waiting for
// its finalizers, and shows that a namespace stuck on a foreign finalizer
// needs --force, which then says what it removed.
func TestUninstall(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "h100", Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, GPUMemoryMiB: 81559})
	ctx := testutil.Context(t)

	t.Run("orderly", func(t *testing.T) {
		const ns = "uninstall-orderly"
		rt, err := kube.New(ctx, kube.Config{Client: env.Client, Namespace: ns, ClusterID: "c1"})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"i-1", "i-2"} {
			spec := runtime.Spec{InstanceID: id, FunctionID: "f1", FunctionVersionID: "v1", Image: "registry.example.com/f:1",
				InferencePort: 8000, GPUModel: "H100", GPUCount: 1, Secrets: map[string]string{"TOKEN": "uninstall-marker"}}
			if err := rt.Start(ctx, spec); err != nil {
				t.Fatal(err)
			}
		}
		testutil.WaitFor(t, time.Minute, func() error {
			running := 0
			for _, st := range rt.List() {
				if st.State == runtime.StateRunning {
					running++
				}
			}
			if running != 2 {
				return fmt.Errorf("%d of 2 running: %+v", running, rt.List())
			}
			return nil
		})
		// The agent goes away first, as `helm uninstall` does; its
		// instances stay behind for uninstall to remove.
		if err := rt.Close(); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := kube.Uninstall(ctx, env.Config, kube.UninstallOptions{Namespace: ns, Timeout: time.Minute, Out: &out}); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		if _, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("namespace still there: %v\n%s", err, out.String())
		}
		for _, want := range []string{"deleting 2 function workload(s)", "all function workloads are gone", "namespace " + ns + " is gone"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
		if strings.Contains(out.String(), "uninstall-marker") {
			t.Error("uninstall printed a secret value")
		}
		var again bytes.Buffer
		if err := kube.Uninstall(ctx, env.Config, kube.UninstallOptions{Namespace: ns, Out: &again}); err != nil || !strings.Contains(again.String(), "nothing to remove") {
			t.Fatalf("second uninstall: %v %s", err, again.String())
		}
	})

	t.Run("force", func(t *testing.T) {
		const ns = "uninstall-stuck"
		rt, err := kube.New(ctx, kube.Config{Client: env.Client, Namespace: ns, ClusterID: "c1"})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Close(); err != nil {
			t.Fatal(err)
		}
		// Something of another controller that is not coming back.
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "stuck", Finalizers: []string{"example.com/never"}}}
		if _, err := env.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err = kube.Uninstall(ctx, env.Config, kube.UninstallOptions{Namespace: ns, Timeout: 3 * time.Second, Out: &out})
		if !errors.Is(err, kube.ErrStuck) || !strings.Contains(err.Error(), "--force") {
			t.Fatalf("a stuck namespace: %v\n%s", err, out.String())
		}
		out.Reset()
		if err := kube.Uninstall(ctx, env.Config, kube.UninstallOptions{Namespace: ns, Timeout: 3 * time.Second, Force: true, Out: &out}); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "removed finalizers example.com/never from configmaps/stuck") {
			t.Errorf("force did not say what it removed:\n%s", out.String())
		}
		testutil.WaitFor(t, time.Minute, func() error {
			if _, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("namespace %s still there: %v", ns, err)
			}
			return nil
		})
	})
}
