package client

import (
	"context"
	"net/http"

	"github.com/gantry-dev/gantry/internal/model"
)

// KeyIssuer says who asks for an API key, as the Key-Issuer-Service,
// Key-Issuer-Id and Key-Owner-Id headers of POST /v1/keys. Every field is
// optional.
type KeyIssuer struct {
	Service, ID, Owner string
}

// MintAdminToken asks POST /v1/admin/keys for an admin token; the token is
// in the answer's Value. The installation decides who may: requests from
// its own machine, or, in bootstrap mode, a client whose token is the
// installation's bootstrap secret. req may be empty.
func (c *Client) MintAdminToken(ctx context.Context, req model.AdminKeyRequest) (model.APIKey, error) {
	var out model.APIKey
	err := c.doJSON(ctx, http.MethodPost, "/v1/admin/keys", req, &out)
	return out, err
}

// CreateAPIKey creates an API key in the account of the client's admin
// token. The value is in the answer's Value, and only there: the server
// cannot show it again.
func (c *Client) CreateAPIKey(ctx context.Context, req model.APIKeyRequest, by KeyIssuer) (model.APIKey, error) {
	h := http.Header{}
	for name, v := range map[string]string{"Key-Issuer-Service": by.Service, "Key-Issuer-Id": by.ID, "Key-Owner-Id": by.Owner} {
		if v != "" {
			h.Set(name, v)
		}
	}
	var out model.APIKey
	err := c.doJSONHeader(ctx, http.MethodPost, "/v1/keys", h, req, &out)
	return out, err
}

// ListAPIKeys returns the API keys of the admin token's account, without
// their values.
func (c *Client) ListAPIKeys(ctx context.Context) ([]model.APIKey, error) {
	var out model.APIKeyListResponse
	err := c.doJSON(ctx, http.MethodGet, "/v1/keys", nil, &out)
	return out.Keys, err
}

// RevokeAPIKey revokes an API key at once and returns it as revoked.
func (c *Client) RevokeAPIKey(ctx context.Context, id string) (model.APIKey, error) {
	var out model.APIKey
	err := c.doJSON(ctx, http.MethodDelete, "/v1/keys/"+seg(id), nil, &out)
	return out, err
}
