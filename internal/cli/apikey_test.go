package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/api"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
	"github.com/gantry-dev/gantry/internal/web"
)

// keyServer is the real credential routes over a real etcd, for the token
// and apikey verbs.
type keyServer struct {
	url  string
	cfg  string // an empty config file
	iss  *auth.Issuer
	keys *auth.APIKeys
}

// startKeyServer serves the key routes with an installation gate in mode.
// With remote set, every request looks as if it came from another machine.
func startKeyServer(t *testing.T, mode auth.InstallMode, secret string, remote bool) *keyServer {
	t.Helper()
	st := testutil.StartEtcd(t)
	iss := auth.NewIssuer(st, testutil.NewKeySealer(t), auth.IssuerConfig{})
	if err := iss.Start(testutil.Context(t)); err != nil {
		t.Fatal(err)
	}
	keys := auth.NewAPIKeys(st, auth.APIKeysConfig{})
	gate, err := auth.NewInstallGate(mode, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.NewKeys(api.KeysConfig{Issuer: iss, Keys: keys, Accounts: st, Gate: gate,
		Guard: web.Guard{Auth: auth.NewChain(iss, keys)}, DefaultAccount: "gantry-local"}).Register(mux)
	h := web.ProblemFallback(mux)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if remote {
			r.RemoteAddr = "192.0.2.10:50000"
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return &keyServer{url: srv.URL, cfg: cfg, iss: iss, keys: keys}
}

// gantry runs the CLI against the server with token (none if empty).
func (s *keyServer) gantry(t *testing.T, token string, args ...string) result {
	t.Helper()
	base := []string{"--server", s.url, "--config", s.cfg}
	if token != "" {
		base = append(base, "--token", token)
	}
	return runCLI(t, "", append(base, args...)...)
}

func TestAPIKeyCommands(t *testing.T) {
	isolate(t)
	s := startKeyServer(t, auth.InstallLoopback, "", false)
	ctx := testutil.Context(t)
	admin, err := s.iss.Mint(ctx, "gantry-local", "admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	r := s.gantry(t, admin.Value, "apikey", "create", "--description", "frontend", "--scopes", "invoke_function,apikey:queue_details",
		"--function", "fn-a", "--function", "fn-b", "--expires-in", "2d")
	r.check(t, 0, []string{"Created API key", "scopes invoke_function, queue_details", "functions fn-a, fn-b", "shown only now", "nvapi-"}, nil)
	var value string
	for _, f := range strings.Fields(r.stdout) {
		if strings.HasPrefix(f, auth.APIKeyPrefix) {
			value = f
		}
	}
	p, err := s.keys.Verify(ctx, value)
	if err != nil {
		t.Fatalf("the printed value does not verify: %v", err)
	}
	if !p.Has(auth.ScopeQueueDetails) || p.Has(auth.ScopeListFunctions) || !p.CanUseFunction("fn-b") || p.CanUseFunction("fn-c") ||
		p.ExpiresAt.Sub(time.Now()) < 47*time.Hour || p.ExpiresAt.Sub(time.Now()) > 49*time.Hour {
		t.Fatalf("principal %+v scopes %v", p, p.Scopes())
	}

	r = s.gantry(t, admin.Value, "apikey", "create", "-o", "json")
	r.check(t, 0, nil, nil)
	var created model.APIKey
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || !strings.HasPrefix(created.Value, auth.APIKeyPrefix) || created.ExpiresAt != nil {
		t.Fatalf("json create: %s %v", r.stdout, err)
	}

	r = s.gantry(t, admin.Value, "apikey", "list")
	r.check(t, 0, []string{"ID", "SCOPES", "frontend", "ACTIVE", "fn-a,fn-b", "invoke_function,queue_details", created.ID, "all"}, nil)
	if strings.Contains(r.stdout, value) || strings.Contains(r.stdout, created.Value) {
		t.Fatal("list prints a key value")
	}

	r = s.gantry(t, admin.Value, "apikey", "revoke", created.ID)
	r.check(t, 0, []string{"Revoked API key " + created.ID}, nil)
	if _, err := s.keys.Verify(ctx, created.Value); err == nil {
		t.Fatal("revoked key still verifies")
	}
	r = s.gantry(t, admin.Value, "apikey", "list", "-o", "yaml")
	r.check(t, 0, []string{"status: REVOKED", "status: ACTIVE"}, nil)

	tests := []struct {
		name   string
		token  string
		args   []string
		stderr []string
	}{
		{"unknown key", admin.Value, []string{"apikey", "revoke", "0123abcd"}, []string{"404", "gantry apikey list"}},
		{"bad lifetime", admin.Value, []string{"apikey", "create", "--expires-in", "0d"}, []string{"--expires-in", "must be positive"}},
		{"junk lifetime", admin.Value, []string{"apikey", "create", "--expires-in", "soon"}, []string{"want a duration such as 24h or 90d"}},
		{"unknown scope", admin.Value, []string{"apikey", "create", "--scopes", "launch_rocket"}, []string{"400", "launch_rocket", "is not a scope Gantry knows"}},
		{"an API key cannot manage keys", value, []string{"apikey", "list"}, []string{"403", "needs an admin token"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.gantry(t, tc.token, tc.args...)
			r.check(t, 1, nil, tc.stderr)
			if strings.Contains(r.stderr, value) || strings.Contains(r.stderr, admin.Value) {
				t.Fatal("a credential reached stderr")
			}
		})
	}
}

func TestParseLifetime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"24h", 24 * time.Hour, true},
		{"90d", 90 * 24 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"0d", 0, false},
		{"-1h", 0, false},
		{"d", 0, false},
		{"1.5d", 0, false},
		{"99999999d", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseLifetime(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("parseLifetime(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}
