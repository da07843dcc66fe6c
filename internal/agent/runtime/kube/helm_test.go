package kube

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/runtimetest"
	"github.com/gantry-dev/gantry/internal/agent/runtime/runtimetest/kubelet"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

// serveChart packages testdata/<name> and serves it over HTTP, as a chart
// repository serves packaged charts; it returns the chart's URL.
func serveChart(t *testing.T, name string) string {
	t.Helper()
	ch, err := loader.LoadDir(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, err := chartutil.Save(ch, dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(path)
}

// helmPort returns a port free on every address, which the program then
// binds on its pod's own loopback IP.
func helmPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// helmValuesJSON is a deployment's configuration for the helm-echo chart.
func helmValuesJSON(t *testing.T, port int, prog runtimetest.Program, extra map[string]any) []byte {
	t.Helper()
	env := []map[string]string{}
	for _, e := range prog.Env() {
		env = append(env, map[string]string{"name": e.Key, "value": e.Value})
	}
	v := map[string]any{"port": port, "programEnv": env}
	for k, x := range extra {
		v[k] = x
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// getEnv reads the environment of the instance behind endpoint.
func getEnv(endpoint string) (map[string]string, error) {
	resp, err := http.Get(endpoint + "/env")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /env: %s: %s", resp.Status, b)
	}
	env := map[string]string{}
	return env, json.Unmarshal(b, &env)
}

// lastRelease reads the release record Helm keeps for an instance.
func lastRelease(t *testing.T, rt *Runtime, id string) *releasev1.Release {
	t.Helper()
	cfg, err := rt.helmConfig()
	if err != nil {
		t.Fatal(err)
	}
	r, err := cfg.Releases.Last(releaseName(id))
	if err != nil {
		t.Fatalf("release of %s: %v", id, err)
	}
	return r.(*releasev1.Release)
}

// leftOf lists what a release left in ns: objects with the instance's
// label, and Helm's release records.
func leftOf(t *testing.T, rt *Runtime, ns, id string) []string {
	t.Helper()
	env := rt.cfg.Client
	ctx := testutil.Context(t)
	var left []string
	sel := metav1.ListOptions{LabelSelector: InstanceLabel + "=" + id}
	ds, _ := env.AppsV1().Deployments(ns).List(ctx, sel)
	for _, d := range ds.Items {
		left = append(left, "deployment/"+d.Name)
	}
	pods, _ := env.CoreV1().Pods(ns).List(ctx, sel)
	for _, p := range pods.Items {
		left = append(left, "pod/"+p.Name)
	}
	svcs, _ := env.CoreV1().Services(ns).List(ctx, sel)
	for _, s := range svcs.Items {
		left = append(left, "service/"+s.Name)
	}
	cms, _ := env.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	for _, c := range cms.Items {
		if strings.HasPrefix(c.Name, releaseName(id)) {
			left = append(left, "configmap/"+c.Name)
		}
	}
	secrets, _ := env.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	for _, s := range secrets.Items {
		if strings.Contains(s.Name, releaseName(id)) {
			left = append(left, "secret/"+s.Name)
		}
	}
	return left
}

// TestHelm deploys a Helm-chart function on a real API server, scheduler
// and controller-manager, with the test kubelet running its pod: it
// installs from an HTTP chart URL with the configuration as values, serves
// through the named Service with GPUs, the NVCF variables and a secret,
// is adopted by a new runtime, upgrades on new values, rolls back an
// upgrade that fails, uninstalls leaving nothing; and a chart that fails
// to render or to install is ERRORED with the reason and leaves nothing.
func TestHelm(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{NoKwok: true})
	kubelet.Start(t, env, kubelet.Node{Name: "helm-h100", Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, GPUMemoryMiB: 81559}, "")
	const ns = "helm-functions"
	chartURL := serveChart(t, "helm-echo")
	port := helmPort(t)
	rt := newRuntime(t, env, Config{Namespace: ns, RESTConfig: env.Config})
	prog := runtimetest.Program{Dir: t.TempDir()}
	const secret = "s3cr3t-helm-value"

	spec := func(id string, extra map[string]any) runtime.Spec {
		return runtime.Spec{InstanceID: id, FunctionID: "fn-helm", FunctionVersionID: "ver-1", FunctionName: "helm-echo",
			NCAID: "acct-1", InferencePort: port, GPUModel: "H100", GPUCount: 2, InstanceType: "ON-PREM.GPU.H100_2x",
			Secrets: map[string]string{"API_KEY": secret},
			Helm:    &runtime.HelmSpec{Chart: chartURL, ServiceName: "echo-svc", Values: helmValuesJSON(t, port, prog, extra)}}
	}
	ctx := testutil.Context(t)
	wantEnv := func(t *testing.T, st runtime.Status, greeting string) {
		t.Helper()
		testutil.WaitFor(t, 30*time.Second, func() error {
			got, err := getEnv(st.Endpoint)
			if err != nil {
				return err
			}
			for k, want := range map[string]string{"GREETING": greeting, "API_KEY": secret, "NVCF_INSTANCE_ID": "helm-1",
				"NVCF_FUNCTION_ID": "fn-helm", "NVCF_INSTANCETYPE": "ON-PREM.GPU.H100_2x"} {
				if got[k] != want {
					return fmt.Errorf("%s = %q, want %q", k, got[k], want)
				}
			}
			if n := len(strings.Split(got["NVIDIA_VISIBLE_DEVICES"], ",")); got["NVIDIA_VISIBLE_DEVICES"] == "" || n != 2 {
				return fmt.Errorf("NVIDIA_VISIBLE_DEVICES = %q, want 2 GPUs", got["NVIDIA_VISIBLE_DEVICES"])
			}
			return nil
		})
	}

	dump := func(t *testing.T) {
		if t.Failed() {
			out, _ := exec.Command(filepath.Join(env.Bin, "kubectl"), "--kubeconfig="+env.Kubeconfig, "-n", ns,
				"get", "deployments,services,pods", "-o", "yaml").CombinedOutput()
			t.Logf("objects in %s:\n%s", ns, out)
		}
	}
	var first runtime.Status
	t.Run("install and serve", func(t *testing.T) {
		defer dump(t)
		if err := rt.Start(ctx, spec("helm-1", map[string]any{"greeting": "hello"})); err != nil {
			t.Fatal(err)
		}
		first = waitStatus(t, rt, "helm-1", isRunning)
		wantEnv(t, first, "hello")
		rel := lastRelease(t, rt, "helm-1")
		b, _ := json.Marshal(rel.Config)
		if strings.Contains(string(b), secret) || strings.Contains(rel.Manifest, secret) {
			t.Errorf("the secret's value is in the Helm release record")
		}
		if !strings.Contains(string(b), `"secretName":"`+helmSecretName(releaseName("helm-1"))) {
			t.Errorf("release values %s do not name the secrets' Secret", b)
		}
		// Again with the same spec does nothing.
		if err := rt.Start(ctx, spec("helm-1", map[string]any{"greeting": "hello"})); err != nil {
			t.Fatal(err)
		}
		if v := lastRelease(t, rt, "helm-1").Version; v != 1 {
			t.Errorf("release revision %d after the same Start again, want 1", v)
		}
	})

	t.Run("adopted by a new runtime", func(t *testing.T) {
		rt2 := newRuntime(t, env, Config{Namespace: ns, RESTConfig: env.Config})
		st := waitStatus(t, rt2, "helm-1", isRunning)
		if st.Endpoint != first.Endpoint {
			t.Errorf("adopted endpoint %s, want %s", st.Endpoint, first.Endpoint)
		}
		_ = rt2.Close()
	})

	t.Run("upgrade on new values", func(t *testing.T) {
		if err := rt.Start(ctx, spec("helm-1", map[string]any{"greeting": "bonjour"})); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 60*time.Second, func() error {
			st := waitStatus(t, rt, "helm-1", isRunning)
			got, err := getEnv(st.Endpoint)
			if err != nil {
				return err
			}
			if got["GREETING"] != "bonjour" {
				return fmt.Errorf("GREETING = %q, want bonjour", got["GREETING"])
			}
			return nil
		})
		if v := lastRelease(t, rt, "helm-1").Version; v != 2 {
			t.Errorf("release revision %d after the upgrade, want 2", v)
		}
	})

	t.Run("failed upgrade rolls back", func(t *testing.T) {
		if err := rt.Start(ctx, spec("helm-1", map[string]any{"greeting": "hola", "broken": true})); err != nil {
			t.Fatal(err)
		}
		st := waitStatus(t, rt, "helm-1", func(st runtime.Status) error {
			if st.State != runtime.StateRunning || !strings.Contains(st.Reason, "rolled back") {
				return fmt.Errorf("status %+v, want RUNNING with the rolled-back upgrade in its reason", st)
			}
			return nil
		})
		rel := lastRelease(t, rt, "helm-1")
		if rel.Config["greeting"] != "bonjour" {
			t.Errorf("after the rollback the release has greeting %v, want bonjour", rel.Config["greeting"])
		}
		wantEnv(t, st, "bonjour")
	})

	t.Run("uninstall", func(t *testing.T) {
		if err := rt.Stop(ctx, "helm-1"); err != nil {
			t.Fatal(err)
		}
		if left := leftOf(t, rt, ns, "helm-1"); len(left) > 0 {
			t.Errorf("left after Stop: %v", left)
		}
		for _, st := range rt.List() {
			if st.InstanceID == "helm-1" {
				t.Errorf("still listed after Stop: %+v", st)
			}
		}
	})

	for _, tc := range []struct {
		name, id string
		extra    map[string]any
		want     string
	}{
		{"render refused", "helm-render", map[string]any{"clusterRole": true}, `renders ClusterRole "gantry-helm-render-everything"`},
		{"install fails half-way", "helm-install", map[string]any{"broken": true}, "Broken_Pod"},
		{"no such chart", "helm-404", map[string]any{"chart": "missing"}, "download Helm chart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(tc.id, tc.extra)
			if tc.extra["chart"] != nil {
				s.Helm.Chart = chartURL + ".missing"
			}
			if err := rt.Start(ctx, s); err != nil {
				t.Fatal(err)
			}
			st := waitStatus(t, rt, tc.id, func(st runtime.Status) error {
				if st.State != runtime.StateErrored || !strings.Contains(st.Reason, tc.want) {
					return fmt.Errorf("status %+v, want ERRORED with %q", st, tc.want)
				}
				return nil
			})
			t.Logf("reason: %s", st.Reason)
			// The release is gone at once; its pods may still be
			// terminating.
			testutil.WaitFor(t, 30*time.Second, func() error {
				if left := leftOf(t, rt, ns, tc.id); len(left) > 0 {
					return fmt.Errorf("left after the failure: %v", left)
				}
				return nil
			})
			if err := rt.Stop(ctx, tc.id); err != nil {
				t.Fatal(err)
			}
		})
	}
}
