package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

const testToken = "test-token-0123456789"

// seen is what a test server recorded about the one request it received.
type seen struct {
	method, path, auth, userAgent, contentType string
	header                                     http.Header
	body                                       string
}

// newServer starts a server that records the request and answers with
// status, content type and body.
func newServer(t *testing.T, status int, contentType, body string) (*httptest.Server, *seen) {
	t.Helper()
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*s = seen{
			method:      r.Method,
			path:        r.URL.EscapedPath(),
			auth:        r.Header.Get("Authorization"),
			userAgent:   r.Header.Get("User-Agent"),
			contentType: r.Header.Get("Content-Type"),
			header:      r.Header.Clone(),
			body:        string(b),
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.Header().Set(HeaderRequestID, "req-1")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, s
}

// jsonEqual compares two JSON documents ignoring formatting.
func jsonEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("request body %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("request body = %s, want %s", gb, wb)
	}
}

func TestNewOptions(t *testing.T) {
	t.Parallel()
	srv, s := newServer(t, 200, "application/json", `{"functions":[]}`)
	hc := &http.Client{}
	c := New(srv.URL+"/", testToken, WithHTTPClient(hc), WithUserAgent("gantry-test/1"))
	if c.http != hc {
		t.Error("WithHTTPClient was not applied")
	}
	if c.BaseURL() != srv.URL {
		t.Errorf("BaseURL = %q, want trailing slash trimmed", c.BaseURL())
	}
	if _, err := c.ListFunctions(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.userAgent != "gantry-test/1" {
		t.Errorf("User-Agent = %q", s.userAgent)
	}
	if s.path != "/v2/nvcf/functions" {
		t.Errorf("path = %q", s.path)
	}
}

func TestBasePathPrefixAndNoToken(t *testing.T) {
	t.Parallel()
	srv, s := newServer(t, 200, "application/json", `{"clusterGroups":[]}`)
	c := New(srv.URL+"/prefix", "")
	if _, err := c.ClusterGroups(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.path != "/prefix/v2/nvcf/clusterGroups" {
		t.Errorf("path = %q", s.path)
	}
	if s.auth != "" {
		t.Errorf("Authorization sent without a token: %q", s.auth)
	}
	if s.userAgent != DefaultUserAgent {
		t.Errorf("User-Agent = %q", s.userAgent)
	}
}

func TestBadBaseURL(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"127.0.0.1:8080", "ftp://host", "http://[::1"} {
		_, err := New(base, testToken).ListFunctions(context.Background())
		if err == nil || !strings.Contains(err.Error(), "bad server URL") {
			t.Errorf("New(%q): err = %v, want bad server URL", base, err)
		}
	}
}

func TestAPIError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		wantMsg     string
		wantReqID   string
	}{
		{
			name: "problem", status: 404, contentType: problem.ContentType,
			body:    `{"type":"urn:gantry:problem:404","title":"Not Found","status":404,"detail":"function 123 not found","requestId":"abc"}`,
			wantMsg: "404 Not Found: function 123 not found", wantReqID: "req-1",
		},
		{
			name: "json without content type", status: 400,
			body:    `{"title":"Bad Request","status":400,"detail":"inferenceUrl is required"}`,
			wantMsg: "400 Bad Request: inferenceUrl is required", wantReqID: "req-1",
		},
		{
			name: "plain text first line", status: 502, contentType: "text/plain",
			body:    "upstream went away\nsecond line",
			wantMsg: "502 Bad Gateway: upstream went away", wantReqID: "req-1",
		},
		{
			name: "empty body", status: 401,
			wantMsg: "401 Unauthorized", wantReqID: "req-1",
		},
		{
			name: "other JSON is kept as text", status: 500, contentType: "application/json",
			body:    `{"error":"boom"}`,
			wantMsg: `500 Internal Server Error: {"error":"boom"}`, wantReqID: "req-1",
		},
		{
			name: "long body is shortened", status: 500, contentType: "text/html",
			body:    strings.Repeat("x", 500),
			wantMsg: "500 Internal Server Error: " + strings.Repeat("x", maxErrorDetail) + "…", wantReqID: "req-1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := newServer(t, tc.status, tc.contentType, tc.body)
			_, err := New(srv.URL, testToken).GetFunction(context.Background(), "123", "v1")
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if ae.StatusCode != tc.status || StatusCode(err) != tc.status {
				t.Errorf("StatusCode = %d, want %d", ae.StatusCode, tc.status)
			}
			if ae.Error() != tc.wantMsg {
				t.Errorf("Error() = %q, want %q", ae.Error(), tc.wantMsg)
			}
			if ae.RequestID != tc.wantReqID {
				t.Errorf("RequestID = %q, want %q", ae.RequestID, tc.wantReqID)
			}
			if strings.Contains(ae.Error(), testToken) {
				t.Error("error text contains the token")
			}
		})
	}
}

func TestIsNotFound(t *testing.T) {
	t.Parallel()
	if !IsNotFound(&APIError{StatusCode: 404}) || IsNotFound(errors.New("x")) || StatusCode(nil) != 0 {
		t.Error("IsNotFound/StatusCode misclassify")
	}
}

func TestDecodeError(t *testing.T) {
	t.Parallel()
	srv, _ := newServer(t, 200, "application/json", `not json`)
	_, err := New(srv.URL, testToken).GetFunction(context.Background(), "f", "v")
	if err == nil || !strings.Contains(err.Error(), "decode response") {
		t.Errorf("err = %v, want decode error", err)
	}
}

func TestResourceCalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fnReq := model.CreateFunctionRequest{Name: "echo", InferenceURL: "/", ContainerImage: "process://gantry"}
	depReq := model.DeploymentRequest{Specs: []model.GPUSpec{{GPU: "L40S", MinInstances: 1, MaxInstances: 2}}}
	const fnJSON = `{"function":{"id":"f1","versionId":"v1","name":"echo","status":"INACTIVE","inferenceUrl":"/","createdAt":"2024-01-02T03:04:05Z"}}`
	const listJSON = `{"functions":[{"id":"f1","versionId":"v1","name":"echo"},{"id":"f1","versionId":"v2","name":"echo"}]}`
	const depJSON = `{"deployment":{"deploymentId":"d1","functionId":"f1","functionVersionId":"v1","functionStatus":"DEPLOYING","deploymentSpecifications":[{"gpu":"L40S","minInstances":1,"maxInstances":2}],"createdAt":"2024-01-02T03:04:05Z"}}`

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
			name: "CreateFunction", respBody: fnJSON,
			call:       func(c *Client) (any, error) { return c.CreateFunction(ctx, fnReq) },
			wantMethod: "POST", wantPath: "/v2/nvcf/functions",
			wantBody: `{"name":"echo","inferenceUrl":"/","containerImage":"process://gantry"}`,
			check: func(t *testing.T, got any) {
				if f := got.(model.Function); f.ID != "f1" || f.VersionID != "v1" || f.CreatedAt.IsZero() {
					t.Errorf("function = %+v", f)
				}
			},
		},
		{
			name: "CreateVersion escapes id", respBody: fnJSON,
			call:       func(c *Client) (any, error) { return c.CreateVersion(ctx, "a/b c", fnReq) },
			wantMethod: "POST", wantPath: "/v2/nvcf/functions/a%2Fb%20c/versions",
			wantBody: `{"name":"echo","inferenceUrl":"/","containerImage":"process://gantry"}`,
		},
		{
			name: "ListFunctions", respBody: listJSON,
			call:       func(c *Client) (any, error) { return c.ListFunctions(ctx) },
			wantMethod: "GET", wantPath: "/v2/nvcf/functions",
			check: func(t *testing.T, got any) {
				if fs := got.([]model.Function); len(fs) != 2 || fs[1].VersionID != "v2" {
					t.Errorf("functions = %+v", fs)
				}
			},
		},
		{
			name: "ListVersions", respBody: listJSON,
			call:       func(c *Client) (any, error) { return c.ListVersions(ctx, "f1") },
			wantMethod: "GET", wantPath: "/v2/nvcf/functions/f1/versions",
		},
		{
			name: "GetFunction escapes both ids", respBody: fnJSON,
			call:       func(c *Client) (any, error) { return c.GetFunction(ctx, "f/1", "v?1") },
			wantMethod: "GET", wantPath: "/v2/nvcf/functions/f%2F1/versions/v%3F1",
		},
		{
			name: "UpdateVersion sends only what changes", respBody: fnJSON,
			call: func(c *Client) (any, error) {
				return c.UpdateVersion(ctx, "f/1", "v1", model.UpdateFunctionRequest{Tags: []string{"a", "b"}})
			},
			wantMethod: "PUT", wantPath: "/v2/nvcf/functions/f%2F1/versions/v1",
			wantBody: `{"tags":["a","b"]}`,
			check: func(t *testing.T, got any) {
				if f := got.(model.Function); f.ID != "f1" || f.VersionID != "v1" {
					t.Errorf("function = %+v", f)
				}
			},
		},
		{
			name: "DeleteVersion", respBody: "",
			call:       func(c *Client) (any, error) { return nil, c.DeleteVersion(ctx, "f1", "v1") },
			wantMethod: "DELETE", wantPath: "/v2/nvcf/functions/f1/versions/v1",
		},
		{
			name: "CreateDeployment", respBody: depJSON,
			call:       func(c *Client) (any, error) { return c.CreateDeployment(ctx, "f1", "v1", depReq) },
			wantMethod: "POST", wantPath: "/v2/nvcf/deployments/functions/f1/versions/v1",
			wantBody: `{"deploymentSpecifications":[{"gpu":"L40S","minInstances":1,"maxInstances":2}]}`,
			check: func(t *testing.T, got any) {
				if d := got.(model.Deployment); d.ID != "d1" || d.FunctionStatus != model.StatusDeploying || len(d.Specs) != 1 {
					t.Errorf("deployment = %+v", d)
				}
			},
		},
		{
			name: "GetDeployment", respBody: depJSON,
			call:       func(c *Client) (any, error) { return c.GetDeployment(ctx, "f1", "v1") },
			wantMethod: "GET", wantPath: "/v2/nvcf/deployments/functions/f1/versions/v1",
		},
		{
			name: "UpdateDeployment", respBody: depJSON,
			call:       func(c *Client) (any, error) { return c.UpdateDeployment(ctx, "f1", "v1", depReq) },
			wantMethod: "PUT", wantPath: "/v2/nvcf/deployments/functions/f1/versions/v1",
			wantBody: `{"deploymentSpecifications":[{"gpu":"L40S","minInstances":1,"maxInstances":2}]}`,
		},
		{
			name: "DeleteDeployment ignores body", respBody: depJSON,
			call:       func(c *Client) (any, error) { return nil, c.DeleteDeployment(ctx, "f1", "v1") },
			wantMethod: "DELETE", wantPath: "/v2/nvcf/deployments/functions/f1/versions/v1",
		},
		{
			name:       "ClusterGroups",
			respBody:   `{"clusterGroups":[{"id":"g1","name":"local","gpus":[{"name":"L40S","instanceTypes":[{"name":"ON-PREM.GPU.L40S_1x","default":true}]}]}]}`,
			call:       func(c *Client) (any, error) { return c.ClusterGroups(ctx) },
			wantMethod: "GET", wantPath: "/v2/nvcf/clusterGroups",
			check: func(t *testing.T, got any) {
				gs := got.([]model.ClusterGroup)
				if len(gs) != 1 || gs[0].GPUs[0].InstanceTypes[0].Name != "ON-PREM.GPU.L40S_1x" {
					t.Errorf("groups = %+v", gs)
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
