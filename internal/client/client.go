// Package client is a typed Go client for Gantry's NVCF-compatible REST API.
// The CLI uses it, and so can tests and programs that embed Gantry: it speaks
// only the public /v2/nvcf shape, so it works against any server that does.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/gantry-dev/gantry/internal/problem"
)

// DefaultUserAgent is sent when no WithUserAgent option is given.
const DefaultUserAgent = "gantry-client"

// Header names of NVCF's invocation protocol.
const (
	HeaderPollSeconds = "NVCF-POLL-SECONDS"
	HeaderRequestID   = "NVCF-REQID"
	HeaderStatus      = "NVCF-STATUS"
)

// maxResponseBytes bounds how much of a response body the client reads into
// memory. NVCF answers at most 5 MiB inline; the margin leaves room for
// servers with larger limits while a runaway body still fails loudly rather
// than exhausting memory or being cut short in silence.
const maxResponseBytes = 64 << 20

// maxErrorDetail bounds how much of a non-problem error body ends up in an
// error message, so an HTML error page does not flood the terminal.
const maxErrorDetail = 200

// Client calls one Gantry (or NVCF) API endpoint with one credential. It is
// safe for concurrent use.
type Client struct {
	base      string
	token     string
	http      *http.Client
	userAgent string
}

// Option customises a Client.
type Option func(*Client)

// WithHTTPClient sets the *http.Client that carries requests, for custom
// transports, TLS settings or test servers. Timeouts are better set per call
// through ctx: invocations may legitimately wait for minutes.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.http = hc
		}
	}
}

// WithUserAgent sets the User-Agent header, so server logs can tell callers apart.
func WithUserAgent(ua string) Option {
	return func(c *Client) {
		if ua != "" {
			c.userAgent = ua
		}
	}
}

// New returns a client for the API at baseURL (for example
// http://127.0.0.1:8080) that authenticates with token. An empty token sends
// no Authorization header. baseURL may carry a path prefix; a bad URL is
// reported by the first call.
func New(baseURL, token string, opts ...Option) *Client {
	c := &Client{
		base:      strings.TrimRight(baseURL, "/"),
		token:     token,
		http:      http.DefaultClient,
		userAgent: DefaultUserAgent,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// BaseURL returns the endpoint the client talks to.
func (c *Client) BaseURL() string { return c.base }

// APIError is a non-2xx answer from the API. Callers branch on StatusCode;
// Problem holds the RFC 9457 body when the server sent one.
type APIError struct {
	StatusCode int
	// Problem is the decoded problem body. For bodies that are not problem
	// JSON, Detail holds the start of the body text instead.
	Problem problem.Body
	// RequestID identifies the request in server logs (NVCF-REQID or the
	// problem's requestId).
	RequestID string
	// Header is the response's header, e.g. for Retry-After.
	Header http.Header
}

// Error reads like "404 Not Found: function 123 not found".
func (e *APIError) Error() string {
	title := e.Problem.Title
	if title == "" {
		title = http.StatusText(e.StatusCode)
	}
	msg := fmt.Sprintf("%d %s", e.StatusCode, title)
	if title == "" {
		msg = fmt.Sprintf("HTTP %d", e.StatusCode)
	}
	if d := strings.TrimSpace(e.Problem.Detail); d != "" {
		msg += ": " + d
	}
	return msg
}

// StatusCode returns the HTTP status of err if it is (or wraps) an
// *APIError, and 0 otherwise.
func StatusCode(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return 0
}

// IsNotFound reports whether err is an API 404.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// newRequest builds a request for path, whose segments the caller has
// already escaped with seg.
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	u, err := url.Parse(c.base + path)
	if err != nil {
		return nil, fmt.Errorf("client: bad server URL %q: %w", c.base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("client: bad server URL %q: want http:// or https://", c.base)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", c.userAgent)
	return req, nil
}

// seg escapes one path segment, so ids with slashes or spaces cannot
// change which resource a call addresses.
func seg(s string) string { return url.PathEscape(s) }

// doJSON sends in (if non-nil) as JSON and decodes a 2xx answer into out (if
// non-nil). Anything else becomes an *APIError.
func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) error {
	return c.doJSONHeader(ctx, method, path, nil, in, out)
}

// doJSONHeader is doJSON with extra request headers.
func (c *Client) doJSONHeader(ctx context.Context, method, path string, header http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := readBody(resp.Body)
	if err != nil {
		return fmt.Errorf("client: %s %s: read response: %w", method, req.URL.Path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return newAPIError(resp, data)
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		if out != nil {
			return fmt.Errorf("client: %s %s: empty response body", method, req.URL.Path)
		}
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("client: %s %s: decode response: %w", method, req.URL.Path, err)
	}
	return nil
}

// readBody reads a whole body, failing rather than truncating when it is
// larger than maxResponseBytes.
func readBody(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxResponseBytes {
		return nil, fmt.Errorf("response larger than %d MiB", maxResponseBytes>>20)
	}
	return data, nil
}

// newAPIError turns a non-2xx response into an *APIError, decoding a problem
// body when there is one and keeping the start of any other text.
func newAPIError(resp *http.Response, data []byte) *APIError {
	e := &APIError{StatusCode: resp.StatusCode, Header: resp.Header, RequestID: resp.Header.Get(HeaderRequestID)}
	var pb problem.Body
	if looksJSON(resp.Header.Get("Content-Type"), data) && json.Unmarshal(data, &pb) == nil &&
		(pb.Title != "" || pb.Detail != "" || pb.Status != 0) {
		e.Problem = pb
		if e.RequestID == "" {
			e.RequestID = pb.RequestID
		}
		if pb.Status != 0 && pb.Status != resp.StatusCode {
			// The HTTP status is the truth; a proxy may have rewritten it.
			e.Problem.Title = ""
		}
		return e
	}
	e.Problem.Status = resp.StatusCode
	e.Problem.Detail = snippet(data)
	return e
}

func looksJSON(contentType string, data []byte) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/json" || mt == problem.ContentType || strings.HasSuffix(mt, "+json") {
		return true
	}
	t := bytes.TrimSpace(data)
	return len(t) > 0 && t[0] == '{'
}

// snippet returns the first line of a non-problem body, shortened for an
// error message.
func snippet(data []byte) string {
	s := strings.TrimSpace(string(data))
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if len(s) > maxErrorDetail {
		cut := maxErrorDetail
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
