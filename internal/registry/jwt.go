package registry

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
)

// JWTAudience is the audience an agent's JWT must carry. A Kubernetes agent
// asks for a projected service-account token with this audience, so the
// token is useless to anything but Gantry.
const JWTAudience = "gantry"

// ExchangeJWT trades a JWT signed by a cluster's own issuer for a cluster
// credential: the second way an agent proves who it is. The token must be
// signed by a key in the JWKS registered with the cluster, carry audience
// JWTAudience, not be expired, and, when the cluster registered an
// oidcIssuer, have that issuer.
func (r *Registry) ExchangeJWT(ctx context.Context, clusterID, token string) (model.AgentCredential, error) {
	c, err := r.st.GetCluster(ctx, clusterID)
	if errors.Is(err, store.ErrNotFound) {
		return model.AgentCredential{}, ErrBadToken
	}
	if err != nil {
		return model.AgentCredential{}, err
	}
	if len(c.JWKS) == 0 {
		return model.AgentCredential{}, fmt.Errorf("%w: cluster %s has no jwks registered for token authentication", ErrBadToken, clusterID)
	}
	keys, err := ParseJWKS(c.JWKS)
	if err != nil {
		return model.AgentCredential{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "ES256", "ES384"}),
		jwt.WithAudience(JWTAudience),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(r.cfg.Now),
	}
	if c.OIDCIssuer != "" {
		opts = append(opts, jwt.WithIssuer(c.OIDCIssuer))
	}
	_, err = jwt.Parse(token, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		if kid == "" && len(keys) == 1 {
			for _, k := range keys {
				return k, nil
			}
		}
		return nil, fmt.Errorf("no key %q in the cluster's jwks", kid)
	}, opts...)
	if err != nil {
		return model.AgentCredential{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return r.Issue(ctx, clusterID)
}

// ParseJWKS reads the RSA and EC public keys of a JSON Web Key Set, by key
// id. Keys of other types are skipped; a set with none usable is an error.
func ParseJWKS(raw []byte) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("registry: jwks: %w", err)
	}
	out := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		switch k.Kty {
		case "RSA":
			n, e := b64int(k.N), b64int(k.E)
			if n == nil || e == nil || !e.IsInt64() {
				continue
			}
			out[k.Kid] = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case "EC":
			var curve elliptic.Curve
			switch k.Crv {
			case "P-256":
				curve = elliptic.P256()
			case "P-384":
				curve = elliptic.P384()
			default:
				continue
			}
			x, y := b64int(k.X), b64int(k.Y)
			if x == nil || y == nil || !curve.IsOnCurve(x, y) {
				continue
			}
			out[k.Kid] = &ecdsa.PublicKey{Curve: curve, X: x, Y: y}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("registry: jwks has no usable RSA or EC (P-256, P-384) public key")
	}
	return out, nil
}

func b64int(s string) *big.Int {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil
	}
	return new(big.Int).SetBytes(b)
}
