package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/policy"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// route is one endpoint of the scope table in docs/api.md, with two ways to
// call it: real addresses a resource of the first account (used for callers
// that must be refused, and for the other account, which must get 404);
// safe cannot change anything (a malformed body or an unknown id) and is
// used for callers that must get past the credential check.
type route struct {
	method, real, safe string
	body               string // a valid body for real
	scope              string // "" : any admin token, and no API key
	// orScope is a second scope the route also accepts (NVCF opens some
	// routes to either of two).
	orScope string
	// listing routes answer the other account 200 with none of the first
	// account's resources, instead of 404.
	listing bool
	// gated routes take a call without any credential through the
	// installation gate, as the default account's admin (loopback mode,
	// which the test platform runs in).
	gated bool
}

// credential is one way of calling: a bearer value and what it should get.
type credential struct {
	name   string
	bearer string
	scopes []string // for API keys; nil with admin or want set
	admin  bool
	want   int // a fixed answer for every route (401), or 0
	other  bool
}

// TestAuthorizationMatrix walks every route with every kind of credential and
// checks each answer against the scope table: 401 without a valid credential,
// 403 for a valid one that lacks the scope, 404 for another account's
// resources, and past the check otherwise.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	admin := p.c
	account := controlplane.DefaultAccount

	// The first account's resources.
	fn, err := admin.CreateFunction(ctx, selfFunction(t, "matrix", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	d := p.deploy(t, fn, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1}, model.StatusActive)
	inv, err := admin.Invoke(ctx, client.InvokeRequest{FunctionID: fn.ID})
	if err != nil || inv.StatusCode != 200 {
		t.Fatalf("invoke: %v %v", inv, err)
	}
	reqID := inv.Header.Get("NVCF-REQID")
	cl, _, _, err := p.ControlPlane().Registry().Register(ctx, model.Cluster{Name: "matrix", GroupName: "g", NCAID: account})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := admin.CreatePolicy(ctx, policy.Policy{Name: "matrix", FunctionSelector: policy.FunctionSelector{MatchTags: []string{"x"}}})
	if err != nil {
		t.Fatal(err)
	}
	key := func(c *client.Client, desc string, scopes ...string) model.APIKey {
		t.Helper()
		req := model.APIKeyRequest{Description: desc}
		if scopes != nil {
			req.Authorizations = &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{{Scopes: scopes,
				Resources: []model.APIKeyResource{{ID: "*", Type: model.ResourceAccountFunctions}}}}}
		}
		k, err := c.CreateAPIKey(ctx, req, client.KeyIssuer{})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	victim := key(admin, "to revoke")
	if _, err := admin.RevokeAPIKey(ctx, victim.ID); err != nil {
		t.Fatal(err)
	}
	standing := key(admin, "standing") // never used; the other account tries to revoke it
	asset := createAsset(t, p, p.AdminToken(), "image/png", "matrix")

	// The other account, with its own admin token.
	otherTok, err := admin.MintAdminToken(ctx, model.AdminKeyRequest{NCAID: "other-account"})
	if err != nil {
		t.Fatal(err)
	}

	fnBody, _ := json.Marshal(selfFunction(t, "matrix2", "echo"))
	depBody := `{"deploymentSpecifications":[{"gpu":"H100","minInstances":1,"maxInstances":1}]}`
	fv := fn.ID + "/versions/" + fn.VersionID
	acct := "/v1/accounts/" + account + "/clusters"
	const shares = "/v2/nvcf/authorizations/functions/"
	const bad = `{"malformed`
	const unknown = "00000000-0000-0000-0000-000000000000"
	routes := []route{
		{method: "POST", real: "/v2/nvcf/functions", body: string(fnBody), scope: auth.ScopeRegisterFunction, listing: true},
		{method: "GET", real: "/v2/nvcf/functions", scope: auth.ScopeListFunctions, orScope: auth.ScopeListFunctionsDetails, listing: true},
		{method: "GET", real: "/v2/nvcf/functions/ids", scope: auth.ScopeListFunctions, orScope: auth.ScopeListFunctionsDetails, listing: true},
		{method: "POST", real: "/v2/nvcf/functions/" + fn.ID + "/versions", body: string(fnBody), scope: auth.ScopeRegisterFunction},
		{method: "GET", real: "/v2/nvcf/functions/" + fn.ID + "/versions", scope: auth.ScopeListFunctions, orScope: auth.ScopeListFunctionsDetails},
		{method: "GET", real: "/v2/nvcf/functions/" + fv, scope: auth.ScopeListFunctionsDetails, orScope: auth.ScopeListFunctions},
		{method: "PUT", real: "/v2/nvcf/functions/" + fv, body: `{"tags":["x"]}`, scope: auth.ScopeUpdateFunction},
		{method: "DELETE", real: "/v2/nvcf/functions/" + fv, safe: "/v2/nvcf/functions/" + unknown + "/versions/" + unknown, scope: auth.ScopeDeleteFunction},
		{method: "PUT", real: "/v2/nvcf/metadata/functions/" + fv, body: `{"tags":["x"]}`, scope: auth.ScopeUpdateFunction},
		{method: "PUT", real: "/v2/nvcf/ratelimit/functions/" + fv, body: `{"rateLimit":{"rateLimit":"1000-S"}}`, scope: auth.ScopeUpdateFunction},
		{method: "DELETE", real: "/v2/nvcf/ratelimit/functions/" + fv, scope: auth.ScopeUpdateFunction},
		{method: "PUT", real: "/v2/nvcf/secrets/functions/" + fv, body: `{"secrets":[{"name":"K","value":"v"}]}`, scope: auth.ScopeUpdateSecrets},
		{method: "POST", real: "/v2/nvcf/deployments/functions/" + fv, body: depBody, scope: auth.ScopeDeployFunction},
		{method: "GET", real: "/v2/nvcf/deployments/functions/" + fv, scope: auth.ScopeDeployFunction},
		{method: "PUT", real: "/v2/nvcf/deployments/functions/" + fv, body: depBody, scope: auth.ScopeDeployFunction},
		{method: "DELETE", real: "/v2/nvcf/deployments/functions/" + fv, safe: "/v2/nvcf/deployments/functions/" + unknown + "/versions/" + unknown, scope: auth.ScopeDeployFunction},
		{method: "GET", real: "/v2/nvcf/deployments/" + d.ID, scope: auth.ScopeDeployFunction},
		{method: "PATCH", real: "/v2/nvcf/deployments/" + d.ID + "/gpu-specifications/0", body: `{"minInstances":1,"maxInstances":1}`, scope: auth.ScopeDeployFunction},
		{method: "GET", real: "/v2/nvcf/clusterGroups", scope: auth.ScopeListClusterGroups, orScope: auth.ScopeListFunctions, listing: true},
		{method: "GET", real: "/v2/nvcf/supportedGpus", scope: auth.ScopeRegisterFunction, listing: true},
		{method: "POST", real: acct, body: `{"clusterName":"x","clusterGroupName":"g"}`, scope: auth.ScopeClusterManagement},
		{method: "GET", real: acct, scope: auth.ScopeClusterManagement},
		{method: "GET", real: acct + "/" + cl.ID, scope: auth.ScopeClusterManagement},
		{method: "PUT", real: acct + "/" + cl.ID, body: `{"clusterName":"matrix","clusterGroupName":"g"}`, scope: auth.ScopeClusterManagement},
		{method: "DELETE", real: acct + "/" + cl.ID, safe: acct + "/" + unknown, scope: auth.ScopeClusterManagement},
		{method: "POST", real: acct + "/" + cl.ID + "/cordon", safe: acct + "/" + unknown + "/cordon", scope: auth.ScopeClusterManagement},
		{method: "POST", real: acct + "/" + cl.ID + "/uncordon", safe: acct + "/" + unknown + "/uncordon", scope: auth.ScopeClusterManagement},
		{method: "POST", real: acct + "/" + cl.ID + "/drain", safe: acct + "/" + unknown + "/drain", scope: auth.ScopeClusterManagement},
		{method: "POST", real: "/v1/gantry/policies", body: `{"name":"p","functionSelector":{"matchTags":["y"]}}`, scope: auth.ScopeDeployFunction, listing: true},
		{method: "GET", real: "/v1/gantry/policies", scope: auth.ScopeDeployFunction, listing: true},
		{method: "GET", real: "/v1/gantry/events", scope: auth.ScopeListFunctions, orScope: auth.ScopeListFunctionsDetails, listing: true},
		{method: "GET", real: "/v1/gantry/policies/" + pol.ID, scope: auth.ScopeDeployFunction},
		{method: "PUT", real: "/v1/gantry/policies/" + pol.ID, body: `{"name":"matrix","functionSelector":{"matchTags":["x"]}}`, scope: auth.ScopeDeployFunction},
		{method: "DELETE", real: "/v1/gantry/policies/" + pol.ID, safe: "/v1/gantry/policies/" + unknown, scope: auth.ScopeDeployFunction},
		{method: "POST", real: "/v2/nvcf/pexec/functions/" + fn.ID, body: `{}`, scope: auth.ScopeInvokeFunction},
		{method: "POST", real: "/v2/nvcf/pexec/functions/" + fv, body: `{}`, scope: auth.ScopeInvokeFunction},
		{method: "GET", real: "/v2/nvcf/pexec/status/" + reqID, scope: auth.ScopeInvokeFunction},
		{method: "GET", real: "/v2/nvcf/queues/functions/" + fn.ID, scope: auth.ScopeQueueDetails},
		{method: "GET", real: "/v2/nvcf/queues/functions/" + fv, scope: auth.ScopeQueueDetails},
		{method: "GET", real: "/v2/nvcf/queues/" + reqID + "/position", scope: auth.ScopeQueueDetails},
		{method: "GET", real: "/v2/nvcf/authorizations/functions", scope: auth.ScopeAuthorizeClients, listing: true},
		{method: "POST", real: shares + fn.ID, body: `{"authorizedParties":[]}`, scope: auth.ScopeAuthorizeClients},
		{method: "GET", real: shares + fn.ID, scope: auth.ScopeAuthorizeClients},
		{method: "DELETE", real: shares + fn.ID, safe: shares + unknown, scope: auth.ScopeAuthorizeClients},
		{method: "PATCH", real: shares + fn.ID + "/add", body: `{"authorizedParty":{"ncaId":"other-account"}}`, scope: auth.ScopeAuthorizeClients},
		{method: "PATCH", real: shares + fn.ID + "/remove", body: `{"authorizedParty":{"ncaId":"other-account"}}`, scope: auth.ScopeAuthorizeClients},
		{method: "POST", real: shares + fv, body: `{"authorizedParties":[]}`, scope: auth.ScopeAuthorizeClients},
		{method: "GET", real: shares + fv, scope: auth.ScopeAuthorizeClients},
		{method: "DELETE", real: shares + fv, safe: shares + unknown + "/versions/" + unknown, scope: auth.ScopeAuthorizeClients},
		{method: "PATCH", real: shares + fv + "/add", body: `{"authorizedParty":{"ncaId":"other-account"}}`, scope: auth.ScopeAuthorizeClients},
		{method: "PATCH", real: shares + fv + "/remove", body: `{"authorizedParty":{"ncaId":"other-account"}}`, scope: auth.ScopeAuthorizeClients},
		{method: "POST", real: "/v1/keys", body: `{"description":"x"}`, listing: true, gated: true},
		{method: "GET", real: "/v1/keys", listing: true},
		{method: "DELETE", real: "/v1/keys/" + standing.ID, safe: "/v1/keys/" + unknown, gated: true},
		{method: "POST", real: "/v2/nvcf/assets", body: `{"contentType":"image/png","description":"x"}`, scope: auth.ScopeInvokeFunction, listing: true},
		{method: "GET", real: "/v2/nvcf/assets", scope: auth.ScopeInvokeFunction, listing: true},
		{method: "GET", real: "/v2/nvcf/assets/" + asset.AssetID, scope: auth.ScopeInvokeFunction},
		{method: "DELETE", real: "/v2/nvcf/assets/" + asset.AssetID, safe: "/v2/nvcf/assets/" + unknown, scope: auth.ScopeInvokeFunction},
	}

	creds := []credential{
		{name: "none", want: http.StatusUnauthorized},
		{name: "malformed", bearer: "not a credential", want: http.StatusUnauthorized},
		{name: "malformed api key", bearer: "nvapi-garbage", want: http.StatusUnauthorized},
		{name: "malformed jwt", bearer: "a.b.c", want: http.StatusUnauthorized},
		{name: "expired admin token", bearer: expiredAdminToken(t, p, account), want: http.StatusUnauthorized},
		{name: "expired api key", bearer: expiredAPIKey(t, p, account), want: http.StatusUnauthorized},
		{name: "revoked api key", bearer: victim.Value, want: http.StatusUnauthorized},
		{name: "admin token", bearer: p.AdminToken(), admin: true},
		{name: "other account", bearer: otherTok.Value, admin: true, other: true},
		{name: "api key, default scopes", bearer: key(admin, "default").Value, scopes: auth.DefaultAPIKeyScopes},
	}
	for _, s := range append(slices.Clone(auth.AdminScopes), auth.DefaultAPIKeyScopes...) {
		if slices.ContainsFunc(creds, func(c credential) bool { return c.name == "api key, "+s }) {
			continue
		}
		creds = append(creds, credential{name: "api key, " + s, bearer: key(admin, s, "apikey:"+s).Value, scopes: []string{s}})
	}

	for _, c := range creds {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range routes {
				want, path, body := c.want, r.real, r.body
				allowed := c.admin || (r.scope != "" && slices.Contains(c.scopes, r.scope)) ||
					(r.orScope != "" && slices.Contains(c.scopes, r.orScope))
				if c.bearer == "" && r.gated {
					want, allowed = 0, true
				}
				switch {
				case want != 0:
				case !allowed:
					want = http.StatusForbidden
				case c.other && !r.listing:
					want = http.StatusNotFound
				case !c.other && (r.method != "GET"):
					// Get past the check without changing anything.
					if r.safe != "" {
						path, body = r.safe, ""
					} else {
						body = bad
					}
				}
				status, answer := call(t, p.URL(), r.method, path, c.bearer, body)
				if want == 0 {
					if status == http.StatusUnauthorized || status == http.StatusForbidden || status >= 500 {
						t.Errorf("%s %s: %d %s, want past the credential check", r.method, path, status, answer)
					}
					if c.other && (strings.Contains(answer, fn.ID) || strings.Contains(answer, cl.ID) ||
						strings.Contains(answer, pol.ID) || strings.Contains(answer, standing.ID)) {
						t.Errorf("%s %s shows the other account's resources: %s", r.method, path, answer)
					}
					continue
				}
				if status != want {
					t.Errorf("%s %s: %d %s, want %d", r.method, path, status, answer, want)
				}
				if !strings.Contains(answer, `"status":`) {
					t.Errorf("%s %s: %d without a problem body: %s", r.method, path, status, answer)
				}
			}
		})
	}

	// Nothing the refused callers sent changed the first account's resources.
	if _, err := admin.GetFunction(ctx, fn.ID, fn.VersionID); err != nil {
		t.Errorf("the function is gone: %v", err)
	}
	if keys, err := admin.ListAPIKeys(ctx); err != nil || !slices.ContainsFunc(keys, func(k model.APIKey) bool {
		return k.ID == standing.ID && k.Status == "ACTIVE"
	}) {
		t.Errorf("the other account revoked a key: %+v %v", keys, err)
	}
}

// call sends one request and returns the status and the body.
func call(t *testing.T, base, method, path, bearer, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("NVCF-POLL-SECONDS", "5")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// expiredAdminToken mints a token with an issuer whose clock is two days
// behind, on the platform's own signing key, so it expired a day ago.
func expiredAdminToken(t *testing.T, p *platform, account string) string {
	t.Helper()
	ctx := testutil.Context(t)
	past := func() time.Time { return time.Now().Add(-48 * time.Hour) }
	iss := auth.NewIssuer(p.ControlPlane().Store(), p.ControlPlane().Secrets(), auth.IssuerConfig{Now: past})
	if err := iss.Start(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Mint(ctx, account, "expired", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Value
}

// expiredAPIKey creates a key that expired an hour ago.
func expiredAPIKey(t *testing.T, p *platform, account string) string {
	t.Helper()
	past := func() time.Time { return time.Now().Add(-2 * time.Hour) }
	keys := auth.NewAPIKeys(p.ControlPlane().Store(), auth.APIKeysConfig{Now: past})
	exp := past().Add(time.Hour)
	_, value, err := keys.Create(testutil.Context(t), store.APIKey{Account: account, Description: "expired",
		Scopes: auth.DefaultAPIKeyScopes, ExpiresAt: exp})
	if err != nil {
		t.Fatal(err)
	}
	return value
}

// TestNVCFKeyFlow is how NVCF clients get credentials: mint an admin token
// with POST /v1/admin/keys, create an API key with POST /v1/keys, invoke
// with the key, revoke it, and see 401.
func TestNVCFKeyFlow(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	fn, err := p.c.CreateFunction(ctx, selfFunction(t, "keyflow", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, fn, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1}, model.StatusActive)

	status, body := call(t, p.URL(), "POST", "/v1/admin/keys", "", `{}`)
	var minted model.APIKey
	if status != http.StatusOK || json.Unmarshal([]byte(body), &minted) != nil || minted.Value == "" || minted.ExpiresAt == nil {
		t.Fatalf("POST /v1/admin/keys: %d %s", status, body)
	}
	admin := client.New(p.URL(), minted.Value)
	k, err := admin.CreateAPIKey(ctx, model.APIKeyRequest{Description: "ci"},
		client.KeyIssuer{Service: "e2e", ID: "tester", Owner: "tester"})
	if err != nil || !strings.HasPrefix(k.Value, "nvapi-") {
		t.Fatalf("POST /v1/keys: %+v %v", k, err)
	}
	user := client.New(p.URL(), k.Value)
	r, err := user.Invoke(ctx, client.InvokeRequest{FunctionID: fn.ID, Body: strings.NewReader("hi")})
	if err != nil || r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `"body":"hi"`) {
		t.Fatalf("invoke with the key: %v %v", r, err)
	}
	keys, err := admin.ListAPIKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].Value != "" {
		t.Fatalf("GET /v1/keys: %+v %v (values must never be listed)", keys, err)
	}
	if _, err := admin.RevokeAPIKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	// Revocation is immediate on the replica that revoked.
	status, body = call(t, p.URL(), "POST", "/v2/nvcf/pexec/functions/"+fn.ID, k.Value, `hi`)
	if status != http.StatusUnauthorized {
		t.Fatalf("invoke with a revoked key: %d %s", status, body)
	}
}

// TestSigningKeyRotation: after the admin token signing key rotates, tokens
// signed before keep working, new ones are signed with the new key, and the
// JWKS publishes both.
func TestSigningKeyRotation(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	old := p.AdminToken()
	keys, err := p.c.RotateSigningKey(ctx)
	if err != nil || len(keys.Keys) != 2 {
		t.Fatalf("rotate: %+v %v", keys, err)
	}
	if _, err := client.New(p.URL(), old).ListFunctions(ctx); err != nil {
		t.Fatalf("a token signed before the rotation: %v", err)
	}
	minted, err := p.c.MintAdminToken(ctx, model.AdminKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if kid(t, minted.Value) == kid(t, old) || kid(t, minted.Value) != keys.Keys[0].KID && kid(t, minted.Value) != keys.Keys[1].KID {
		t.Fatalf("new token kid %s, old %s, published %+v", kid(t, minted.Value), kid(t, old), keys)
	}
	if _, err := client.New(p.URL(), minted.Value).ListFunctions(ctx); err != nil {
		t.Fatalf("a token signed after the rotation: %v", err)
	}
}

// kid reads the key id from a JWT's header.
func kid(t *testing.T, token string) string {
	t.Helper()
	head, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.KID
}
