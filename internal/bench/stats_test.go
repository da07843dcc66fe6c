package bench

import (
	"testing"
	"time"
)

// ms builds samples 1ms, 2ms, ... nms in reverse order, so Summarize has to
// sort them.
func ms(n int) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = time.Duration(n-i) * time.Millisecond
	}
	return s
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	sorted := func(n int) []time.Duration {
		s := ms(n)
		for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
			s[i], s[j] = s[j], s[i]
		}
		return s
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"no samples", nil, 50, 0},
		{"one sample is every percentile", sorted(1), 99, time.Millisecond},
		{"p50 of two is the lower", sorted(2), 50, time.Millisecond},
		{"p50 of odd count is the middle", sorted(5), 50, 3 * time.Millisecond},
		{"p50 of 100", sorted(100), 50, 50 * time.Millisecond},
		{"p99 of 100 is the 99th, not the max", sorted(100), 99, 99 * time.Millisecond},
		{"p99 of 1000", sorted(1000), 99, 990 * time.Millisecond},
		{"p99 of 10 is the max", sorted(10), 99, 10 * time.Millisecond},
		{"p100 is the max", sorted(7), 100, 7 * time.Millisecond},
		{"tiny p is the min", sorted(7), 0.001, time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Percentile(tc.samples, tc.p); got != tc.want {
				t.Errorf("Percentile(%d samples, %v) = %v, want %v", len(tc.samples), tc.p, got, tc.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		samples []time.Duration
		elapsed time.Duration
		want    Summary
	}{
		{"empty", nil, time.Second, Summary{}},
		{"no elapsed time gives no rate", ms(3), 0, Summary{Count: 3, Min: time.Millisecond, P50: 2 * time.Millisecond,
			P90: 3 * time.Millisecond, P99: 3 * time.Millisecond, Max: 3 * time.Millisecond}},
		{"hundred samples over two seconds", ms(100), 2 * time.Second, Summary{Count: 100, Min: time.Millisecond,
			P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond, RPS: 50}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Summarize(tc.samples, tc.elapsed); got != tc.want {
				t.Errorf("Summarize = %+v\nwant        %+v", got, tc.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []float64
		want   float64
	}{
		{"none", nil, 0},
		{"one", []float64{4}, 4},
		{"odd count takes the middle", []float64{9, 1, 5}, 5},
		{"even count averages the middle two", []float64{8, 1, 2, 100}, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Median(tc.values); got != tc.want {
				t.Errorf("Median(%v) = %v, want %v", tc.values, got, tc.want)
			}
		})
	}
	// Durations average the middle two with integer division.
	if got := Median([]time.Duration{3, 1, 2, 4}); got != 2 {
		t.Errorf("Median of durations 1..4 = %d, want 2 (integer mean of 2 and 3)", got)
	}
}
