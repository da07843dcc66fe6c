package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

const (
	controlPlaneChart = "helm/gantry"
	agentChart        = "helm/gantry-agent"
	// Namespaces the rendered objects go to; created for real before the
	// dry runs, which need them.
	controlPlaneNS = "gantry"
	agentNS        = "gantry-agent"
	functionsNS    = "gantry-functions"
	domain         = "gantry.example.com"
)

// wantHosts are the host names the ingress and the HTTPRoute must route.
var wantHosts = []string{"api." + domain, "api-keys." + domain, "*.invocation." + domain}

// agentRequired are the values the agent chart cannot default.
var agentRequired = []string{"--set", "controlPlane.url=https://api." + domain}

// httpRouteCRD is a minimal stand-in for the Gateway API's HTTPRoute CRD
// (which the test API server lacks): it checks the fields the chart relies on
// and keeps the rest, so the rendered route goes through the same server-side
// dry run as every other object without vendoring the upstream CRD.
const httpRouteCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: httproutes.gateway.networking.k8s.io
  annotations:
    # *.k8s.io groups need this; the value marks the stand-in as not the
    # upstream, approved definition.
    api-approved.kubernetes.io: "unapproved, test stand-in for the Gateway API HTTPRoute"
spec:
  group: gateway.networking.k8s.io
  scope: Namespaced
  names: {kind: HTTPRoute, listKind: HTTPRouteList, plural: httproutes, singular: httproute}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [parentRefs, rules]
              x-kubernetes-preserve-unknown-fields: true
              properties:
                parentRefs:
                  type: array
                  minItems: 1
                  items:
                    type: object
                    required: [name]
                    x-kubernetes-preserve-unknown-fields: true
                hostnames:
                  type: array
                  items: {type: string}
                rules:
                  type: array
                  items:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
`

// manifest is one rendered object.
type manifest struct {
	Kind string
	Name string
	Raw  []byte
}

// manifests is the output of one render.
type manifests []manifest

// one returns the only object of kind (and name, if given), failing the test
// unless there is exactly one, decoded into out.
func (ms manifests) one(t *testing.T, kind, name string, out any) {
	t.Helper()
	var found []manifest
	for _, m := range ms {
		if m.Kind == kind && (name == "" || m.Name == name) {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s %q, rendered %d (objects: %v)", kind, name, len(found), ms.kinds())
	}
	if err := yaml.UnmarshalStrict(found[0].Raw, out); err != nil {
		t.Fatalf("decode %s %s: %v", kind, found[0].Name, err)
	}
}

func (ms manifests) count(kind string) int {
	n := 0
	for _, m := range ms {
		if m.Kind == kind {
			n++
		}
	}
	return n
}

func (ms manifests) kinds() []string {
	var ks []string
	for _, m := range ms {
		ks = append(ks, m.Kind+"/"+m.Name)
	}
	return ks
}

// parse splits a multi-document YAML stream into objects.
func parse(t *testing.T, out string) manifests {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	var ms manifests
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("split rendered YAML: %v", err)
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if head.Kind == "" {
			continue // a document holding only comments
		}
		ms = append(ms, manifest{Kind: head.Kind, Name: head.Metadata.Name, Raw: doc})
	}
	return ms
}

// tools runs helm and kubectl from the harness's bin directory, helm with
// its homes in a temporary directory so it touches nothing of the user's.
type tools struct {
	bin string
	env []string
}

func newTools(t *testing.T, bin string) tools {
	home := t.TempDir()
	return tools{bin: bin, env: append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)}
}

// helm runs helm and returns its stdout and stderr separately.
func (tl tools) helm(ctx context.Context, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(tl.bin, "helm"), args...)
	cmd.Env = tl.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// render lints a chart with the given values and returns `helm template`'s
// output.
func (tl tools) render(ctx context.Context, t *testing.T, chart, ns string, values []string) string {
	t.Helper()
	out, stderr, err := tl.helm(ctx, append([]string{"lint", "--strict", chart, "--namespace", ns}, values...)...)
	if err != nil {
		t.Fatalf("helm lint %s %v: %v\n%s%s", chart, values, err, out, stderr)
	}
	// The release is named after the chart, as the README installs it.
	out, stderr, err = tl.helm(ctx, append([]string{"template", filepath.Base(chart), chart, "--namespace", ns}, values...)...)
	if err != nil {
		t.Fatalf("helm template %s %v: %v\n%s", chart, values, err, stderr)
	}
	return out
}

// dryRun has the API server validate (admission included) every object in
// manifests without persisting them.
func dryRun(ctx context.Context, t *testing.T, env *kubetest.Env, rendered string) {
	t.Helper()
	out, err := env.Kubectl(ctx, []byte(rendered), "apply", "--dry-run=server", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s\nrendered:\n%s", err, out, rendered)
	}
}

// TestManifests renders each chart with its default, HA, ingress, Gateway
// API and identity-token values, and each kustomize tree, and has one real
// API server accept every object in a server-side dry run.
func TestManifests(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{NoScheduler: true, NoControllerManager: true, NoKwok: true})
	ctx := testutil.Context(t)
	tl := newTools(t, env.Bin)
	for _, ns := range []string{controlPlaneNS, agentNS, functionsNS} {
		if out, err := env.Kubectl(ctx, nil, "create", "namespace", ns); err != nil {
			t.Fatalf("create namespace %s: %v\n%s", ns, err, out)
		}
	}
	if out, err := env.Kubectl(ctx, []byte(httpRouteCRD), "apply", "-f", "-"); err != nil {
		t.Fatalf("install HTTPRoute CRD: %v\n%s", err, out)
	}
	if out, err := env.Kubectl(ctx, nil, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/httproutes.gateway.networking.k8s.io"); err != nil {
		t.Fatalf("HTTPRoute CRD: %v\n%s", err, out)
	}

	charts := []struct {
		name   string
		chart  string
		ns     string
		values []string
		check  func(t *testing.T, ms manifests)
	}{
		{name: "gantry/default", chart: controlPlaneChart, ns: controlPlaneNS, check: func(t *testing.T, ms manifests) {
			var sts appsv1.StatefulSet
			ms.one(t, "StatefulSet", "gantry", &sts)
			if *sts.Spec.Replicas != 1 || len(sts.Spec.VolumeClaimTemplates) != 1 {
				t.Errorf("embedded StatefulSet: replicas %d, %d claim templates; want 1 and 1",
					*sts.Spec.Replicas, len(sts.Spec.VolumeClaimTemplates))
			}
			pod := sts.Spec.Template.Spec
			wantArgs(t, pod.Containers[0], "server", "--nats-listen=0.0.0.0:4222", "--mek-provider=file", "--admin-keys=bootstrap",
				// No nats.tls Secret: the server refuses plaintext beyond loopback without it.
				"--nats-insecure")
			checkHardened(t, pod)
			checkProbes(t, pod.Containers[0])
			if a := pod.Affinity.PodAntiAffinity; len(a.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
				a.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" {
				t.Errorf("default anti-affinity: %+v; want preferred on kubernetes.io/hostname", a)
			}
			var svc corev1.Service
			ms.one(t, "Service", "gantry", &svc)
			if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[1].Port != 4222 {
				t.Errorf("service ports %+v; want http 8080 and nats 4222", svc.Spec.Ports)
			}
			for _, kind := range []string{"Deployment", "PodDisruptionBudget", "Ingress", "HTTPRoute"} {
				if n := ms.count(kind); n != 0 {
					t.Errorf("default values rendered %d %s", n, kind)
				}
			}
		}},
		{name: "gantry/ha", chart: controlPlaneChart, ns: controlPlaneNS,
			values: []string{"-f", filepath.Join(controlPlaneChart, "values-ha.yaml")},
			check: func(t *testing.T, ms manifests) {
				var d appsv1.Deployment
				ms.one(t, "Deployment", "gantry", &d)
				if *d.Spec.Replicas != 3 {
					t.Errorf("replicas %d, want 3", *d.Spec.Replicas)
				}
				pod := d.Spec.Template.Spec
				wantArgs(t, pod.Containers[0], "--nats-url=nats://nats.nats.svc:4222", "--mek-provider=openbao",
					"--openbao-k8s-role=gantry", "--bootstrap-secret-file=/etc/gantry/bootstrap/bootstrap-secret")
				if !strings.HasPrefix(argValue(pod.Containers[0], "--etcd-endpoints"), "http://etcd-0.etcd.etcd.svc:2379,") {
					t.Errorf("etcd endpoints %q", argValue(pod.Containers[0], "--etcd-endpoints"))
				}
				checkHardened(t, pod)
				checkZoneSpread(t, d)
				var pdb policyv1.PodDisruptionBudget
				ms.one(t, "PodDisruptionBudget", "gantry", &pdb)
				if pdb.Spec.MinAvailable.IntValue() != 2 {
					t.Errorf("PDB minAvailable %v, want 2", pdb.Spec.MinAvailable)
				}
				if n := ms.count("StatefulSet"); n != 0 {
					t.Errorf("external mode rendered %d StatefulSets", n)
				}
			}},
		{name: "gantry/external-file-mek", chart: controlPlaneChart, ns: controlPlaneNS,
			values: []string{"--set", "mode=external,replicas=2,etcd.endpoints={http://etcd:2379},nats.url=nats://nats:4222",
				"--set", "bootstrapSecret.existingSecret=gantry-bootstrap,mek.file.existingSecret=gantry-mek"},
			check: func(t *testing.T, ms manifests) {
				var d appsv1.Deployment
				ms.one(t, "Deployment", "gantry", &d)
				wantMount(t, d.Spec.Template.Spec.Containers[0], "/var/lib/gantry/keys/mek")
				var pdb policyv1.PodDisruptionBudget
				ms.one(t, "PodDisruptionBudget", "gantry", &pdb)
			}},
		{name: "gantry/nats-tls", chart: controlPlaneChart, ns: controlPlaneNS,
			values: []string{"--set", "nats.tls.existingSecret=gantry-nats-tls"},
			check: func(t *testing.T, ms manifests) {
				var sts appsv1.StatefulSet
				ms.one(t, "StatefulSet", "gantry", &sts)
				c := sts.Spec.Template.Spec.Containers[0]
				wantArgs(t, c, "--nats-tls-cert=/etc/gantry/nats-tls/tls.crt", "--nats-tls-key=/etc/gantry/nats-tls/tls.key",
					"--nats-tls-ca=/etc/gantry/nats-tls/ca.crt")
				if slices.Contains(c.Args, "--nats-insecure") {
					t.Error("--nats-insecure with a TLS Secret")
				}
				wantMount(t, c, "/etc/gantry/nats-tls")
				wantSecretVolume(t, sts.Spec.Template.Spec, "gantry-nats-tls")
			}},
		{name: "gantry/ingress", chart: controlPlaneChart, ns: controlPlaneNS,
			values: []string{"--set", "ingress.enabled=true,ingress.className=nginx,ingress.tlsSecretName=gantry-tls,domain=" + domain},
			check: func(t *testing.T, ms manifests) {
				var ing networkingv1.Ingress
				ms.one(t, "Ingress", "gantry", &ing)
				var hosts []string
				for _, r := range ing.Spec.Rules {
					hosts = append(hosts, r.Host)
					if b := r.HTTP.Paths[0].Backend.Service; b.Name != "gantry" || b.Port.Number != 8080 {
						t.Errorf("host %s goes to %+v, want gantry:8080", r.Host, b)
					}
				}
				if !slices.Equal(hosts, wantHosts) || !slices.Equal(ing.Spec.TLS[0].Hosts, wantHosts) {
					t.Errorf("ingress hosts %v, TLS hosts %v; want %v", hosts, ing.Spec.TLS[0].Hosts, wantHosts)
				}
			}},
		{name: "gantry/gateway-api", chart: controlPlaneChart, ns: controlPlaneNS,
			values: []string{"--set", "gatewayAPI.enabled=true,gatewayAPI.parentRefs[0].name=public,gatewayAPI.parentRefs[0].namespace=gateway-system,domain=" + domain},
			check: func(t *testing.T, ms manifests) {
				var route struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
					Metadata   any    `json:"metadata"`
					Spec       struct {
						ParentRefs []map[string]any `json:"parentRefs"`
						Hostnames  []string         `json:"hostnames"`
						Rules      []struct {
							Matches     []any `json:"matches"`
							BackendRefs []struct {
								Name string `json:"name"`
								Port int    `json:"port"`
							} `json:"backendRefs"`
						} `json:"rules"`
					} `json:"spec"`
				}
				ms.one(t, "HTTPRoute", "gantry", &route)
				if route.APIVersion != "gateway.networking.k8s.io/v1" {
					t.Errorf("HTTPRoute apiVersion %s", route.APIVersion)
				}
				if !slices.Equal(route.Spec.Hostnames, wantHosts) {
					t.Errorf("HTTPRoute hostnames %v, want %v", route.Spec.Hostnames, wantHosts)
				}
				if len(route.Spec.ParentRefs) != 1 || route.Spec.ParentRefs[0]["name"] != "public" {
					t.Errorf("parentRefs %v", route.Spec.ParentRefs)
				}
				if b := route.Spec.Rules[0].BackendRefs; len(b) != 1 || b[0].Name != "gantry" || b[0].Port != 8080 {
					t.Errorf("backendRefs %+v, want gantry:8080", b)
				}
			}},
		{name: "agent/default", chart: agentChart, ns: agentNS,
			values: append([]string{"--set", "bootstrapToken.value=gantry-bootstrap-token-x"}, agentRequired...),
			check: func(t *testing.T, ms manifests) {
				d := checkAgent(t, ms)
				wantArgs(t, d.Spec.Template.Spec.Containers[0], "--bootstrap-token-file=/etc/gantry/bootstrap/token")
				var sec corev1.Secret
				ms.one(t, "Secret", "gantry-agent-bootstrap", &sec)
				if sec.StringData["token"] != "gantry-bootstrap-token-x" {
					t.Errorf("bootstrap Secret holds %v", sec.StringData)
				}
			}},
		{name: "agent/nats-tls", chart: agentChart, ns: agentNS,
			values: append([]string{"--set", "bootstrapToken.value=gantry-bootstrap-token-x,nats.tls.existingSecret=gantry-agent-nats-tls"}, agentRequired...),
			check: func(t *testing.T, ms manifests) {
				d := checkAgent(t, ms)
				c := d.Spec.Template.Spec.Containers[0]
				wantArgs(t, c, "--nats-tls-ca=/etc/gantry/nats-tls/ca.crt", "--nats-tls-cert=/etc/gantry/nats-tls/tls.crt",
					"--nats-tls-key=/etc/gantry/nats-tls/tls.key")
				wantMount(t, c, "/etc/gantry/nats-tls")
				wantSecretVolume(t, d.Spec.Template.Spec, "gantry-agent-nats-tls")
			}},
		{name: "agent/identity-token", chart: agentChart, ns: agentNS,
			values: append([]string{"--set", "identityToken.enabled=true,identityToken.clusterId=c-0123",
				"--set", "nats.url=nats://nats.gantry.example.com:4222,schedulerName=gpu-scheduler",
				"--set", "imagePullSecrets={registry-a,registry-b}"}, agentRequired...),
			check: func(t *testing.T, ms manifests) {
				d := checkAgent(t, ms)
				c := d.Spec.Template.Spec.Containers[0]
				wantArgs(t, c, "--identity-token-file=/var/run/secrets/gantry/identity/token", "--cluster-id=c-0123",
					"--nats-url=nats://nats.gantry.example.com:4222", "--scheduler-name=gpu-scheduler",
					"--image-pull-secret=registry-a", "--image-pull-secret=registry-b")
				if argValue(c, "--bootstrap-token-file") != "" || ms.count("Secret") != 0 {
					t.Errorf("identity-token mode still carries a bootstrap token")
				}
				var audience string
				for _, v := range d.Spec.Template.Spec.Volumes {
					if v.Projected != nil {
						audience = v.Projected.Sources[0].ServiceAccountToken.Audience
					}
				}
				if audience != "gantry" {
					t.Errorf("projected token audience %q, want gantry", audience)
				}
			}},
	}
	for _, tc := range charts {
		t.Run("helm/"+tc.name, func(t *testing.T) {
			out := tl.render(ctx, t, tc.chart, tc.ns, tc.values)
			ms := parse(t, out)
			tc.check(t, ms)
			dryRun(ctx, t, env, out)
		})
	}

	kustomize := []struct {
		name     string
		dir      string
		replicas int32
		pdb      bool
	}{
		{name: "base", dir: "kustomize/base", replicas: 1},
		{name: "overlays/ha", dir: "kustomize/overlays/ha", replicas: 3, pdb: true},
	}
	for _, tc := range kustomize {
		t.Run("kustomize/"+tc.name, func(t *testing.T) {
			out, err := env.Kubectl(ctx, nil, "kustomize", tc.dir)
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", tc.dir, err, out)
			}
			ms := parse(t, out)
			var d appsv1.Deployment
			ms.one(t, "Deployment", "gantry", &d)
			if *d.Spec.Replicas != tc.replicas {
				t.Errorf("replicas %d, want %d", *d.Spec.Replicas, tc.replicas)
			}
			pod := d.Spec.Template.Spec
			checkHardened(t, pod)
			checkProbes(t, pod.Containers[0])
			// The generated ConfigMap's hashed name must have reached the env.
			var cm corev1.ConfigMap
			ms.one(t, "ConfigMap", "", &cm)
			if ref := pod.Containers[0].Env[0].ValueFrom.ConfigMapKeyRef.Name; ref != cm.Name || !strings.HasPrefix(ref, "gantry-config-") {
				t.Errorf("env refers to ConfigMap %q, generated %q", ref, cm.Name)
			}
			if tc.pdb {
				var pdb policyv1.PodDisruptionBudget
				ms.one(t, "PodDisruptionBudget", "gantry", &pdb)
				if pdb.Spec.MinAvailable.IntValue() != 2 {
					t.Errorf("PDB minAvailable %v, want 2", pdb.Spec.MinAvailable)
				}
				checkZoneSpread(t, d)
			} else if n := ms.count("PodDisruptionBudget"); n != 0 {
				t.Errorf("base rendered %d PDBs", n)
			}
			dryRun(ctx, t, env, out)
		})
	}
}

// checkAgent checks what every agent render must have: one Recreate
// Deployment of one replica running the Kubernetes runtime, and RBAC no
// wider than the agent's job.
func checkAgent(t *testing.T, ms manifests) appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	ms.one(t, "Deployment", "gantry-agent", &d)
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("agent Deployment: replicas %d, strategy %s; want 1 and Recreate", *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	c := d.Spec.Template.Spec.Containers[0]
	wantArgs(t, c, "agent", "--runtime=kubernetes", "--server=https://api."+domain,
		"--namespace="+functionsNS, "--identity-secret=gantry-agent-identity")
	if len(c.Env) == 0 || c.Env[0].Name != "POD_NAMESPACE" || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE is not set from the downward API: %+v", c.Env)
	}
	checkHardened(t, d.Spec.Template.Spec)

	var fnRole rbacv1.Role
	ms.one(t, "Role", "gantry-agent", &fnRole)
	if fnRole.Namespace != functionsNS {
		t.Errorf("functions Role in namespace %q", fnRole.Namespace)
	}
	var idRole rbacv1.Role
	ms.one(t, "Role", "gantry-agent-identity", &idRole)
	if idRole.Namespace != agentNS {
		t.Errorf("identity Role in namespace %q", idRole.Namespace)
	}
	for _, r := range idRole.Rules {
		if len(r.ResourceNames) == 0 && !slices.Equal(r.Verbs, []string{"create"}) {
			t.Errorf("identity Role grants %v on every Secret of the namespace", r.Verbs)
		}
	}
	var cr rbacv1.ClusterRole
	ms.one(t, "ClusterRole", "", &cr)
	for _, r := range append(cr.Rules, fnRole.Rules...) {
		for _, res := range r.Resources {
			// The one subresource: setting blockOwnerDeletion on a Secret
			// owned by a Deployment (TestAgentRBAC shows why).
			if res == "deployments/finalizers" && slices.Equal(r.Verbs, []string{"update"}) {
				continue
			}
			if strings.Contains(res, "/") || res == "*" || slices.Contains(r.Verbs, "*") {
				t.Errorf("RBAC rule wider than needed: %+v", r)
			}
		}
	}
	return d
}

// checkZoneSpread checks the HA layout: one replica per zone, required, and
// rollouts that replace pods in place, since a surge pod would find no zone.
func checkZoneSpread(t *testing.T, d appsv1.Deployment) {
	t.Helper()
	req := d.Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if len(req) != 1 || req[0].TopologyKey != "topology.kubernetes.io/zone" {
		t.Errorf("HA anti-affinity %+v; want required on topology.kubernetes.io/zone", req)
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxSurge.IntValue() != 0 || ru.MaxUnavailable.IntValue() != 1 {
		t.Errorf("HA rollout %+v; want maxSurge 0, maxUnavailable 1", ru)
	}
}

// checkHardened checks the pod runs as non-root on a read-only root
// filesystem with no added privileges.
func checkHardened(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod does not require a non-root user")
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("container %s is not hardened: %+v", c.Name, sc)
		}
	}
}

// checkProbes checks the server's probes use its health endpoints: alive
// on /healthz, ready (catalog loaded) on /readyz.
func checkProbes(t *testing.T, c corev1.Container) {
	t.Helper()
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		want := "/healthz"
		if name == "readiness" {
			want = "/readyz"
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %+v; want GET %s on port http", name, p, want)
		}
	}
}

func wantArgs(t *testing.T, c corev1.Container, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(c.Args, w) {
			t.Errorf("container %s args %q lack %q", c.Name, c.Args, w)
		}
	}
}

// argValue returns the value of --flag=value in the container's args.
func argValue(c corev1.Container, flag string) string {
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func wantMount(t *testing.T, c corev1.Container, path string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return
		}
	}
	t.Errorf("container %s mounts nothing at %s", c.Name, path)
}

func wantSecretVolume(t *testing.T, pod corev1.PodSpec, secret string) {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secret {
			return
		}
	}
	t.Errorf("the pod has no volume of Secret %s", secret)
}

// TestBadValues checks that values.schema.json rejects bad values at
// install, naming the offending field. Only helm is needed: no API server.
func TestBadValues(t *testing.T) {
	tl := newTools(t, kubetest.Bin(t))
	ctx := testutil.Context(t)
	externalOK := []string{"--set", "mode=external,etcd.endpoints={http://etcd:2379},nats.url=nats://nats:4222,bootstrapSecret.existingSecret=b,mek.file.existingSecret=m"}
	cases := []struct {
		name   string
		chart  string
		values []string
		want   []string // substrings of helm's error
	}{
		{"gantry/embedded-with-3-replicas", controlPlaneChart, []string{"--set", "mode=embedded,replicas=3"}, []string{"/replicas", "maximum"}},
		{"gantry/zero-replicas", controlPlaneChart, []string{"--set", "replicas=0"}, []string{"/replicas", "minimum"}},
		{"gantry/replicas-not-a-number", controlPlaneChart, []string{"--set-string", "replicas=three"}, []string{"/replicas"}},
		{"gantry/unknown-mode", controlPlaneChart, []string{"--set", "mode=hybrid"}, []string{"/mode", "embedded", "external"}},
		{"gantry/unknown-mek-provider", controlPlaneChart, []string{"--set", "mek.provider=bogus"}, []string{"/mek/provider", "file", "openbao"}},
		{"gantry/unknown-admin-keys", controlPlaneChart, []string{"--set", "adminKeys=everyone"}, []string{"/adminKeys", "bootstrap", "loopback", "open"}},
		{"gantry/external-without-etcd", controlPlaneChart, []string{"--set", "mode=external,nats.url=nats://nats:4222,bootstrapSecret.existingSecret=b,mek.file.existingSecret=m"}, []string{"/etcd/endpoints"}},
		{"gantry/external-without-nats", controlPlaneChart, []string{"--set", "mode=external,etcd.endpoints={http://etcd:2379},bootstrapSecret.existingSecret=b,mek.file.existingSecret=m"}, []string{"/nats/url"}},
		{"gantry/external-without-bootstrap-secret", controlPlaneChart, []string{"--set", "mode=external,etcd.endpoints={http://etcd:2379},nats.url=nats://nats:4222,mek.file.existingSecret=m"}, []string{"/bootstrapSecret/existingSecret"}},
		{"gantry/external-file-mek-without-keys", controlPlaneChart, []string{"--set", "mode=external,etcd.endpoints={http://etcd:2379},nats.url=nats://nats:4222,bootstrapSecret.existingSecret=b"}, []string{"/mek/file"}},
		{"gantry/openbao-without-address", controlPlaneChart, append(externalOK, "--set", "mek.provider=openbao,mek.openbao.kubernetes.role=gantry"), []string{"/mek/openbao/address"}},
		{"gantry/openbao-without-auth", controlPlaneChart, []string{"--set", "mek.provider=openbao,mek.openbao.address=https://bao:8200"}, []string{"/mek/openbao"}},
		{"gantry/ingress-without-domain", controlPlaneChart, []string{"--set", "ingress.enabled=true"}, []string{"/domain"}},
		{"gantry/gateway-without-parent", controlPlaneChart, []string{"--set", "gatewayAPI.enabled=true,domain=" + domain}, []string{"/gatewayAPI/parentRefs"}},
		{"agent/missing-control-plane-url", agentChart, []string{"--set", "bootstrapToken.value=t"}, []string{"/controlPlane/url"}},
		{"agent/no-enrollment", agentChart, agentRequired, []string{"/bootstrapToken"}},
		{"agent/bootstrap-value-and-secret", agentChart, append([]string{"--set", "bootstrapToken.value=t,bootstrapToken.existingSecret=s"}, agentRequired...), []string{"/bootstrapToken"}},
		{"agent/identity-token-and-bootstrap", agentChart, append([]string{"--set", "identityToken.enabled=true,identityToken.clusterId=c,bootstrapToken.value=t"}, agentRequired...), []string{"/bootstrapToken/value"}},
		{"agent/identity-token-without-cluster-id", agentChart, append([]string{"--set", "identityToken.enabled=true"}, agentRequired...), []string{"/identityToken/clusterId"}},
		{"agent/bad-namespace", agentChart, append([]string{"--set", "bootstrapToken.value=t,functionsNamespace=GPU_Functions"}, agentRequired...), []string{"/functionsNamespace"}},
		{"gantry/leaf-site-without-key", controlPlaneChart, []string{"--set", "nats.leaf.enabled=true,nats.leaf.sites[0].id=site-a"}, []string{"/nats/leaf/sites/0", "pubkey"}},
		{"gantry/leaf-site-with-a-seed", controlPlaneChart, []string{"--set", "nats.leaf.enabled=true,nats.leaf.sites[0].id=site-a,nats.leaf.sites[0].pubkey=SUAAAA"}, []string{"/nats/leaf/sites/0/pubkey"}},
		{"agent/leaf-without-url", agentChart, append([]string{"--set", "bootstrapToken.value=t,nats.leaf.enabled=true"}, agentRequired...), []string{"/nats/leaf/url"}},
		{"agent/leaf-and-nats-url", agentChart, append([]string{"--set", "bootstrapToken.value=t,nats.leaf.enabled=true,nats.leaf.url=tls://leaf.example.com:7422,nats.url=nats://nats:4222"}, agentRequired...), []string{"/nats/url"}},
		{"agent/leaf-without-nkey-secret", agentChart, append([]string{"--set", "bootstrapToken.value=t,nats.leaf.enabled=true,nats.leaf.url=tls://leaf.example.com:7422,nats.leaf.nkey.existingSecret="}, agentRequired...), []string{"/nats/leaf/nkey/existingSecret"}},
		{"agent/bad-heartbeat", agentChart, append([]string{"--set", "bootstrapToken.value=t,heartbeat=5 seconds"}, agentRequired...), []string{"/heartbeat"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := tl.helm(ctx, append([]string{"template", "gantry", tc.chart}, tc.values...)...)
			if err == nil {
				t.Fatalf("helm template accepted %v:\n%s", tc.values, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("error does not mention %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestAgentLeafValues: the agent chart's nats.leaf block becomes gantry
// agent --leaf with the hub's URL and the site's NKey seed mounted from its
// Secret (a file, never an argument), and nothing of it when disabled. Only
// helm is needed.
func TestAgentLeafValues(t *testing.T) {
	tl := newTools(t, kubetest.Bin(t))
	ctx := testutil.Context(t)
	base := append([]string{"--set", "bootstrapToken.value=t"}, agentRequired...)
	for _, tc := range []struct {
		name    string
		values  []string
		want    []string
		wantNot []string
	}{
		{"disabled", nil, nil, []string{"--leaf", "leaf-nkey"}},
		{"enabled", []string{"--set", "nats.leaf.enabled=true,nats.leaf.url=tls://leaf.example.com:7422"},
			[]string{"- --leaf=127.0.0.1:4222", "- --leaf-url=tls://leaf.example.com:7422", "- --leaf-nkey-file=/etc/gantry/leaf-nkey/seed",
				"secretName: gantry-agent-nkey", "key: seed", "mountPath: /etc/gantry/leaf-nkey"}, []string{"--nats-insecure", "--nats-url"}},
		{"served beyond loopback", []string{"--set", "nats.leaf.enabled=true,nats.leaf.url=nats-leaf://hub:7422,nats.leaf.listen=0.0.0.0:4222,nats.leaf.insecure=true,nats.leaf.nkey.existingSecret=site-nkey"},
			[]string{"- --leaf=0.0.0.0:4222", "- --nats-insecure", "secretName: site-nkey"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := tl.render(ctx, t, agentChart, agentNS, append(append([]string{}, base...), tc.values...))
			var dep string
			for _, m := range parse(t, out) {
				if m.Kind == "Deployment" {
					dep = string(m.Raw)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(dep, w) {
					t.Errorf("the Deployment lacks %q:\n%s", w, dep)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(dep, w) {
					t.Errorf("the Deployment holds %q:\n%s", w, dep)
				}
			}
		})
	}
}

// TestHubLeafValues: the control-plane chart's nats.leaf block becomes
// --nats-leaf-listen on port 7422, published by the Service, with the
// sites' public keys in a ConfigMap mounted in gen-secrets' layout for
// --nats-leaf-keys. Only helm is needed.
func TestHubLeafValues(t *testing.T) {
	tl := newTools(t, kubetest.Bin(t))
	ctx := testutil.Context(t)
	const pub = "UAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	out := tl.render(ctx, t, controlPlaneChart, controlPlaneNS, []string{"--set",
		"nats.leaf.enabled=true,nats.leaf.sites[0].id=site-a,nats.leaf.sites[0].pubkey=" + pub})
	got := map[string]string{}
	for _, m := range parse(t, out) {
		got[m.Kind] += string(m.Raw)
	}
	for kind, wants := range map[string][]string{
		"StatefulSet": {"- --nats-leaf-listen=0.0.0.0:7422", "- --nats-leaf-keys=/etc/gantry/leaf-keys", "containerPort: 7422",
			"mountPath: /etc/gantry/leaf-keys", `path: "cpc/site-a/nkeys/user/pubkey"`},
		"Service":   {"name: nats-leaf", "port: 7422"},
		"ConfigMap": {`"site-a": "` + pub + `"`},
	} {
		for _, w := range wants {
			if !strings.Contains(got[kind], w) {
				t.Errorf("the %s lacks %q:\n%s", kind, w, got[kind])
			}
		}
	}
	plain := tl.render(ctx, t, controlPlaneChart, controlPlaneNS, nil)
	if strings.Contains(plain, "leaf") {
		t.Errorf("without nats.leaf the chart renders a leaf listener:\n%s", plain)
	}
}
