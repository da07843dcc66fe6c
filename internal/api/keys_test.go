package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/api"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/web"
)

// keysRig is a management API with real credentials over a real etcd:
// the issuer, API keys, the chain, a loopback installation gate, the key
// routes and the function routes.
type keysRig struct {
	t    *testing.T
	st   *store.Store
	srv  *httptest.Server
	h    http.Handler
	iss  *auth.Issuer
	keys *auth.APIKeys
}

func newKeysRig(t *testing.T) *keysRig {
	t.Helper()
	return newKeysRigWithGate(t, auth.InstallLoopback, "")
}

// newKeysRigWithGate is newKeysRig with the installation gate in mode.
func newKeysRigWithGate(t *testing.T, mode auth.InstallMode, bootstrapSecret string) *keysRig {
	t.Helper()
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	iss := auth.NewIssuer(st, testutil.NewKeySealer(t), auth.IssuerConfig{Issuer: "https://gantry.test", MaxTTL: 48 * time.Hour})
	if err := iss.Start(ctx); err != nil {
		t.Fatal(err)
	}
	keys := auth.NewAPIKeys(st, auth.APIKeysConfig{})
	gate, err := auth.NewInstallGate(mode, bootstrapSecret, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	chain := auth.NewChain(iss, keys)
	mux := http.NewServeMux()
	api.NewKeys(api.KeysConfig{Issuer: iss, Keys: keys, Accounts: st, Gate: gate,
		Guard: web.Guard{Auth: chain}, DefaultAccount: "gantry-local"}).Register(mux)
	api.New(api.Config{Store: st, Auth: chain}).Register(mux)
	h := web.ProblemFallback(mux)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &keysRig{t: t, st: st, srv: srv, h: h, iss: iss, keys: keys}
}

// do sends a request and returns the status and body.
func (r *keysRig) do(method, path, token, body string, header ...string) (int, []byte) {
	r.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, r.srv.URL+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// adminToken mints an admin token through the HTTP route.
func (r *keysRig) adminToken(body string) model.APIKey {
	r.t.Helper()
	code, b := r.do("POST", "/v1/admin/keys", "", body)
	if code != http.StatusOK {
		r.t.Fatalf("POST /v1/admin/keys: %d %s", code, b)
	}
	var k model.APIKey
	if err := json.Unmarshal(b, &k); err != nil {
		r.t.Fatal(err)
	}
	return k
}

// apiKey creates an API key with the admin token.
func (r *keysRig) apiKey(admin, body string) model.APIKey {
	r.t.Helper()
	code, b := r.do("POST", "/v1/keys", admin, body)
	if code != http.StatusOK {
		r.t.Fatalf("POST /v1/keys: %d %s", code, b)
	}
	var k model.APIKey
	if err := json.Unmarshal(b, &k); err != nil {
		r.t.Fatal(err)
	}
	return k
}

func wantProblem(t *testing.T, code int, body []byte, status int, detail string) {
	t.Helper()
	var p problem.Body
	if code != status || json.Unmarshal(body, &p) != nil || p.Status != status || !strings.Contains(p.Detail, detail) {
		t.Fatalf("got %d %s, want %d with detail containing %q", code, body, status, detail)
	}
}

func TestAdminKeysRoute(t *testing.T) {
	r := newKeysRig(t)
	ctx := testutil.Context(t)

	// NVCF's clients POST without a body and read "value".
	code, raw := r.do("POST", "/v1/admin/keys", "", "")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, raw)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id", "value", "status", "description", "created_at", "expires_at"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("answer lacks %q: %s", f, raw)
		}
	}
	tok := r.adminToken("{}")
	if tok.Status != "ACTIVE" || tok.NCAID != "gantry-local" || strings.Count(tok.Value, ".") != 2 {
		t.Fatalf("token %+v", tok)
	}
	if code, b := r.do("GET", "/v2/nvcf/functions", tok.Value, ""); code != http.StatusOK {
		t.Fatalf("the admin token does not work: %d %s", code, b)
	}
	if _, err := r.st.GetAccount(ctx, "gantry-local"); err != nil {
		t.Fatalf("default account not created: %v", err)
	}

	other := r.adminToken(`{"ncaId":"team-b","ttl":"PT2H"}`)
	if other.NCAID != "team-b" || other.ExpiresAt == nil || other.ExpiresAt.Sub(other.CreatedAt) != 2*time.Hour {
		t.Fatalf("token %+v", other)
	}
	if _, err := r.st.GetAccount(ctx, "team-b"); err != nil {
		t.Fatalf("account team-b not created: %v", err)
	}
	p, err := r.iss.Verify(ctx, other.Value)
	if err != nil || p.Account != "team-b" {
		t.Fatalf("%+v %v", p, err)
	}

	tests := []struct {
		name, body, detail string
	}{
		{"ttl beyond the maximum", `{"ttl":"P3D"}`, "longer than this installation allows (48h0m0s)"},
		{"expiry in the past", `{"expires_at":"2001-01-01T00:00:00Z"}`, "expires_at \"2001-01-01T00:00:00Z\" is in the past"},
		{"both", `{"ttl":"1h","expires_at":"2100-01-01T00:00:00Z"}`, "not both"},
		{"bad account", `{"ncaId":"a b"}`, "not a valid account id"},
		{"not JSON", `{"ttl":`, "not valid JSON"},
		{"not an object", `[]`, "must be a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, b := r.do("POST", "/v1/admin/keys", "", tc.body)
			wantProblem(t, code, b, http.StatusBadRequest, tc.detail)
		})
	}

	// The gate answers before anything else for a client elsewhere.
	req := httptest.NewRequest("POST", "/v1/admin/keys", nil)
	req.RemoteAddr = "192.0.2.7:40000"
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	wantProblem(t, w.Code, w.Body.Bytes(), http.StatusForbidden, "loopback")
}

const nvcfKeyBody = `{
  "description": "invoke only",
  "expires_at": "2100-01-02T15:04:05Z",
  "authorizations": {"policies": [{"aud": "https://api.example.com", "auds": ["https://api.example.com"],
    "product": "nv-cloud-functions", "resources": [{"id": "*", "type": "account-functions"}],
    "scopes": ["invoke_function", "apikey:list_functions", "queue_details", "list_functions_details"]}]},
  "audience_service_ids": ["nvidia-cloud-functions-ncp-service-id-aketm"]
}`

func TestAPIKeysRoutes(t *testing.T) {
	r := newKeysRig(t)
	admin := r.adminToken("").Value
	otherAdmin := r.adminToken(`{"ncaId":"team-b"}`).Value

	code, raw := r.do("POST", "/v1/keys", admin, nvcfKeyBody,
		"Key-Issuer-Service", "nvcf-api", "Key-Issuer-Id", "nvidia-cloud-functions-ncp-service-id-aketm", "Key-Owner-Id", "alice@example.com")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, raw)
	}
	var created model.APIKey
	if err := json.Unmarshal(raw, &created); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Value, "nvapi-") || created.Status != "ACTIVE" || created.Description != "invoke only" ||
		created.ExpiresAt == nil || !created.ExpiresAt.Equal(time.Date(2100, 1, 2, 15, 4, 5, 0, time.UTC)) || created.CreatedAt.IsZero() {
		t.Fatalf("created %s", raw)
	}
	stored, err := r.st.GetAPIKey(testutil.Context(t), created.ID)
	if err != nil || stored.IssuerService != "nvcf-api" || stored.OwnerID != "alice@example.com" ||
		stored.IssuerID != "nvidia-cloud-functions-ncp-service-id-aketm" || len(stored.AudienceServiceIDs) != 1 {
		t.Fatalf("stored %+v %v", stored, err)
	}

	// The key works where its scopes reach, and not beyond.
	if code, b := r.do("GET", "/v2/nvcf/functions", created.Value, ""); code != http.StatusOK {
		t.Fatalf("list functions with the key: %d %s", code, b)
	}
	code, b := r.do("POST", "/v2/nvcf/functions", created.Value, `{}`)
	wantProblem(t, code, b, http.StatusForbidden, "register_function")

	// An API key cannot manage keys, even one with every scope.
	everything := r.apiKey(admin, `{"authorizations":{"policies":[{"scopes":["register_function","list_functions","list_functions_details",
		"deploy_function","update_function","update_secrets","delete_function","manage_telemetries","manage_registry_credentials",
		"cluster-management","invoke_function","queue_details"]}]}}`)
	for _, call := range [][2]string{{"POST", "/v1/keys"}, {"GET", "/v1/keys"}, {"DELETE", "/v1/keys/" + created.ID}} {
		code, b := r.do(call[0], call[1], everything.Value, "{}")
		wantProblem(t, code, b, http.StatusForbidden, "needs an admin token")
	}

	// Listing shows the account's keys, never a value or hash.
	other := r.apiKey(otherAdmin, "")
	code, raw = r.do("GET", "/v1/keys", admin, "")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, raw)
	}
	if bytes.Contains(raw, []byte(created.Value)) || bytes.Contains(raw, []byte(`"value"`)) || bytes.Contains(raw, []byte("hash")) {
		t.Fatalf("the list shows secrets: %s", raw)
	}
	var list model.APIKeyListResponse
	if err := json.Unmarshal(raw, &list); err != nil || len(list.Keys) != 2 || list.Keys[0].ID != created.ID || list.Keys[1].ID != everything.ID {
		t.Fatalf("list %s %v", raw, err)
	}
	if pol := list.Keys[0].Authorizations.Policies[0]; pol.Scopes[1] != "list_functions" || pol.Resources[0].Type != "account-functions" {
		t.Fatalf("listed policy %+v", pol)
	}

	// Revocation: another account's key is missing; our key stops at once.
	code, b = r.do("DELETE", "/v1/keys/"+other.ID, admin, "")
	wantProblem(t, code, b, http.StatusNotFound, "not found")
	code, b = r.do("DELETE", "/v1/keys/bad_id!", admin, "")
	wantProblem(t, code, b, http.StatusBadRequest, "keyId")
	code, raw = r.do("DELETE", "/v1/keys/"+created.ID, admin, "")
	if code != http.StatusOK || !bytes.Contains(raw, []byte(`"status":"REVOKED"`)) {
		t.Fatalf("revoke: %d %s", code, raw)
	}
	code, b = r.do("GET", "/v2/nvcf/functions", created.Value, "")
	wantProblem(t, code, b, http.StatusUnauthorized, "not accepted")
	if code, _ := r.do("GET", "/v2/nvcf/functions", other.Value, ""); code != http.StatusOK {
		t.Fatal("revoking one key hurt another account's")
	}
}

func TestAPIKeysRouteRefusals(t *testing.T) {
	r := newKeysRig(t)
	admin := r.adminToken("").Value
	tests := []struct {
		name, token, body string
		header            []string
		status            int
		detail            string
	}{
		{"bad credential", "nvapi-nope", "{}", nil, http.StatusUnauthorized, "not accepted"},
		{"expiry in the past", admin, `{"expires_at":"2020-01-01T00:00:00Z"}`, nil, http.StatusBadRequest, "is in the past"},
		{"unknown scope", admin, `{"authorizations":{"policies":[{"scopes":["launch_rocket"]}]}}`, nil, http.StatusBadRequest,
			`scopes[0] "launch_rocket" is not a scope Gantry knows`},
		{"bad resource type", admin, `{"authorizations":{"policies":[{"scopes":["invoke_function"],"resources":[{"id":"x","type":"cluster"}]}]}}`,
			nil, http.StatusBadRequest, `type "cluster" is not a resource type`},
		{"another account's functions", admin, `{"authorizations":{"policies":[{"scopes":["invoke_function"],"resources":[{"id":"team-b","type":"account-functions"}]}]}}`,
			nil, http.StatusBadRequest, "invalid for type account-functions"},
		{"bad header", admin, "{}", []string{"Key-Owner-Id", "a b"}, http.StatusBadRequest, "header Key-Owner-Id"},
		{"wrong type", admin, `{"description":7}`, nil, http.StatusBadRequest, "description must be a string"},
		{"too big", admin, `{"description":"` + strings.Repeat("x", 70<<10) + `"}`, nil, http.StatusRequestEntityTooLarge, "larger than the limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, b := r.do("POST", "/v1/keys", tc.token, tc.body, tc.header...)
			wantProblem(t, code, b, tc.status, tc.detail)
		})
	}
}

func TestAPIKeyResourcesLimitFunctions(t *testing.T) {
	r := newKeysRig(t)
	ctx := testutil.Context(t)
	admin := r.adminToken("").Value
	for _, id := range []string{"fn-a", "fn-b"} {
		f := &model.Function{ID: id, VersionID: id + "-v1", NCAID: "gantry-local", Name: id, CreatedAt: time.Now()}
		if err := r.st.CreateFunction(ctx, f, nil); err != nil {
			t.Fatal(err)
		}
	}
	onlyA := r.apiKey(admin, `{"authorizations":{"policies":[{"scopes":["list_functions","list_functions_details"],
		"resources":[{"id":"fn-a","type":"function"}]}]}}`).Value
	tests := []struct {
		name, token, path string
		status            int
	}{
		{"admin reads fn-b", admin, "/v2/nvcf/functions/fn-b/versions/fn-b-v1", http.StatusOK},
		{"key reads fn-a", onlyA, "/v2/nvcf/functions/fn-a/versions/fn-a-v1", http.StatusOK},
		{"key lists fn-a's versions", onlyA, "/v2/nvcf/functions/fn-a/versions", http.StatusOK},
		{"key does not see fn-b", onlyA, "/v2/nvcf/functions/fn-b/versions/fn-b-v1", http.StatusNotFound},
		{"key does not see fn-b's versions", onlyA, "/v2/nvcf/functions/fn-b/versions", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, b := r.do("GET", tc.path, tc.token, ""); code != tc.status {
				t.Fatalf("%d %s, want %d", code, b, tc.status)
			}
		})
	}
	code, raw := r.do("GET", "/v2/nvcf/functions", onlyA, "")
	var list model.FunctionListResponse
	if code != http.StatusOK || json.Unmarshal(raw, &list) != nil || len(list.Functions) != 1 || list.Functions[0].ID != "fn-a" {
		t.Fatalf("the key lists %d %s", code, raw)
	}
}

func TestJWKSRoutes(t *testing.T) {
	r := newKeysRig(t)
	tok := r.adminToken("")
	for _, path := range []string{"/v1/jwks", "/.well-known/jwks.json"} {
		code, raw := r.do("GET", path, "", "")
		var set auth.JWKS
		if code != http.StatusOK || json.Unmarshal(raw, &set) != nil || len(set.Keys) != 1 {
			t.Fatalf("%s: %d %s", path, code, raw)
		}
		k := set.Keys[0]
		if k.Kty != "EC" || k.Crv != "P-256" || k.Alg != "ES256" || k.Use != "sig" || k.X == "" || k.Y == "" {
			t.Fatalf("%s: %+v", path, k)
		}
		if !strings.Contains(tok.Value, ".") || kid(t, tok.Value) != k.Kid {
			t.Fatalf("%s: the token's kid is not published", path)
		}
	}
}

// kid reads a JWT's kid header without verifying it.
func kid(t *testing.T, token string) string {
	t.Helper()
	head, _, _ := strings.Cut(token, ".")
	var h struct {
		Kid string `json:"kid"`
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil || json.Unmarshal(raw, &h) != nil {
		t.Fatalf("header %q: %v", head, err)
	}
	return h.Kid
}

// TestAPIKeyWithoutCredential: NVCF's self-hosted docs create the first API
// key with no Authorization header, and nvcf-cli revokes keys without one.
// Where the installation gate admits the
// caller without a credential (loopback, open), that makes a key of the
// default account, as an admin token the caller could mint would; in
// bootstrap mode it is a 401 that says to send a token.
func TestAPIKeyWithoutCredential(t *testing.T) {
	for _, tc := range []struct {
		mode   auth.InstallMode
		status int
		detail string
	}{
		{auth.InstallLoopback, http.StatusOK, ""},
		{auth.InstallOpen, http.StatusOK, ""},
		{auth.InstallBootstrap, http.StatusUnauthorized, "missing credential"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			r := newKeysRigWithGate(t, tc.mode, strings.Repeat("s", auth.MinBootstrapSecretLen))
			code, b := r.do("POST", "/v1/keys", "", `{"description":"first key"}`, "Key-Issuer-Service", "nvcf-api")
			if tc.status != http.StatusOK {
				wantProblem(t, code, b, tc.status, tc.detail)
				code, b = r.do("DELETE", "/v1/keys/0123456789abcdef", "", "")
				wantProblem(t, code, b, tc.status, tc.detail)
				return
			}
			var k model.APIKey
			if code != http.StatusOK || json.Unmarshal(b, &k) != nil || k.NCAID != "gantry-local" || !strings.HasPrefix(k.Value, "nvapi-") {
				t.Fatalf("%d %s", code, b)
			}
			if code, b := r.do("GET", "/v2/nvcf/functions", k.Value, ""); code != http.StatusOK {
				t.Fatalf("the key does not work: %d %s", code, b)
			}
			// A credential that is sent is checked as ever.
			code, b = r.do("POST", "/v1/keys", "nvapi-nope", "{}")
			wantProblem(t, code, b, http.StatusUnauthorized, "not accepted")
			// nvcf-cli revokes without a credential too.
			if code, b := r.do("DELETE", "/v1/keys/"+k.ID, "", ""); code != http.StatusOK {
				t.Fatalf("revoke without a credential: %d %s", code, b)
			}
			if code, _ := r.do("GET", "/v2/nvcf/functions", k.Value, ""); code != http.StatusUnauthorized {
				t.Fatalf("the revoked key still works: %d", code)
			}
		})
	}
}
