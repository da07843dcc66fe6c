package client

import (
	"context"
	"net/http"

	"github.com/gantry-dev/gantry/internal/model"
)

// ClusterGroups lists the cluster groups (deployment backends) with the GPUs
// and instance types each offers.
func (c *Client) ClusterGroups(ctx context.Context) ([]model.ClusterGroup, error) {
	var out model.ClusterGroupsResponse
	err := c.doJSON(ctx, http.MethodGet, "/v2/nvcf/clusterGroups", nil, &out)
	return out.ClusterGroups, err
}
