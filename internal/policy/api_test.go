package policy_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/api"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/policy"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/web"
)

// tokens authenticates each test token as its principal.
type tokens map[string]auth.Principal

func (t tokens) Authenticate(r *http.Request) (auth.Principal, error) {
	tok, ok := auth.BearerToken(r)
	if !ok {
		return auth.Principal{}, auth.ErrNoCredential
	}
	p, ok := t[tok]
	if !ok {
		return auth.Principal{}, auth.ErrBadCredential
	}
	return p, nil
}

// TestPolicyRoutes drives the real routes over a real store through the
// typed client: the path a `gantry policy` command takes.
func TestPolicyRoutes(t *testing.T) {
	t.Parallel()
	st := testutil.StartEtcd(t)
	mux := http.NewServeMux()
	api.NewPolicies(st, web.Guard{Auth: tokens{
		"alice": auth.NewPrincipal("acct-a", "alice", auth.AdminScopes),
		"bob":   auth.NewPrincipal("acct-b", "bob", auth.AdminScopes),
		"eve":   auth.NewPrincipal("acct-a", "eve", []string{auth.ScopeListFunctions}),
	}}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ctx := testutil.Context(t)
	alice, bob, eve := client.New(srv.URL, "alice"), client.New(srv.URL, "bob"), client.New(srv.URL, "eve")

	in := policy.Policy{Name: "east-first", Strategy: "BinPack", ID: "ignored", NCAID: "acct-b",
		FunctionSelector: policy.FunctionSelector{MatchTags: []string{"llm"}},
		FillAndSpill: []policy.Selector{
			{MatchLabels: map[string]string{policy.LabelRegion: "us-east"}},
			{MatchLabels: map[string]string{policy.LabelRegion: "us-west"}}}}
	created, err := alice.CreatePolicy(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if created.ID == "" || created.ID == "ignored" || created.NCAID != "acct-a" || created.CreatedAt.IsZero() ||
		created.Strategy != policy.StrategyBinPack || len(created.FillAndSpill) != 2 {
		t.Fatalf("created = %+v", created)
	}
	high, err := alice.CreatePolicy(ctx, policy.Policy{Name: "zz-high", Priority: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.CreatePolicy(ctx, policy.Policy{Name: "bobs"}); err != nil {
		t.Fatal(err)
	}

	list, err := alice.ListPolicies(ctx)
	if err != nil || len(list) != 2 || list[0].ID != high.ID || list[1].ID != created.ID {
		t.Fatalf("alice's list (highest priority first) = %+v, %v", list, err)
	}
	if got, err := alice.GetPolicy(ctx, created.ID); err != nil || got.Name != "east-first" {
		t.Fatalf("get = %+v, %v", got, err)
	}

	upd := created
	upd.Name, upd.Priority, upd.FillAndSpill = "spread-half", 5, nil
	upd.Spread = &policy.Spread{TopologyKey: policy.LabelRegion, Splits: []policy.Split{{Value: "us-east", Percent: 50}, {Value: "us-west", Percent: 50}}}
	upd.CreatedAt = upd.CreatedAt.Add(-1e12)
	got, err := alice.UpdatePolicy(ctx, created.ID, upd)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != created.ID || !got.CreatedAt.Equal(created.CreatedAt) || got.Name != "spread-half" || got.Spread == nil || got.FillAndSpill != nil {
		t.Fatalf("updated = %+v", got)
	}

	// Another account sees nothing, and cannot change or delete it.
	for name, call := range map[string]func() error{
		"get":    func() error { _, err := bob.GetPolicy(ctx, created.ID); return err },
		"update": func() error { _, err := bob.UpdatePolicy(ctx, created.ID, upd); return err },
		"delete": func() error { return bob.DeletePolicy(ctx, created.ID) },
	} {
		if err := call(); !client.IsNotFound(err) {
			t.Errorf("bob %s alice's policy: %v, want 404", name, err)
		}
	}
	if l, err := bob.ListPolicies(ctx); err != nil || len(l) != 1 || l[0].Name != "bobs" {
		t.Errorf("bob's list = %+v, %v", l, err)
	}
	if _, err := eve.ListPolicies(ctx); client.StatusCode(err) != http.StatusForbidden {
		t.Errorf("list without deploy_function: %v, want 403", err)
	}

	if err := alice.DeletePolicy(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.GetPolicy(ctx, created.ID); !client.IsNotFound(err) {
		t.Errorf("get after delete: %v, want 404", err)
	}
	if err := alice.DeletePolicy(ctx, created.ID); !client.IsNotFound(err) {
		t.Errorf("delete twice: %v, want 404", err)
	}
}

func TestPolicyRoutesRefuseBadBodies(t *testing.T) {
	t.Parallel()
	st := testutil.StartEtcd(t)
	mux := http.NewServeMux()
	api.NewPolicies(st, web.Guard{Auth: tokens{"alice": auth.NewPrincipal("acct-a", "alice", auth.AdminScopes)}}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	tests := []struct {
		name, method, path, body string
		status                   int
		detail                   string
	}{
		{"invalid policy", "POST", "/v1/gantry/policies",
			`{"name":"p","spread":{"topologyKey":"topology.kubernetes.io/region","splits":[{"value":"a","percent":60},{"value":"b","percent":60}]}}`,
			400, "spread.splits percentages sum to 120: they must sum to 100, e.g. a=50, b=50"},
		{"misspelt field", "POST", "/v1/gantry/policies",
			`{"name":"p","clusterSelector":{"matchLabel":{"tier":"gold"}}}`,
			400, `field "matchLabel" is not part of a policy`},
		{"not JSON", "POST", "/v1/gantry/policies", `{"name":`, 400, "not valid JSON"},
		{"bad id", "GET", "/v1/gantry/policies/a_b", "", 400, `policy id "a_b" is not a valid id`},
		{"unknown id", "PUT", "/v1/gantry/policies/nope", `{"name":"p"}`, 404, "policy nope not found"},
		{"invalid update of unknown id", "PUT", "/v1/gantry/policies/nope", `{"name":""}`, 400, "name is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer alice")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var pb problem.Body
			if err := json.NewDecoder(resp.Body).Decode(&pb); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || !strings.Contains(pb.Detail, tc.detail) {
				t.Errorf("%d %q; want %d with %q", resp.StatusCode, pb.Detail, tc.status, tc.detail)
			}
		})
	}
	// Nothing invalid was stored.
	if all, err := st.ListPolicies(testutil.Context(t)); err != nil || len(all) != 0 {
		t.Errorf("stored: %+v %v", all, err)
	}
}
