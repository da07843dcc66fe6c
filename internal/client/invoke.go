package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// InvokeRequest is one call of a function through the pexec API.
type InvokeRequest struct {
	FunctionID string
	// VersionID, when set, pins the call to one version; otherwise the server
	// picks a deployed version of the function.
	VersionID string
	// Body is sent as is; a *bytes.Reader or *strings.Reader also sets
	// Content-Length. Nil sends an empty body.
	Body io.Reader
	// Header is passed to the function. Content-Type defaults to
	// application/json when there is a body. An Authorization header here
	// replaces the client's token, e.g. to call with a function API key.
	Header http.Header
	// PollSeconds, when positive, sets NVCF-POLL-SECONDS: how long the server
	// may hold the call before answering 202 with a request id to poll.
	PollSeconds int
}

// InvokeResponse is a function's answer (2xx) or a 202 telling the caller to
// poll InvocationStatus with RequestID.
type InvokeResponse struct {
	StatusCode int
	Header     http.Header
	Body       []byte
	// RequestID is the NVCF-REQID header, the handle for InvocationStatus.
	RequestID string
	// Status is the NVCF-STATUS header: fulfilled, pending-evaluation,
	// in-progress or errored.
	Status string
}

// Pending reports whether the result is not ready yet and the caller should
// poll InvocationStatus.
func (r *InvokeResponse) Pending() bool { return r.StatusCode == http.StatusAccepted }

// Invoke calls a function. A 2xx answer, 202 included, is returned as an
// *InvokeResponse; anything else is an *APIError that carries the problem
// detail or the start of the function's own error body.
func (c *Client) Invoke(ctx context.Context, in InvokeRequest) (*InvokeResponse, error) {
	if in.FunctionID == "" {
		return nil, fmt.Errorf("client: invoke: function id is required")
	}
	path := "/v2/nvcf/pexec/functions/" + seg(in.FunctionID)
	if in.VersionID != "" {
		path += "/versions/" + seg(in.VersionID)
	}
	req, err := c.newRequest(ctx, http.MethodPost, path, in.Body)
	if err != nil {
		return nil, err
	}
	for k, vs := range in.Header {
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if in.Body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	setPoll(req, in.PollSeconds)
	return c.doInvoke(req)
}

// InvocationStatus polls for the result of an invocation that was answered
// with 202. The answer is the result (2xx) or another 202 while it is still
// pending; pollSeconds, when positive, lets the server hold the call that
// long waiting for the result.
func (c *Client) InvocationStatus(ctx context.Context, requestID string, pollSeconds int) (*InvokeResponse, error) {
	if requestID == "" {
		return nil, fmt.Errorf("client: invocation status: request id is required")
	}
	req, err := c.newRequest(ctx, http.MethodGet, "/v2/nvcf/pexec/status/"+seg(requestID), nil)
	if err != nil {
		return nil, err
	}
	setPoll(req, pollSeconds)
	return c.doInvoke(req)
}

func setPoll(req *http.Request, seconds int) {
	if seconds > 0 {
		req.Header.Set(HeaderPollSeconds, strconv.Itoa(seconds))
	}
}

func (c *Client) doInvoke(req *http.Request) (*InvokeResponse, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := readBody(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: read response: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, newAPIError(resp, data)
	}
	return &InvokeResponse{
		StatusCode: resp.StatusCode,
		Header:     resp.Header,
		Body:       data,
		RequestID:  resp.Header.Get(HeaderRequestID),
		Status:     resp.Header.Get(HeaderStatus),
	}, nil
}
