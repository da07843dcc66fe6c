package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestMiddleware counts invocations by function and status, leaves other
// requests alone, and files refused or unknown calls under "unknown".
func TestMiddleware(t *testing.T) {
	m := New()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("code") {
		case "404":
			w.WriteHeader(http.StatusNotFound)
		case "401":
			w.WriteHeader(http.StatusUnauthorized)
		default:
			_, _ = w.Write([]byte("ok"))
		}
	}), func(r *http.Request) (string, string, bool) {
		fn := r.URL.Query().Get("fn")
		return fn, "v1", fn != ""
	})
	for _, q := range []string{"fn=a", "fn=a", "fn=b&code=404", "fn=c&code=401", ""} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/?"+q, nil))
	}
	tests := []struct {
		fn, version, status string
		want                float64
	}{
		{"a", "v1", "200", 2},
		{"unknown", "", "404", 1},
		{"unknown", "", "401", 1},
		{"b", "v1", "404", 0},
	}
	for _, tt := range tests {
		if got := counter(t, m.invocations.WithLabelValues(tt.fn, tt.version, tt.status)); got != tt.want {
			t.Errorf("invocations{%s,%s,%s} = %v, want %v", tt.fn, tt.version, tt.status, got, tt.want)
		}
	}
	if got := counter(t, m.authFail.WithLabelValues("unauthenticated")); got != 1 {
		t.Errorf("auth failures %v, want 1", got)
	}
	if _, err := m.reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

// BenchmarkObserve is the hot path's cost per call with label children
// already resolved.
func BenchmarkObserve(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.Observe("fn", "v1", 200, 1e6, 1e5)
	}
}
