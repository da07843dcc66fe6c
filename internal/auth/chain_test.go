package auth

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestChainDispatchesByForm(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	clk := newFakeClock()
	iss := startIssuer(t, st, testutil.NewKeySealer(t), clk)
	keys := NewAPIKeys(st, APIKeysConfig{Now: clk.Now})
	chain := NewChain(iss, keys)

	admin, err := iss.Mint(ctx, "acct", "alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	shortAdmin, err := iss.Mint(ctx, "acct", "alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	k, key, err := keys.Create(ctx, store.APIKey{Account: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	_, revoked, err := keys.Create(ctx, store.APIKey{Account: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Revoke(ctx, "acct", revoked[len(APIKeyPrefix):len(APIKeyPrefix)+keyIDLen]); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second) // shortAdmin has expired

	tests := []struct {
		name     string
		header   string // whole Authorization header; "" sends none
		wantKind Kind
		wantErr  error
	}{
		{"no header", "", "", ErrNoCredential},
		{"bearer with nothing", "Bearer    ", "", ErrNoCredential},
		{"basic auth", "Basic dXNlcjpwYXNz", "", ErrNoCredential},
		{"admin token", "Bearer " + admin.Value, KindAdminToken, nil},
		{"admin token, lower-case scheme", "bearer " + admin.Value, KindAdminToken, nil},
		{"api key", "Bearer " + key, KindAPIKey, nil},
		{"expired admin token", "Bearer " + shortAdmin.Value, "", ErrBadCredential},
		{"revoked api key", "Bearer " + revoked, "", ErrBadCredential},
		{"malformed api key", "Bearer nvapi-short", "", ErrBadCredential},
		{"jwt-shaped junk", "Bearer a.b.c", "", ErrBadCredential},
		{"neither form", "Bearer hello", "", ErrBadCredential},
		{"admin token with an api key prefix glued on", "Bearer nvapi-" + admin.Value, "", ErrBadCredential},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			p, err := chain.Authenticate(r)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Authenticate: %v, want %v", err, tc.wantErr)
				}
				if tc.wantErr == ErrBadCredential && errors.Is(err, ErrNoCredential) {
					t.Fatal("a refused credential reported as missing")
				}
				return
			}
			if err != nil || p.Kind != tc.wantKind || p.Account != "acct" {
				t.Fatalf("Authenticate: %+v %v", p, err)
			}
			if p.Kind == KindAPIKey && p.CredentialID != k.ID {
				t.Fatalf("credential id %q", p.CredentialID)
			}
		})
	}

	// A chain without API keys refuses them rather than panicking.
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	if _, err := NewChain(iss, nil).Authenticate(r); !errors.Is(err, ErrBadCredential) || !strings.Contains(err.Error(), "nvapi-") {
		t.Fatalf("chain without keys: %v", err)
	}
}
