package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestTokenAdminLoopback(t *testing.T) {
	isolate(t)
	// The CLI must send no admin token to the gate, not even the one the
	// environment offers.
	t.Setenv(EnvToken, "some-admin-token-from-the-environment")
	s := startKeyServer(t, auth.InstallLoopback, "", false)
	ctx := testutil.Context(t)

	r := s.gantry(t, "", "token", "admin")
	r.check(t, 0, nil, nil)
	tok := strings.TrimSpace(r.stdout)
	if strings.Count(r.stdout, "\n") != 1 || strings.Count(tok, ".") != 2 {
		t.Fatalf("stdout is not one token line: %q", r.stdout)
	}
	p, err := s.iss.Verify(ctx, tok)
	if err != nil || p.Account != "gantry-local" || p.Kind != auth.KindAdminToken {
		t.Fatalf("%+v %v", p, err)
	}

	r = s.gantry(t, "", "token", "admin", "--account", "team-a", "--ttl", "2h", "-o", "json")
	r.check(t, 0, nil, nil)
	var k model.APIKey
	if err := json.Unmarshal([]byte(r.stdout), &k); err != nil || k.NCAID != "team-a" || k.ExpiresAt == nil ||
		k.ExpiresAt.Sub(k.CreatedAt) != 2*time.Hour {
		t.Fatalf("json: %s %v", r.stdout, err)
	}
	if p, err := s.iss.Verify(ctx, k.Value); err != nil || p.Account != "team-a" {
		t.Fatalf("%+v %v", p, err)
	}

	s.gantry(t, "", "token", "admin", "--ttl", "-1h").check(t, 1, nil, []string{"--ttl must be positive"})
	s.gantry(t, "", "token", "admin", "--ttl", "10000h").check(t, 1, nil, []string{"400", "longer than this installation allows"})

	remote := startKeyServer(t, auth.InstallLoopback, "", true)
	remote.gantry(t, "", "token", "admin").check(t, 1, nil, []string{"403", "run the command there"})
}

func TestTokenAdminBootstrap(t *testing.T) {
	isolate(t)
	const secret = "the-bootstrap-secret-of-this-installation"
	s := startKeyServer(t, auth.InstallBootstrap, secret, true)
	ctx := testutil.Context(t)
	file := writeFile(t, filepath.Join(t.TempDir(), "secret"), secret+"\n")
	wrong := writeFile(t, filepath.Join(t.TempDir(), "wrong"), "not-the-bootstrap-secret-at-all\n")

	tests := []struct {
		name   string
		env    string
		args   []string
		code   int
		stderr []string
	}{
		{"no secret", "", nil, 1, []string{"401", "pass --bootstrap-secret-file or set " + EnvBootstrapSecret}},
		{"secret file", "", []string{"--bootstrap-secret-file", file}, 0, nil},
		{"secret in the environment", secret, nil, 0, nil},
		{"the flag wins over the environment", "wrong", []string{"--bootstrap-secret-file", file}, 0, nil},
		{"wrong secret", "", []string{"--bootstrap-secret-file", wrong}, 1, []string{"401", "the bootstrap secret was refused"}},
		{"missing file", "", []string{"--bootstrap-secret-file", filepath.Join(t.TempDir(), "nope")}, 1, []string{"--bootstrap-secret-file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvBootstrapSecret, tc.env)
			r := s.gantry(t, "", append([]string{"token", "admin"}, tc.args...)...)
			r.check(t, tc.code, nil, tc.stderr)
			if strings.Contains(r.stderr, secret) || strings.Contains(r.stdout, secret) {
				t.Fatal("the bootstrap secret was printed")
			}
			if tc.code != 0 {
				return
			}
			if _, err := s.iss.Verify(ctx, strings.TrimSpace(r.stdout)); err != nil {
				t.Fatalf("minted token does not verify: %v", err)
			}
		})
	}
}
