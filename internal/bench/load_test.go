package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestLoadCountsErrors(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 == 0 {
			http.Error(w, "queue full", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)

	res := Load{
		Client:      srv.Client(),
		Concurrency: 3,
		Requests:    30,
		NewRequest: func(ctx context.Context) (*http.Request, error) {
			return post(ctx, srv.URL, "", jsonBody(64))
		},
	}.Run(context.Background())

	if res.Requests != 30 || res.Errors != 10 || res.Latency.Count != 20 {
		t.Errorf("requests %d, errors %d, latency samples %d; want 30, 10, 20", res.Requests, res.Errors, res.Latency.Count)
	}
	if !strings.Contains(res.FirstError, "HTTP 503: queue full") {
		t.Errorf("first error %q does not say what failed", res.FirstError)
	}
}

func TestJSONBodySize(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 5, 10, 11, 1024} {
		if got := len(jsonBody(size)); got != size {
			t.Errorf("jsonBody(%d) is %d bytes", size, got)
		}
	}
}
