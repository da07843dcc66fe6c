package client

import (
	"context"
	"net/http"

	"github.com/gantry-dev/gantry/internal/model"
)

// Paths of the installation's key management routes.
const (
	keysMEKRotatePath = "/v1/gantry/keys/mek/rotate"
	keysNEKRotatePath = "/v1/gantry/keys/nek/rotate"
	keysStatusPath    = "/v1/gantry/keys/status"
	keysSigningPath   = "/v1/gantry/keys/signing/rotate"
)

// SigningKeys are the admin token signing keys a server publishes (JWKS),
// reduced to what a client shows.
type SigningKeys struct {
	Keys []struct {
		KID string `json:"kid"`
		Alg string `json:"alg"`
	} `json:"keys"`
}

// RotateSigningKey gives the installation a new admin token signing key and
// returns the keys published afterwards. Tokens signed before keep working
// until they expire.
func (c *Client) RotateSigningKey(ctx context.Context) (SigningKeys, error) {
	var out SigningKeys
	err := c.doJSON(ctx, http.MethodPost, keysSigningPath, struct{}{}, &out)
	return out, err
}

// RotateMEK rotates the master key and returns when the rotation has
// finished. Cancelling ctx stops it where it is; calling again finishes it.
func (c *Client) RotateMEK(ctx context.Context) (model.KeyRotationResult, error) {
	var out model.KeyRotationResult
	err := c.doJSON(ctx, http.MethodPost, keysMEKRotatePath, struct{}{}, &out)
	return out, err
}

// RotateNEK rotates one account's key and re-encrypts its secrets, and
// returns when the rotation has finished.
func (c *Client) RotateNEK(ctx context.Context, account string) (model.KeyRotationResult, error) {
	var out model.KeyRotationResult
	err := c.doJSON(ctx, http.MethodPost, keysNEKRotatePath, model.NEKRotateRequest{Account: account}, &out)
	return out, err
}

// KeyStatus returns both key tiers with their counts and any unfinished
// rotation. It reads every key and secret record on the server.
func (c *Client) KeyStatus(ctx context.Context) (model.KeyStatus, error) {
	var out model.KeyStatus
	err := c.doJSON(ctx, http.MethodGet, keysStatusPath, nil, &out)
	return out, err
}

// KeyProgress is KeyStatus without the counts: cheap enough to poll while
// a rotation runs.
func (c *Client) KeyProgress(ctx context.Context) (model.KeyStatus, error) {
	var out model.KeyStatus
	err := c.doJSON(ctx, http.MethodGet, keysStatusPath+"?counts=false", nil, &out)
	return out, err
}
