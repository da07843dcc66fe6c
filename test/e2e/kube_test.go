package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/example/echo"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

// kubeWait bounds each wait on the simulated cluster: the API server, the
// scheduler and the controllers share two cores with the race detector.
const kubeWait = 90 * time.Second

// TestKubernetesRuntime runs the real `gantry agent --runtime kubernetes`
// against a real API server with a scheduler, controllers and kwok-simulated
// GPU nodes, and walks the life of a cluster: register, inventory, deploy,
// an unschedulable pod, agent restart, undeploy, service-account-token
// enrollment and uninstall.
func TestKubernetesRuntime(t *testing.T) {
	t.Parallel()
	// Pod IPs on loopback: the echo server below answers at every pod IP,
	// so invocations travel gateway -> NATS -> agent worker -> pod IP.
	env := kubetest.Start(t, kubetest.Options{PodCIDR: "127.0.100.0/24"})
	ctx := testutil.Context(t)
	kc := env.Client
	port := startEcho(t)
	top := t
	env.AddGPUNode(t, kubetest.GPUNode{Name: "h100-a", Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, GPUMemoryMiB: 81559})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "h100-cordoned", Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, GPUMemoryMiB: 81559, Unschedulable: true})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "a100", Product: "NVIDIA-A100-SXM4-80GB", GPUs: 4, GPUMemoryMiB: 81920, CPU: "32", Memory: "256Gi"})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "cpu-only", Product: "", GPUs: 0})
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gantry-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	f := startFleet(t)
	bin := buildGantry(t)
	reg, err := f.c.RegisterCluster(ctx, controlplane.DefaultAccount, model.ClusterRequest{ClusterName: "k8s", ClusterGroupName: "prod", Region: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "bootstrap")
	if err := os.WriteFile(tokenFile, []byte(reg.BootstrapToken), 0o600); err != nil {
		t.Fatal(err)
	}
	agentArgs := []string{"agent", "--runtime", "kubernetes", "--kubeconfig", env.Kubeconfig, "--agent-namespace", "gantry-system",
		"--scheduler-name", kubetest.SecondScheduler, "--server", f.cp.URL(), "--heartbeat", "500ms",
		"--state-dir", t.TempDir(), "--bootstrap-token-file", tokenFile}
	ag := startAgentProcess(t, bin, "agent", agentArgs...)

	var cluster model.Cluster
	t.Run("inventory matches the nodes", func(t *testing.T) {
		testutil.WaitFor(t, kubeWait, func() error {
			cluster, err = f.c.GetCluster(ctx, controlplane.DefaultAccount, reg.ClusterID)
			if err != nil {
				return err
			}
			want := []model.Node{
				{Name: "a100", GPUModel: "A100", GPUMemoryGB: 80, GPUs: 4, CPUCores: 32, MemoryGiB: 256},
				{Name: "h100-a", GPUModel: "H100", GPUMemoryGB: 80, GPUs: 8, CPUCores: 64, MemoryGiB: 512},
			}
			if cluster.Status != model.ClusterReady || !slices.Equal(cluster.Inventory.Nodes, want) {
				return fmt.Errorf("cluster %s with nodes %+v, want READY with %+v\nagent: %s", cluster.Status, cluster.Inventory.Nodes, want, ag.output())
			}
			if !strings.HasPrefix(cluster.Inventory.KubernetesVersion, "v1.") {
				return fmt.Errorf("kubernetesVersion %q", cluster.Inventory.KubernetesVersion)
			}
			return nil
		})
		sec, err := kc.CoreV1().Secrets("gantry-system").Get(ctx, "gantry-agent-identity", metav1.GetOptions{})
		if err != nil || !strings.Contains(string(sec.Data["identity.json"]), reg.ClusterID) {
			t.Fatalf("identity Secret: %v", err)
		}
	})

	const secretMarker = "kube-secret-marker-4b1d"
	fn, err := f.c.CreateFunction(ctx, model.CreateFunctionRequest{Name: "llm", InferenceURL: "/v1/infer", InferencePort: port,
		ContainerImage: "registry.example.com/llm:1.0", ContainerArgs: "--model tiny",
		ContainerEnvironment: []model.EnvVar{{Key: "MODE", Value: "fast"}},
		Health:               &model.Health{Protocol: "HTTP", URI: "/health", Port: port, Timeout: "PT5S", ExpectedStatusCode: 200},
		Secrets:              []model.Secret{{Name: "HF_TOKEN", Value: secretMarker}}})
	if err != nil {
		t.Fatal(err)
	}
	// The account's registry credential for the image's host becomes the
	// pod's image pull Secret.
	const pullMarker = "kube-pull-marker-6e2a"
	pullAuth := base64.StdEncoding.EncodeToString([]byte("robot:" + pullMarker))
	credReq := newRequest(t, "POST", f.cp.URL()+"/v2/nvcf/registry-credentials", f.cp.AdminToken())
	credReq.Header.Set("Content-Type", "application/json")
	credReq.Body = ioNop(`{"registryHostname":"registry.example.com","artifactTypes":["CONTAINER"],` +
		`"secret":{"name":"credentials","value":"` + pullAuth + `"}}`)
	credResp, err := http.DefaultClient.Do(credReq)
	if err != nil || credResp.StatusCode != http.StatusOK {
		t.Fatalf("registry credential: %v %v", err, credResp)
	}
	credResp.Body.Close()
	functions := "gantry-functions"
	t.Run("deploy 2 H100", func(t *testing.T) {
		if _, err := f.c.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{{
			GPU: "H100", InstanceType: "ON-PREM.GPU.H100_2x", Clusters: []string{"k8s"}, MinInstances: 1, MaxInstances: 1}}}); err != nil {
			t.Fatal(err)
		}
		waitDeployment(t, f, fn, model.StatusActive)
		deps := gantryDeployments(t, env, functions, "gantry.dev/function="+fn.ID)
		if len(deps) != 1 {
			t.Fatalf("%d Deployments for the function", len(deps))
		}
		d := deps[0]
		pod := d.Spec.Template.Spec
		c := pod.Containers[0]
		if got := c.Resources.Limits[kubetest.GPUResource]; got.Value() != 2 {
			t.Errorf("GPU limit %v, want 2", got.String())
		}
		if pod.SchedulerName != kubetest.SecondScheduler {
			t.Errorf("schedulerName %q", pod.SchedulerName)
		}
		if c.Image != "registry.example.com/llm:1.0" || !slices.Equal(c.Args, []string{"--model", "tiny"}) {
			t.Errorf("image %q args %q", c.Image, c.Args)
		}
		if !hasEnv(c.Env, "MODE", "fast") {
			t.Errorf("env %+v lacks MODE=fast", c.Env)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/health" {
			t.Errorf("readiness probe %+v", c.ReadinessProbe)
		}
		if !strings.Contains(mustJSON(pod.Affinity), "NVIDIA-H100-80GB-HBM3") || strings.Contains(mustJSON(pod.Affinity), "A100") {
			t.Errorf("node affinity does not select the H100 product only: %s", mustJSON(pod.Affinity))
		}
		if !slices.Contains(d.Finalizers, "gantry.dev/instance-cleanup") {
			t.Errorf("finalizers %v", d.Finalizers)
		}
		// The secret reaches the pod through a Secret owned by the
		// Deployment, and the registry credential through another.
		secs, err := kc.CoreV1().Secrets(functions).List(ctx, metav1.ListOptions{LabelSelector: "gantry.dev/function=" + fn.ID})
		if err != nil || len(secs.Items) != 2 {
			t.Fatalf("function Secrets: %v %v", secs, err)
		}
		for _, s := range secs.Items {
			if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != d.UID {
				t.Errorf("secret %s: owners %+v", s.Name, s.OwnerReferences)
			}
			switch s.Type {
			case corev1.SecretTypeOpaque:
				if !strings.Contains(string(s.Data["secrets.json"]), secretMarker) {
					t.Errorf("secret %s: keys %v", s.Name, keys(s.Data))
				}
			case corev1.SecretTypeDockerConfigJson:
				var cfg struct {
					Auths map[string]struct{ Auth string } `json:"auths"`
				}
				if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil ||
					len(cfg.Auths) != 1 || cfg.Auths["registry.example.com"].Auth != pullAuth {
					t.Errorf("pull secret %s: auths for %v (%v)", s.Name, keys(cfg.Auths), err)
				}
				if len(pod.ImagePullSecrets) == 0 || pod.ImagePullSecrets[0].Name != s.Name {
					t.Errorf("imagePullSecrets %v, want %s first", pod.ImagePullSecrets, s.Name)
				}
			default:
				t.Errorf("secret %s of type %s", s.Name, s.Type)
			}
		}
		if out := ag.output(); strings.Contains(out, pullMarker) || strings.Contains(out, pullAuth) {
			t.Error("the agent's output holds the registry credential")
		}
		pods := functionPods(t, env, functions, fn.ID)
		if len(pods) != 1 || pods[0].Spec.NodeName != "h100-a" || pods[0].Status.Phase != corev1.PodRunning ||
			!strings.HasPrefix(pods[0].Status.PodIP, "127.0.100.") {
			t.Fatalf("pods: %s", describePods(pods))
		}
		// The worker in the agent calls the instance at its pod IP.
		resp, err := f.c.Invoke(ctx, client.InvokeRequest{FunctionID: fn.ID, Body: strings.NewReader(`{"prompt":"hello"}`), PollSeconds: 30})
		if err != nil || resp.StatusCode != 200 || !strings.Contains(string(resp.Body), "hello") {
			t.Fatalf("invoke through the gateway: %v %+v", err, resp)
		}
	})

	t.Run("free capacity counts every pod", func(t *testing.T) {
		// Another team's pod takes 3 GPUs of h100-a, where the 2-GPU
		// instance runs: 3 are left there, and the cordoned node offers
		// nothing, so no 4-GPU instance fits although the cluster has 16
		// H100s.
		foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other-team", Namespace: "default"},
			Spec: corev1.PodSpec{NodeName: "h100-a", AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{Name: "c", Image: "registry.example.com/other:1",
					Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{kubetest.GPUResource: resource.MustParse("3")}}}}}}
		if _, err := kc.CoreV1().Pods("default").Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitAvailable(t, f, reg.ClusterID, map[string]int{"ON-PREM.GPU.H100_1x": 3, "ON-PREM.GPU.H100_2x": 1,
			"ON-PREM.GPU.H100_4x": 0, "ON-PREM.GPU.H100_8x": 0, "ON-PREM.GPU.A100_4x": 1})
		if err := kc.CoreV1().Pods("default").Delete(ctx, "other-team", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitAvailable(t, f, reg.ClusterID, map[string]int{"ON-PREM.GPU.H100_1x": 6, "ON-PREM.GPU.H100_4x": 1})
	})

	t.Run("an unschedulable pod shows the reason", func(t *testing.T) {
		// Another team takes the only schedulable H100 node; the agent's
		// inventory still counts it, so Gantry places the instance and
		// the Kubernetes scheduler says why it cannot run.
		taint(t, env, "h100-a", []corev1.Taint{{Key: "dedicated", Value: "other-team", Effect: corev1.TaintEffectNoSchedule}})
		small, err := f.c.CreateFunction(ctx, model.CreateFunctionRequest{Name: "small", InferenceURL: "/", InferencePort: 8000,
			ContainerImage: "registry.example.com/small:1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.c.CreateDeployment(ctx, small.ID, small.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{{
			GPU: "H100", InstanceType: "ON-PREM.GPU.H100_1x", MinInstances: 1, MaxInstances: 1}}}); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, kubeWait, func() error {
			d, err := f.c.GetDeployment(ctx, small.ID, small.VersionID)
			if err != nil {
				return err
			}
			for _, h := range d.HealthInfo {
				if strings.Contains(h.Error, "unschedulable") && strings.Contains(h.Error, "taint") {
					t.Logf("healthInfo: %s", h.Error)
					return nil
				}
			}
			return fmt.Errorf("deployment %s, healthInfo %+v", d.FunctionStatus, d.HealthInfo)
		})
		taint(t, env, "h100-a", nil)
		waitDeployment(t, f, small, model.StatusActive)
		if err := f.c.DeleteDeployment(ctx, small.ID, small.VersionID); err != nil {
			t.Fatal(err)
		}
		waitGone(t, env, functions, "gantry.dev/function="+small.ID)
	})

	t.Run("agent restart keeps its cluster and its instances", func(t *testing.T) {
		before := gantryDeployments(t, env, functions, "gantry.dev/function="+fn.ID)
		ag.stop(t)
		// The instance outlives the agent.
		if got := gantryDeployments(t, env, functions, "gantry.dev/function="+fn.ID); len(got) != 1 || got[0].UID != before[0].UID {
			t.Fatalf("after the agent stopped: %d Deployments", len(got))
		}
		// The bootstrap token is spent; only the identity Secret lets
		// the agent back in as the same cluster.
		// Started on the parent test: it must outlive this subtest.
		ag = startAgentProcess(top, bin, "agent-restarted", agentArgs...)
		testutil.WaitFor(t, kubeWait, func() error {
			if !strings.Contains(ag.output(), reg.ClusterID) {
				return fmt.Errorf("restarted agent is not cluster %s: %s", reg.ClusterID, ag.output())
			}
			return nil
		})
		clusters, err := f.c.ListClusters(ctx, controlplane.DefaultAccount)
		if err != nil || len(clusters) != 1 {
			t.Fatalf("clusters after restart: %d %v", len(clusters), err)
		}
		waitDeployment(t, f, fn, model.StatusActive)
		after := gantryDeployments(t, env, functions, "gantry.dev/function="+fn.ID)
		if len(after) != 1 || after[0].UID != before[0].UID {
			t.Fatalf("the restarted agent replaced or duplicated the instance: %d Deployments", len(after))
		}
	})

	t.Run("undeploy removes everything", func(t *testing.T) {
		if err := f.c.DeleteDeployment(ctx, fn.ID, fn.VersionID); err != nil {
			t.Fatal(err)
		}
		waitGone(t, env, functions, "gantry.dev/function="+fn.ID)
	})

	t.Run("service-account token enrollment, then the cluster is deleted", func(t *testing.T) {
		jwks, err := kc.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sa, err := f.c.RegisterCluster(ctx, controlplane.DefaultAccount, model.ClusterRequest{ClusterName: "k8s-sa", ClusterGroupName: "prod",
			Region: "r1", OIDCIssuer: env.Issuer, JWKS: json.RawMessage(jwks)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kc.CoreV1().ServiceAccounts("gantry-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "gantry-agent"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := kc.CoreV1().ServiceAccounts("gantry-system").CreateToken(ctx, "gantry-agent", &authv1.TokenRequest{
			Spec: authv1.TokenRequestSpec{Audiences: []string{registry.JWTAudience}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		saToken := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(saToken, []byte(tr.Status.Token), 0o600); err != nil {
			t.Fatal(err)
		}
		second := startAgentProcess(t, bin, "agent-sa", "agent", "--runtime", "kubernetes", "--kubeconfig", env.Kubeconfig,
			"--agent-namespace", "gantry-system", "--identity-secret", "gantry-agent-sa-identity", "--namespace", "gantry-functions-sa",
			"--server", f.cp.URL(), "--heartbeat", "500ms", "--state-dir", t.TempDir(),
			"--identity-token-file", saToken, "--cluster-id", sa.ClusterID)
		testutil.WaitFor(t, kubeWait, func() error {
			c, err := f.c.GetCluster(ctx, controlplane.DefaultAccount, sa.ClusterID)
			if err != nil || c.Status != model.ClusterReady {
				return fmt.Errorf("cluster k8s-sa: %s %v\nagent: %s", c.Status, err, second.output())
			}
			return nil
		})
		// A deleted cluster takes its instances with it: its agent stops
		// them and exits, saying why.
		saFn, err := f.c.CreateFunction(ctx, model.CreateFunctionRequest{Name: "sa-fn", InferenceURL: "/", InferencePort: port,
			ContainerImage: "registry.example.com/sa:1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.c.CreateDeployment(ctx, saFn.ID, saFn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{{
			GPU: "A100", InstanceType: "ON-PREM.GPU.A100_1x", Clusters: []string{"k8s-sa"}, MinInstances: 1, MaxInstances: 1}}}); err != nil {
			t.Fatal(err)
		}
		waitDeployment(t, f, saFn, model.StatusActive)
		if n := len(gantryDeployments(t, env, "gantry-functions-sa", "gantry.dev/function="+saFn.ID)); n != 1 {
			t.Fatalf("%d Deployments on cluster k8s-sa", n)
		}
		if err := f.c.DeleteCluster(ctx, controlplane.DefaultAccount, sa.ClusterID); err != nil {
			t.Fatal(err)
		}
		select {
		case <-second.done:
		case <-time.After(kubeWait):
			t.Fatalf("the agent of a deleted cluster kept running:\n%s", second.output())
		}
		if !strings.Contains(second.output(), "no longer registered") {
			t.Errorf("the agent did not say why it stopped:\n%s", second.output())
		}
		waitGone(t, env, "gantry-functions-sa", "gantry.dev/function="+saFn.ID)
		if err := f.c.DeleteDeployment(ctx, saFn.ID, saFn.VersionID); err != nil {
			t.Fatal(err)
		}
		out := runGantry(t, bin, isolatedEnv(t.TempDir()), "agent", "uninstall", "--kubeconfig", env.Kubeconfig, "--agent-namespace", "gantry-system",
			"--identity-secret", "gantry-agent-sa-identity", "--namespace", "gantry-functions-sa")
		if !strings.Contains(out, sa.ClusterID) {
			t.Errorf("uninstall did not name the cluster to delete: %s", out)
		}
	})

	t.Run("uninstall leaves nothing behind", func(t *testing.T) {
		// A running instance, so that there is something to remove.
		if _, err := f.c.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{{
			GPU: "A100", InstanceType: "ON-PREM.GPU.A100_1x", MinInstances: 2, MaxInstances: 2}}}); err != nil {
			t.Fatal(err)
		}
		waitDeployment(t, f, fn, model.StatusActive)
		ag.stop(t)
		out := runGantry(t, bin, isolatedEnv(t.TempDir()), "agent", "uninstall", "--kubeconfig", env.Kubeconfig, "--agent-namespace", "gantry-system")
		t.Logf("uninstall:\n%s", out)
		for _, ns := range []string{"gantry-functions", "gantry-functions-sa"} {
			if _, err := kc.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("namespace %s still there: %v", ns, err)
			}
		}
		for _, name := range []string{"gantry-agent-identity", "gantry-agent-sa-identity"} {
			if _, err := kc.CoreV1().Secrets("gantry-system").Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("identity Secret %s still there: %v", name, err)
			}
		}
		sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=gantry"}
		deps, _ := kc.AppsV1().Deployments("").List(ctx, sel)
		rss, _ := kc.AppsV1().ReplicaSets("").List(ctx, sel)
		pods, _ := kc.CoreV1().Pods("").List(ctx, sel)
		secs, _ := kc.CoreV1().Secrets("").List(ctx, sel)
		if n := len(deps.Items) + len(rss.Items) + len(pods.Items) + len(secs.Items); n != 0 {
			t.Errorf("left behind: %d deployments, %d replicasets, %d pods, %d secrets",
				len(deps.Items), len(rss.Items), len(pods.Items), len(secs.Items))
		}
	})
}

// startEcho serves the echo function on every loopback address at a free
// port: the stand-in for the containers of pods whose IPs are on loopback.
func startEcho(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: echo.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// agentProcess is a running `gantry agent` subprocess.
type agentProcess struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startAgentProcess(t *testing.T, bin, name string, args ...string) *agentProcess {
	t.Helper()
	p := &agentProcess{out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = isolatedEnv(t.TempDir())
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

func (p *agentProcess) output() string { return p.out.String() }

// stop ends the agent the way Kubernetes does (SIGTERM) and waits.
func (p *agentProcess) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(binStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("agent did not stop on SIGTERM:\n%s", p.output())
	}
}

func waitDeployment(t *testing.T, f *fleet, fn model.Function, want model.FunctionStatus) {
	t.Helper()
	ctx := testutil.Context(t)
	testutil.WaitFor(t, kubeWait, func() error {
		d, err := f.c.GetDeployment(ctx, fn.ID, fn.VersionID)
		if err != nil {
			return err
		}
		if d.FunctionStatus != want {
			return fmt.Errorf("deployment of %s is %s (healthInfo %+v), want %s", fn.Name, d.FunctionStatus, d.HealthInfo, want)
		}
		return nil
	})
}

func gantryDeployments(t testing.TB, env *kubetest.Env, ns, selector string) []appsv1.Deployment {
	t.Helper()
	list, err := env.Client.AppsV1().Deployments(ns).List(testutil.Context(t), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func functionPods(t *testing.T, env *kubetest.Env, ns, fnID string) []corev1.Pod {
	t.Helper()
	list, err := env.Client.CoreV1().Pods(ns).List(testutil.Context(t), metav1.ListOptions{LabelSelector: "gantry.dev/function=" + fnID})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// waitGone waits until no Deployment, ReplicaSet, pod or Secret matches in
// namespace ns ("": in any).
func waitGone(t testing.TB, env *kubetest.Env, ns, selector string) {
	t.Helper()
	ctx := testutil.Context(t)
	sel := metav1.ListOptions{LabelSelector: selector}
	testutil.WaitFor(t, kubeWait, func() error {
		deps, err := env.Client.AppsV1().Deployments(ns).List(ctx, sel)
		if err != nil {
			return err
		}
		rss, err := env.Client.AppsV1().ReplicaSets(ns).List(ctx, sel)
		if err != nil {
			return err
		}
		pods, err := env.Client.CoreV1().Pods(ns).List(ctx, sel)
		if err != nil {
			return err
		}
		secs, err := env.Client.CoreV1().Secrets(ns).List(ctx, sel)
		if err != nil {
			return err
		}
		if n := len(deps.Items) + len(rss.Items) + len(pods.Items) + len(secs.Items); n > 0 {
			return fmt.Errorf("%s still has %d deployments, %d replicasets, %d pods, %d secrets",
				selector, len(deps.Items), len(rss.Items), len(pods.Items), len(secs.Items))
		}
		return nil
	})
}

func taint(t *testing.T, env *kubetest.Env, node string, taints []corev1.Taint) {
	t.Helper()
	ctx := testutil.Context(t)
	testutil.WaitFor(t, kubeWait, func() error {
		n, err := env.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Spec.Taints = taints
		_, err = env.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err // a conflict with kwok's heartbeat is retried
	})
}

// waitAvailable waits until the cluster's instance types show the given
// available counts (from the agent's latest heartbeat).
func waitAvailable(t *testing.T, f *fleet, clusterID string, want map[string]int) {
	t.Helper()
	ctx := testutil.Context(t)
	testutil.WaitFor(t, kubeWait, func() error {
		c, err := f.c.GetCluster(ctx, controlplane.DefaultAccount, clusterID)
		if err != nil {
			return err
		}
		got := map[string]int{}
		for _, u := range c.InstanceTypes {
			got[u.Name] = u.Available
		}
		for name, n := range want {
			if got[name] != n {
				return fmt.Errorf("%s available %d, want %d (all: %v)", name, got[name], n, got)
			}
		}
		return nil
	})
}

func hasEnv(env []corev1.EnvVar, k, v string) bool {
	for _, e := range env {
		if e.Name == k && e.Value == v {
			return true
		}
	}
	return false
}

func describePods(pods []corev1.Pod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "%s on %q: %s %+v; ", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
	}
	return b.String()
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
