package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestFunctionIDHeaderRouting: without wildcard DNS, a Function-ID header
// (and optionally Function-Version-ID) on any path that is not one of
// Gantry's routes passes the call through to the function, path as is; the
// API's own routes stay the API's.
func TestFunctionIDHeaderRouting(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	f, err := p.c.CreateFunction(ctx, selfFunction(t, "echo", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(2)}, model.StatusActive)

	tests := []struct {
		name       string
		method     string
		path       string
		hdr        map[string]string
		wantStatus int
		wantPath   string // what the function saw, for pass-through calls
	}{
		{"function id", http.MethodPost, "/v1/chat/completions", map[string]string{"Function-ID": f.ID}, 200, "/v1/chat/completions"},
		{"function and version id", http.MethodPut, "/any/path", map[string]string{"Function-ID": f.ID, "Function-Version-ID": f.VersionID}, 200, "/any/path"},
		{"unknown function", http.MethodPost, "/v1/chat/completions", map[string]string{"Function-ID": "00000000-0000-0000-0000-000000000000"}, 404, ""},
		{"malformed function id", http.MethodPost, "/v1/chat/completions", map[string]string{"Function-ID": "not an id"}, 400, ""},
		{"malformed version id", http.MethodPost, "/x", map[string]string{"Function-ID": f.ID, "Function-Version-ID": "a.b"}, 400, ""},
		{"an API route keeps its meaning", http.MethodGet, "/v2/nvcf/functions", map[string]string{"Function-ID": f.ID}, 200, ""},
		{"without the header: not found", http.MethodPost, "/v1/chat/completions", nil, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, tc.method, p.URL()+tc.path, p.AdminToken())
			req.Body = io.NopCloser(strings.NewReader("routed"))
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != problem.ContentType {
				t.Errorf("error is %q, not a problem: %s", resp.Header.Get("Content-Type"), body)
			}
			if tc.wantPath == "" {
				return
			}
			var e echoReply
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if e.Path != tc.wantPath || e.Method != tc.method || e.Body != "routed" || resp.Header.Get("NVCF-REQID") == "" {
				t.Fatalf("function saw %+v (reqid %q)", e, resp.Header.Get("NVCF-REQID"))
			}
			if _, ok := e.Headers["Function-Id"]; ok {
				t.Errorf("the routing header reached the function")
			}
		})
	}
}
