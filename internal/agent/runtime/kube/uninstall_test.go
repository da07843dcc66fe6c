package kube

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

	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

// testUninstallForce shows that a namespace stuck on a foreign finalizer
// needs --force, which then says what it removed, and that uninstalling
// again finds nothing to remove. It works in a namespace of its own, so
// TestRuntime runs it beside its other subtests on the same control plane.
// That uninstall removes an agent's instances is a conformance case
// (TestConformance).
func testUninstallForce(t *testing.T, env *kubetest.Env) {
	const ns = "uninstall-stuck"
	ctx := testutil.Context(t)
	rt, err := New(ctx, Config{Client: env.Client, Namespace: ns, ClusterID: "c1"})
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
	err = Uninstall(ctx, env.Config, UninstallOptions{Namespace: ns, Timeout: 3 * time.Second, Out: &out})
	if !errors.Is(err, ErrStuck) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("a stuck namespace: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := Uninstall(ctx, env.Config, UninstallOptions{Namespace: ns, Timeout: 3 * time.Second, Force: true, Out: &out}); err != nil {
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
	var again bytes.Buffer
	if err := Uninstall(ctx, env.Config, UninstallOptions{Namespace: ns, Out: &again}); err != nil || !strings.Contains(again.String(), "nothing to remove") {
		t.Fatalf("second uninstall: %v %s", err, again.String())
	}
}
