package e2e

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/kube"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

// BenchmarkKubernetesStartup measures the time from asking for N instances
// to all N RUNNING on a simulated Kubernetes cluster (real API server,
// scheduler and controllers; kwok as the kubelet), for N = 1, 10 and 100 at
// once, three ways in the same run on the same cluster:
//
//   - direct: the very same Deployments the agent makes, created straight
//     through the API server, until their pods are Ready: what Kubernetes
//     itself takes (the baseline);
//   - agent: the agent's Kubernetes runtime given the N instances, as the
//     agent gives them when its desired state arrives, until it reports all
//     N RUNNING;
//   - gantry: a deployment created through the API until it is ACTIVE: the
//     whole platform (control plane passes, NATS, agent, Kubernetes).
//
// The target is on (agent - direct) / N: under 100 ms per instance.
//
//	go test ./test/e2e -run '^$' -bench KubernetesStartup -benchtime 3x
func BenchmarkKubernetesStartup(b *testing.B) {
	env := kubetest.Start(b, kubetest.Options{})
	for i := range 13 { // 104 GPUs: room for 100 one-GPU instances
		env.AddGPUNode(b, kubetest.GPUNode{Name: fmt.Sprintf("h100-%02d", i), Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, GPUMemoryMiB: 81559})
	}
	f := startFleet(b)
	clusterID := startKubeAgent(b, f, env, "gantry-bench")
	ctx := testutil.Context(b)
	testutil.WaitFor(b, kubeWait, func() error {
		c, err := f.c.GetCluster(ctx, controlplane.DefaultAccount, clusterID)
		if err != nil || c.Status != model.ClusterReady {
			return fmt.Errorf("cluster not ready: %v", err)
		}
		return nil
	})
	fn, err := f.c.CreateFunction(ctx, model.CreateFunctionRequest{Name: "bench", InferenceURL: "/", InferencePort: 8000,
		ContainerImage: "registry.example.com/bench:1", Health: &model.Health{URI: "/health"}})
	if err != nil {
		b.Fatal(err)
	}
	// One instance through Gantry gives the Deployment the baseline copies.
	template := benchTemplate(b, f, env, fn)

	rt, err := kube.New(ctx, kube.Config{Client: env.Client, Namespace: "bench-runtime", ClusterID: "bench-runtime"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close() })

	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			var direct, agentOnly, through []time.Duration
			for b.Loop() {
				direct = append(direct, directStartup(b, env, template, n))
				agentOnly = append(agentOnly, runtimeStartup(b, rt, n))
				through = append(through, gantryStartup(b, f, env, fn, n, nil))
			}
			d, a, g := median(direct), median(agentOnly), median(through)
			perAgent := (a - d) / time.Duration(n)
			perGantry := (g - d) / time.Duration(n)
			b.ReportMetric(float64(d.Milliseconds()), "direct-ms")
			b.ReportMetric(float64(a.Milliseconds()), "agent-ms")
			b.ReportMetric(float64(g.Milliseconds()), "gantry-ms")
			b.ReportMetric(float64(perAgent.Microseconds())/1000, "agent-added-ms/instance")
			b.ReportMetric(float64(perGantry.Microseconds())/1000, "gantry-added-ms/instance")
			b.Logf("%d instances (medians of %d): direct %v, agent runtime %v, whole platform %v; per instance the agent adds %v, the platform %v",
				n, len(direct), d.Round(time.Millisecond), a.Round(time.Millisecond), g.Round(time.Millisecond),
				perAgent.Round(time.Millisecond), perGantry.Round(time.Millisecond))
		})
	}
}

// startKubeAgent registers a cluster and runs its agent in-process on the
// Kubernetes runtime, returning the cluster id.
func startKubeAgent(tb testing.TB, f *fleet, env *kubetest.Env, namespace string) string {
	tb.Helper()
	ctx := testutil.Context(tb)
	cl, boot, _, err := f.cp.Registry().Register(ctx, model.Cluster{Name: namespace, GroupName: "bench", NCAID: controlplane.DefaultAccount})
	if err != nil {
		tb.Fatal(err)
	}
	cred, err := f.cp.Registry().Exchange(ctx, boot)
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(f.cp.NATSURL(), bus.AgentOptions(cl.ID, cred.Credential)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	log := slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := agent.New(agent.Config{ClusterID: cl.ID, Conn: nc, Heartbeat: fleetHeartbeat, Logger: log,
		NewRuntime: func(notify func()) (runtime.Runtime, error) {
			return kube.New(ctx, kube.Config{Client: env.Client, Namespace: namespace, ClusterID: cl.ID, Notify: notify, Logger: log})
		}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	return cl.ID
}

// gantryStartup deploys fn with n instances, waits until the deployment is
// ACTIVE (every instance RUNNING), then undeploys and waits until the
// cluster is empty again. It returns the time to ACTIVE; active, if not
// nil, runs while the instances are up.
func gantryStartup(tb testing.TB, f *fleet, env *kubetest.Env, fn model.Function, n int, active func()) time.Duration {
	tb.Helper()
	ctx := testutil.Context(tb)
	began := time.Now()
	if _, err := f.c.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{{
		GPU: "H100", InstanceType: "ON-PREM.GPU.H100_1x", MinInstances: n, MaxInstances: n}}}); err != nil {
		tb.Fatal(err)
	}
	// Polled every 10 ms rather than with WaitFor's backoff, whose steps
	// would be measured too.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		d, err := f.c.GetDeployment(ctx, fn.ID, fn.VersionID)
		if err != nil {
			tb.Fatal(err)
		}
		if d.FunctionStatus == model.StatusActive {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("deployment of %d instances is %s after 5 minutes: %+v", n, d.FunctionStatus, d.HealthInfo)
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(began)
	if active != nil {
		active()
	}
	if err := f.c.DeleteDeployment(ctx, fn.ID, fn.VersionID); err != nil {
		tb.Fatal(err)
	}
	waitGone(tb, env, "", "gantry.dev/function="+fn.ID)
	return took
}

// runtimeStartup starts n instances on the agent's Kubernetes runtime one
// after another, as the agent's converge loop does, and waits until the
// runtime reports all of them RUNNING (the moment the agent reports them);
// then it stops them all.
func runtimeStartup(tb testing.TB, rt *kube.Runtime, n int) time.Duration {
	tb.Helper()
	ctx := testutil.Context(tb)
	began := time.Now()
	for i := range n {
		spec := runtime.Spec{InstanceID: fmt.Sprintf("bench-%d-%d", began.UnixNano(), i), FunctionID: "bench", FunctionVersionID: "bench",
			Image: "registry.example.com/bench:1", InferencePort: 8000, GPUModel: "H100", GPUCount: 1,
			Health: runtime.HealthCheck{Path: "/health", Timeout: 10 * time.Second}}
		if err := rt.Start(ctx, spec); err != nil {
			tb.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		running := 0
		for _, st := range rt.List() {
			if st.State == runtime.StateRunning {
				running++
			}
		}
		if running == n {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d runtime instances running after 5 minutes", running, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(began)
	var wg sync.WaitGroup
	for _, st := range rt.List() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rt.Stop(ctx, st.InstanceID); err != nil {
				tb.Error(err)
			}
		}()
	}
	wg.Wait()
	return took
}

// benchTemplate deploys one instance of fn through Gantry and returns the
// spec of the Deployment the agent made for it, to be created directly
// (same pod, same GPU request, same affinity and probes).
func benchTemplate(tb testing.TB, f *fleet, env *kubetest.Env, fn model.Function) appsv1.DeploymentSpec {
	tb.Helper()
	var spec appsv1.DeploymentSpec
	gantryStartup(tb, f, env, fn, 1, func() {
		deps := gantryDeployments(tb, env, "", "gantry.dev/function="+fn.ID)
		if len(deps) != 1 {
			tb.Fatalf("%d Deployments for one instance", len(deps))
		}
		spec = deps[0].Spec
	})
	return spec
}

// directStartup creates n copies of spec straight through the API server,
// waits until all their pods are Ready, then deletes them and waits until
// they are gone. It returns the time to Ready.
func directStartup(tb testing.TB, env *kubetest.Env, spec appsv1.DeploymentSpec, n int) time.Duration {
	tb.Helper()
	ctx := testutil.Context(tb)
	const ns = "bench-direct"
	if _, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			tb.Fatal(err)
		}
	}
	w, err := env.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "bench=direct"})
	if err != nil {
		tb.Fatal(err)
	}
	defer w.Stop()
	began := time.Now()
	for i := range n {
		name := fmt.Sprintf("direct-%d", i)
		labels := map[string]string{"bench": "direct", "bench-instance": name}
		s := *spec.DeepCopy()
		s.Selector = &metav1.LabelSelector{MatchLabels: labels}
		s.Template.Labels = labels
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: s}
		if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			tb.Fatal(err)
		}
	}
	ready := map[string]bool{}
	timeout := time.After(5 * time.Minute)
	for len(ready) < n {
		select {
		case e, ok := <-w.ResultChan():
			if !ok {
				tb.Fatal("pod watch ended")
			}
			if p, isPod := e.Object.(*corev1.Pod); isPod && e.Type != watch.Deleted && podReady(p) {
				ready[p.Name] = true
			}
		case <-timeout:
			tb.Fatalf("%d of %d direct pods ready after 5 minutes", len(ready), n)
		}
	}
	took := time.Since(began)
	fg := metav1.DeletePropagationForeground
	if err := env.Client.AppsV1().Deployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &fg},
		metav1.ListOptions{LabelSelector: "bench=direct"}); err != nil {
		tb.Fatal(err)
	}
	waitGone(tb, env, "", "bench=direct")
	return took
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
