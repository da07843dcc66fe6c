package cli

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

func TestInvoke(t *testing.T) {
	t.Parallel()
	bodyFile := writeFile(t, filepath.Join(t.TempDir(), "req.json"), `{"from":"file"}`)
	tests := []struct {
		name     string
		args     []string
		stdin    string
		setup    func(f *fakeAPI)
		code     int
		wantPath string
		wantBody string
		wantCT   string
		wantHdr  map[string]string
		stdout   []string
		exactOut *string
		stderr   []string
		check    func(t *testing.T, f *fakeAPI, r result)
	}{
		{
			name: "inline data, body printed as is", args: []string{"invoke", "fn-1", "-d", `{"message":"hi"}`},
			wantPath: "/v2/nvcf/pexec/functions/fn-1", wantBody: `{"message":"hi"}`, wantCT: "application/json",
			exactOut: ptr(`{"echo":"hi"}`),
		},
		{
			name:     "file data, version, headers and poll seconds",
			args:     []string{"invoke", "fn-1", "--version", "v-1", "-d", "@" + bodyFile, "-H", "X-Trace: abc", "-H", "Content-Type: text/plain", "--poll-seconds", "7"},
			wantPath: "/v2/nvcf/pexec/functions/fn-1/versions/v-1", wantBody: `{"from":"file"}`, wantCT: "text/plain",
			wantHdr: map[string]string{"X-Trace": "abc", "Nvcf-Poll-Seconds": "7"},
		},
		{
			name: "stdin data", args: []string{"invoke", "fn-1", "-d", "@-"}, stdin: "piped",
			wantPath: "/v2/nvcf/pexec/functions/fn-1", wantBody: "piped", wantCT: "application/json",
		},
		{
			name: "no data sends an empty body", args: []string{"invoke", "fn-1"},
			wantPath: "/v2/nvcf/pexec/functions/fn-1", wantBody: "",
		},
		{
			name: "202 polls the status endpoint", args: []string{"invoke", "fn-1", "-d", "{}"},
			setup:    func(f *fakeAPI) { f.pendingPolls = 2 },
			wantPath: "/v2/nvcf/pexec/functions/fn-1", wantBody: "{}", wantCT: "application/json",
			exactOut: ptr(`{"echo":"hi"}`),
			stderr:   []string{"request req-1 pending… (", "s)\n"},
			check: func(t *testing.T, f *fakeAPI, _ result) {
				if n := f.count("GET", "/v2/nvcf/pexec/status/req-1"); n != 2 {
					t.Errorf("%d status polls, want 2", n)
				}
			},
		},
		{
			name: "json output wraps the answer", args: []string{"invoke", "fn-1", "-o", "json"},
			setup:    func(f *fakeAPI) { f.invokeHeaderCT = "application/json" },
			wantPath: "/v2/nvcf/pexec/functions/fn-1",
			check: func(t *testing.T, _ *fakeAPI, r result) {
				var out struct {
					Status    int               `json:"status"`
					RequestID string            `json:"requestId"`
					Headers   map[string]string `json:"headers"`
					Body      map[string]string `json:"body"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
					t.Fatalf("%v: %s", err, r.stdout)
				}
				if out.Status != 200 || out.RequestID != "req-1" || out.Body["echo"] != "hi" || out.Headers["Content-Type"] != "application/json" {
					t.Errorf("output = %+v", out)
				}
			},
		},
		{
			name: "yaml output keeps a text body a string", args: []string{"invoke", "fn-1", "-o", "yaml"},
			setup:    func(f *fakeAPI) { f.invokeBody = "plain words" },
			wantPath: "/v2/nvcf/pexec/functions/fn-1",
			stdout:   []string{"body: plain words\n", "requestId: req-1\n", "status: 200\n"},
		},
		{
			name: "function error exits non-zero with the detail", args: []string{"invoke", "fn-1"},
			setup:    func(f *fakeAPI) { f.invokeStatus = 500 },
			code:     1,
			wantPath: "/v2/nvcf/pexec/functions/fn-1",
			exactOut: ptr(""),
			stderr:   []string{"Error: 500 Internal Server Error: the function failed: model crashed", "request id req-err-1"},
		},
		{
			name: "timeout while pending", args: []string{"invoke", "fn-1", "--timeout", "300ms"},
			setup:    func(f *fakeAPI) { f.pendingPolls = 1000 },
			code:     1,
			wantPath: "/v2/nvcf/pexec/functions/fn-1",
			stderr:   []string{"Error: timed out after 300ms waiting for the result of request req-1"},
		},
		{
			name: "bad header", args: []string{"invoke", "fn-1", "-H", "NoColon"}, code: 1,
			stderr: []string{`-H "NoColon": want 'Name: value'`},
		},
		{
			name: "bad poll seconds", args: []string{"invoke", "fn-1", "--poll-seconds", "5000"}, code: 1,
			stderr: []string{"--poll-seconds must be between 1 and 3600"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.invokeBody = `{"echo":"hi"}`
			if tc.setup != nil {
				tc.setup(f)
			}
			r := f.gantry(t, tc.stdin, tc.args...)
			r.check(t, tc.code, tc.stdout, tc.stderr)
			if tc.exactOut != nil && r.stdout != *tc.exactOut {
				t.Errorf("stdout = %q, want %q", r.stdout, *tc.exactOut)
			}
			if tc.check != nil {
				tc.check(t, f, r)
			}
			if tc.wantPath == "" {
				if n := f.count("POST", "/"); n != 0 {
					t.Errorf("%d invocations sent for a bad command line", n)
				}
				return
			}
			req := f.last(t, "POST", "/v2/nvcf/pexec/")
			if req.Path != tc.wantPath || string(req.Body) != tc.wantBody || req.Header.Get("Content-Type") != tc.wantCT {
				t.Errorf("request %s body %q content type %q; want %s %q %q",
					req.Path, req.Body, req.Header.Get("Content-Type"), tc.wantPath, tc.wantBody, tc.wantCT)
			}
			for k, v := range tc.wantHdr {
				if got := req.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestInvokeWithOwnCredential needs no configured token when -H brings an
// Authorization header, e.g. a function API key.
func TestInvokeWithOwnCredential(t *testing.T) {
	isolate(t)
	f := newFakeAPI(t)
	f.invokeBody = "ok"
	r := runCLI(t, "", "--server", f.srv.URL, "invoke", "fn-1", "-H", "Authorization: Bearer nvapi-key")
	r.check(t, 0, []string{"ok"}, nil)
	if got := f.last(t, "POST", "/v2/nvcf/pexec/").Auth; got != "Bearer nvapi-key" {
		t.Errorf("Authorization = %q", got)
	}
	r = runCLI(t, "", "--server", f.srv.URL, "invoke", "fn-1")
	r.check(t, 1, nil, []string{"no API token found"})
}

func ptr[T any](v T) *T { return &v }
