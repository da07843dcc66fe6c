package client

import (
	"context"
	"net/http"

	"github.com/gantry-dev/gantry/internal/policy"
)

// policiesPath is the root of Gantry's own schedule policy API; NVCF has no
// such resource.
const policiesPath = "/v1/gantry/policies"

// CreatePolicy creates a schedule policy. The server assigns id, ncaId and
// createdAt and ignores them in p.
func (c *Client) CreatePolicy(ctx context.Context, p policy.Policy) (policy.Policy, error) {
	var out policy.Response
	err := c.doJSON(ctx, http.MethodPost, policiesPath, p, &out)
	return out.Policy, err
}

// ListPolicies returns the account's schedule policies, highest priority first.
func (c *Client) ListPolicies(ctx context.Context) ([]policy.Policy, error) {
	var out policy.ListResponse
	err := c.doJSON(ctx, http.MethodGet, policiesPath, nil, &out)
	return out.Policies, err
}

// GetPolicy returns one schedule policy.
func (c *Client) GetPolicy(ctx context.Context, id string) (policy.Policy, error) {
	var out policy.Response
	err := c.doJSON(ctx, http.MethodGet, policiesPath+"/"+seg(id), nil, &out)
	return out.Policy, err
}

// UpdatePolicy replaces schedule policy id with p, keeping its id, account
// and creation time.
func (c *Client) UpdatePolicy(ctx context.Context, id string, p policy.Policy) (policy.Policy, error) {
	var out policy.Response
	err := c.doJSON(ctx, http.MethodPut, policiesPath+"/"+seg(id), p, &out)
	return out.Policy, err
}

// DeletePolicy deletes schedule policy id. Instances it placed stay where
// they are.
func (c *Client) DeletePolicy(ctx context.Context, id string) error {
	return c.doJSON(ctx, http.MethodDelete, policiesPath+"/"+seg(id), nil, nil)
}
