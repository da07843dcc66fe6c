package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/policy"
	"github.com/gantry-dev/gantry/internal/problem"
)

// policyAPIDouble stands in for the policy routes of a Gantry server, only to
// test the policy verbs' argument handling and output. It keeps policies in
// memory, checks bodies with the real policy.Validate so that error text is
// the server's, and records requests. It schedules nothing; the routes
// themselves are tested against a real store in package policy.
type policyAPIDouble struct {
	srv   *httptest.Server
	token string
	cfg   string

	mu       sync.Mutex
	policies []policy.Policy
	requests []fakeRequest
}

func newPolicyAPIDouble(t *testing.T) *policyAPIDouble {
	t.Helper()
	d := &policyAPIDouble{token: "tok-policy-double-0123"}
	d.cfg = filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(d.cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/gantry/policies", d.create)
	mux.HandleFunc("GET /v1/gantry/policies", d.list)
	mux.HandleFunc("GET /v1/gantry/policies/{id}", d.get)
	mux.HandleFunc("PUT /v1/gantry/policies/{id}", d.update)
	mux.HandleFunc("DELETE /v1/gantry/policies/{id}", d.delete)
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		d.mu.Lock()
		d.requests = append(d.requests, fakeRequest{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), r.Header.Clone(), body})
		d.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+d.token {
			problem.Write(w, r, "req-1", problem.Errorf(http.StatusUnauthorized, "invalid credential"))
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// add stores a policy created age ago.
func (d *policyAPIDouble) add(p policy.Policy, age time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p.NCAID, p.CreatedAt = "acct", time.Now().Add(-age)
	if p.Strategy == "" {
		p.Strategy = policy.StrategyBinPack
	}
	d.policies = append(d.policies, p)
}

// sent returns the bodies of the requests with method, decoded as policies.
func (d *policyAPIDouble) sent(t *testing.T, method string) []policy.Policy {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []policy.Policy
	for _, r := range d.requests {
		if r.Method == method {
			var p policy.Policy
			if err := json.Unmarshal(r.Body, &p); err != nil {
				t.Fatalf("%s body %q: %v", method, r.Body, err)
			}
			out = append(out, p)
		}
	}
	return out
}

func (d *policyAPIDouble) paths(method string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, r := range d.requests {
		if r.Method == method {
			out = append(out, r.Path)
		}
	}
	return out
}

func (d *policyAPIDouble) decode(w http.ResponseWriter, r *http.Request) (policy.Policy, bool) {
	var p policy.Policy
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		problem.Write(w, r, "req-1", problem.BadRequest("bad body"))
		return p, false
	}
	if err := policy.Validate(&p); err != nil {
		problem.Write(w, r, "req-1", err)
		return p, false
	}
	return p, true
}

func (d *policyAPIDouble) create(w http.ResponseWriter, r *http.Request) {
	p, ok := d.decode(w, r)
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	p.ID, p.NCAID, p.CreatedAt = fmt.Sprintf("pol-%d", len(d.policies)+1), "acct", time.Now()
	d.policies = append(d.policies, p)
	writeJSON(w, 200, policy.Response{Policy: p})
}

func (d *policyAPIDouble) list(w http.ResponseWriter, _ *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := slices.Clone(d.policies)
	slices.SortStableFunc(out, func(a, b policy.Policy) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), cmp.Compare(a.Name, b.Name))
	})
	writeJSON(w, 200, policy.ListResponse{Policies: nonNil(out)})
}

// find returns the index of the path's policy, or answers 404.
func (d *policyAPIDouble) find(w http.ResponseWriter, r *http.Request) int {
	i := slices.IndexFunc(d.policies, func(p policy.Policy) bool { return p.ID == r.PathValue("id") })
	if i < 0 {
		problem.Write(w, r, "req-1", problem.NotFound("policy %s not found", r.PathValue("id")))
	}
	return i
}

func (d *policyAPIDouble) get(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i := d.find(w, r); i >= 0 {
		writeJSON(w, 200, policy.Response{Policy: d.policies[i]})
	}
}

func (d *policyAPIDouble) update(w http.ResponseWriter, r *http.Request) {
	p, ok := d.decode(w, r)
	if !ok {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if i := d.find(w, r); i >= 0 {
		cur := d.policies[i]
		p.ID, p.NCAID, p.CreatedAt = cur.ID, cur.NCAID, cur.CreatedAt
		d.policies[i] = p
		writeJSON(w, 200, policy.Response{Policy: p})
	}
}

func (d *policyAPIDouble) delete(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i := d.find(w, r); i >= 0 {
		d.policies = slices.Delete(d.policies, i, i+1)
		w.WriteHeader(http.StatusNoContent)
	}
}

// gantry runs the CLI against the double with its token.
func (d *policyAPIDouble) gantry(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runWithPolicy(append([]string{"--server", d.srv.URL, "--token", d.token, "--config", d.cfg}, args...), stdin)
}

// runWithPolicy runs a command line as run does, on a root that gets the
// policy verbs here if it does not register them itself yet.
func runWithPolicy(args []string, stdin string) result {
	opts := &rootOptions{}
	root := newRoot(opts)
	if c, _, err := root.Find([]string{"policy"}); err != nil || c == root {
		root.AddCommand(newPolicyCmd(opts))
	}
	root.SetArgs(args)
	var out, errb bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errb)
	code := 0
	if err := root.ExecuteContext(context.Background()); err != nil {
		printError(&errb, err, opts)
		code = 1
	}
	return result{out.String(), errb.String(), code}
}

func TestPolicyCreate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	yamlFile := writeFile(t, filepath.Join(dir, "p.yaml"), `name: from-file
priority: 7
functionSelector:
  matchTags: [llm]
clusterSelector:
  matchExpressions:
  - key: nvidia.com/gpu.product
    operator: In
    values: [H100, A100]
spread:
  topologyKey: topology.kubernetes.io/zone
  splits:
  - {value: a, percent: 50}
  - {value: b, percent: 50}
`)
	typo := writeFile(t, filepath.Join(dir, "typo.yaml"), "name: x\nclusterSelector:\n  matchLabel: {tier: gold}\n")

	tests := []struct {
		name   string
		args   []string
		stdin  string
		code   int
		want   policy.Policy
		stdout []string
		stderr []string
	}{
		{
			name: "fill-and-spill from flags",
			args: []string{"policy", "create", "--name", "east-first", "--priority", "5", "--match-tag", "llm", "--match-tag", "prod",
				"--cluster-label", "gpu=H100", "--cluster-label", "tier=gold,!spot",
				"--fill-and-spill", "region=us-east", "--fill-and-spill", "region=us-west,zone=a|b,ssd,pool!=spot", "--fill-and-spill", "*",
				"--group-by", "zone", "--strategy", "spread"},
			want: policy.Policy{Name: "east-first", Priority: 5,
				FunctionSelector: policy.FunctionSelector{MatchTags: []string{"llm", "prod"}},
				ClusterSelector: &policy.Selector{MatchLabels: map[string]string{policy.LabelGPUProduct: "H100", "tier": "gold"},
					MatchExpressions: []policy.Requirement{{Key: "spot", Operator: policy.OpDoesNotExist}}},
				FillAndSpill: []policy.Selector{
					{MatchLabels: map[string]string{policy.LabelRegion: "us-east"}},
					{MatchLabels: map[string]string{policy.LabelRegion: "us-west"}, MatchExpressions: []policy.Requirement{
						{Key: policy.LabelZone, Operator: policy.OpIn, Values: []string{"a", "b"}},
						{Key: "ssd", Operator: policy.OpExists},
						{Key: "pool", Operator: policy.OpNotIn, Values: []string{"spot"}}}},
					{}},
				GroupBy: policy.LabelZone, Strategy: "spread"},
			stdout: []string{"ID      NAME         PRIORITY   FUNCTIONS       CLUSTERS                   PLACEMENT", "pol-1   east-first   5          tags llm,prod   gpu=H100,tier=gold,!spot   fill region=us-east > region=us-west,zone In (a,b),ssd,pool NotIn (spot) > *; group by zone   spread"},
		},
		{
			name: "spread from flags",
			args: []string{"policy", "create", "--name", "half", "--spread-key", "region", "--split", "us-east=50", "--split", "us-west=50%"},
			want: policy.Policy{Name: "half", Spread: &policy.Spread{TopologyKey: policy.LabelRegion,
				Splits: []policy.Split{{Value: "us-east", Percent: 50}, {Value: "us-west", Percent: 50}}}},
			stdout: []string{"spread region us-east=50%,us-west=50%", "binpack"},
		},
		{
			name: "YAML file, flags override",
			args: []string{"policy", "create", "-f", yamlFile, "--name", "override", "-o", "json"},
			want: policy.Policy{Name: "override", Priority: 7, FunctionSelector: policy.FunctionSelector{MatchTags: []string{"llm"}},
				ClusterSelector: &policy.Selector{MatchExpressions: []policy.Requirement{{Key: policy.LabelGPUProduct, Operator: policy.OpIn, Values: []string{"H100", "A100"}}}},
				Spread:          &policy.Spread{TopologyKey: policy.LabelZone, Splits: []policy.Split{{Value: "a", Percent: 50}, {Value: "b", Percent: 50}}}},
			stdout: []string{`"id": "pol-1"`, `"name": "override"`, `"topologyKey": "topology.kubernetes.io/zone"`},
		},
		{
			name:  "JSON from stdin",
			args:  []string{"policy", "create", "-f", "-"},
			stdin: `{"name":"stdin","groupBy":"topology.kubernetes.io/region"}`,
			want:  policy.Policy{Name: "stdin", GroupBy: policy.LabelRegion},
		},
		{
			name: "server validation is shown", args: []string{"policy", "create", "--name", "x", "--spread-key", "region", "--split", "a=60", "--split", "b=60"}, code: 1,
			stderr: []string{"Error: 400 Bad Request: spread.splits percentages sum to 120: they must sum to 100, e.g. a=50, b=50"},
		},
		{
			name: "fill-and-spill and spread together", args: []string{"policy", "create", "--name", "x", "--fill-and-spill", "region=a", "--spread-key", "zone", "--split", "z=100"}, code: 1,
			stderr: []string{"Error: 400 Bad Request: fillAndSpill and spread cannot be combined"},
		},
		{name: "unknown field in file", args: []string{"policy", "create", "-f", typo}, code: 1,
			stderr: []string{"typo.yaml", "matchLabel", "Hint: the file must be a policy"}},
		{name: "missing name", args: []string{"policy", "create", "--group-by", "zone"}, code: 1,
			stderr: []string{"Error: --name is required", "gantry policy create --help"}},
		{name: "bad split", args: []string{"policy", "create", "--name", "x", "--split", "us-east"}, code: 1,
			stderr: []string{`--split "us-east": want VALUE=PERCENT`}},
		{name: "bad selector", args: []string{"policy", "create", "--name", "x", "--cluster-label", "=H100"}, code: 1,
			stderr: []string{`--cluster-label "=H100": term "=H100" has no key`}},
		{name: "empty selector", args: []string{"policy", "create", "--name", "x", "--fill-and-spill", ""}, code: 1,
			stderr: []string{`--fill-and-spill "": empty selector`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newPolicyAPIDouble(t)
			r := d.gantry(t, tc.stdin, tc.args...)
			r.check(t, tc.code, tc.stdout, tc.stderr)
			sent := d.sent(t, "POST")
			if tc.code != 0 {
				if r.stdout != "" {
					t.Errorf("stdout on error: %q", r.stdout)
				}
				if strings.HasPrefix(tc.stderr[0], "Error: 400") {
					return // the server refused it
				}
				if len(sent) != 0 {
					t.Errorf("%d create requests sent for a bad command line", len(sent))
				}
				return
			}
			if len(sent) != 1 {
				t.Fatalf("%d create requests, want 1", len(sent))
			}
			if !reflect.DeepEqual(sent[0], tc.want) {
				t.Errorf("request body:\n got %+v\nwant %+v", sent[0], tc.want)
			}
		})
	}
}

func TestPolicyReadUpdateDelete(t *testing.T) {
	t.Parallel()
	east := policy.Policy{ID: "pol-a", Name: "east-first", Priority: 3,
		FunctionSelector: policy.FunctionSelector{MatchTags: []string{"llm"}},
		FillAndSpill:     []policy.Selector{{MatchLabels: map[string]string{policy.LabelRegion: "us-east"}}, {}}}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
		check  func(t *testing.T, d *policyAPIDouble, r result)
	}{
		{name: "list table, highest priority first", args: []string{"policy", "list"},
			stdout: []string{
				"ID      NAME         PRIORITY   FUNCTIONS   CLUSTERS   PLACEMENT                 STRATEGY   AGE\n" +
					"pol-b   dup          9          *           *          group by zone             binpack    1d\n" +
					"pol-a   east-first   3          tags llm    *          fill region=us-east > *   binpack    2h\n" +
					"pol-c   dup          0          *           *          -                         binpack    3m\n"}},
		{name: "list json is an array", args: []string{"policy", "ls", "-o", "json"},
			check: func(t *testing.T, _ *policyAPIDouble, r result) {
				var ps []policy.Policy
				if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil || len(ps) != 3 {
					t.Errorf("json = %q (%v)", r.stdout, err)
				}
			}},
		{name: "get by name as YAML", args: []string{"policy", "get", "east-first", "-o", "yaml"},
			stdout: []string{"id: pol-a\n", "fillAndSpill:\n- matchLabels:\n    topology.kubernetes.io/region: us-east\n- {}\n"}},
		{name: "get by id", args: []string{"policy", "get", "pol-c"}, stdout: []string{"pol-c   dup"}},
		{name: "get unknown", args: []string{"policy", "get", "nope"}, code: 1,
			stderr: []string{`Error: no policy has id or name "nope"`, "Hint: `gantry policy list` shows the policies"}},
		{name: "get ambiguous name", args: []string{"policy", "get", "dup"}, code: 1,
			stderr: []string{`Error: 2 policies are named "dup"`, "Hint: name one by id: pol-b, pol-c"}},
		{name: "update switches fill-and-spill to spread, keeps the rest",
			args:   []string{"policy", "update", "east-first", "--spread-key", "region", "--split", "us-east=70", "--split", "us-west=30"},
			stdout: []string{"spread region us-east=70%,us-west=30%"},
			check: func(t *testing.T, d *policyAPIDouble, _ result) {
				if p := d.paths("PUT"); !reflect.DeepEqual(p, []string{"/v1/gantry/policies/pol-a"}) {
					t.Fatalf("PUT paths = %v", p)
				}
				got := d.sent(t, "PUT")[0]
				if got.FillAndSpill != nil || got.Spread == nil || got.Spread.TopologyKey != policy.LabelRegion || got.Priority != 3 ||
					!reflect.DeepEqual(got.FunctionSelector.MatchTags, []string{"llm"}) {
					t.Errorf("PUT body = %+v", got)
				}
			}},
		{name: "update needs a change", args: []string{"policy", "update", "east-first", "-o", "json"}, code: 1,
			stderr: []string{"nothing to change: give -f or a flag"}},
		{name: "delete by name", args: []string{"policy", "delete", "east-first"},
			stdout: []string{"Deleted policy east-first (pol-a)"},
			check: func(t *testing.T, d *policyAPIDouble, _ result) {
				if p := d.paths("DELETE"); !reflect.DeepEqual(p, []string{"/v1/gantry/policies/pol-a"}) {
					t.Errorf("DELETE paths = %v", p)
				}
			}},
		{name: "delete json", args: []string{"policy", "rm", "pol-b", "-o", "json"},
			stdout: []string{`"id": "pol-b"`, `"deleted": true`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newPolicyAPIDouble(t)
			d.add(east, 2*time.Hour)
			d.add(policy.Policy{ID: "pol-b", Name: "dup", Priority: 9, GroupBy: policy.LabelZone}, 30*time.Hour)
			d.add(policy.Policy{ID: "pol-c", Name: "dup"}, 3*time.Minute)
			r := d.gantry(t, "", tc.args...)
			r.check(t, tc.code, tc.stdout, tc.stderr)
			if tc.check != nil {
				tc.check(t, d, r)
			}
		})
	}
}

func TestPolicyListEmptyJSON(t *testing.T) {
	t.Parallel()
	d := newPolicyAPIDouble(t)
	r := d.gantry(t, "", "policy", "list", "-o", "json")
	r.check(t, 0, []string{"[]"}, nil)
}

// TestPolicyTokenNeverPrinted runs the policy verbs with a server that
// rejects the token and checks that it is not echoed.
func TestPolicyTokenNeverPrinted(t *testing.T) {
	t.Parallel()
	d := newPolicyAPIDouble(t)
	for _, args := range [][]string{{"policy", "list"}, {"policy", "get", "x"}, {"policy", "create", "--name", "x"}} {
		r := runWithPolicy(append([]string{"--server", d.srv.URL, "--token", "wrong-" + d.token, "--config", d.cfg}, args...), "")
		if r.code != 1 || !strings.Contains(r.stderr, "401 Unauthorized") || strings.Contains(r.stdout+r.stderr, d.token) {
			t.Errorf("gantry %v: code %d, output %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
}
