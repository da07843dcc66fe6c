package client

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestInvoke(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		req        InvokeRequest
		status     int
		respBody   string
		wantPath   string
		wantCT     string
		wantPoll   string
		wantAuth   string
		wantBody   string
		wantHeader [2]string
		wantErr    string
		pending    bool
	}{
		{
			name:   "function route with JSON default",
			req:    InvokeRequest{FunctionID: "f1", Body: strings.NewReader(`{"a":1}`)},
			status: 200, respBody: `{"ok":true}`,
			wantPath: "/v2/nvcf/pexec/functions/f1", wantCT: "application/json",
			wantAuth: "Bearer " + testToken, wantBody: `{"a":1}`,
		},
		{
			name: "version route, headers and poll seconds",
			req: InvokeRequest{FunctionID: "f 1", VersionID: "v/1", Body: strings.NewReader("hi"), PollSeconds: 5,
				Header: http.Header{"Content-Type": {"text/plain"}, "X-Trace": {"t1"}}},
			status: 200, respBody: "hello",
			wantPath: "/v2/nvcf/pexec/functions/f%201/versions/v%2F1", wantCT: "text/plain", wantPoll: "5",
			wantAuth: "Bearer " + testToken, wantBody: "hi", wantHeader: [2]string{"X-Trace", "t1"},
		},
		{
			name:     "caller's Authorization wins",
			req:      InvokeRequest{FunctionID: "f1", Header: http.Header{"Authorization": {"Bearer nvapi-x"}}},
			status:   200,
			wantPath: "/v2/nvcf/pexec/functions/f1", wantAuth: "Bearer nvapi-x",
		},
		{
			name:     "202 is pending, not an error",
			req:      InvokeRequest{FunctionID: "f1"},
			status:   202,
			wantPath: "/v2/nvcf/pexec/functions/f1", wantAuth: "Bearer " + testToken, pending: true,
		},
		{
			name:   "function error becomes APIError",
			req:    InvokeRequest{FunctionID: "f1"},
			status: 500, respBody: "model crashed",
			wantPath: "/v2/nvcf/pexec/functions/f1", wantAuth: "Bearer " + testToken,
			wantErr: "500 Internal Server Error: model crashed",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, s := newServer(t, tc.status, "", tc.respBody)
			resp, err := New(srv.URL, testToken).Invoke(context.Background(), tc.req)
			if s.method != "POST" || s.path != tc.wantPath {
				t.Errorf("request = %s %s, want POST %s", s.method, s.path, tc.wantPath)
			}
			if s.auth != tc.wantAuth {
				t.Errorf("Authorization = %q, want %q", s.auth, tc.wantAuth)
			}
			if s.contentType != tc.wantCT {
				t.Errorf("Content-Type = %q, want %q", s.contentType, tc.wantCT)
			}
			if got := s.header.Get(HeaderPollSeconds); got != tc.wantPoll {
				t.Errorf("%s = %q, want %q", HeaderPollSeconds, got, tc.wantPoll)
			}
			if s.body != tc.wantBody {
				t.Errorf("body = %q, want %q", s.body, tc.wantBody)
			}
			if tc.wantHeader[0] != "" && s.header.Get(tc.wantHeader[0]) != tc.wantHeader[1] {
				t.Errorf("header %s = %q", tc.wantHeader[0], s.header.Get(tc.wantHeader[0]))
			}
			if tc.wantErr != "" {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Error() != tc.wantErr || ae.RequestID != "req-1" {
					t.Fatalf("err = %v, want APIError %q with request id", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || resp.Pending() != tc.pending || resp.RequestID != "req-1" || string(resp.Body) != tc.respBody {
				t.Errorf("resp = %+v", resp)
			}
		})
	}
}

func TestInvokeNeedsFunctionID(t *testing.T) {
	t.Parallel()
	if _, err := New("http://127.0.0.1:1", testToken).Invoke(context.Background(), InvokeRequest{}); err == nil {
		t.Error("Invoke without a function id succeeded")
	}
	if _, err := New("http://127.0.0.1:1", testToken).InvocationStatus(context.Background(), "", 0); err == nil {
		t.Error("InvocationStatus without a request id succeeded")
	}
}

func TestInvocationStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		poll     int
		wantPoll string
		pending  bool
	}{
		{name: "result", status: 200, poll: 0, wantPoll: ""},
		{name: "still pending", status: 202, poll: 30, wantPoll: "30", pending: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, s := newServer(t, tc.status, "application/json", `{"r":1}`)
			resp, err := New(srv.URL, testToken).InvocationStatus(context.Background(), "req/1", tc.poll)
			if err != nil {
				t.Fatal(err)
			}
			if s.method != "GET" || s.path != "/v2/nvcf/pexec/status/req%2F1" {
				t.Errorf("request = %s %s", s.method, s.path)
			}
			if s.header.Get(HeaderPollSeconds) != tc.wantPoll {
				t.Errorf("poll header = %q", s.header.Get(HeaderPollSeconds))
			}
			if resp.Pending() != tc.pending || resp.RequestID != "req-1" {
				t.Errorf("resp = %+v", resp)
			}
		})
	}
}
