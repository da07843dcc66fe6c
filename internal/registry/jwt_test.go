package registry_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwksOf renders public keys as a JSON Web Key Set.
func jwksOf(t *testing.T, keys map[string]crypto.PublicKey) json.RawMessage {
	t.Helper()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, k := range keys {
		switch k := k.(type) {
		case *rsa.PublicKey:
			set.Keys = append(set.Keys, map[string]string{"kty": "RSA", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
		case *ecdsa.PublicKey:
			set.Keys = append(set.Keys, map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(k.X.FillBytes(make([]byte, 32))), "y": b64(k.Y.FillBytes(make([]byte, 32)))})
		}
	}
	b, _ := json.Marshal(set)
	return b
}

func TestExchangeJWT(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	r := registry.New(st, registry.Config{})
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	stranger, _ := rsa.GenerateKey(rand.Reader, 2048)
	const issuer = "https://k8s.example.com"
	a, _, _, err := r.Register(ctx, model.Cluster{Name: "k8s-a", GroupName: "g", NCAID: "acct", OIDCIssuer: issuer,
		JWKS: jwksOf(t, map[string]crypto.PublicKey{"rsa-1": &rsaKey.PublicKey, "ec-1": &ecKey.PublicKey})})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _, err := r.Register(ctx, model.Cluster{Name: "k8s-b", GroupName: "g", NCAID: "acct",
		JWKS: jwksOf(t, map[string]crypto.PublicKey{"rsa-1": &stranger.PublicKey})})
	if err != nil {
		t.Fatal(err)
	}
	plain, _, _, err := r.Register(ctx, model.Cluster{Name: "no-jwks", GroupName: "g", NCAID: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(method, claims)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := jwt.MapClaims{"iss": issuer, "aud": []string{registry.JWTAudience}, "sub": "system:serviceaccount:gantry:agent",
		"exp": time.Now().Add(time.Hour).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for kk, vv := range good {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	for _, tc := range []struct {
		name    string
		cluster string
		token   string
		ok      bool
	}{
		{"RSA key of the cluster", a.ID, sign(jwt.SigningMethodRS256, rsaKey, "rsa-1", good), true},
		{"EC key of the cluster", a.ID, sign(jwt.SigningMethodES256, ecKey, "ec-1", good), true},
		{"wrong audience", a.ID, sign(jwt.SigningMethodRS256, rsaKey, "rsa-1", with("aud", "kubernetes")), false},
		{"wrong issuer", a.ID, sign(jwt.SigningMethodRS256, rsaKey, "rsa-1", with("iss", "https://evil.example.com")), false},
		{"expired", a.ID, sign(jwt.SigningMethodRS256, rsaKey, "rsa-1", with("exp", time.Now().Add(-time.Minute).Unix())), false},
		{"no expiry", a.ID, sign(jwt.SigningMethodRS256, rsaKey, "rsa-1", with("exp", nil)), false},
		{"unknown key id", a.ID, sign(jwt.SigningMethodRS256, rsaKey, "rsa-9", good), false},
		{"signed by another key under a known id", a.ID, sign(jwt.SigningMethodRS256, stranger, "rsa-1", good), false},
		{"cluster A's token presented for cluster B", b.ID, sign(jwt.SigningMethodRS256, rsaKey, "rsa-1", good), false},
		{"cluster without jwks", plain.ID, sign(jwt.SigningMethodRS256, rsaKey, "rsa-1", good), false},
		{"unknown cluster", "no-such-cluster", sign(jwt.SigningMethodRS256, rsaKey, "rsa-1", good), false},
		{"HMAC with the public key as secret", a.ID, sign(jwt.SigningMethodHS256, []byte("x"), "rsa-1", good), false},
		{"garbage", a.ID, "not.a.jwt", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cred, err := r.ExchangeJWT(ctx, tc.cluster, tc.token)
			if tc.ok {
				if err != nil || cred.ClusterID != a.ID {
					t.Fatalf("rejected: %v", err)
				}
				if id, ok := r.Verify(ctx, cred.Credential); !ok || id != a.ID {
					t.Fatal("the issued credential does not verify")
				}
				return
			}
			if !errors.Is(err, registry.ErrBadToken) {
				t.Fatalf("accepted or wrong error: %+v %v", cred, err)
			}
		})
	}
}
