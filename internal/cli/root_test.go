package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// fakeAPI stands in for a Gantry server only to test the CLI's argument
// handling and output: it fakes the few REST routes the client verbs call,
// over canned in-memory state, and records what it received. It models none
// of the platform's behaviour; the real end-to-end suite runs the CLI against
// a real server elsewhere.
type fakeAPI struct {
	srv   *httptest.Server
	token string
	cfg   string // an empty config file, so the developer's own never leaks in

	mu          sync.Mutex
	functions   []model.Function
	deployments map[string]model.Deployment // by functionId/versionId
	requests    []fakeRequest

	// deployStatuses are the functionStatus values successive deployment
	// GETs report; the last one repeats. Empty keeps what was stored.
	deployStatuses []model.FunctionStatus
	deployHealth   []model.HealthInfo
	// readyInstances is how many RUNNING activeInstances a function GET shows.
	readyInstances int

	// pendingPolls is how many 202s an invocation answers before its result.
	pendingPolls   int
	invokeStatus   int
	invokeBody     string
	invokeHeaderCT string

	// echoCredential makes every error detail quote the Authorization
	// header, like a buggy server would, to prove the CLI redacts it.
	echoCredential bool
}

// fakeRequest is one request the fake received.
type fakeRequest struct {
	Method, Path, Auth string
	Header             http.Header
	Body               []byte
}

func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{
		token:        "tok-" + strings.Repeat("s3cr3t", 4),
		deployments:  map[string]model.Deployment{},
		invokeStatus: 200,
	}
	f.cfg = filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f.cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/nvcf/functions", f.createFunction)
	mux.HandleFunc("POST /v2/nvcf/functions/{id}/versions", f.createFunction)
	mux.HandleFunc("GET /v2/nvcf/functions", f.listFunctions)
	mux.HandleFunc("GET /v2/nvcf/functions/{id}/versions", f.listFunctions)
	mux.HandleFunc("GET /v2/nvcf/functions/{id}/versions/{vid}", f.getFunction)
	mux.HandleFunc("DELETE /v2/nvcf/functions/{id}/versions/{vid}", f.deleteFunction)
	mux.HandleFunc("/v2/nvcf/deployments/functions/{id}/versions/{vid}", f.deployment)
	mux.HandleFunc("GET /v2/nvcf/clusterGroups", f.clusterGroups)
	mux.HandleFunc("POST /v2/nvcf/pexec/functions/{id}", f.invoke)
	mux.HandleFunc("POST /v2/nvcf/pexec/functions/{id}/versions/{vid}", f.invoke)
	mux.HandleFunc("GET /v2/nvcf/pexec/status/{rid}", f.invoke)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mu.Lock()
		f.requests = append(f.requests, fakeRequest{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), r.Header.Clone(), body})
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+f.token && !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer nvapi-") {
			f.problem(w, r, http.StatusUnauthorized, "invalid credential")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// addFunction stores a version created age ago.
func (f *fakeAPI) addFunction(id, vid, name string, age time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.functions = append(f.functions, model.Function{ID: id, VersionID: vid, Name: name, Status: model.StatusInactive,
		InferenceURL: "/", ContainerImage: "process://gantry", CreatedAt: time.Now().Add(-age)})
}

// addDeployment stores a deployment of one spec.
func (f *fakeAPI) addDeployment(id, vid string, spec model.GPUSpec, status model.FunctionStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deployments[id+"/"+vid] = model.Deployment{ID: "dep-" + vid, FunctionID: id, FunctionVersionID: vid,
		FunctionStatus: status, Specs: []model.GPUSpec{spec}, CreatedAt: time.Now().Add(-2 * time.Hour)}
}

// last returns the last request with method whose path starts with prefix.
func (f *fakeAPI) last(t *testing.T, method, prefix string) fakeRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.requests) - 1; i >= 0; i-- {
		if r := f.requests[i]; r.Method == method && strings.HasPrefix(r.Path, prefix) {
			return r
		}
	}
	t.Fatalf("no %s %s* request; got %v", method, prefix, f.requests)
	return fakeRequest{}
}

func (f *fakeAPI) count(method, prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if r.Method == method && strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

func (f *fakeAPI) problem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	if f.echoCredential {
		detail += " (credential " + r.Header.Get("Authorization") + ")"
	}
	w.Header().Set("NVCF-REQID", "req-err-1")
	problem.Write(w, r, "req-err-1", problem.Errorf(status, "%s", detail))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeAPI) createFunction(w http.ResponseWriter, r *http.Request) {
	var req model.CreateFunctionRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		f.problem(w, r, 400, "bad body")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := r.PathValue("id")
	if id == "" {
		id = fmt.Sprintf("fn-%d", len(f.functions)+1)
	}
	fn := model.Function{ID: id, VersionID: fmt.Sprintf("v-%d", len(f.functions)+1), Name: req.Name,
		Status: model.StatusInactive, InferenceURL: req.InferenceURL, ContainerImage: req.ContainerImage,
		CreatedAt: time.Now()}
	for _, s := range req.Secrets {
		fn.Secrets = append(fn.Secrets, s.Name)
	}
	f.functions = append(f.functions, fn)
	writeJSON(w, 200, model.FunctionResponse{Function: fn})
}

func (f *fakeAPI) listFunctions(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := model.FunctionListResponse{Functions: []model.Function{}}
	for _, fn := range f.functions {
		if id := r.PathValue("id"); id == "" || fn.ID == id {
			out.Functions = append(out.Functions, fn)
		}
	}
	if r.PathValue("id") != "" && len(out.Functions) == 0 {
		f.problem(w, r, 404, "function "+r.PathValue("id")+" not found")
		return
	}
	writeJSON(w, 200, out)
}

func (f *fakeAPI) getFunction(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fn := range f.functions {
		if fn.ID == r.PathValue("id") && fn.VersionID == r.PathValue("vid") {
			for i := 0; i < f.readyInstances; i++ {
				fn.ActiveInstances = append(fn.ActiveInstances, model.InstanceDetail{InstanceID: fmt.Sprint(i), InstanceStatus: model.InstanceRunning})
			}
			writeJSON(w, 200, model.FunctionResponse{Function: fn})
			return
		}
	}
	f.problem(w, r, 404, "function "+r.PathValue("id")+" version "+r.PathValue("vid")+" not found")
}

func (f *fakeAPI) deleteFunction(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, fn := range f.functions {
		if fn.ID == r.PathValue("id") && fn.VersionID == r.PathValue("vid") {
			f.functions = append(f.functions[:i], f.functions[i+1:]...)
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	f.problem(w, r, 404, "function "+r.PathValue("id")+" not found")
}

func (f *fakeAPI) deployment(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("id") + "/" + r.PathValue("vid")
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.deployments[key]
	switch r.Method {
	case http.MethodPost, http.MethodPut:
		var req model.DeploymentRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			f.problem(w, r, 400, "bad body")
			return
		}
		if r.Method == http.MethodPut && !ok {
			f.problem(w, r, 404, "no deployment")
			return
		}
		if !ok {
			d = model.Deployment{ID: "dep-1", FunctionID: r.PathValue("id"), FunctionVersionID: r.PathValue("vid"), CreatedAt: time.Now()}
		}
		d.Specs = req.Specs
		d.FunctionStatus = model.StatusDeploying
		f.deployments[key] = d
		writeJSON(w, 200, model.DeploymentResponse{Deployment: d})
	case http.MethodGet:
		if !ok {
			f.problem(w, r, 404, "no deployment for function "+key)
			return
		}
		if len(f.deployStatuses) > 0 {
			d.FunctionStatus = f.deployStatuses[0]
			if len(f.deployStatuses) > 1 {
				f.deployStatuses = f.deployStatuses[1:]
			}
			d.HealthInfo = f.deployHealth
			f.deployments[key] = d
		}
		writeJSON(w, 200, model.DeploymentResponse{Deployment: d})
	case http.MethodDelete:
		if !ok {
			f.problem(w, r, 404, "no deployment for function "+key)
			return
		}
		delete(f.deployments, key)
		writeJSON(w, 200, model.DeploymentResponse{Deployment: d})
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (f *fakeAPI) clusterGroups(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, model.ClusterGroupsResponse{ClusterGroups: []model.ClusterGroup{{
		ID: "g1", Name: "local", GPUs: []model.GroupGPU{{Name: "L40S"}, {Name: "H100"}},
	}}})
}

func (f *fakeAPI) invoke(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("NVCF-REQID", "req-1")
	if f.pendingPolls > 0 {
		f.pendingPolls--
		w.Header().Set("NVCF-STATUS", "pending-evaluation")
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if f.invokeStatus >= 400 {
		f.problem(w, r, f.invokeStatus, "the function failed: model crashed")
		return
	}
	w.Header().Set("NVCF-STATUS", "fulfilled")
	if f.invokeHeaderCT != "" {
		w.Header().Set("Content-Type", f.invokeHeaderCT)
	}
	w.WriteHeader(f.invokeStatus)
	_, _ = io.WriteString(w, f.invokeBody)
}

// result is what one CLI run printed.
type result struct {
	stdout, stderr string
	code           int
}

// gantry runs the CLI as Main would, against the fake with its token.
func (f *fakeAPI) gantry(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	base := []string{"--server", f.srv.URL, "--token", f.token, "--config", f.cfg}
	return runCLI(t, stdin, append(base, args...)...)
}

// runCLI runs the command line through run, the function Main calls.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{out.String(), errb.String(), code}
}

// check asserts the exit code and that each want string appears.
func (r result) check(t *testing.T, code int, stdout, stderr []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

func TestNewRootWritesThroughCobraStreams(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.addFunction("fn-1", "v-1", "echo", time.Hour)
	root := NewRoot()
	var out, errb bytes.Buffer
	root.SetArgs([]string{"--server", f.srv.URL, "--token", f.token, "--config", f.cfg, "function", "list"})
	root.SetOut(&out)
	root.SetErr(&errb)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "fn-1") || errb.Len() != 0 {
		t.Errorf("stdout=%q stderr=%q", out.String(), errb.String())
	}
	if root.PersistentFlags().Lookup("output").DefValue != "table" {
		t.Error("-o does not default to table")
	}
}

func TestErrorsAndHints(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	tests := []struct {
		name   string
		args   []string
		stderr []string
	}{
		{"bad output format", []string{"--server", f.srv.URL, "-o", "xml", "function", "list"},
			[]string{`Error: invalid argument "xml" for "-o, --output" flag: must be one of table, json, yaml`, "Hint: run 'gantry function list --help'"}},
		{"unknown command", []string{"functoin"},
			[]string{`Error: unknown command "functoin" for "gantry"; did you mean "function"?`, "Hint: run 'gantry --help'"}},
		{"unknown subcommand", []string{"deploy", "craete"},
			[]string{`unknown command "craete" for "gantry deploy"; did you mean "create"?`}},
		{"missing argument", []string{"function", "get"},
			[]string{"Error: missing <functionId>", "gantry function get --help"}},
		{"server down", []string{"--server", closedURL, "--token", "x", "--config", f.cfg, "function", "list"},
			[]string{"Error: cannot reach the Gantry API at " + closedURL, "server from --server", "gantry dev"}},
		{"bad token", []string{"--server", f.srv.URL, "--token", "wrong-token", "--config", f.cfg, "function", "list"},
			[]string{"Error: 401 Unauthorized: invalid credential", "Hint: the server rejected the token from --token", "request id req-err-1"}},
		{"not found", []string{"--server", f.srv.URL, "--token", f.token, "--config", f.cfg, "function", "get", "nope"},
			[]string{"Error: 404 Not Found: function nope not found"}},
		{"server without scheme", []string{"--server", "127.0.0.1:8080", "--token", "x", "--config", f.cfg, "function", "list"},
			[]string{`invalid server URL "127.0.0.1:8080" (from --server)`, "did you mean http://127.0.0.1:8080"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, "", tc.args...)
			r.check(t, 1, nil, tc.stderr)
			if r.stdout != "" {
				t.Errorf("stdout on error: %q", r.stdout)
			}
		})
	}
}

// TestTokenNeverPrinted runs every verb, in every output format, failing
// and succeeding, against a server that even echoes the credential into its
// error details, and checks the token appears nowhere.
func TestTokenNeverPrinted(t *testing.T) {
	t.Parallel()
	f := newFakeAPI(t)
	f.echoCredential = true
	f.addFunction("fn-1", "v-1", "echo", time.Hour)
	f.addDeployment("fn-1", "v-1", model.GPUSpec{GPU: "L40S", MinInstances: 1, MaxInstances: 1}, model.StatusActive)
	f.invokeBody = `{"ok":true}`
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(f.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	commands := [][]string{
		{"function", "list"},
		{"function", "get", "fn-1"},
		{"function", "get", "fn-1", "--version", "v-1"},
		{"function", "get", "missing"},
		{"function", "create", "--name", "x", "--image", "process://gantry"},
		{"function", "create", "--name", "x"},
		{"function", "delete", "fn-1"},
		{"function", "delete", "missing", "--version", "v"},
		{"deploy", "get", "fn-1"},
		{"deploy", "get", "missing", "--version", "v"},
		{"deploy", "update", "fn-1", "--max", "2"},
		{"deploy", "create", "fn-1", "--version", "v-1"},
		{"invoke", "fn-1", "-d", "{}"},
		{"invoke", "missing", "--version", "v"},
	}
	creds := [][]string{
		{"--token", f.token},
		{"--token-file", tokenFile},
		{"--token", "bad-" + f.token},
	}
	for _, cred := range creds {
		for _, format := range []string{"table", "json", "yaml"} {
			for _, c := range commands {
				args := append([]string{"--server", f.srv.URL, "--config", f.cfg, "--verbose", "-o", format}, cred...)
				r := runCLI(t, "", append(args, c...)...)
				if strings.Contains(r.stdout, f.token) || strings.Contains(r.stderr, f.token) {
					t.Errorf("gantry %v printed the token:\nstdout: %s\nstderr: %s", c, r.stdout, r.stderr)
				}
			}
		}
	}
	// The echoing server did put it into errors, so the redaction was exercised.
	r := runCLI(t, "", "--server", f.srv.URL, "--config", f.cfg, "--token", f.token, "function", "get", "missing")
	r.check(t, 1, nil, []string{"credential Bearer [redacted]"})
}
