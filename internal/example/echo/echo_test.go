package echo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
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

// TestModes covers the headers that change what the function answers:
// streamed events, a streamed byte count, a discarded body, and the 400 a
// malformed value of each gets.
func TestModes(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)

	const big = MaxBodyBytes + 1<<20 // Echo-Discard takes bodies the echo would refuse
	tests := []struct {
		name       string
		body       string
		header     map[string]string
		wantStatus int
		// wantType is the Content-Type the answer must have, if set.
		wantType string
		// minTime is how long the answer must take at least.
		minTime time.Duration
		check   func(t *testing.T, r result)
	}{
		{
			name: "events", header: map[string]string{HeaderEvents: "3"}, wantStatus: 200, wantType: "text/event-stream",
			check: func(t *testing.T, r result) {
				if want := "id: 1\ndata: 1\n\nid: 2\ndata: 2\n\nid: 3\ndata: 3\n\n"; string(r.body) != want {
					t.Errorf("body = %q, want %q", r.body, want)
				}
				if cc := r.header.Get("Cache-Control"); cc != "no-cache" {
					t.Errorf("Cache-Control = %q, want no-cache", cc)
				}
			},
		},
		{
			name: "events with an interval", header: map[string]string{HeaderEvents: "3", HeaderInterval: "30ms"},
			wantStatus: 200, wantType: "text/event-stream", minTime: 60 * time.Millisecond,
			check: func(t *testing.T, r result) {
				if n := strings.Count(string(r.body), "data: "); n != 3 {
					t.Errorf("%d events, want 3: %q", n, r.body)
				}
			},
		},
		{
			name: "zero events", header: map[string]string{HeaderEvents: "0"}, wantStatus: 200, wantType: "text/event-stream",
			check: func(t *testing.T, r result) {
				if len(r.body) != 0 {
					t.Errorf("body = %q, want empty", r.body)
				}
			},
		},
		{
			name: "interval alone is a plain echo", header: map[string]string{HeaderInterval: "1h"}, wantStatus: 200, wantType: "application/json",
		},
		{
			name: "bytes across several pieces", header: map[string]string{HeaderBytes: "200000"}, wantStatus: 200, wantType: "application/octet-stream",
			check: func(t *testing.T, r result) {
				if cl := r.header.Get("Content-Length"); cl != "200000" {
					t.Errorf("Content-Length = %q, want 200000", cl)
				}
				if len(r.body) != 200000 {
					t.Fatalf("%d bytes, want 200000", len(r.body))
				}
				for i, b := range r.body {
					if want := byte('a' + i%len(chunk)%26); b != want {
						t.Fatalf("byte %d = %q, want %q", i, b, want)
					}
				}
			},
		},
		{
			name: "zero bytes", header: map[string]string{HeaderBytes: "0"}, wantStatus: 200, wantType: "application/octet-stream",
			check: func(t *testing.T, r result) {
				if len(r.body) != 0 {
					t.Errorf("%d bytes, want 0", len(r.body))
				}
			},
		},
		{
			name: "discard", body: strings.Repeat("x", big), header: map[string]string{HeaderDiscard: "1"}, wantStatus: 200, wantType: "application/json",
			check: func(t *testing.T, r result) {
				var got struct{ Bytes int64 }
				if err := json.Unmarshal(r.body, &got); err != nil {
					t.Fatalf("%v in %q", err, r.body)
				}
				if got.Bytes != big {
					t.Errorf("bytes = %d, want %d", got.Bytes, big)
				}
			},
		},
		{
			name: "discard an empty body", header: map[string]string{HeaderDiscard: "yes"}, wantStatus: 200, wantType: "application/json",
			check: func(t *testing.T, r result) {
				if got := strings.TrimSpace(string(r.body)); got != `{"bytes":0}` {
					t.Errorf("body = %s", got)
				}
			},
		},
		{name: "negative events", header: map[string]string{HeaderEvents: "-1"}, wantStatus: 400},
		{name: "events not a number", header: map[string]string{HeaderEvents: "many"}, wantStatus: 400},
		{name: "interval not a duration", header: map[string]string{HeaderEvents: "2", HeaderInterval: "soon"}, wantStatus: 400},
		{name: "interval without a unit", header: map[string]string{HeaderEvents: "2", HeaderInterval: "50"}, wantStatus: 400},
		{name: "negative interval", header: map[string]string{HeaderEvents: "2", HeaderInterval: "-5ms"}, wantStatus: 400},
		{name: "negative bytes", header: map[string]string{HeaderBytes: "-1"}, wantStatus: 400},
		{name: "bytes with a unit", header: map[string]string{HeaderBytes: "1k"}, wantStatus: 400},
		{name: "bytes beyond int64", header: map[string]string{HeaderBytes: "9223372036854775808"}, wantStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			r, err := do(t, context.Background(), http.MethodPost, srv.URL+"/echo", tc.body, tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", r.status, tc.wantStatus, r.body)
			}
			if tc.wantStatus == http.StatusBadRequest {
				// The error names the header at fault, so a misused header is
				// told apart from a status the caller asked for.
				var e struct{ Error string }
				if err := json.Unmarshal(r.body, &e); err != nil {
					t.Fatalf("400 body %q is not a JSON error: %v", r.body, err)
				}
				named := false
				for h := range tc.header {
					named = named || strings.Contains(e.Error, h)
				}
				if !named {
					t.Errorf("error %q names none of the headers sent", e.Error)
				}
			}
			if ct := r.header.Get("Content-Type"); tc.wantType != "" && ct != tc.wantType {
				t.Errorf("Content-Type = %q, want %q", ct, tc.wantType)
			}
			if el := time.Since(start); el < tc.minTime {
				t.Errorf("answered after %s, want at least %s", el, tc.minTime)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// writeTimes records when each Write to the wrapped ResponseWriter began.
// Unwrap lets http.NewResponseController reach the real writer's Flush.
type writeTimes struct {
	http.ResponseWriter
	mu sync.Mutex
	at []time.Time
}

func (w *writeTimes) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.at = append(w.at, time.Now())
	w.mu.Unlock()
	return w.ResponseWriter.Write(p)
}

func (w *writeTimes) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *writeTimes) times() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.at)
}

// TestEventsFlushed checks that each event reaches the client on its own,
// before the next one is even written: a stream buffered in the function
// would deliver them all at the end, and then an SSE client (an LLM chat UI)
// would see nothing until the answer was complete. Each event is one Write,
// so the writes' start times are the events' write times; the only waiting
// is the function's own interval.
func TestEventsFlushed(t *testing.T) {
	t.Parallel()
	const events, interval = 3, 200 * time.Millisecond
	rec := make(chan *writeTimes, 1)
	h := Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wt := &writeTimes{ResponseWriter: w}
		rec <- wt
		h.ServeHTTP(wt, r)
	}))
	t.Cleanup(srv.Close)

	req, err := http.NewRequest(http.MethodGet, srv.URL+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(HeaderEvents, strconv.Itoa(events))
	req.Header.Set(HeaderInterval, interval.String())
	sent := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	var arrived []time.Time
	var data []string
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			arrived = append(arrived, time.Now())
			data = append(data, strings.TrimSpace(v))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"1", "2", "3"}; !slices.Equal(data, want) {
		t.Fatalf("events %q, want %q", data, want)
	}
	written := (<-rec).times()
	if len(written) != events {
		t.Fatalf("%d writes, want one per event (%d)", len(written), events)
	}
	for i := range events - 1 {
		if !arrived[i].Before(written[i+1]) {
			t.Errorf("event %d arrived %s after sending, not before event %d was written (%s): the stream is buffered",
				i+1, arrived[i].Sub(sent), i+2, written[i+1].Sub(sent))
		}
	}
	if spread, want := arrived[events-1].Sub(arrived[0]), time.Duration(events-1)*interval; spread < want {
		t.Errorf("events arrived within %s, want at least %s apart from first to last", spread, want)
	}
}

// TestEventsCancelled checks that an event stream ends when its client goes
// away instead of holding the handler for every remaining interval.
func TestEventsCancelled(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(HeaderEvents, "1000")
	req.Header.Set(HeaderInterval, "1h")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "id: 1\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	cancel()
	resp.Body.Close()
	waitFor(t, 10*time.Second, func() bool {
		r, err := do(t, context.Background(), http.MethodGet, srv.URL+"/echo", "", nil)
		return err == nil && r.header.Get(HeaderInflight) == "1"
	})
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
