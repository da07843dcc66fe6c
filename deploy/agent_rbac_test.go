package deploy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/kube"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/testutil/kubetest"
)

// rbacClusterID is the cluster id the agent runs as in TestAgentRBAC.
const rbacClusterID = "c1"

// indirectGrants are rules the agent never uses in a request of its own but
// that the API server checks on its behalf, with the reason. Both come from
// OwnerReferencesPermissionEnforcement: an instance's Secret is owned by its
// Deployment (so it goes with it) with blockOwnerDeletion (so a foreground
// deletion waits for it), and the runtime takes over a Secret left by an
// earlier start by setting that owner. TestAgentRBAC shows each is needed by
// taking it away.
var indirectGrants = []indirectGrant{
	{request{verb: "delete", resource: "secrets"}, "only who may delete a Secret may set its ownerReferences"},
	{request{verb: "update", group: "apps", resource: "deployments/finalizers"}, "only who may update the owner's finalizers may set blockOwnerDeletion"},
}

// indirectGrant is one verb on one resource, and why the agent needs it.
type indirectGrant struct {
	grant request
	why   string
}

// TestAgentRBAC installs the agent chart (all but the agent's Deployment, as
// no image runs here) on a real API server with a scheduler, the
// controllers and a kwok GPU node, and then does everything the agent does
// on Kubernetes with nothing but a token of the chart's ServiceAccount: start
// the runtime, read the GPU inventory, run an instance with env, secrets and
// a health check until it is RUNNING, see its GPUs leave the node's free GPUs
// (counted from every pod of the cluster), stop it, and keep the identity
// Secret.
// Then it checks the RBAC is no wider than that: every rule the chart grants
// was used by some request of the agent's (or is one of indirectGrants, each
// shown needed), and requests outside the agent's job are Forbidden.
//
// The API server runs OwnerReferencesPermissionEnforcement, as OpenShift
// does, because an owned Secret takes rights there that a default API server
// does not check.
func TestAgentRBAC(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{AdmissionPlugins: []string{"OwnerReferencesPermissionEnforcement"}})
	env.AddGPUNode(t, kubetest.GPUNode{Name: "h100", Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, GPUMemoryMiB: 81559})
	tl := newTools(t, env.Bin)

	installs := []struct {
		name      string
		releaseNS string
		values    []string
		// existingNS is a functions namespace the cluster admin creates
		// before the install, for createFunctionsNamespace=false.
		existingNS string
		// noWatchList has the agent meet an API server without streaming
		// lists, so that its informers list, then watch.
		noWatchList bool
	}{
		{name: "chart-creates-namespace", releaseNS: "gantry-system"},
		{name: "existing-namespace-no-watchlist", releaseNS: "gantry-agent-b", existingNS: "gpu-jobs", noWatchList: true,
			values: []string{"--set", "createFunctionsNamespace=false,functionsNamespace=gpu-jobs,identitySecret=agent-b-identity"}},
	}
	// unused holds, for each install, the grants its agent did not use.
	var unused []map[string]bool
	for _, tc := range installs {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testutil.Context(t)
			for _, ns := range []string{tc.releaseNS, tc.existingNS} {
				if ns == "" {
					continue
				}
				if out, err := env.Kubectl(ctx, nil, "create", "namespace", ns); err != nil {
					t.Fatalf("create namespace %s: %v\n%s", ns, err, out)
				}
			}
			values := append([]string{"--set", "controlPlane.url=http://gantry.example:8080,bootstrapToken.value=gantry-bootstrap-rbac"}, tc.values...)
			ms := parse(t, tl.render(ctx, t, agentChart, tc.releaseNS, values))
			a := install(ctx, t, env, ms)

			rec := &requestLog{noWatchList: tc.noWatchList}
			agentClient, probe := agentClients(ctx, t, env, a, rec)
			waitBound(t, probe, a)
			runAgent(ctx, t, env, agentClient, a)
			rec.checkNeverForbidden(t)
			if tc.noWatchList && !slices.ContainsFunc(rec.requests(), func(q request) bool { return q.verb == "list" }) {
				t.Errorf("without streaming lists the agent's informers did not list")
			}
			unused = append(unused, rec.unusedGrants(t, ms))
			checkIndirectGrantsNeeded(ctx, t, env, ms, a, probe)
			checkForbidden(t, probe, a)
		})
	}
	if len(unused) == len(installs) {
		for _, g := range keys(unused[0]) {
			if !slices.ContainsFunc(unused[1:], func(u map[string]bool) bool { return !u[g] }) {
				t.Errorf("the chart grants %s, which the agent never used", g)
			}
		}
	}
}

// agentInstall is what the rendered chart says about the agent it would run.
type agentInstall struct {
	namespace      string // the release's, which holds the identity Secret
	serviceAccount string
	functionsNS    string // --namespace
	identitySecret string // --identity-secret
	bootstrap      string // the bootstrap token's Secret
}

// install applies every rendered object except the agent's Deployment, which
// has no image to run here: its pod would only be faked Running by kwok, and
// the test itself plays the agent. The Deployment is read instead, so the
// test acts with the ServiceAccount and flags the real agent would have.
func install(ctx context.Context, t *testing.T, env *kubetest.Env, ms manifests) agentInstall {
	t.Helper()
	var d appsv1.Deployment
	ms.one(t, "Deployment", "gantry-agent", &d)
	var bootstrap corev1.Secret
	ms.one(t, "Secret", "", &bootstrap)
	c := d.Spec.Template.Spec.Containers[0]
	a := agentInstall{namespace: d.Namespace, serviceAccount: d.Spec.Template.Spec.ServiceAccountName,
		functionsNS: argValue(c, "--namespace"), identitySecret: argValue(c, "--identity-secret"), bootstrap: bootstrap.Name}
	if a.namespace == "" || a.serviceAccount == "" || a.functionsNS == "" || a.identitySecret == "" {
		t.Fatalf("rendered agent Deployment lacks a namespace, ServiceAccount or flag: %+v", a)
	}
	var docs []string
	for _, m := range ms {
		if m.Kind != "Deployment" {
			docs = append(docs, string(m.Raw))
		}
	}
	if out, err := env.Kubectl(ctx, []byte(strings.Join(docs, "\n---\n")), "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	return a
}

// agentClients mints a token of the agent's ServiceAccount with the
// TokenRequest API and returns two clients holding only that token (the
// admin's Host and TLS settings, none of its credentials): agent, whose
// requests rec records, and probe, for the test's own checks.
func agentClients(ctx context.Context, t *testing.T, env *kubetest.Env, a agentInstall, rec *requestLog) (agent, probe kubernetes.Interface) {
	t.Helper()
	cfg := restrictedConfig(ctx, t, env, a.namespace, a.serviceAccount)
	probe, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(rec.wrap)
	agent, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return agent, probe
}

// restrictedConfig is a client configuration that authenticates as the
// ServiceAccount and nothing else.
func restrictedConfig(ctx context.Context, t *testing.T, env *kubetest.Env, ns, sa string) *rest.Config {
	t.Helper()
	tr, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// waitBound waits until the API server's RBAC cache has the chart's three
// bindings, which it learns of a moment after they are created.
func waitBound(t *testing.T, probe kubernetes.Interface, a agentInstall) {
	t.Helper()
	ctx := testutil.Context(t)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if _, err := probe.CoreV1().Namespaces().Get(ctx, a.functionsNS, metav1.GetOptions{}); err != nil {
			return err
		}
		if _, err := probe.AppsV1().Deployments(a.functionsNS).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return err
		}
		if _, err := probe.CoreV1().Secrets(a.namespace).Get(ctx, a.identitySecret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("get the identity Secret before any Save: %v, want NotFound", err)
		}
		return nil
	})
}

// runAgent does what the agent does, as the agent.
func runAgent(ctx context.Context, t *testing.T, env *kubetest.Env, client kubernetes.Interface, a agentInstall) {
	t.Helper()
	nctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	rt, err := kube.New(nctx, kube.Config{Client: client, Namespace: a.functionsNS, ClusterID: rbacClusterID})
	cancel()
	if err != nil {
		t.Fatalf("kube.New as the agent: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	if inv := rt.Inventory(); !slices.ContainsFunc(inv.Nodes, func(n model.Node) bool {
		return n.Name == "h100" && n.GPUModel == "H100" && n.GPUs == 8
	}) {
		t.Errorf("inventory %+v lacks node h100 with 8 H100", inv.Nodes)
	}

	// A Secret left by an earlier, failed start of the instance: the
	// runtime takes it over (get, then update), as on a retry.
	spec := runtime.Spec{InstanceID: "rbac-1", FunctionID: "fn-rbac", FunctionVersionID: "ver-1",
		Image: "nvcr.io/example/echo:1", InferencePort: 8000,
		Env:      []model.EnvVar{{Key: "MODE", Value: "rbac-test"}},
		Secrets:  map[string]string{"API_KEY": "s3cret"},
		Health:   runtime.HealthCheck{Protocol: "HTTP", Path: "/health", Timeout: 3 * time.Second},
		GPUModel: "H100", GPUCount: 2}
	const objName = "gantry-rbac-1" // the runtime's name for instance rbac-1
	secrets := env.Client.CoreV1().Secrets(a.functionsNS)
	if _, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: objName},
		StringData: map[string]string{"stale": "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	if err := rt.Start(ctx, spec); err != nil {
		t.Fatalf("Start as the agent: %v", err)
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		for _, st := range rt.List() {
			if st.InstanceID == spec.InstanceID && st.State == runtime.StateRunning {
				return nil
			}
		}
		return fmt.Errorf("instance not RUNNING: %+v", rt.List())
	})
	testutil.WaitFor(t, 10*time.Second, func() error {
		if free := rt.FreeGPUs(); free["h100"] != 6 {
			return fmt.Errorf("FreeGPUs = %v with a 2-GPU instance on h100, want h100: 6", free)
		}
		return nil
	})
	sec, err := secrets.Get(ctx, objName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data["API_KEY"]) != "s3cret" || len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].Kind != "Deployment" {
		t.Errorf("instance Secret not taken over: keys %v, owners %+v", keys(sec.Data), sec.OwnerReferences)
	}

	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := rt.Stop(sctx, spec.InstanceID); err != nil {
		t.Fatalf("Stop as the agent: %v", err)
	}
	sel := metav1.ListOptions{LabelSelector: kube.InstanceLabel + "=" + spec.InstanceID}
	if _, err := env.Client.AppsV1().Deployments(a.functionsNS).Get(ctx, objName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment after Stop: %v, want NotFound", err)
	}
	if pods, err := env.Client.CoreV1().Pods(a.functionsNS).List(ctx, sel); err != nil || len(pods.Items) != 0 {
		t.Errorf("pods after Stop: %d (%v), want none", len(pods.Items), err)
	}
	if _, err := secrets.Get(ctx, objName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret after Stop: %v, want NotFound", err)
	}

	ids := agent.SecretIdentity{Secrets: client.CoreV1().Secrets(a.namespace), Namespace: a.namespace, Name: a.identitySecret}
	if _, ok, err := ids.Load(ctx); ok || err != nil {
		t.Fatalf("Load before any Save: found %v, %v", ok, err)
	}
	id := agent.Identity{ClusterID: rbacClusterID, Credential: "cred-1", NATSURL: "nats://gantry.example:4222",
		ExpiresAt: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}
	for _, cred := range []string{"cred-1", "cred-2"} { // create, then update
		id.Credential = cred
		if err := ids.Save(ctx, id); err != nil {
			t.Fatalf("Save %s as the agent: %v", cred, err)
		}
		got, ok, err := ids.Load(ctx)
		if err != nil || !ok || got.Credential != cred || got.ClusterID != id.ClusterID || !got.ExpiresAt.Equal(id.ExpiresAt) {
			t.Fatalf("Load after Save %s: %+v, %v, %v", cred, got, ok, err)
		}
	}
}

// checkIndirectGrantsNeeded binds a second ServiceAccount to the functions
// Role minus one of indirectGrants at a time and shows that it cannot take
// over a Secret by making it owned as the runtime does, while the agent can.
func checkIndirectGrantsNeeded(ctx context.Context, t *testing.T, env *kubetest.Env, ms manifests, a agentInstall, asAgent kubernetes.Interface) {
	t.Helper()
	var role rbacv1.Role
	ms.one(t, "Role", "gantry-agent", &role)
	// takeOver has c do what the runtime does to a Secret left by an
	// earlier start: make it owned by the instance's Deployment.
	takeOver := func(t *testing.T, c kubernetes.Interface, name string) error {
		t.Helper()
		secrets := c.CoreV1().Secrets(a.functionsNS)
		if _, err := env.Client.CoreV1().Secrets(a.functionsNS).Create(ctx,
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "gantry-owner",
			UID: types.UID("00000000-0000-0000-0000-000000000001"), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
		return err
	}
	for _, ig := range indirectGrants {
		g := ig.grant
		t.Run("needs "+g.String(), func(t *testing.T) {
			name := "without-" + strings.NewReplacer("/", "-", ".", "-").Replace(g.verb+"-"+g.resource)
			reduced := rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: a.functionsNS}}
			for _, r := range role.Rules {
				if slices.Contains(r.APIGroups, g.group) && slices.Contains(r.Resources, g.resource) {
					r.Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == g.verb })
				}
				if len(r.Verbs) > 0 {
					reduced.Rules = append(reduced.Rules, r)
				}
			}
			rbac := env.Client.RbacV1()
			if _, err := env.Client.CoreV1().ServiceAccounts(a.namespace).Create(ctx,
				&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := rbac.Roles(a.functionsNS).Create(ctx, &reduced, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := rbac.RoleBindings(a.functionsNS).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: a.functionsNS},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: a.namespace}},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			without, err := kubernetes.NewForConfig(restrictedConfig(ctx, t, env, a.namespace, name))
			if err != nil {
				t.Fatal(err)
			}
			// Bound once it may read Secrets: a Forbidden update is then
			// the missing rule's doing, not a binding not yet seen.
			testutil.WaitFor(t, 10*time.Second, func() error {
				_, err := without.CoreV1().Secrets(a.functionsNS).Get(ctx, "absent", metav1.GetOptions{})
				if !apierrors.IsNotFound(err) {
					return fmt.Errorf("get a Secret: %v, want NotFound", err)
				}
				return nil
			})
			if err := takeOver(t, without, name); !apierrors.IsForbidden(err) {
				t.Errorf("took over a Secret without %s (%s): %v, want Forbidden", g, ig.why, err)
			}
			if err := takeOver(t, asAgent, name+"-agent"); err != nil {
				t.Errorf("the agent cannot take over a Secret: %v", err)
			}
		})
	}
}

// checkForbidden shows requests outside the agent's job are refused.
func checkForbidden(t *testing.T, c kubernetes.Interface, a agentInstall) {
	t.Helper()
	deployment := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}}
	cases := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"list secrets in kube-system", func(ctx context.Context) error {
			_, err := c.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
			return err
		}},
		{"list secrets in the agent namespace", func(ctx context.Context) error {
			_, err := c.CoreV1().Secrets(a.namespace).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"get the bootstrap Secret", func(ctx context.Context) error {
			_, err := c.CoreV1().Secrets(a.namespace).Get(ctx, a.bootstrap, metav1.GetOptions{})
			return err
		}},
		{"delete the identity Secret", func(ctx context.Context) error {
			return c.CoreV1().Secrets(a.namespace).Delete(ctx, a.identitySecret, metav1.DeleteOptions{})
		}},
		{"delete a node", func(ctx context.Context) error {
			return c.CoreV1().Nodes().Delete(ctx, "h100", metav1.DeleteOptions{})
		}},
		{"create a Deployment in default", func(ctx context.Context) error {
			_, err := c.AppsV1().Deployments("default").Create(ctx, deployment, metav1.CreateOptions{})
			return err
		}},
		// Pods may be listed and watched everywhere (free GPUs count every
		// pod), but not read one by one, made or removed.
		{"create a pod in default", func(ctx context.Context) error {
			_, err := c.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}}, metav1.CreateOptions{})
			return err
		}},
		{"delete pods in default", func(ctx context.Context) error {
			return c.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		}},
		{"get a pod's log in default", func(ctx context.Context) error {
			return c.CoreV1().Pods("default").GetLogs("any", &corev1.PodLogOptions{}).Do(ctx).Error()
		}},
		{"create a pod in the functions namespace", func(ctx context.Context) error {
			_, err := c.CoreV1().Pods(a.functionsNS).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}}, metav1.CreateOptions{})
			return err
		}},
		{"create a namespace", func(ctx context.Context) error {
			_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}}, metav1.CreateOptions{})
			return err
		}},
		{"delete the functions namespace", func(ctx context.Context) error {
			return c.CoreV1().Namespaces().Delete(ctx, a.functionsNS, metav1.DeleteOptions{})
		}},
		{"get kube-system", func(ctx context.Context) error {
			_, err := c.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run("forbidden/"+tc.name, func(t *testing.T) {
			if err := tc.do(testutil.Context(t)); !apierrors.IsForbidden(err) {
				t.Errorf("got %v, want Forbidden", err)
			}
		})
	}
}

// request is what RBAC decides on in one API request: the attributes a rule
// can name (k8s.io/apiserver's RequestInfo, for the URLs client-go makes).
type request struct {
	verb, group, resource, namespace, name string
	status                                 int
}

func (q request) String() string {
	res := q.resource
	if q.group != "" {
		res = q.group + "/" + res
	}
	return q.verb + " " + res
}

// requestOf reads the RBAC attributes of a resource request; discovery and
// /version are not resource requests.
func requestOf(r *http.Request) (request, bool) {
	var q request
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		q.group, parts = parts[1], parts[3:]
	default:
		return q, false
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		q.namespace, parts = parts[1], parts[2:]
	}
	q.resource = parts[0]
	if len(parts) > 1 {
		q.name = parts[1]
	}
	if len(parts) > 2 {
		q.resource += "/" + parts[2]
	}
	switch r.Method {
	case http.MethodGet:
		switch w := r.URL.Query().Get("watch"); {
		case w == "true" || w == "1":
			q.verb = "watch"
		case q.name == "":
			q.verb = "list"
		default:
			q.verb = "get"
		}
	case http.MethodPost:
		q.verb = "create"
	case http.MethodPut:
		q.verb = "update"
	case http.MethodPatch:
		q.verb = "patch"
	case http.MethodDelete:
		q.verb = "delete"
		if q.name == "" {
			q.verb = "deletecollection"
		}
	}
	return q, true
}

// requestLog records the agent's requests.
type requestLog struct {
	// noWatchList answers a streaming list (a watch with
	// sendInitialEvents=true) as an API server without the WatchList
	// feature does, without passing it on; client-go then lists and
	// watches.
	noWatchList bool

	mu   sync.Mutex
	seen []request
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (l *requestLog) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if l.noWatchList && r.URL.Query().Get("sendInitialEvents") == "true" {
			return noWatchListResponse(r), nil
		}
		resp, err := next.RoundTrip(r)
		if q, ok := requestOf(r); ok && err == nil {
			q.status = resp.StatusCode
			l.mu.Lock()
			l.seen = append(l.seen, q)
			l.mu.Unlock()
		}
		return resp, err
	})
}

// noWatchListResponse is a kube-apiserver's answer, with the WatchList
// feature off, to a watch with sendInitialEvents.
func noWatchListResponse(r *http.Request) *http.Response {
	body := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",` +
		`"message":"ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",` +
		`"reason":"Invalid","code":422}`
	return &http.Response{StatusCode: http.StatusUnprocessableEntity, Status: "422 Unprocessable Entity",
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: r,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body))}
}

func (l *requestLog) requests() []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen)
}

// checkNeverForbidden fails on any request of the agent's the API server
// refused: informers retry a forbidden list quietly, so a missing rule
// could otherwise go unseen.
func (l *requestLog) checkNeverForbidden(t *testing.T) {
	t.Helper()
	for _, q := range l.requests() {
		if q.status == http.StatusForbidden {
			t.Errorf("the agent was refused: %s in namespace %q, name %q", q, q.namespace, q.name)
		}
	}
}

// unusedGrants returns each verb a rendered Role or ClusterRole grants that
// no request of the agent's used, leaving out indirectGrants. The keys leave
// out namespaces, so that installs in other namespaces compare:
// "Role gantry-agent: watch pods".
func (l *requestLog) unusedGrants(t *testing.T, ms manifests) map[string]bool {
	t.Helper()
	type role struct {
		key       string
		namespace string // "" for a ClusterRole: any
		rules     []rbacv1.PolicyRule
	}
	var roles []role
	for _, m := range ms {
		switch m.Kind {
		case "Role":
			var r rbacv1.Role
			ms.one(t, "Role", m.Name, &r)
			roles = append(roles, role{"Role " + r.Name, r.Namespace, r.Rules})
		case "ClusterRole":
			var r rbacv1.ClusterRole
			ms.one(t, "ClusterRole", m.Name, &r)
			roles = append(roles, role{"ClusterRole", "", r.Rules})
		}
	}
	seen := l.requests()
	unused := map[string]bool{}
	for _, role := range roles {
		for _, rule := range role.rules {
			for _, group := range rule.APIGroups {
				for _, res := range rule.Resources {
					for _, verb := range rule.Verbs {
						g := request{verb: verb, group: group, resource: res}
						if slices.ContainsFunc(indirectGrants, func(ig indirectGrant) bool { return ig.grant == g }) {
							continue
						}
						if !slices.ContainsFunc(seen, func(q request) bool {
							return q.verb == verb && q.group == group && q.resource == res &&
								(role.namespace == "" || q.namespace == role.namespace) &&
								(len(rule.ResourceNames) == 0 || slices.Contains(rule.ResourceNames, q.name))
						}) {
							unused[role.key+": "+g.String()] = true
						}
					}
				}
			}
		}
	}
	var used []string
	for _, q := range seen {
		used = append(used, fmt.Sprintf("%s %s/%s", q, q.namespace, q.name))
	}
	slices.Sort(used)
	t.Logf("the agent's requests:\n%s\ngrants it did not use: %v", strings.Join(slices.Compact(used), "\n"), keys(unused))
	return unused
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
