package client

import (
	"context"
	"net/http"

	"github.com/gantry-dev/gantry/internal/model"
)

// PlatformStatus asks GET /v1/gantry/status for every component's check.
// The route is behind the installation gate, like the key routes.
func (c *Client) PlatformStatus(ctx context.Context) (model.PlatformStatus, error) {
	var out model.PlatformStatus
	err := c.doJSON(ctx, http.MethodGet, "/v1/gantry/status", nil, &out)
	return out, err
}
