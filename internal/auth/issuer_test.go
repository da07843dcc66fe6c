package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// startIssuer starts an issuer on st with a fake clock.
func startIssuer(t *testing.T, st *store.Store, sealer KeySealer, clk *fakeClock) *Issuer {
	t.Helper()
	iss := NewIssuer(st, sealer, IssuerConfig{Issuer: "https://gantry.test", TTL: time.Hour, MaxTTL: 24 * time.Hour, Now: clk.Now})
	if err := iss.Start(testutil.Context(t)); err != nil {
		t.Fatal(err)
	}
	return iss
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tok.Header["kid"].(string)
	return kid
}

func TestIssuerMintAndVerify(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	clk := newFakeClock()
	iss := startIssuer(t, st, testutil.NewKeySealer(t), clk)

	tok, err := iss.Mint(ctx, "acct", "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.ExpiresAt.Equal(clk.Now().Add(time.Hour)) || tok.ID == "" || strings.Count(tok.Value, ".") != 2 {
		t.Fatalf("minted %+v", tok)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok.Value)
	p, err := iss.Authenticate(r)
	if err != nil {
		t.Fatal(err)
	}
	if p.Account != "acct" || p.Subject != "alice" || p.Kind != KindAdminToken || p.CredentialID != tok.ID ||
		!p.ExpiresAt.Equal(tok.ExpiresAt) || !slices.Equal(p.Scopes(), slices.Sorted(slices.Values(AdminScopes))) || p.Functions() != nil {
		t.Fatalf("principal %+v, scopes %v", p, p.Scopes())
	}

	// The claims are the ones promised, with the key id in the header.
	var claims map[string]any
	parsed, _, err := jwt.NewParser().ParseUnverified(tok.Value, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	claims = parsed.Claims.(jwt.MapClaims)
	for _, c := range []string{"iss", "sub", "iat", "exp", "jti", "ncaId", "scopes"} {
		if _, ok := claims[c]; !ok {
			t.Errorf("claim %s missing from %v", c, claims)
		}
	}
	if parsed.Header["alg"] != "ES256" || parsed.Header["kid"] == "" {
		t.Errorf("header %v", parsed.Header)
	}

	if _, err := iss.Mint(ctx, "acct", "alice", 25*time.Hour); !errors.Is(err, ErrTTL) {
		t.Errorf("ttl beyond the maximum: %v, want ErrTTL", err)
	}
	if _, err := iss.Mint(ctx, "acct", "alice", -time.Second); !errors.Is(err, ErrTTL) {
		t.Errorf("negative ttl: %v, want ErrTTL", err)
	}
	r.Header.Del("Authorization")
	if _, err := iss.Authenticate(r); !errors.Is(err, ErrNoCredential) {
		t.Errorf("no header: %v, want ErrNoCredential", err)
	}
}

func TestIssuerRejectsBadTokens(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	clk := newFakeClock()
	iss := startIssuer(t, st, testutil.NewKeySealer(t), clk)
	good, err := iss.Mint(ctx, "acct", "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	kid := kidOf(t, good.Value)
	key := iss.signer.priv
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	claims := func(mod func(c *adminClaims)) adminClaims {
		c := adminClaims{RegisteredClaims: jwt.RegisteredClaims{Issuer: "https://gantry.test", Subject: "mallory",
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), ID: "j"},
			NCAID: "acct", Scopes: AdminScopes}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, c adminClaims, kid string, k any) string {
		tok := jwt.NewWithClaims(m, c)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// tamper swaps the payload for one granting another account, keeping the
	// signature.
	tamper := func(tok string) string {
		parts := strings.Split(tok, ".")
		body, _ := json.Marshal(claims(func(c *adminClaims) { c.NCAID = "victim" }))
		parts[1] = b64(body)
		return strings.Join(parts, ".")
	}

	tests := []struct {
		name  string
		token string
		at    time.Duration // clock offset at verification
	}{
		{"expired", good.Value, time.Hour + time.Second},
		{"wrong alg HS256 keyed with the public key", sign(jwt.SigningMethodHS256, claims(nil), kid, mustPub(t, key)), 0},
		{"alg none", sign(jwt.SigningMethodNone, claims(nil), kid, jwt.UnsafeAllowNoneSignatureType), 0},
		{"no kid", sign(jwt.SigningMethodES256, claims(nil), "", key), 0},
		{"unknown kid", sign(jwt.SigningMethodES256, claims(nil), "no-such-kid", key), 0},
		{"signed by another key under our kid", sign(jwt.SigningMethodES256, claims(nil), kid, other), 0},
		{"tampered payload", tamper(good.Value), 0},
		{"wrong issuer", sign(jwt.SigningMethodES256, claims(func(c *adminClaims) { c.Issuer = "https://evil.test" }), kid, key), 0},
		{"no expiry", sign(jwt.SigningMethodES256, claims(func(c *adminClaims) { c.ExpiresAt = nil }), kid, key), 0},
		{"no account", sign(jwt.SigningMethodES256, claims(func(c *adminClaims) { c.NCAID = "" }), kid, key), 0},
		{"not a JWT", "a.b.c", 0},
	}
	// The control: a hand-made token with the real key and kid verifies, so
	// each failure below is down to what the case changes.
	if _, err := iss.Verify(ctx, sign(jwt.SigningMethodES256, claims(nil), kid, key)); err != nil {
		t.Fatalf("control token: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk.Advance(tc.at)
			defer clk.Advance(-tc.at)
			_, err := iss.Verify(ctx, tc.token)
			if !errors.Is(err, ErrBadCredential) {
				t.Fatalf("Verify: %v, want ErrBadCredential", err)
			}
		})
	}
}

func mustPub(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	b, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIssuerRotation(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	clk := newFakeClock()
	iss := startIssuer(t, st, testutil.NewKeySealer(t), clk)

	old, err := iss.Mint(ctx, "acct", "alice", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	oldKid := kidOf(t, old.Value)
	clk.Advance(time.Minute)
	if err := iss.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	fresh, err := iss.Mint(ctx, "acct", "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	newKid := kidOf(t, fresh.Value)
	if newKid == oldKid {
		t.Fatal("rotation kept the key id")
	}
	for name, tok := range map[string]string{"old": old.Value, "new": fresh.Value} {
		if _, err := iss.Verify(ctx, tok); err != nil {
			t.Fatalf("%s token after rotation: %v", name, err)
		}
	}
	set, err := iss.JWKS(ctx)
	if err != nil || len(set.Keys) != 2 {
		t.Fatalf("JWKS after rotation: %+v %v", set, err)
	}
	retired, err := st.GetSigningKey(ctx, oldKid)
	if err != nil || len(retired.SealedPrivateKey) != 0 || retired.NotAfter.IsZero() {
		t.Fatalf("retired key keeps its private half or has no end: %+v %v", retired, err)
	}

	// The old token runs out at its own expiry, not at rotation.
	clk.Advance(2 * time.Hour)
	if _, err := iss.Verify(ctx, old.Value); !errors.Is(err, ErrBadCredential) {
		t.Fatalf("old token after its expiry: %v", err)
	}
	// Past the window of the longest token the old key could have signed,
	// the next rotation prunes it and it is no longer published.
	clk.Advance(24 * time.Hour)
	if err := iss.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetSigningKey(ctx, oldKid); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old key not pruned: %v", err)
	}
	set, err = iss.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if k.Kid == oldKid {
			t.Fatal("pruned key still published")
		}
	}
}

func TestIssuerReplicas(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	clk := newFakeClock()
	sealer := testutil.NewKeySealer(t)

	// Two replicas start at once on an empty installation: one key wins.
	cfg := IssuerConfig{Issuer: "https://gantry.test", TTL: time.Hour, MaxTTL: 24 * time.Hour, Now: clk.Now}
	a, b := NewIssuer(st, sealer, cfg), NewIssuer(st, sealer, cfg)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, iss := range []*Issuer{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = iss.Start(ctx) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	keys, err := st.ListSigningKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("after a racing start: %d keys, %v", len(keys), err)
	}

	first, err := a.Mint(ctx, "acct", "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(ctx, first.Value); err != nil {
		t.Fatalf("b verifies a's token: %v", err)
	}
	// a rotates; b has never seen the new key but verifies a's new token,
	// and mints with the new key itself.
	if err := a.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := a.Mint(ctx, "acct", "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(ctx, second.Value); err != nil {
		t.Fatalf("b verifies a's token after a rotated: %v", err)
	}
	third, err := b.Mint(ctx, "acct", "bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(t, third.Value) != kidOf(t, second.Value) {
		t.Fatal("b still signs with the retired key")
	}
	if _, err := a.Verify(ctx, third.Value); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(ctx, first.Value); err != nil {
		t.Fatalf("the token of the retired key: %v", err)
	}
}

func TestIssuerJWKSVerifiesTokens(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	clk := newFakeClock()
	iss := startIssuer(t, st, testutil.NewKeySealer(t), clk)
	tok, err := iss.Mint(ctx, "acct", "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	set, err := iss.JWKS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	var generic struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &generic); err != nil || len(generic.Keys) != 1 {
		t.Fatalf("jwks %s: %v", raw, err)
	}
	k := generic.Keys[0]
	if k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["use"] != "sig" || k["kid"] != kidOf(t, tok.Value) {
		t.Fatalf("jwk %v", k)
	}
	if k["kid"] != thumbprint(mustPub(t, iss.signer.priv)) {
		t.Fatal("kid is not the key's RFC 7638 thumbprint")
	}
	// An independent JWKS consumer verifies the token with what we publish.
	pubs, err := registry.ParseJWKS(raw)
	if err != nil {
		t.Fatal(err)
	}
	_, err = jwt.Parse(tok.Value, func(t *jwt.Token) (any, error) { return pubs[t.Header["kid"].(string)], nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(clk.Now))
	if err != nil {
		t.Fatalf("verify with the published JWKS: %v", err)
	}
}

func TestIssuerSealsPrivateKey(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	sealer := testutil.NewKeySealer(t)
	iss := startIssuer(t, st, sealer, newFakeClock())
	raw, err := iss.signer.priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	assertNotStored(t, st, "the private signing key", raw)

	// A replica with another sealer key cannot open it.
	other := NewIssuer(st, testutil.NewKeySealer(t), IssuerConfig{})
	if _, err := other.Mint(ctx, "acct", "alice", 0); err == nil {
		t.Fatal("minted with a key sealed under another sealer")
	}
}

// TestIssuerCachesVerifiedTokensUntilExpiry: a verified token is served from
// the cache (a tampered copy is not), and the cache never accepts it after
// it expires.
func TestIssuerCachesVerifiedTokensUntilExpiry(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	clk := newFakeClock()
	iss := startIssuer(t, st, testutil.NewKeySealer(t), clk)
	tok, err := iss.Mint(ctx, "acct", "alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := iss.Verify(ctx, tok.Value); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := iss.Verify(ctx, tok.Value+"x"); !errors.Is(err, ErrBadCredential) {
		t.Errorf("tampered copy of a cached token: %v", err)
	}
	clk.Advance(time.Minute + time.Second)
	if _, err := iss.Verify(ctx, tok.Value); !errors.Is(err, ErrBadCredential) {
		t.Errorf("expired token served from the cache: %v", err)
	}
}

func BenchmarkIssuerVerifyCached(b *testing.B) {
	st := testutil.StartEtcd(b)
	ctx := context.Background()
	iss := NewIssuer(st, testutil.NewKeySealer(b), IssuerConfig{})
	if err := iss.Start(ctx); err != nil {
		b.Fatal(err)
	}
	tok, err := iss.Mint(ctx, "acct", "bench", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iss.Verify(ctx, tok.Value); err != nil {
			b.Fatal(err)
		}
	}
}
