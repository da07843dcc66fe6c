package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/api"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/web"
)

// syncBuffer collects log lines from handlers running concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRegistryCredentials drives NVCF's registry credential routes with
// the bodies nvcf-cli sends, over a real secret store on embedded etcd:
// CRUD, account isolation, and the secret absent from every response, log
// line and etcd value.
func TestRegistryCredentials(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	svc := secrets.NewService(st, secrets.NewFileMEK(filepath.Join(t.TempDir(), "keys")), nil)
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	iss := auth.NewIssuer(st, testutil.NewKeySealer(t), auth.IssuerConfig{Issuer: "https://gantry.test", MaxTTL: 48 * time.Hour})
	if err := iss.Start(ctx); err != nil {
		t.Fatal(err)
	}
	keys := auth.NewAPIKeys(st, auth.APIKeysConfig{})
	gate, err := auth.NewInstallGate(auth.InstallLoopback, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	chain := auth.NewChain(iss, keys)
	mux := http.NewServeMux()
	api.NewKeys(api.KeysConfig{Issuer: iss, Keys: keys, Accounts: st, Gate: gate,
		Guard: web.Guard{Auth: chain, Log: log}, DefaultAccount: "gantry-local"}).Register(mux)
	api.New(api.Config{Store: st, Sealer: svc, Auth: chain, Logger: log}).Register(mux)
	srv := httptest.NewServer(web.ProblemFallback(mux))
	t.Cleanup(srv.Close)
	r := &keysRig{t: t, st: st, srv: srv}

	a := r.adminToken(`{"ncaId":"team-a"}`).Value
	b := r.adminToken(`{"ncaId":"team-b"}`).Value
	const password = "hunter2-registry-password"
	secret := base64.StdEncoding.EncodeToString([]byte("robot:" + password))
	var responses []string
	call := func(method, path, tok, body string) (int, []byte) {
		code, out := r.do(method, path, tok, body, "Content-Type", "application/json")
		responses = append(responses, string(out))
		return code, out
	}

	// The body nvcf-cli's "registry-credential add" sends.
	code, out := call("POST", "/v2/nvcf/registry-credentials", a, `{"registryHostname":"Registry.Example.com:5000",
		"secret":{"name":"credentials","value":"`+secret+`"},"artifactTypes":["CONTAINER"],
		"tags":["team:ml"],"description":"private images"}`)
	if code != http.StatusOK {
		t.Fatalf("create: %d %s", code, out)
	}
	var created model.RegistryCredentialResponse
	if err := json.Unmarshal(out, &created); err != nil {
		t.Fatal(err)
	}
	c := created.RegistryCredential
	if c.ID == "" || c.NCAID != "team-a" || c.RegistryHostname != "registry.example.com:5000" ||
		c.ProvisionedBy != "USER" || c.CreatedAt.IsZero() || len(c.ArtifactTypes) != 1 {
		t.Fatalf("created %+v", c)
	}
	path := "/v2/nvcf/registry-credentials/" + c.ID

	tests := []struct {
		name, method, path, tok, body string
		want                          int
		contains                      string
	}{
		{"owner gets it", "GET", path, a, "", 200, `"registryHostname":"registry.example.com:5000"`},
		{"owner lists it", "GET", "/v2/nvcf/registry-credentials", a, "", 200, c.ID},
		{"filter by artifact type", "GET", "/v2/nvcf/registry-credentials?artifactType=HELM", a, "", 200, `"registryCredentials":[]`},
		{"other account gets 404", "GET", path, b, "", 404, "not found"},
		{"other account lists nothing", "GET", "/v2/nvcf/registry-credentials", b, "", 200, `"registryCredentials":[]`},
		{"other account cannot patch", "PATCH", path, b, `{"artifactTypeEnums":["HELM"]}`, 404, "not found"},
		{"other account cannot delete", "DELETE", path, b, "", 404, "not found"},
		{"hostname with scheme refused", "POST", "/v2/nvcf/registry-credentials", a,
			`{"registryHostname":"https://x.io/v2","secret":{"name":"credentials","value":"` + secret + `"},"artifactTypes":["CONTAINER"]}`, 400, "registryHostname"},
		{"secret not base64 user:pass refused", "POST", "/v2/nvcf/registry-credentials", a,
			`{"registryHostname":"x.io","secret":{"name":"credentials","value":"` + password + `"},"artifactTypes":["CONTAINER"]}`, 400, "secret.value"},
		{"missing artifact types refused", "POST", "/v2/nvcf/registry-credentials", a,
			`{"registryHostname":"x.io","secret":{"name":"credentials","value":"` + secret + `"}}`, 400, "artifactTypes"},
		{"patch adds types", "PATCH", path, a, `{"artifactTypeEnums":["HELM"],"secret":{"name":"credentials","value":"` + secret + `"}}`, 200, `"artifactTypes":["CONTAINER","HELM"]`},
		{"recognized registries", "GET", "/v2/nvcf/recognized-registries", a, "", 200, `"nvcr.io"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := call(tc.method, tc.path, tc.tok, tc.body)
			if code != tc.want || !strings.Contains(string(out), tc.contains) {
				t.Fatalf("%s %s: %d %s, want %d containing %q", tc.method, tc.path, code, out, tc.want, tc.contains)
			}
		})
	}

	// The sealed secret opens for its own place only.
	sealed, err := st.GetRegistrySecret(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	place := secrets.Place{Account: "team-a", FunctionID: store.RegistryCredentialSecrets, VersionID: c.ID, Name: store.RegistrySecretName}
	plain, err := svc.Open(ctx, place, secrets.Sealed{NEK: sealed.NEK, Ciphertext: sealed.Ciphertext})
	if err != nil || string(plain) != secret {
		t.Fatalf("open: %v", err)
	}
	place.Account = "team-b"
	if _, err := svc.Open(ctx, place, secrets.Sealed{NEK: sealed.NEK, Ciphertext: sealed.Ciphertext}); err == nil {
		t.Fatal("another account's key opened the credential")
	}

	// Neither the password nor its base64 form is anywhere in clear.
	scanPlaintext(t, ctx, st.Client(), password, secret)
	for _, s := range append(responses, logs.String()) {
		if strings.Contains(s, password) || strings.Contains(s, secret) {
			t.Fatalf("secret leaked: %s", s)
		}
	}

	if code, out := call("DELETE", path, a, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, out)
	}
	if code, _ := call("GET", path, a, ""); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", code)
	}
	if _, err := st.GetRegistrySecret(ctx, c.ID); err == nil {
		t.Fatal("sealed secret outlived its credential")
	}
}

// scanPlaintext fails if any etcd value holds one of the needles.
func scanPlaintext(t *testing.T, ctx context.Context, c *clientv3.Client, needles ...string) {
	t.Helper()
	resp, err := c.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		for _, n := range needles {
			if bytes.Contains(kv.Value, []byte(n)) {
				t.Fatalf("etcd key %s holds a secret in plaintext", kv.Key)
			}
		}
	}
}
