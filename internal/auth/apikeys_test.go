package auth

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// countingStore counts the key reads that reach etcd.
type countingStore struct {
	*store.Store
	gets atomic.Int64
}

func (c *countingStore) GetAPIKey(ctx context.Context, id string) (store.APIKey, error) {
	c.gets.Add(1)
	return c.Store.GetAPIKey(ctx, id)
}

func TestAPIKeyCreateAndVerify(t *testing.T) {
	st := &countingStore{Store: testutil.StartEtcd(t)}
	ctx := testutil.Context(t)
	keys := NewAPIKeys(st, APIKeysConfig{})

	k, value, err := keys.Create(ctx, store.APIKey{Account: "acct", Description: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(value, APIKeyPrefix) || len(value) != keyValueLen || !strings.Contains(value, k.ID) {
		t.Fatalf("value %q (len %d) for key %s", value, len(value), k.ID)
	}
	if k.Status != store.APIKeyActive || !slices.Equal(k.Scopes, DefaultAPIKeyScopes) || k.Functions != nil {
		t.Fatalf("stored %+v", k)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+value)
	p, err := keys.Authenticate(r)
	if err != nil {
		t.Fatal(err)
	}
	if p.Account != "acct" || p.Kind != KindAPIKey || p.CredentialID != k.ID || !p.ExpiresAt.IsZero() ||
		!p.Has(ScopeInvokeFunction) || p.Has(ScopeRegisterFunction) || !p.CanUseFunction("any") {
		t.Fatalf("principal %+v", p)
	}
	// A cache hit reads nothing from etcd.
	before := st.gets.Load()
	for range 100 {
		if _, err := keys.Verify(ctx, value); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.gets.Load() - before; n != 0 {
		t.Fatalf("%d store reads for 100 cached verifications", n)
	}
	// Only the hash is stored: neither the value nor its secret part.
	assertNotStored(t, st.Store, "the API key value", []byte(value))
	assertNotStored(t, st.Store, "the API key secret", []byte(value[len(APIKeyPrefix)+keyIDLen:]))
}

func TestAPIKeyScopes(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	keys := NewAPIKeys(st, APIKeysConfig{})
	tests := []struct {
		name    string
		scopes  []string
		want    []string
		wantErr error
	}{
		{"default", nil, DefaultAPIKeyScopes, nil},
		{"plain", []string{"register_function", "deploy_function"}, []string{"register_function", "deploy_function"}, nil},
		{"apikey form", []string{"apikey:invoke_function", "apikey:queue_details"}, []string{"invoke_function", "queue_details"}, nil},
		{"mixed forms repeat once", []string{"apikey:invoke_function", "invoke_function"}, []string{"invoke_function"}, nil},
		{"unknown", []string{"invoke_function", "launch_rocket"}, nil, ErrUnknownScope},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, value, err := keys.Create(ctx, store.APIKey{Account: "acct", Scopes: tc.scopes})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Create: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(k.Scopes, tc.want) {
				t.Fatalf("Create: %v %v", k.Scopes, err)
			}
			p, err := keys.Verify(ctx, value)
			if err != nil || !slices.Equal(p.Scopes(), slices.Sorted(slices.Values(tc.want))) {
				t.Fatalf("principal scopes %v, %v", p.Scopes(), err)
			}
		})
	}
}

func TestAPIKeyResources(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	keys := NewAPIKeys(st, APIKeysConfig{})
	_, value, err := keys.Create(ctx, store.APIKey{Account: "acct", Functions: []string{"fn-a", "fn-b"}})
	if err != nil {
		t.Fatal(err)
	}
	// Twice: the second answer comes from the cache and must agree.
	for range 2 {
		p, err := keys.Verify(ctx, value)
		if err != nil {
			t.Fatal(err)
		}
		if !p.CanUseFunction("fn-a") || !p.CanUseFunction("fn-b") || p.CanUseFunction("fn-c") {
			t.Fatalf("functions %v", p.Functions())
		}
	}
}

func TestAPIKeyRejected(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	clk := newFakeClock()
	keys := NewAPIKeys(st, APIKeysConfig{Now: clk.Now})
	good, goodValue, err := keys.Create(ctx, store.APIKey{Account: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	_, expiring, err := keys.Create(ctx, store.APIKey{Account: "acct", ExpiresAt: clk.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	_, revoked, err := keys.Create(ctx, store.APIKey{Account: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Verify(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Revoke(ctx, "acct", revoked[len(APIKeyPrefix):len(APIKeyPrefix)+keyIDLen]); err != nil {
		t.Fatal(err)
	}
	// Verified once, so the expired case below is answered from the cache
	// first and must still be refused.
	if _, err := keys.Verify(ctx, expiring); err != nil {
		t.Fatal(err)
	}
	secret := goodValue[len(APIKeyPrefix)+keyIDLen:]
	wrongSecret := APIKeyPrefix + good.ID + strings.Repeat("A", len(secret))
	unknownID := APIKeyPrefix + strings.Repeat("0", keyIDLen) + secret

	tests := []struct {
		name  string
		value string
		at    time.Duration
	}{
		{"empty", "", 0},
		{"no prefix", strings.TrimPrefix(goodValue, APIKeyPrefix), 0},
		{"too short", goodValue[:len(goodValue)-1], 0},
		{"too long", goodValue + "A", 0},
		{"upper-case id", APIKeyPrefix + strings.ToUpper(good.ID) + secret, 0},
		{"id not hex", APIKeyPrefix + strings.Repeat("z", keyIDLen) + secret, 0},
		{"unknown id", unknownID, 0},
		{"wrong secret", wrongSecret, 0},
		{"revoked", revoked, 0},
		{"expired, from the cache", expiring, time.Hour},
		{"expired, from the store", expiring, time.Hour + 2*MaxKeyCacheTTL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk.Advance(tc.at)
			defer clk.Advance(-tc.at)
			if _, err := keys.Verify(ctx, tc.value); !errors.Is(err, ErrBadCredential) {
				t.Fatalf("Verify: %v, want ErrBadCredential", err)
			}
		})
	}
	if _, err := keys.Verify(ctx, goodValue); err != nil {
		t.Fatalf("the good key after all that: %v", err)
	}
	if _, _, err := keys.Create(ctx, store.APIKey{Account: "acct", ExpiresAt: clk.Now()}); err == nil {
		t.Fatal("created a key that expires now")
	}
}

// TestAPIKeyRevocationReachesReplicas checks the promise with a clock moved
// by hand: the revoking replica refuses the key at once, and one that had
// it cached refuses it once MaxKeyCacheTTL has passed, never later.
func TestAPIKeyRevocationReachesReplicas(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	clk := newFakeClock()
	a := NewAPIKeys(st, APIKeysConfig{Now: clk.Now})
	b := NewAPIKeys(st, APIKeysConfig{Now: clk.Now, CacheTTL: time.Hour}) // clamped to a second
	k, value, err := a.Create(ctx, store.APIKey{Account: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*APIKeys{a, b} {
		if _, err := r.Verify(ctx, value); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(100 * time.Millisecond)
	if _, err := a.Revoke(ctx, "acct", k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(ctx, value); !errors.Is(err, ErrBadCredential) {
		t.Fatalf("revoking replica still accepts the key: %v", err)
	}
	clk.Advance(MaxKeyCacheTTL - 100*time.Millisecond)
	if _, err := b.Verify(ctx, value); !errors.Is(err, ErrBadCredential) {
		t.Fatalf("other replica accepts the key a second after it was cached: %v", err)
	}
}

func TestAPIKeyListAndRevokeByAccount(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	clk := newFakeClock()
	keys := NewAPIKeys(st, APIKeysConfig{Now: clk.Now})
	var mine []string
	for _, acct := range []string{"acct", "other", "acct"} {
		k, _, err := keys.Create(ctx, store.APIKey{Account: acct})
		if err != nil {
			t.Fatal(err)
		}
		if acct == "acct" {
			mine = append(mine, k.ID)
		}
		clk.Advance(time.Second)
	}
	list, err := keys.List(ctx, "acct")
	if err != nil || len(list) != 2 || list[0].ID != mine[0] || list[1].ID != mine[1] {
		t.Fatalf("list: %+v %v", list, err)
	}
	others, err := keys.List(ctx, "other")
	if err != nil || len(others) != 1 {
		t.Fatalf("other list: %+v %v", others, err)
	}
	if _, err := keys.Revoke(ctx, "acct", others[0].ID); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("revoking another account's key: %v, want ErrKeyNotFound", err)
	}
	if _, err := keys.Revoke(ctx, "acct", "0123"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("revoking a missing key: %v, want ErrKeyNotFound", err)
	}
	for range 2 { // the second time is a no-op, not an error
		k, err := keys.Revoke(ctx, "acct", mine[0])
		if err != nil || k.Status != store.APIKeyRevoked || k.RevokedAt.IsZero() {
			t.Fatalf("revoke: %+v %v", k, err)
		}
	}
}

// BenchmarkAPIKeyVerifyCached is the cost of a check on a cache hit, the
// common case.
func BenchmarkAPIKeyVerifyCached(b *testing.B) {
	st := testutil.StartEtcd(b)
	ctx := testutil.Context(b)
	keys := NewAPIKeys(st, APIKeysConfig{})
	_, value, err := keys.Create(ctx, store.APIKey{Account: "acct"})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+value)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := keys.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}
