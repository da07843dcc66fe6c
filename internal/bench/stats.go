package bench

import (
	"math"
	"slices"
	"time"
)

// Summary describes the latencies of one timed run.
type Summary struct {
	// Count is the number of samples summarized.
	Count int           `json:"count"`
	Min   time.Duration `json:"minNs"`
	P50   time.Duration `json:"p50Ns"`
	P90   time.Duration `json:"p90Ns"`
	P99   time.Duration `json:"p99Ns"`
	Max   time.Duration `json:"maxNs"`
	// RPS is Count divided by the run's wall time.
	RPS float64 `json:"rps"`
}

// Summarize computes exact percentiles of samples, which it sorts in place,
// and the rate of Count samples over elapsed wall time.
func Summarize(samples []time.Duration, elapsed time.Duration) Summary {
	slices.Sort(samples)
	s := Summary{
		Count: len(samples),
		P50:   Percentile(samples, 50),
		P90:   Percentile(samples, 90),
		P99:   Percentile(samples, 99),
	}
	if len(samples) > 0 {
		s.Min, s.Max = samples[0], samples[len(samples)-1]
	}
	if elapsed > 0 {
		s.RPS = float64(len(samples)) / elapsed.Seconds()
	}
	return s
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted samples by
// the nearest-rank method: the smallest sample that at least p percent of
// the samples are less than or equal to. It always returns a measured value,
// never an interpolation, so a p99 is a latency some request really had. It
// returns 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// p*n is exact for integral p and any realistic n, so the rank of p99
	// over 100 samples is 99, not 100 through a rounding error in 0.99*100.
	rank := int(math.Ceil(p * float64(n) / 100))
	return sorted[min(max(rank, 1), n)-1]
}

// Median returns the middle of values, or the mean of the two middle ones
// when there is an even number; 0 for none. It does not modify values.
func Median[T ~int64 | ~float64](values []T) T {
	n := len(values)
	if n == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(values))
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
