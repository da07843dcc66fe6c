package secrets

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testutil"
)

// fakeOpenBaoKV is a fake OpenBao because no OpenBao server can run on this
// machine (it cannot be installed here). It implements only what the
// provider uses, as the OpenBao HTTP API documents it: reading a KV v2
// secret (latest or ?version=N) and writing one with check-and-set under
// /v1/<mount>/data/<path>, and Kubernetes login at
// /v1/auth/kubernetes/login. Every KV call must carry a token it issued.
type fakeOpenBaoKV struct {
	mount, path string
	role, jwt   string

	mu       sync.Mutex
	tokens   map[string]bool
	versions []map[string]any // versions[i] is KV version i+1
	logins   int
}

func newFakeOpenBaoKV(t *testing.T, rootToken string) (*fakeOpenBaoKV, *httptest.Server) {
	f := &fakeOpenBaoKV{mount: "kv", path: "gantry/mek", role: "gantry", jwt: "service-account-jwt",
		tokens: map[string]bool{rootToken: true}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeOpenBaoKV) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(status int, msg string) { reply(status, map[string]any{"errors": []string{msg}}) }
	if r.URL.Path == "/v1/auth/kubernetes/login" && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
		var body struct{ Role, JWT string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Role != f.role || body.JWT != f.jwt {
			fail(http.StatusForbidden, "permission denied")
			return
		}
		f.logins++
		tok := "k8s-token-" + strconv.Itoa(f.logins)
		f.tokens[tok] = true
		reply(http.StatusOK, map[string]any{"auth": map[string]any{"client_token": tok, "lease_duration": 3600, "renewable": true}})
		return
	}
	if !f.tokens[r.Header.Get("X-Vault-Token")] {
		fail(http.StatusForbidden, "permission denied")
		return
	}
	if r.URL.Path != "/v1/"+f.mount+"/data/"+f.path {
		fail(http.StatusNotFound, "no handler for route")
		return
	}
	meta := func(v int) map[string]any {
		return map[string]any{"version": v, "created_time": time.Now().UTC().Format(time.RFC3339Nano), "deletion_time": "", "destroyed": false}
	}
	switch r.Method {
	case http.MethodGet:
		v := len(f.versions)
		if q := r.URL.Query().Get("version"); q != "" {
			v, _ = strconv.Atoi(q)
		}
		if v < 1 || v > len(f.versions) {
			fail(http.StatusNotFound, "")
			return
		}
		reply(http.StatusOK, map[string]any{"data": map[string]any{"data": f.versions[v-1], "metadata": meta(v)}})
	case http.MethodPost, http.MethodPut:
		var body struct {
			Data    map[string]any `json:"data"`
			Options struct {
				CAS *int `json:"cas"`
			} `json:"options"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		if body.Options.CAS != nil && *body.Options.CAS != len(f.versions) {
			fail(http.StatusBadRequest, "check-and-set parameter did not match the current version")
			return
		}
		f.versions = append(f.versions, body.Data)
		reply(http.StatusOK, map[string]any{"data": meta(len(f.versions))})
	default:
		fail(http.StatusMethodNotAllowed, "")
	}
}

// TestOpenBaoKubernetesLogin checks that with Kubernetes auth the provider
// logs in with the service account's JWT rather than keeping a token: the
// JWT is rotated under it. Versions are TestMEKProviders'.
func TestOpenBaoKubernetesLogin(t *testing.T) {
	t.Parallel()
	jwt := filepath.Join(t.TempDir(), "jwt")
	if err := os.WriteFile(jwt, []byte("service-account-jwt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fake, srv := newFakeOpenBaoKV(t, "root-token")
	ctx := testutil.Context(t)
	p, err := NewOpenBao(OpenBaoConfig{Address: srv.URL, Mount: "kv", KubernetesRole: "gantry", KubernetesJWTFile: jwt})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Key(ctx, 1); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	logins := fake.logins
	fake.mu.Unlock()
	// Create reads the latest version and then writes: two calls, and Key
	// a third, each after a login.
	if logins < 3 {
		t.Fatalf("%d Kubernetes logins for three calls, want one before each", logins)
	}
}

func TestOpenBaoProviderErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("wrong-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	jwtFile := filepath.Join(dir, "jwt")
	if err := os.WriteFile(jwtFile, []byte("another-jwt"), 0o600); err != nil {
		t.Fatal(err)
	}
	fake, srv := newFakeOpenBaoKV(t, "root-token")
	fake.versions = []map[string]any{{"key": "bm90IGEga2V5"}}
	ctx := testutil.Context(t)
	for _, tc := range []struct {
		name string
		cfg  OpenBaoConfig
		want string
	}{
		{"no address", OpenBaoConfig{TokenFile: tokenFile}, "needs an address"},
		{"no auth", OpenBaoConfig{Address: srv.URL}, "needs a token file"},
		{"rejected token", OpenBaoConfig{Address: srv.URL, Mount: "kv", TokenFile: tokenFile}, "permission denied"},
		{"rejected service account", OpenBaoConfig{Address: srv.URL, Mount: "kv", KubernetesRole: "gantry", KubernetesJWTFile: jwtFile}, "Kubernetes login"},
		{"missing token file", OpenBaoConfig{Address: srv.URL, Mount: "kv", TokenFile: filepath.Join(dir, "nope")}, "token file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewOpenBao(tc.cfg)
			if err == nil {
				_, _, err = p.Latest(ctx)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if err := os.WriteFile(tokenFile, []byte("root-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := NewOpenBao(OpenBaoConfig{Address: srv.URL, Mount: "kv", TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Latest(ctx); err == nil || !strings.Contains(err.Error(), "must be 32 bytes") || strings.Contains(err.Error(), "bm90IGEga2V5") {
		t.Fatalf("malformed key: %v", err)
	}
}
