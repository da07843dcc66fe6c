package client

import (
	"context"
	"net/http"

	"github.com/gantry-dev/gantry/internal/model"
)

// CreateFunction creates a new function with its first version.
func (c *Client) CreateFunction(ctx context.Context, req model.CreateFunctionRequest) (model.Function, error) {
	var out model.FunctionResponse
	err := c.doJSON(ctx, http.MethodPost, "/v2/nvcf/functions", req, &out)
	return out.Function, err
}

// CreateVersion adds a version to an existing function.
func (c *Client) CreateVersion(ctx context.Context, functionID string, req model.CreateFunctionRequest) (model.Function, error) {
	var out model.FunctionResponse
	err := c.doJSON(ctx, http.MethodPost, "/v2/nvcf/functions/"+seg(functionID)+"/versions", req, &out)
	return out.Function, err
}

// ListFunctions returns every version of every function the credential may see.
func (c *Client) ListFunctions(ctx context.Context) ([]model.Function, error) {
	var out model.FunctionListResponse
	err := c.doJSON(ctx, http.MethodGet, "/v2/nvcf/functions", nil, &out)
	return out.Functions, err
}

// ListVersions returns the versions of one function.
func (c *Client) ListVersions(ctx context.Context, functionID string) ([]model.Function, error) {
	var out model.FunctionListResponse
	err := c.doJSON(ctx, http.MethodGet, "/v2/nvcf/functions/"+seg(functionID)+"/versions", nil, &out)
	return out.Functions, err
}

// GetFunction returns one function version.
func (c *Client) GetFunction(ctx context.Context, functionID, versionID string) (model.Function, error) {
	var out model.FunctionResponse
	err := c.doJSON(ctx, http.MethodGet, versionPath(functionID, versionID), nil, &out)
	return out.Function, err
}

// UpdateVersion changes a version's tags, description or rate limit (the
// fields req sets) and returns the updated version.
func (c *Client) UpdateVersion(ctx context.Context, functionID, versionID string, req model.UpdateFunctionRequest) (model.Function, error) {
	var out model.FunctionResponse
	err := c.doJSON(ctx, http.MethodPut, versionPath(functionID, versionID), req, &out)
	return out.Function, err
}

// DeleteVersion deletes one function version. The server refuses while the
// version is deployed.
func (c *Client) DeleteVersion(ctx context.Context, functionID, versionID string) error {
	return c.doJSON(ctx, http.MethodDelete, versionPath(functionID, versionID), nil, nil)
}

func versionPath(functionID, versionID string) string {
	return "/v2/nvcf/functions/" + seg(functionID) + "/versions/" + seg(versionID)
}
