package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

func TestClusterCalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	req := model.ClusterRequest{ClusterName: "us-east", ClusterGroupName: "prod", Region: "us-east-1",
		Labels: map[string]string{"rack": "r1"}, JWKS: json.RawMessage(`{"keys":[{"kty":"OKP"}]}`)}
	const reqJSON = `{"clusterName":"us-east","clusterGroupName":"prod","region":"us-east-1","labels":{"rack":"r1"},"jwks":{"keys":[{"kty":"OKP"}]}}`
	// The server answers a cluster bare, as NVCF's ICMS does.
	const clusterJSON = `{"clusterId":"c1","clusterName":"us-east","clusterGroupName":"prod","ncaId":"acct","status":"READY",
		"cordoned":true,"inventory":{"nodes":[{"name":"n1","gpuModel":"H100","gpuMemoryGB":80,"gpus":8}]},
		"lastHeartbeat":"2024-01-02T03:04:05Z","nvcaLastConnected":"2024-01-02T03:04:05Z","k8sVersion":"v1.31.0",
		"gpus":[{"name":"H100","capacity":8,"instanceTypes":[{"name":"ON-PREM.GPU.H100_8x","value":"ON-PREM.GPU.H100","gpuCount":8}]}],
		"createdAt":"2024-01-01T00:00:00Z"}`

	tests := []struct {
		name       string
		respBody   string
		call       func(c *Client) (any, error)
		wantMethod string
		wantPath   string
		wantBody   string // JSON; empty means no body
		check      func(t *testing.T, got any)
	}{
		{
			name: "RegisterCluster",
			respBody: `{"cluster":{"clusterId":"c1","clusterName":"us-east"},"clusterId":"c1","clusterGroupId":"g1",
				"bootstrapToken":"gantry-bootstrap.abc","bootstrapExpiresAt":"2024-01-02T04:04:05Z"}`,
			call:       func(c *Client) (any, error) { return c.RegisterCluster(ctx, "acct", req) },
			wantMethod: "POST", wantPath: "/v1/accounts/acct/clusters",
			wantBody: reqJSON,
			check: func(t *testing.T, got any) {
				r := got.(model.ClusterRegistration)
				if r.ClusterID != "c1" || r.Cluster.Name != "us-east" || r.BootstrapToken != "gantry-bootstrap.abc" || r.BootstrapExpiresAt.IsZero() {
					t.Errorf("registration = %+v", r)
				}
			},
		},
		{
			name:       "ListClusters escapes the account",
			respBody:   `[{"clusterId":"c1","nvcaLastConnected":"2024-01-02T03:04:05.5Z"},{"clusterId":"c2"}]`,
			call:       func(c *Client) (any, error) { return c.ListClusters(ctx, "a/b c") },
			wantMethod: "GET", wantPath: "/v1/accounts/a%2Fb%20c/clusters",
			check: func(t *testing.T, got any) {
				if cs := got.([]model.Cluster); len(cs) != 2 || cs[1].ID != "c2" || cs[0].NVCALastConnected.IsZero() {
					t.Errorf("clusters = %+v", cs)
				}
			},
		},
		{
			name: "GetCluster", respBody: clusterJSON,
			call:       func(c *Client) (any, error) { return c.GetCluster(ctx, "acct", "c1") },
			wantMethod: "GET", wantPath: "/v1/accounts/acct/clusters/c1",
			check: func(t *testing.T, got any) {
				c := got.(model.Cluster)
				if c.ID != "c1" || c.Status != model.ClusterReady || !c.Cordoned || c.Inventory.GPUTotals()["H100"] != 8 || c.LastHeartbeat.IsZero() ||
					c.NVCALastConnected.IsZero() || c.K8sVersion != "v1.31.0" || len(c.GPUs) != 1 || c.GPUs[0].InstanceTypes[0].GPUCount != 8 {
					t.Errorf("cluster = %+v", c)
				}
			},
		},
		{
			name: "GetCluster escapes the id", respBody: clusterJSON,
			call:       func(c *Client) (any, error) { return c.GetCluster(ctx, "acct", "../x?y") },
			wantMethod: "GET", wantPath: "/v1/accounts/acct/clusters/..%2Fx%3Fy",
		},
		{
			name: "UpdateCluster", respBody: clusterJSON,
			call:       func(c *Client) (any, error) { return c.UpdateCluster(ctx, "acct", "c1", req) },
			wantMethod: "PUT", wantPath: "/v1/accounts/acct/clusters/c1",
			wantBody: reqJSON,
			check: func(t *testing.T, got any) {
				if c := got.(model.Cluster); c.ID != "c1" || c.Name != "us-east" {
					t.Errorf("cluster = %+v", c)
				}
			},
		},
		{
			name: "DeleteCluster", respBody: "",
			call:       func(c *Client) (any, error) { return nil, c.DeleteCluster(ctx, "acct", "c1") },
			wantMethod: "DELETE", wantPath: "/v1/accounts/acct/clusters/c1",
		},
		{
			name: "CordonCluster", respBody: clusterJSON,
			call:       func(c *Client) (any, error) { return c.CordonCluster(ctx, "acct", "c1") },
			wantMethod: "POST", wantPath: "/v1/accounts/acct/clusters/c1/cordon",
			check: func(t *testing.T, got any) {
				if c := got.(model.Cluster); !c.Cordoned {
					t.Errorf("cluster = %+v", c)
				}
			},
		},
		{
			name: "UncordonCluster", respBody: clusterJSON,
			call:       func(c *Client) (any, error) { return c.UncordonCluster(ctx, "acct", "c1") },
			wantMethod: "POST", wantPath: "/v1/accounts/acct/clusters/c1/uncordon",
		},
		{
			name: "DrainCluster escapes the id", respBody: clusterJSON,
			call:       func(c *Client) (any, error) { return c.DrainCluster(ctx, "acct", "c/1") },
			wantMethod: "POST", wantPath: "/v1/accounts/acct/clusters/c%2F1/drain",
		},
		{
			name:       "AgentCredential",
			respBody:   `{"clusterId":"c1","credential":"gantry-agent.xyz","expiresAt":"2024-01-02T03:04:05Z","natsUrl":"nats://127.0.0.1:4222"}`,
			call:       func(c *Client) (any, error) { return c.AgentCredential(ctx) },
			wantMethod: "POST", wantPath: "/v1/gantry/agents/credentials",
			check: func(t *testing.T, got any) {
				want := model.AgentCredential{ClusterID: "c1", Credential: "gantry-agent.xyz",
					ExpiresAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), NATSURL: "nats://127.0.0.1:4222"}
				if c := got.(model.AgentCredential); c != want {
					t.Errorf("credential = %+v, want %+v", c, want)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, s := newServer(t, 200, "application/json", tc.respBody)
			got, err := tc.call(New(srv.URL, testToken))
			if err != nil {
				t.Fatal(err)
			}
			if s.method != tc.wantMethod || s.path != tc.wantPath {
				t.Errorf("request = %s %s, want %s %s", s.method, s.path, tc.wantMethod, tc.wantPath)
			}
			if s.auth != "Bearer "+testToken {
				t.Errorf("Authorization = %q", s.auth)
			}
			if tc.wantBody == "" {
				if s.body != "" {
					t.Errorf("unexpected request body %q", s.body)
				}
			} else {
				jsonEqual(t, s.body, tc.wantBody)
				if s.contentType != "application/json" {
					t.Errorf("Content-Type = %q", s.contentType)
				}
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

func TestClusterErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		status  int
		body    string
		call    func(c *Client) error
		wantMsg string
	}{
		{
			name: "other account", status: 404,
			body:    `{"title":"Not Found","status":404,"detail":"account other not found"}`,
			call:    func(c *Client) error { _, err := c.ListClusters(ctx, "other"); return err },
			wantMsg: "404 Not Found: account other not found",
		},
		{
			name: "name taken", status: 409,
			body: `{"title":"Conflict","status":409,"detail":"cluster \"us-east\" is already registered as c1"}`,
			call: func(c *Client) error {
				_, err := c.RegisterCluster(ctx, "acct", model.ClusterRequest{ClusterName: "us-east", ClusterGroupName: "prod"})
				return err
			},
			wantMsg: `409 Conflict: cluster "us-east" is already registered as c1`,
		},
		{
			name: "spent bootstrap token", status: 401,
			body:    `{"title":"Unauthorized","status":401,"detail":"the token is not valid"}`,
			call:    func(c *Client) error { _, err := c.AgentCredential(ctx); return err },
			wantMsg: "401 Unauthorized: the token is not valid",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := newServer(t, tc.status, problem.ContentType, tc.body)
			err := tc.call(New(srv.URL, testToken))
			var ae *APIError
			if !errors.As(err, &ae) || ae.StatusCode != tc.status {
				t.Fatalf("err = %v, want *APIError %d", err, tc.status)
			}
			if err.Error() != tc.wantMsg {
				t.Errorf("Error() = %q, want %q", err.Error(), tc.wantMsg)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Error("error text contains the token")
			}
		})
	}
}

// TestAgentCredentialNeedsToken checks that a client without a token fails
// before sending anything, rather than asking the server anonymously.
func TestAgentCredentialNeedsToken(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	_, err := New(srv.URL, "").AgentCredential(context.Background())
	if !errors.Is(err, errNoAgentToken) {
		t.Errorf("err = %v, want errNoAgentToken", err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d requests sent without a token", n)
	}
}
