package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
)

// fakeClusters extends fakeAPI with the cluster routes, over canned clusters
// of one account. Like fakeAPI it models no platform behaviour: cordon sets
// a flag, registration hands out a made-up bootstrap token.
type fakeClusters struct {
	*fakeAPI
	account string

	// clusters and issued are guarded by fakeAPI.mu.
	clusters []model.Cluster
	issued   []string // bootstrap tokens handed out
}

func newFakeClusters(t *testing.T) *fakeClusters {
	t.Helper()
	f := &fakeClusters{fakeAPI: newFakeAPI(t), account: controlplane.DefaultAccount}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/accounts/{ncaId}/clusters", f.register)
	mux.HandleFunc("GET /v1/accounts/{ncaId}/clusters", f.list)
	mux.HandleFunc("GET /v1/accounts/{ncaId}/clusters/{id}", f.get)
	mux.HandleFunc("DELETE /v1/accounts/{ncaId}/clusters/{id}", f.delete)
	mux.HandleFunc("POST /v1/accounts/{ncaId}/clusters/{id}/{action}", f.action)
	// The same recording and token check as fakeAPI's server, in front of
	// the cluster routes.
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mu.Lock()
		f.requests = append(f.requests, fakeRequest{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), r.Header.Clone(), body})
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			f.problem(w, r, http.StatusUnauthorized, "invalid credential")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// ownAccount answers 404 for another account's path, as the API does.
func (f *fakeClusters) ownAccount(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("ncaId") != f.account {
		f.problem(w, r, http.StatusNotFound, "account "+r.PathValue("ncaId")+" not found")
		return false
	}
	return true
}

// addCluster stores a cluster of the fake's account.
func (f *fakeClusters) addCluster(c model.Cluster) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.NCAID = f.account
	f.clusters = append(f.clusters, c)
}

func (f *fakeClusters) register(w http.ResponseWriter, r *http.Request) {
	if !f.ownAccount(w, r) {
		return
	}
	var req model.ClusterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		f.problem(w, r, 400, "bad body")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.clusters {
		if c.Name == req.ClusterName {
			f.problem(w, r, http.StatusConflict, fmt.Sprintf("cluster %q is already registered as %s", c.Name, c.ID))
			return
		}
	}
	c := model.Cluster{ID: fmt.Sprintf("c-%d", len(f.clusters)+1), Name: req.ClusterName, GroupID: "g-" + req.ClusterGroupName,
		GroupName: req.ClusterGroupName, NCAID: f.account, Region: req.Region, Zone: req.Zone, Labels: req.Labels,
		Status: model.ClusterNotReady, CreatedAt: time.Now()}
	f.clusters = append(f.clusters, c)
	tok := fmt.Sprintf("gantry-bootstrap.BOOTSTRAP-s3cret-%d", len(f.issued)+1)
	f.issued = append(f.issued, tok)
	writeJSON(w, 200, model.ClusterRegistration{Cluster: c, ClusterID: c.ID, ClusterGroupID: c.GroupID,
		BootstrapToken: tok, BootstrapExpiresAt: time.Now().Add(time.Hour)})
}

func (f *fakeClusters) list(w http.ResponseWriter, r *http.Request) {
	if !f.ownAccount(w, r) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	writeJSON(w, 200, append([]model.Cluster{}, f.clusters...)) // a bare array, as the API answers
}

// find returns the index of the cluster the path names, or answers 404.
// The caller holds f.mu.
func (f *fakeClusters) find(w http.ResponseWriter, r *http.Request) int {
	for i, c := range f.clusters {
		if c.ID == r.PathValue("id") {
			return i
		}
	}
	f.problem(w, r, http.StatusNotFound, "cluster "+r.PathValue("id")+" not found")
	return -1
}

func (f *fakeClusters) get(w http.ResponseWriter, r *http.Request) {
	if !f.ownAccount(w, r) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := f.find(w, r); i >= 0 {
		writeJSON(w, 200, f.clusters[i])
	}
}

func (f *fakeClusters) delete(w http.ResponseWriter, r *http.Request) {
	if !f.ownAccount(w, r) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := f.find(w, r); i >= 0 {
		f.clusters = append(f.clusters[:i], f.clusters[i+1:]...)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (f *fakeClusters) action(w http.ResponseWriter, r *http.Request) {
	if !f.ownAccount(w, r) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.find(w, r)
	if i < 0 {
		return
	}
	c := &f.clusters[i]
	switch r.PathValue("action") {
	case "cordon":
		c.Cordoned = true
	case "uncordon":
		c.Cordoned, c.Draining = false, false
	case "drain":
		c.Cordoned, c.Draining = true, true
	default:
		f.problem(w, r, http.StatusNotFound, "no such action")
		return
	}
	writeJSON(w, 200, *c)
}

// cluster runs `gantry cluster --account <the fake's> args...` through
// NewRoot, as an embedder would, and returns stdout and the error.
func (f *fakeClusters) cluster(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out, errb bytes.Buffer
	root.SetArgs(append([]string{"--server", f.srv.URL, "--token", f.token, "--config", f.cfg,
		"cluster", "--account", f.account}, args...))
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.Execute()
	if errb.Len() != 0 {
		t.Errorf("gantry cluster %v wrote to stderr: %s", args, errb.String())
	}
	return out.String(), err
}

// seed stores three clusters: one ready, one down and cordoned, one draining.
func (f *fakeClusters) seed() {
	now := time.Now()
	f.addCluster(model.Cluster{ID: "c-1", Name: "us-east", GroupName: "prod", Region: "us-east-1", Zone: "a",
		Status: model.ClusterReady, LastHeartbeat: now.Add(-5 * time.Second), CreatedAt: now.Add(-3 * 24 * time.Hour),
		Inventory: model.Inventory{Nodes: []model.Node{
			{Name: "n1", GPUModel: "H100", GPUMemoryGB: 80, GPUs: 8},
			{Name: "n2", GPUModel: "L40S", GPUMemoryGB: 48, GPUs: 2},
			{Name: "n3", GPUModel: "H100", GPUMemoryGB: 80, GPUs: 4},
		}}, UsedGPUs: map[string]int{"H100": 6}, IdleInstances: 2, StandbyInstances: 1})
	f.addCluster(model.Cluster{ID: "c-2", Name: "eu-west", GroupName: "prod", Status: model.ClusterNotReady,
		Cordoned: true, CreatedAt: now.Add(-2 * time.Hour)})
	f.addCluster(model.Cluster{ID: "c-3", Name: "lab", GroupName: "dev", Region: "home", Status: model.ClusterReady,
		Draining: true, LastHeartbeat: now.Add(-2 * time.Minute), CreatedAt: now.Add(-10 * time.Minute),
		Inventory: model.Inventory{Nodes: []model.Node{{Name: "n1", GPUModel: "L40S", GPUMemoryGB: 48, GPUs: 1}}}})
}

func TestClusterRegister(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	jwks := writeFile(t, filepath.Join(dir, "jwks.json"), `{"keys":[{"kty":"RSA","kid":"k1"}]}`)
	notJSON := writeFile(t, filepath.Join(dir, "jwks.txt"), "keys: []")

	tests := []struct {
		name   string
		args   []string
		stdin  string
		setup  func(f *fakeClusters)
		code   int
		want   *model.ClusterRequest // the request body; nil when none may be sent
		stdout func(f *fakeClusters) string
		stderr []string
	}{
		{
			name: "minimal, table",
			args: []string{"register", "--name", "us-east", "--group", "prod"},
			want: &model.ClusterRequest{ClusterName: "us-east", ClusterGroupName: "prod"},
			stdout: func(f *fakeClusters) string {
				return "Registered cluster us-east (id c-1) in group prod.\n" +
					"Start its agent within 1h (the bootstrap token works once):\n\n" +
					"  gantry agent --server " + f.srv.URL + " --bootstrap-token 'gantry-bootstrap.BOOTSTRAP-s3cret-1' --state-dir /var/lib/gantry-agent\n\n" +
					"or, on Kubernetes, install the agent chart:\n\n" +
					"  kubectl create namespace gantry-agent\n" +
					"  kubectl -n gantry-agent create secret generic gantry-bootstrap --from-literal=token=<the bootstrap token above>\n" +
					"  helm install gantry-agent deploy/helm/gantry-agent -n gantry-agent --set controlPlane.url=" + f.srv.URL +
					" --set bootstrapToken.existingSecret=gantry-bootstrap\n"
			},
		},
		{
			name: "every flag",
			args: []string{"register", "--name", "k8s-1", "--group", "prod", "--region", "eu-1", "--zone", "b",
				"--label", "rack=r12", "--label", "tier=a=b", "--label", "rack=r13", "--cloud-provider", "aws",
				"--oidc-issuer", "https://k8s.example.com", "--jwks-file", jwks},
			want: &model.ClusterRequest{ClusterName: "k8s-1", ClusterGroupName: "prod", Region: "eu-1", Zone: "b",
				Labels: map[string]string{"rack": "r13", "tier": "a=b"}, CloudProvider: "aws",
				OIDCIssuer: "https://k8s.example.com", JWKS: json.RawMessage(`{"keys":[{"kty":"RSA","kid":"k1"}]}`)},
		},
		{
			name:  "JWKS from stdin",
			args:  []string{"register", "--name", "k8s-2", "--group", "prod", "--jwks-file", "-"},
			stdin: `{"keys":[{"kty":"OKP"}]}`,
			want:  &model.ClusterRequest{ClusterName: "k8s-2", ClusterGroupName: "prod", JWKS: json.RawMessage(`{"keys":[{"kty":"OKP"}]}`)},
		},
		{
			name: "missing name", args: []string{"register", "--group", "prod"}, code: 1,
			stderr: []string{"Error: --name is required", "gantry cluster register --help"},
		},
		{
			name: "missing group", args: []string{"register", "--name", "x"}, code: 1,
			stderr: []string{"Error: --group is required"},
		},
		{
			name: "bad label", args: []string{"register", "--name", "x", "--group", "g", "--label", "rack"}, code: 1,
			stderr: []string{`--label "rack": want KEY=VALUE`},
		},
		{
			name: "JWKS not JSON", args: []string{"register", "--name", "x", "--group", "g", "--jwks-file", notJSON}, code: 1,
			stderr: []string{"jwks.txt is not JSON", "Hint: a JSON Web Key Set looks like"},
		},
		{
			name: "JWKS file missing", args: []string{"register", "--name", "x", "--group", "g", "--jwks-file", filepath.Join(dir, "nope")}, code: 1,
			stderr: []string{"--jwks-file:", "nope"},
		},
		{
			name: "name taken", args: []string{"register", "--name", "taken", "--group", "prod"}, code: 1,
			setup:  func(f *fakeClusters) { f.addCluster(model.Cluster{ID: "c-1", Name: "taken"}) },
			want:   &model.ClusterRequest{ClusterName: "taken", ClusterGroupName: "prod"},
			stderr: []string{`Error: 409 Conflict: cluster "taken" is already registered as c-1`},
		},
		{
			name: "another account", args: []string{"--account", "someone-else", "register", "--name", "x", "--group", "g"}, code: 1,
			want:   &model.ClusterRequest{ClusterName: "x", ClusterGroupName: "g"},
			stderr: []string{"Error: 404 Not Found: account someone-else not found", "Hint: clusters live in the account of your token; pass --account or set GANTRY_ACCOUNT"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeClusters(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			r := f.gantry(t, tc.stdin, append([]string{"cluster", "--account", f.account}, tc.args...)...)
			r.check(t, tc.code, nil, tc.stderr)
			if tc.stdout != nil && r.stdout != tc.stdout(f) {
				t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, tc.stdout(f))
			}
			if tc.want == nil {
				if n := f.count("POST", "/v1/accounts/"); n != 0 {
					t.Errorf("%d register requests sent for a bad command line", n)
				}
				return
			}
			req := f.last(t, "POST", "/v1/accounts/")
			var got model.ClusterRequest
			if err := json.Unmarshal(req.Body, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, *tc.want) {
				t.Errorf("request body:\n got %+v\nwant %+v", got, *tc.want)
			}
		})
	}
}

func TestClusterRegisterStructuredOutput(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			f := newFakeClusters(t)
			out, err := f.cluster(t, "register", "--name", "us-east", "--group", "prod", "-o", format)
			if err != nil {
				t.Fatal(err)
			}
			var reg model.ClusterRegistration
			if err := unmarshalOutput(format, out, &reg); err != nil {
				t.Fatalf("output is not %s: %v\n%s", format, err, out)
			}
			if reg.ClusterID != "c-1" || reg.Cluster.Name != "us-east" || reg.BootstrapToken != "gantry-bootstrap.BOOTSTRAP-s3cret-1" ||
				reg.BootstrapExpiresAt.IsZero() {
				t.Errorf("registration = %+v", reg)
			}
			if strings.Contains(out, "gantry agent") {
				t.Errorf("-o %s printed the agent command:\n%s", format, out)
			}
		})
	}
}

func TestClusterListAndGet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		want  string // exact stdout, when set
		check func(t *testing.T, out string)
	}{
		{
			name: "list table, sorted by name",
			args: []string{"list"},
			want: "" +
				"ID    NAME      GROUP   REGION      ZONE   GPUS                 READY                IDLE   STANDBY   HEARTBEAT   AGE\n" +
				"c-2   eu-west   prod    -           -      -                    NOT_READY,cordoned   0      0         -           2h\n" +
				"c-3   lab       dev     home        -      1xL40S               READY,draining       0      0         2m          10m\n" +
				"c-1   us-east   prod    us-east-1   a      6/12xH100,2/2xL40S   READY                2      1         5s          3d\n",
		},
		{
			name: "list json is an array",
			args: []string{"ls", "-o", "json"},
			check: func(t *testing.T, out string) {
				var cs []model.Cluster
				if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) != 3 || cs[0].Name != "eu-west" {
					t.Errorf("json = %s (%v)", out, err)
				}
			},
		},
		{
			name: "list yaml",
			args: []string{"list", "-o", "yaml"},
			check: func(t *testing.T, out string) {
				var cs []model.Cluster
				if err := unmarshalOutput("yaml", out, &cs); err != nil || len(cs) != 3 || !cs[1].Draining {
					t.Errorf("yaml = %s (%v)", out, err)
				}
			},
		},
		{
			name: "get table",
			args: []string{"get", "c-1"},
			want: "" +
				"ID    NAME      GROUP   REGION      ZONE   GPUS                 READY   IDLE   STANDBY   HEARTBEAT   AGE\n" +
				"c-1   us-east   prod    us-east-1   a      6/12xH100,2/2xL40S   READY   2      1         5s          3d\n",
		},
		{
			name: "get json is the cluster",
			args: []string{"get", "c-3", "-o", "json"},
			check: func(t *testing.T, out string) {
				var c model.Cluster
				if err := json.Unmarshal([]byte(out), &c); err != nil || c.ID != "c-3" || c.Inventory.GPUTotals()["L40S"] != 1 {
					t.Errorf("json = %s (%v)", out, err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeClusters(t)
			f.seed()
			out, err := f.cluster(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && out != tc.want {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, tc.want)
			}
			if tc.check != nil {
				tc.check(t, out)
			}
		})
	}
}

func TestClusterListEmpty(t *testing.T) {
	t.Parallel()
	f := newFakeClusters(t)
	out, err := f.cluster(t, "list", "-o", "json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("empty list = %q, %v; want []", out, err)
	}
}

func TestClusterStateVerbs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		account  string
		wantReq  string // "METHOD path"
		stdout   string
		jsonWant func(c model.Cluster) bool
		fails    bool
	}{
		{
			name: "cordon", args: []string{"cordon", "c-1"},
			wantReq: "POST /v1/accounts/gantry-local/clusters/c-1/cordon",
			stdout:  "Cluster us-east (id c-1) is READY,cordoned: it takes no new instances; the ones it runs stay.\n",
		},
		{
			name: "uncordon a draining cluster", args: []string{"uncordon", "c-3"},
			wantReq: "POST /v1/accounts/gantry-local/clusters/c-3/uncordon",
			stdout:  "Cluster lab (id c-3) is READY: it takes new instances again.\n",
		},
		{
			name: "uncordon a cluster that is down", args: []string{"uncordon", "c-2"},
			wantReq: "POST /v1/accounts/gantry-local/clusters/c-2/uncordon",
			stdout:  "Cluster eu-west (id c-2) is NOT_READY: it takes new instances again once its agent reports in.\n",
		},
		{
			name: "drain", args: []string{"drain", "c-1"},
			wantReq: "POST /v1/accounts/gantry-local/clusters/c-1/drain",
			stdout: "Cluster us-east (id c-1) is READY,draining: it takes no new instances, and the ones it runs move to other clusters one at a time.\n" +
				"Watch progress with `gantry cluster list`.\n",
		},
		{
			name: "drain in another account names it", args: []string{"drain", "c-1"}, account: "team-a",
			wantReq: "POST /v1/accounts/team-a/clusters/c-1/drain",
			stdout: "Cluster us-east (id c-1) is READY,draining: it takes no new instances, and the ones it runs move to other clusters one at a time.\n" +
				"Watch progress with `gantry cluster list --account team-a`.\n",
		},
		{
			name: "drain json", args: []string{"drain", "c-1", "-o", "json"},
			wantReq:  "POST /v1/accounts/gantry-local/clusters/c-1/drain",
			jsonWant: func(c model.Cluster) bool { return c.ID == "c-1" && c.Cordoned && c.Draining },
		},
		{
			name: "delete", args: []string{"delete", "c-2"},
			wantReq: "DELETE /v1/accounts/gantry-local/clusters/c-2",
			stdout:  "Deleted cluster c-2. Its agent's credentials are revoked, and its instances move to other clusters.\n",
		},
		{
			name: "delete json", args: []string{"rm", "c-2", "-o", "json"},
			wantReq: "DELETE /v1/accounts/gantry-local/clusters/c-2",
			stdout:  "{\n  \"clusterId\": \"c-2\",\n  \"deleted\": true\n}\n",
		},
		{
			name: "ids are path-escaped", args: []string{"cordon", "../c 1"}, fails: true,
			wantReq: "POST /v1/accounts/gantry-local/clusters/..%2Fc%201/cordon",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeClusters(t)
			if tc.account != "" {
				f.account = tc.account
			}
			f.seed()
			out, err := f.cluster(t, tc.args...)
			method, path, _ := strings.Cut(tc.wantReq, " ")
			if got := f.last(t, method, "/v1/"); got.Path != path {
				t.Errorf("request = %s %s, want %s", got.Method, got.Path, tc.wantReq)
			}
			if tc.fails {
				if err == nil {
					t.Error("succeeded, want a 404")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.stdout != "" && out != tc.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, tc.stdout)
			}
			if tc.jsonWant != nil {
				var c model.Cluster
				if err := json.Unmarshal([]byte(out), &c); err != nil || !tc.jsonWant(c) {
					t.Errorf("json = %s (%v)", out, err)
				}
			}
		})
	}
}

func TestClusterErrors(t *testing.T) {
	t.Parallel()
	f := newFakeClusters(t)
	f.seed()
	tests := []struct {
		name   string
		args   []string
		stderr []string
	}{
		{"unknown cluster", []string{"cluster", "get", "nope"},
			[]string{"Error: 404 Not Found: cluster nope not found", "Hint: list the clusters of account gantry-local with `gantry cluster list`"}},
		{"unknown cluster elsewhere", []string{"cluster", "--account", "gantry-local", "drain", "nope"},
			[]string{"Error: 404 Not Found: cluster nope not found"}},
		{"missing id", []string{"cluster", "cordon"},
			[]string{"Error: missing <clusterId>", "gantry cluster cordon --help"}},
		{"unknown verb", []string{"clusters", "cordn", "c-1"},
			[]string{`unknown command "cordn" for "gantry cluster"; did you mean "cordon"?`}},
		{"empty account", []string{"cluster", "--account", "", "list"},
			[]string{"Error: --account is empty"}},
		{"wrong account", []string{"cluster", "--account", "other", "list"},
			[]string{"Error: 404 Not Found: account other not found", "pass --account or set GANTRY_ACCOUNT (default gantry-local"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := f.gantry(t, "", tc.args...)
			r.check(t, 1, nil, tc.stderr)
			if r.stdout != "" {
				t.Errorf("stdout on error: %q", r.stdout)
			}
		})
	}
}

// TestClusterAccount covers where the account comes from. It sets the
// environment, so it cannot run in parallel.
func TestClusterAccount(t *testing.T) {
	f := newFakeClusters(t)
	tests := []struct {
		name, env string
		args      []string
		wantPath  string
	}{
		{"default is gantry dev's", "", []string{"cluster", "list"}, "/v1/accounts/gantry-local/clusters"},
		{"environment", "team-a", []string{"cluster", "list"}, "/v1/accounts/team-a/clusters"},
		{"flag beats environment", "team-a", []string{"clusters", "--account", "team b", "list"}, "/v1/accounts/team%20b/clusters"},
		{"flag after the verb", "", []string{"cluster", "get", "c-1", "--account", "x/y"}, "/v1/accounts/x%2Fy/clusters/c-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvAccount, tc.env)
			f.gantry(t, "", tc.args...)
			if got := f.last(t, "GET", "/v1/accounts/"); got.Path != tc.wantPath {
				t.Errorf("path = %s, want %s", got.Path, tc.wantPath)
			}
		})
	}
}

// echoWriter fails every write and quotes what it was given in the error,
// as a careless writer might, so the test can see whether the error printed
// under it would carry the bootstrap token.
type echoWriter struct{}

func (echoWriter) Write(p []byte) (int, error) { return 0, fmt.Errorf("cannot write %q", p) }

// TestBootstrapTokenNeverInErrors checks that the bootstrap token reaches
// stdout exactly once, when asked for, and never stderr: not with --verbose,
// not when printing fails, and not in any other cluster verb.
func TestBootstrapTokenNeverInErrors(t *testing.T) {
	t.Parallel()
	f := newFakeClusters(t)
	f.seed()
	base := []string{"--server", f.srv.URL, "--token", f.token, "--config", f.cfg, "--verbose", "cluster"}
	secret := func() []string {
		f.mu.Lock()
		defer f.mu.Unlock()
		return append([]string{}, f.issued...)
	}
	leaks := func(s string) bool {
		for _, tok := range secret() {
			if strings.Contains(s, tok) || strings.Contains(s, strings.TrimPrefix(tok, "gantry-bootstrap.")) {
				return true
			}
		}
		return false
	}

	for i, format := range []string{"table", "json", "yaml"} {
		r := runCLI(t, "", append(base, "register", "--name", fmt.Sprintf("new-%d", i), "--group", "g", "-o", format)...)
		r.check(t, 0, nil, []string{"> POST " + f.srv.URL + "/v1/accounts/gantry-local/clusters", "< 200 OK"})
		tok := secret()[i]
		if n := strings.Count(r.stdout, tok); n != 1 {
			t.Errorf("-o %s: stdout shows the bootstrap token %d times, want once:\n%s", format, n, r.stdout)
		}
		if leaks(r.stderr) {
			t.Errorf("-o %s: stderr shows the bootstrap token:\n%s", format, r.stderr)
		}
	}

	// Printing fails with an error that quotes the output, token and all.
	for _, format := range []string{"table", "json", "yaml"} {
		var errb bytes.Buffer
		args := append(base, "register", "--name", "broken-"+format, "--group", "g", "-o", format)
		code := run(context.Background(), args, strings.NewReader(""), echoWriter{}, &errb)
		if code != 1 || !strings.Contains(errb.String(), "Error: cannot write") || !strings.Contains(errb.String(), "[redacted]") {
			t.Errorf("-o %s: code %d, stderr:\n%s", format, code, errb.String())
		}
		if leaks(errb.String()) {
			t.Errorf("-o %s: the error shows the bootstrap token:\n%s", format, errb.String())
		}
	}

	commands := [][]string{
		{"register", "--name", "new-0", "--group", "g"}, // taken: 409
		{"list"}, {"get", "c-1"}, {"get", "nope"}, {"cordon", "c-5"}, {"uncordon", "c-5"},
		{"drain", "c-5"}, {"delete", "c-5"}, {"delete", "c-5"},
	}
	for _, format := range []string{"table", "json", "yaml"} {
		for _, c := range commands {
			r := runCLI(t, "", append(append(base, "-o", format), c...)...)
			if leaks(r.stdout) || leaks(r.stderr) {
				t.Errorf("gantry cluster %v -o %s printed a bootstrap token:\nstdout: %s\nstderr: %s", c, format, r.stdout, r.stderr)
			}
		}
	}
}

func TestFormatGPUs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		totals, used map[string]int
		want         string
	}{
		{"none", nil, nil, ""},
		{"totals only", map[string]int{"L40S": 2, "H100": 8}, nil, "8xH100,2xL40S"},
		{"empty models and zero counts skipped", map[string]int{"": 3, "A10": 0, "H100": 1}, nil, "1xH100"},
		{"free of total", map[string]int{"L40S": 2, "H100": 8}, map[string]int{"H100": 3}, "5/8xH100,2/2xL40S"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := formatGPUs(tc.totals, tc.used); got != tc.want {
				t.Errorf("formatGPUs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStartWithin(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name    string
		expires time.Time
		want    string
	}{
		{"unknown", time.Time{}, "Start its agent"},
		{"an hour, less request time", now.Add(time.Hour - 300*time.Millisecond), "Start its agent within 1h"},
		{"hours and minutes", now.Add(90 * time.Minute), "Start its agent within 1h30m"},
		{"minutes", now.Add(45 * time.Minute), "Start its agent within 45m"},
		{"already due", now.Add(-time.Minute), "Start its agent within a minute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := startWithin(tc.expires, now); got != tc.want {
				t.Errorf("startWithin = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAgentCommandQuoting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		server, token, want string
	}{
		{"http://127.0.0.1:8080", "gantry-bootstrap.abc",
			"gantry agent --server http://127.0.0.1:8080 --bootstrap-token 'gantry-bootstrap.abc' --state-dir /var/lib/gantry-agent"},
		{"https://gantry.example.com/api path", "it's",
			`gantry agent --server 'https://gantry.example.com/api path' --bootstrap-token 'it'\''s' --state-dir /var/lib/gantry-agent`},
	}
	for _, tc := range tests {
		if got := agentCommand(tc.server, tc.token); got != tc.want {
			t.Errorf("agentCommand(%q, %q) =\n%s\nwant\n%s", tc.server, tc.token, got, tc.want)
		}
	}
}

// unmarshalOutput decodes -o json or -o yaml output.
func unmarshalOutput(format, out string, v any) error {
	if format == "yaml" {
		return yaml.Unmarshal([]byte(out), v)
	}
	return json.Unmarshal([]byte(out), v)
}
