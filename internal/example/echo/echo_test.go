package echo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, ctx context.Context, method, url, body string, hdr map[string]string) (result, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func TestHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		header     map[string]string
		wantStatus int
		check      func(t *testing.T, r result)
	}{
		{
			name: "health", method: http.MethodGet, path: "/health", wantStatus: 200,
			check: func(t *testing.T, r result) {
				if got := strings.TrimSpace(string(r.body)); got != `{"status":"ok"}` {
					t.Errorf("body = %s", got)
				}
				if r.header.Get(HeaderInflight) != "" {
					t.Errorf("health should not carry %s", HeaderInflight)
				}
			},
		},
		{
			name: "echo body headers and query", method: http.MethodPost, path: "/echo?a=1&a=2&b=x",
			body: `{"prompt":"hi"}`, header: map[string]string{"X-Test": "yes"}, wantStatus: 200,
			check: func(t *testing.T, r result) {
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
				var got Response
				if err := json.Unmarshal(r.body, &got); err != nil {
					t.Fatal(err)
				}
				if got.Method != "POST" || got.Path != "/echo" {
					t.Errorf("method/path = %s %s", got.Method, got.Path)
				}
				if got.Body != `{"prompt":"hi"}` {
					t.Errorf("body = %q", got.Body)
				}
				if v := got.Headers["X-Test"]; len(v) != 1 || v[0] != "yes" {
					t.Errorf("headers[X-Test] = %v", v)
				}
				if v := got.Query["a"]; len(v) != 2 || v[0] != "1" || v[1] != "2" {
					t.Errorf("query[a] = %v", v)
				}
				if got.Inflight != 1 || r.header.Get(HeaderInflight) != "1" {
					t.Errorf("inflight = %d, header %q", got.Inflight, r.header.Get(HeaderInflight))
				}
			},
		},
		{
			name: "any path and method", method: http.MethodPut, path: "/v1/things/7", body: "plain", wantStatus: 200,
			check: func(t *testing.T, r result) {
				var got Response
				if err := json.Unmarshal(r.body, &got); err != nil {
					t.Fatal(err)
				}
				if got.Method != "PUT" || got.Path != "/v1/things/7" || got.Body != "plain" {
					t.Errorf("got %+v", got)
				}
			},
		},
		{
			name: "post to health is echoed", method: http.MethodPost, path: "/health", body: "x", wantStatus: 200,
			check: func(t *testing.T, r result) {
				var got Response
				if err := json.Unmarshal(r.body, &got); err != nil {
					t.Fatal(err)
				}
				if got.Body != "x" {
					t.Errorf("body = %q", got.Body)
				}
			},
		},
		{
			name: "status", method: http.MethodGet, path: "/echo",
			header: map[string]string{HeaderStatus: "503"}, wantStatus: 503,
			check: func(t *testing.T, r result) {
				var got Response
				if err := json.Unmarshal(r.body, &got); err != nil {
					t.Fatal(err)
				}
				if got.Path != "/echo" {
					t.Errorf("path = %q", got.Path)
				}
			},
		},
		{
			name: "bad status", method: http.MethodGet, path: "/echo",
			header: map[string]string{HeaderStatus: "abc"}, wantStatus: 400,
		},
		{
			name: "bad delay", method: http.MethodGet, path: "/echo",
			header: map[string]string{HeaderDelay: "soon"}, wantStatus: 400,
		},
		{
			name: "delay", method: http.MethodGet, path: "/echo",
			header: map[string]string{HeaderDelay: "150ms"}, wantStatus: 200,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r, err := do(t, context.Background(), tc.method, srv.URL+tc.path, tc.body, tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", r.status, tc.wantStatus, r.body)
			}
			if d := tc.header[HeaderDelay]; d != "" && tc.wantStatus == 200 {
				want, _ := time.ParseDuration(d)
				if el := time.Since(start); el < want {
					t.Errorf("answered after %s, want at least %s", el, want)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// TestDelayCancelled checks that a delayed request ends when its client goes
// away instead of holding the handler for the whole delay.
func TestDelayCancelled(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := do(t, ctx, http.MethodGet, srv.URL+"/echo", "", map[string]string{HeaderDelay: "1h"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	// The handler must have left: a fresh request sees only itself.
	waitFor(t, 10*time.Second, func() bool {
		r, err := do(t, context.Background(), http.MethodGet, srv.URL+"/echo", "", nil)
		return err == nil && r.header.Get(HeaderInflight) == "1"
	})
}

// TestInflight holds slow requests open and checks that a fast request counts
// them, then that the count falls back once they are gone.
func TestInflight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		slow int
	}{
		{"none", 0},
		{"one", 1},
		{"five", 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(Handler())
			t.Cleanup(srv.Close)

			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range tc.slow {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = do(t, ctx, http.MethodGet, srv.URL+"/slow", "", map[string]string{HeaderDelay: "1h"})
				}()
			}
			want := strconv.Itoa(tc.slow + 1)
			waitFor(t, 15*time.Second, func() bool {
				r, err := do(t, context.Background(), http.MethodGet, srv.URL+"/fast", "", nil)
				if err != nil {
					t.Fatal(err)
				}
				var body Response
				if err := json.Unmarshal(r.body, &body); err != nil {
					t.Fatal(err)
				}
				if strconv.FormatInt(body.Inflight, 10) != r.header.Get(HeaderInflight) {
					t.Fatalf("body inflight %d != header %q", body.Inflight, r.header.Get(HeaderInflight))
				}
				return r.header.Get(HeaderInflight) == want
			})
			cancel()
			wg.Wait()
			waitFor(t, 15*time.Second, func() bool {
				r, err := do(t, context.Background(), http.MethodGet, srv.URL+"/fast", "", nil)
				return err == nil && r.header.Get(HeaderInflight) == "1"
			})
		})
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, addr) }()

	waitFor(t, 15*time.Second, func() bool {
		r, err := do(t, context.Background(), http.MethodGet, "http://"+addr+"/health", "", nil)
		return err == nil && r.status == 200
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRunListenError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Run(context.Background(), ln.Addr().String())
	if err == nil || !strings.HasPrefix(err.Error(), "echo: listen") {
		t.Fatalf("Run on a busy port = %v, want echo: listen error", err)
	}
}

func BenchmarkHandler(b *testing.B) {
	h := Handler()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/echo?x=1", strings.NewReader(`{"prompt":"hello"}`))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
