package client

import (
	"context"
	"errors"
	"net/http"

	"github.com/gantry-dev/gantry/internal/model"
)

// RegisterCluster registers a GPU cluster under account (an ncaId). The
// answer carries the one-time bootstrap token the cluster's agent exchanges
// for its credential; the server never shows it again, and callers should
// print it only where the operator asked for it.
func (c *Client) RegisterCluster(ctx context.Context, account string, req model.ClusterRequest) (model.ClusterRegistration, error) {
	var out model.ClusterRegistration
	err := c.doJSON(ctx, http.MethodPost, clustersPath(account), req, &out)
	return out, err
}

// ListClusters returns the clusters registered under account. The server
// answers a bare JSON array, as NVCF's does.
func (c *Client) ListClusters(ctx context.Context, account string) ([]model.Cluster, error) {
	var out []model.Cluster
	err := c.doJSON(ctx, http.MethodGet, clustersPath(account), nil, &out)
	return out, err
}

// GetCluster returns one cluster with its inventory and heartbeat state.
func (c *Client) GetCluster(ctx context.Context, account, id string) (model.Cluster, error) {
	var out model.Cluster
	err := c.doJSON(ctx, http.MethodGet, clusterPath(account, id), nil, &out)
	return out, err
}

// UpdateCluster replaces a cluster's settings (group, region, zone, labels,
// issuer). Its name cannot change.
func (c *Client) UpdateCluster(ctx context.Context, account, id string, req model.ClusterRequest) (model.Cluster, error) {
	var out model.Cluster
	err := c.doJSON(ctx, http.MethodPut, clusterPath(account, id), req, &out)
	return out, err
}

// DeleteCluster deregisters a cluster. The server revokes its agent's
// credentials and moves its instances to other clusters.
func (c *Client) DeleteCluster(ctx context.Context, account, id string) error {
	return c.doJSON(ctx, http.MethodDelete, clusterPath(account, id), nil, nil)
}

// CordonCluster stops new placements on a cluster; its instances stay.
func (c *Client) CordonCluster(ctx context.Context, account, id string) (model.Cluster, error) {
	return c.clusterAction(ctx, account, id, "cordon")
}

// UncordonCluster lets a cordoned or draining cluster take placements again.
func (c *Client) UncordonCluster(ctx context.Context, account, id string) (model.Cluster, error) {
	return c.clusterAction(ctx, account, id, "uncordon")
}

// DrainCluster cordons a cluster and moves its instances away, one at a
// time. It returns at once; the move goes on in the background.
func (c *Client) DrainCluster(ctx context.Context, account, id string) (model.Cluster, error) {
	return c.clusterAction(ctx, account, id, "drain")
}

func (c *Client) clusterAction(ctx context.Context, account, id, action string) (model.Cluster, error) {
	var out model.Cluster
	err := c.doJSON(ctx, http.MethodPost, clusterPath(account, id)+"/"+action, nil, &out)
	return out, err
}

// errNoAgentToken is returned by AgentCredential on a client without a token.
var errNoAgentToken = errors.New("client: AgentCredential needs a bootstrap token or the agent's current credential as the client's token")

// AgentCredential exchanges the client's token for a cluster credential. An
// agent builds its client with the bootstrap token from RegisterCluster on
// first start, and with its current credential to renew it; either way the
// token goes only into the Authorization header, never into an error.
func (c *Client) AgentCredential(ctx context.Context) (model.AgentCredential, error) {
	var out model.AgentCredential
	if c.token == "" {
		return out, errNoAgentToken
	}
	err := c.doJSON(ctx, http.MethodPost, "/v1/gantry/agents/credentials", nil, &out)
	return out, err
}

// AgentCredentialWithJWT trades the client's token, a JWT signed by the
// issuer registered with clusterID (a Kubernetes service-account token, say),
// for a cluster credential.
func (c *Client) AgentCredentialWithJWT(ctx context.Context, clusterID string) (model.AgentCredential, error) {
	var out model.AgentCredential
	if c.token == "" {
		return out, errNoAgentToken
	}
	err := c.doJSON(ctx, http.MethodPost, "/v1/gantry/agents/credentials", map[string]string{"clusterId": clusterID}, &out)
	return out, err
}

func clustersPath(account string) string {
	return "/v1/accounts/" + seg(account) + "/clusters"
}

func clusterPath(account, id string) string {
	return clustersPath(account) + "/" + seg(id)
}
