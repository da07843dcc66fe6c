package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

const testCluster = "cluster-1"

// newRuntime starts a Runtime on env for cluster-1 (unless cfg names
// another) and closes it when the test ends.
func newRuntime(t *testing.T, env *kubetest.Env, cfg Config) *Runtime {
	t.Helper()
	cfg.Client = env.Client
	if cfg.ClusterID == "" {
		cfg.ClusterID = testCluster
	}
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testSpec(id, gpuModel string, gpus int) runtime.Spec {
	return runtime.Spec{InstanceID: id, FunctionID: "fn-1", FunctionVersionID: "ver-1",
		Image: "nvcr.io/example/echo:1", InferencePort: 8000, GPUModel: gpuModel, GPUCount: gpus}
}

// waitStatus waits until the runtime reports the instance and check accepts
// its status.
func waitStatus(t *testing.T, rt *Runtime, id string, check func(runtime.Status) error) runtime.Status {
	t.Helper()
	var got runtime.Status
	testutil.WaitFor(t, 60*time.Second, func() error {
		for _, st := range rt.List() {
			if st.InstanceID == id {
				got = st
				return check(st)
			}
		}
		return fmt.Errorf("instance %s not listed", id)
	})
	return got
}

func isRunning(st runtime.Status) error {
	if st.State != runtime.StateRunning || st.Endpoint == "" {
		return fmt.Errorf("status %+v, want RUNNING with an endpoint", st)
	}
	return nil
}

// objectsOf lists what Kubernetes still holds of an instance, as names.
func objectsOf(ctx context.Context, t *testing.T, env *kubetest.Env, ns, id string) []string {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: InstanceLabel + "=" + id}
	var out []string
	ds, err1 := env.Client.AppsV1().Deployments(ns).List(ctx, sel)
	rs, err2 := env.Client.AppsV1().ReplicaSets(ns).List(ctx, sel)
	pods, err3 := env.Client.CoreV1().Pods(ns).List(ctx, sel)
	secrets, err4 := env.Client.CoreV1().Secrets(ns).List(ctx, sel)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
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

// TestRuntime checks what is particular to Kubernetes on a real control
// plane: kube-apiserver, scheduler, controller-manager (Deployments, garbage
// collection) and kwok as the kubelet of simulated GPU nodes. The shapes of
// the objects, placement on GPU nodes, unschedulable pods, schedulers and
// pull secrets, a Stop held by another finalizer, a deletion outside Gantry,
// and uninstall --force.
// An instance's life (health, restarts, stop, secrets, adoption, uninstall)
// is the conformance suite's (TestConformance).
func TestRuntime(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "h100-a", Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, GPUMemoryMiB: 81559})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "a100-a", Product: "NVIDIA-A100-SXM4-80GB", GPUs: 8, GPUMemoryMiB: 81920})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "l40s-dedicated", Product: "NVIDIA-L40S", GPUs: 2, GPUMemoryMiB: 46068,
		Taints: []corev1.Taint{{Key: "dedicated", Value: "other", Effect: corev1.TaintEffectNoSchedule}}})
	ctx := testutil.Context(t)
	// Uninstall --force mostly waits for the namespace controller, in a
	// namespace of its own: it runs beside the subtests below.
	var beside sync.WaitGroup
	defer beside.Wait()
	beside.Go(func() { t.Run("uninstall --force", func(t *testing.T) { testUninstallForce(t, env) }) })
	rt := newRuntime(t, env, Config{})
	ns := DefaultNamespace
	deployments := env.Client.AppsV1().Deployments(ns)

	t.Run("namespace is created and labelled", func(t *testing.T) {
		got, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Labels[ManagedByLabel] != ManagedByValue {
			t.Errorf("labels = %v", got.Labels)
		}
	})

	main := testSpec("inst-h100", "H100", 2)
	main.Args = `--model "llama 3" --port 8000`
	main.Env = []model.EnvVar{{Key: "LOG_LEVEL", Value: "debug"}, {Key: "HF_TOKEN", Value: "overridden by the secret"}}
	main.Secrets = map[string]string{"HF_TOKEN": "hf_s3cret", "NGC_API_KEY": "nvapi-1"}
	main.Health = runtime.HealthCheck{Protocol: "HTTP", Path: "/v1/health/ready", Timeout: 3 * time.Second}

	t.Run("start runs on a matching node", func(t *testing.T) {
		if err := rt.Start(ctx, main); err != nil {
			t.Fatal(err)
		}
		d, err := deployments.Get(ctx, deploymentName(main.InstanceID), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkDeployment(t, d, main)
		checkSecret(t, env, d, main)

		st := waitStatus(t, rt, main.InstanceID, isRunning)
		pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: InstanceLabel + "=" + main.InstanceID})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("pods: %v, %v", pods, err)
		}
		pod := pods.Items[0]
		if pod.Spec.NodeName != "h100-a" {
			t.Errorf("pod runs on %q, want h100-a", pod.Spec.NodeName)
		}
		if want := "http://" + pod.Status.PodIP + ":8000"; st.Endpoint != want {
			t.Errorf("endpoint = %q, want %q", st.Endpoint, want)
		}
	})

	t.Run("unschedulable", func(t *testing.T) {
		spec := testSpec("inst-l40s", "L40S", 1)
		if err := rt.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, rt, spec.InstanceID, func(st runtime.Status) error {
			if st.State != runtime.StateStarting || !strings.HasPrefix(st.Reason, "unschedulable: ") ||
				!strings.Contains(st.Reason, "untolerated taint") {
				return fmt.Errorf("status %+v, want STARTING, unschedulable because of the taint", st)
			}
			return nil
		})
		stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := rt.Stop(stopCtx, spec.InstanceID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no node with the model", func(t *testing.T) {
		err := rt.Start(ctx, testSpec("inst-b200", "B200", 1))
		if err == nil || !strings.Contains(err.Error(), "no node has B200 GPUs") {
			t.Fatalf("Start = %v", err)
		}
		if slices.ContainsFunc(rt.List(), func(st runtime.Status) bool { return st.InstanceID == "inst-b200" }) {
			t.Error("a failed Start left the instance listed")
		}
	})

	t.Run("scheduler name and pull secrets", func(t *testing.T) {
		// No kai-scheduler runs here: the pod stays pending, which is fine
		// for checking what the runtime asked for.
		kai := newRuntime(t, env, Config{Namespace: "gantry-kai", SchedulerName: "kai-scheduler",
			ImagePullSecrets: []string{"regcred"}})
		spec := testSpec("inst-kai", "A100", 1)
		if err := kai.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		d, err := env.Client.AppsV1().Deployments("gantry-kai").Get(ctx, deploymentName(spec.InstanceID), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod := d.Spec.Template.Spec
		if pod.SchedulerName != "kai-scheduler" || len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "regcred" {
			t.Errorf("schedulerName %q, imagePullSecrets %v", pod.SchedulerName, pod.ImagePullSecrets)
		}
		waitStatus(t, kai, spec.InstanceID, func(st runtime.Status) error {
			if st.State != runtime.StateStarting {
				return fmt.Errorf("status %+v, want STARTING", st)
			}
			return nil
		})
		if err := kai.Stop(ctx, spec.InstanceID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("registry credential becomes the pod's image pull Secret", func(t *testing.T) {
		spec := testSpec("inst-pull", "A100", 1)
		spec.Image = "registry.example.com:5000/team/llm:2"
		spec.Secrets = map[string]string{"TOKEN": "t"}
		spec.DockerConfigJSON = []byte(`{"auths":{"registry.example.com:5000":{"auth":"cm9ib3Q6aHVudGVyMg=="}}}`)
		if err := rt.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		d, err := deployments.Get(ctx, deploymentName(spec.InstanceID), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := []corev1.LocalObjectReference{{Name: pullSecretName(d.Name)}}
		if got := d.Spec.Template.Spec.ImagePullSecrets; !slices.Equal(got, want) {
			t.Errorf("imagePullSecrets = %v, want %v", got, want)
		}
		s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, pullSecretName(d.Name), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Type != corev1.SecretTypeDockerConfigJson || len(s.Data) != 1 ||
			string(s.Data[corev1.DockerConfigJsonKey]) != string(spec.DockerConfigJSON) {
			t.Errorf("pull Secret type %s, data %v", s.Type, slices.Sorted(maps.Keys(s.Data)))
		}
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != d.UID || !*s.OwnerReferences[0].BlockOwnerDeletion ||
			s.Labels[InstanceLabel] != spec.InstanceID || s.Labels[ClusterLabel] != testCluster {
			t.Errorf("pull Secret owner %+v, labels %v", s.OwnerReferences, s.Labels)
		}
		waitStatus(t, rt, spec.InstanceID, isRunning)
		if got := objectsOf(ctx, t, env, ns, spec.InstanceID); len(got) != 5 {
			t.Fatalf("objects = %v, want a Deployment, ReplicaSet, pod, and the secrets and pull Secrets", got)
		}
		// Stop waits for the Secrets too: the garbage collector deletes
		// them with their owner.
		if err := rt.Stop(ctx, spec.InstanceID); err != nil {
			t.Fatal(err)
		}
		if got := objectsOf(ctx, t, env, ns, spec.InstanceID); len(got) != 0 {
			t.Errorf("left after Stop: %v", got)
		}
	})

	t.Run("another cluster's runtime adopts nothing", func(t *testing.T) {
		other := newRuntime(t, env, Config{ClusterID: "cluster-2"})
		if got := other.List(); len(got) != 0 {
			t.Errorf("another cluster's runtime adopted %+v", got)
		}
	})

	t.Run("stop reports what is stuck, then finishes", func(t *testing.T) {
		// Another controller's finalizer holds the Deployment after ours
		// is gone. The first Stop gets a context that ends once only that
		// finalizer is left, so it is waiting for it when it gives up.
		name := deploymentName(main.InstanceID)
		hold := `{"metadata":{"finalizers":["` + Finalizer + `","test.gantry.dev/hold"]}}`
		held, err := deployments.Patch(ctx, name, types.MergePatchType, []byte(hold), metav1.PatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := deployments.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: held.ResourceVersion})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		short, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		go func() {
			for ev := range w.ResultChan() {
				if d, ok := ev.Object.(*appsv1.Deployment); ok && slices.Equal(d.Finalizers, []string{"test.gantry.dev/hold"}) {
					cancel()
					return
				}
			}
		}()
		err = rt.Stop(short, main.InstanceID)
		if err == nil || !strings.Contains(err.Error(), "test.gantry.dev/hold") {
			t.Fatalf("Stop = %v, want an error naming the finalizer that holds the Deployment", err)
		}
		t.Logf("Stop: %v", err)
		release := `{"metadata":{"finalizers":null}}`
		if _, err := deployments.Patch(ctx, deploymentName(main.InstanceID), types.MergePatchType, []byte(release), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := rt.Stop(ctx, main.InstanceID); err != nil {
			t.Fatal(err)
		}
		if got := objectsOf(ctx, t, env, ns, main.InstanceID); len(got) != 0 {
			t.Errorf("left after Stop: %v", got)
		}
		if got := rt.List(); len(got) != 0 {
			t.Errorf("List after Stop = %+v", got)
		}
	})

	t.Run("deleted outside gantry", func(t *testing.T) {
		spec := testSpec("inst-kubectl", "A100", 1)
		if err := rt.Start(ctx, spec); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, rt, spec.InstanceID, isRunning)
		// kubectl delete deploys background propagation, under which pods
		// would outlive the Deployment if its finalizer were kept.
		err := deployments.Delete(ctx, deploymentName(spec.InstanceID),
			metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, rt, spec.InstanceID, func(st runtime.Status) error {
			if st.State != runtime.StateTerminated || st.Reason != deletedOutside {
				return fmt.Errorf("status %+v, want TERMINATED, deleted outside Gantry", st)
			}
			return nil
		})
		testutil.WaitFor(t, 60*time.Second, func() error {
			if got := objectsOf(ctx, t, env, ns, spec.InstanceID); len(got) != 0 {
				return fmt.Errorf("still there: %v", got)
			}
			return nil
		})
		if err := rt.Stop(ctx, spec.InstanceID); err != nil {
			t.Fatal(err)
		}
		if got := rt.List(); len(got) != 0 {
			t.Errorf("List after Stop = %+v", got)
		}
	})
}

// checkDeployment compares the fields of the instance's Deployment that the
// runtime decides.
func checkDeployment(t *testing.T, d *appsv1.Deployment, spec runtime.Spec) {
	t.Helper()
	wantLabels := map[string]string{ManagedByLabel: ManagedByValue, InstanceLabel: spec.InstanceID,
		FunctionLabel: spec.FunctionID, FunctionVersionLabel: spec.FunctionVersionID, ClusterLabel: testCluster}
	for k, v := range wantLabels {
		if d.Labels[k] != v || d.Spec.Template.Labels[k] != v {
			t.Errorf("label %s = %q on the Deployment, %q on its pods; want %q", k, d.Labels[k], d.Spec.Template.Labels[k], v)
		}
	}
	if !slices.Contains(d.Finalizers, Finalizer) {
		t.Errorf("finalizers = %v", d.Finalizers)
	}
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("replicas %d, strategy %s", *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	pod := d.Spec.Template.Spec
	if pod.SchedulerName != corev1.DefaultSchedulerName || *pod.AutomountServiceAccountToken ||
		*pod.TerminationGracePeriodSeconds != 30 {
		t.Errorf("schedulerName %q, automount %v, grace %d", pod.SchedulerName, *pod.AutomountServiceAccountToken,
			*pod.TerminationGracePeriodSeconds)
	}
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Key != string(GPUResource) ||
		pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("tolerations = %+v", pod.Tolerations)
	}
	terms := pod.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Key != ProductLabel ||
		!slices.Equal(terms[0].MatchExpressions[0].Values, []string{"NVIDIA-H100-80GB-HBM3"}) ||
		terms[0].MatchExpressions[2].Key != GPUCountLabel || terms[0].MatchExpressions[2].Values[0] != "1" {
		t.Errorf("node affinity = %+v", terms)
	}
	c := pod.Containers[0]
	if c.Name != containerName || c.Image != spec.Image ||
		!slices.Equal(c.Args, []string{"--model", "llama 3", "--port", "8000"}) ||
		len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8000 {
		t.Errorf("container %s image %s args %q ports %+v", c.Name, c.Image, c.Args, c.Ports)
	}
	gpus := c.Resources.Limits[GPUResource]
	req := c.Resources.Requests
	reqGPUs := req[GPUResource]
	// 90% of a quarter of the H100 node's 64 CPUs and 512Gi.
	if gpus.Value() != 2 || reqGPUs.Value() != 2 || req.Cpu().String() != "14400m" || req.Memory().String() != "117964Mi" {
		t.Errorf("resources = %+v", c.Resources)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if env["LOG_LEVEL"].Value != "debug" || env["PORT"].Value != "8000" || env["GANTRY_INSTANCE_ID"].Value != spec.InstanceID {
		t.Errorf("env = %+v", c.Env)
	}
	for _, k := range []string{"HF_TOKEN", "NGC_API_KEY"} {
		if ref := env[k].ValueFrom; env[k].Value != "" || ref == nil || ref.SecretKeyRef.Name != d.Name || ref.SecretKeyRef.Key != k {
			t.Errorf("env %s = %+v, want a reference to the Secret", k, env[k])
		}
	}
	// The asset and large-output emptyDirs, then the secrets.
	if len(c.VolumeMounts) != 3 || c.VolumeMounts[0].MountPath != AssetDir || c.VolumeMounts[1].MountPath != LargeOutputDir ||
		c.VolumeMounts[2].MountPath != SecretsDir || !c.VolumeMounts[2].ReadOnly ||
		len(pod.Volumes) != 3 || pod.Volumes[0].EmptyDir == nil || pod.Volumes[1].EmptyDir == nil ||
		pod.Volumes[2].Secret.SecretName != d.Name || pod.Volumes[2].Secret.Items[0].Key != SecretsFile {
		t.Errorf("mounts %+v, volumes %+v", c.VolumeMounts, pod.Volumes)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/v1/health/ready" || p.HTTPGet.Port.IntValue() != 8000 || p.TimeoutSeconds != 3 {
			t.Errorf("%s probe = %+v", name, p)
		}
	}
	if c.LivenessProbe.FailureThreshold*c.LivenessProbe.PeriodSeconds < 30 {
		t.Errorf("liveness probe gives up after %ds", c.LivenessProbe.FailureThreshold*c.LivenessProbe.PeriodSeconds)
	}
}

// checkSecret checks that the instance's secrets are in a Secret the
// Deployment owns, one key each and all of them as secrets.json.
func checkSecret(t *testing.T, env *kubetest.Env, d *appsv1.Deployment, spec runtime.Spec) {
	t.Helper()
	s, err := env.Client.CoreV1().Secrets(d.Namespace).Get(context.Background(), d.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != d.UID || s.Labels[InstanceLabel] != spec.InstanceID {
		t.Errorf("owner %+v, labels %v", s.OwnerReferences, s.Labels)
	}
	var all map[string]string
	if err := json.Unmarshal(s.Data[SecretsFile], &all); err != nil || all["HF_TOKEN"] != "hf_s3cret" || len(all) != 2 {
		t.Errorf("secrets.json = %s (%v)", s.Data[SecretsFile], err)
	}
	if string(s.Data["NGC_API_KEY"]) != "nvapi-1" {
		t.Errorf("data = %v", s.Data)
	}
}
