package client

import (
	"context"
	"net/http"

	"github.com/gantry-dev/gantry/internal/model"
)

// CreateDeployment deploys a function version onto GPUs.
func (c *Client) CreateDeployment(ctx context.Context, functionID, versionID string, req model.DeploymentRequest) (model.Deployment, error) {
	var out model.DeploymentResponse
	err := c.doJSON(ctx, http.MethodPost, deploymentPath(functionID, versionID), req, &out)
	return out.Deployment, err
}

// GetDeployment returns the deployment of a function version, including its
// functionStatus and healthInfo.
func (c *Client) GetDeployment(ctx context.Context, functionID, versionID string) (model.Deployment, error) {
	var out model.DeploymentResponse
	err := c.doJSON(ctx, http.MethodGet, deploymentPath(functionID, versionID), nil, &out)
	return out.Deployment, err
}

// UpdateDeployment replaces the deployment specifications of a function version.
func (c *Client) UpdateDeployment(ctx context.Context, functionID, versionID string, req model.DeploymentRequest) (model.Deployment, error) {
	var out model.DeploymentResponse
	err := c.doJSON(ctx, http.MethodPut, deploymentPath(functionID, versionID), req, &out)
	return out.Deployment, err
}

// DeleteDeployment undeploys a function version. Any body the server sends
// back is ignored.
func (c *Client) DeleteDeployment(ctx context.Context, functionID, versionID string) error {
	return c.doJSON(ctx, http.MethodDelete, deploymentPath(functionID, versionID), nil, nil)
}

func deploymentPath(functionID, versionID string) string {
	return "/v2/nvcf/deployments/functions/" + seg(functionID) + "/versions/" + seg(versionID)
}

// PatchGPUSpec changes one spec of a deployment in place: its instance
// bounds, concurrency or autoscaling.
func (c *Client) PatchGPUSpec(ctx context.Context, deploymentID, specID string, patch model.GPUSpecPatch) (model.Deployment, error) {
	var out model.DeploymentResponse
	err := c.doJSON(ctx, http.MethodPatch, "/v2/nvcf/deployments/"+seg(deploymentID)+"/gpu-specifications/"+seg(specID), patch, &out)
	return out.Deployment, err
}
