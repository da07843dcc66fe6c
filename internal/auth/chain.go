package auth

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// TokenVerifier checks one form of bearer credential. Issuer (admin tokens)
// and APIKeys (API keys) are the two.
type TokenVerifier interface {
	Verify(ctx context.Context, credential string) (Principal, error)
}

var (
	_ TokenVerifier = (*Issuer)(nil)
	_ TokenVerifier = (*APIKeys)(nil)
)

// Chain is the Authenticator routes use: it tells the credential's form
// and hands it to the one verifier that can check it, so a request costs
// one verification, never a try of each. "nvapi-..." is an API key; three
// dot-separated parts are an admin token (a JWT). Anything else, and
// anything a verifier refuses, is ErrBadCredential; no Authorization header
// at all is ErrNoCredential, so the 401 can say which.
type Chain struct {
	admin, keys TokenVerifier
}

var _ Authenticator = (*Chain)(nil)

// NewChain builds the chain. Either verifier may be nil, and then its form
// of credential is refused.
func NewChain(admin, keys TokenVerifier) *Chain {
	return &Chain{admin: admin, keys: keys}
}

// Authenticate implements Authenticator.
func (c *Chain) Authenticate(r *http.Request) (Principal, error) {
	tok, ok := BearerToken(r)
	if !ok || tok == "" {
		return Principal{}, ErrNoCredential
	}
	return c.Verify(r.Context(), tok)
}

// Verify checks a credential given without a request: the password of an
// MQTT client, the token of a NATS one (see bus.UserVerifier).
func (c *Chain) Verify(ctx context.Context, tok string) (Principal, error) {
	switch {
	case tok == "":
		return Principal{}, ErrNoCredential
	case strings.HasPrefix(tok, APIKeyPrefix) && c.keys != nil:
		return c.keys.Verify(ctx, tok)
	case strings.Count(tok, ".") == 2 && c.admin != nil:
		return c.admin.Verify(ctx, tok)
	}
	return Principal{}, fmt.Errorf("%w: neither an API key (%s...) nor an admin token (a JWT)", ErrBadCredential, APIKeyPrefix)
}
