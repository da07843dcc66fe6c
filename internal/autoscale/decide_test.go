package autoscale

import (
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

// step is one observation and the count it must lead to.
type step struct {
	after  time.Duration // since the previous step
	demand float64
	want   int
}

func TestDecide(t *testing.T) {
	const delay = 10 * time.Second
	platform := Policy{Min: 0, Max: 5, Concurrency: 1, ScaleDownDelay: delay}
	up := &model.AutoscalingConfiguration{ScaleUp: &model.ScalingDetails{Factor: 2, Threshold: 80}}
	sticky := &model.AutoscalingConfiguration{ScaleUp: &model.ScalingDetails{Factor: 2, Threshold: 80,
		Stickiness: &model.Stickiness{Size: "PT10S", Threshold: "PT3S"}}}
	down := &model.AutoscalingConfiguration{ScaleDown: &model.ScalingDetails{Factor: 0.5, Threshold: 20}}
	tests := []struct {
		name   string
		policy Policy
		start  int
		steps  []step
	}{
		{"a burst from zero goes to what it needs, then on within a period", platform, 0, []step{
			{0, 0, 0}, {time.Second, 3, 3}, {time.Second, 9, 3}, {time.Second, 9, 5}}},
		{"concurrency 4 at 70%: 2.8 requests per instance", Policy{Min: 0, Max: 10, Concurrency: 4, ScaleDownDelay: delay}, 0, []step{
			{0, 1, 1}, {time.Second, 3, 1}, {time.Second, 3, 2}, {time.Second, 12, 2}, {time.Second, 12, 5}}},
		{"one look over the count does not buy an instance; two do", platform, 3, []step{
			{0, 3, 3}, {time.Second, 3, 3}, {time.Second, 4, 3}, {time.Second, 3, 3}, {time.Second, 4, 3}, {time.Second, 4, 4}}},
		{"scale down only after the delay, to the peak within it", platform, 0, []step{
			{0, 4, 4}, {time.Second, 1, 4}, {5 * time.Second, 1, 4}, {5 * time.Second, 1, 1}, {5 * time.Second, 0, 1}, {6 * time.Second, 0, 1}, {5 * time.Second, 0, 0}}},
		{"a load that comes and goes within the delay does not flap", platform, 0, []step{
			{0, 3, 3}, {3 * time.Second, 0, 3}, {3 * time.Second, 3, 3}, {3 * time.Second, 0, 3}, {3 * time.Second, 3, 3}}},
		{"minInstances is a floor, maxInstances a ceiling", Policy{Min: 2, Max: 3, Concurrency: 1, ScaleDownDelay: delay}, 2, []step{
			{0, 0, 2}, {20 * time.Second, 0, 2}, {time.Second, 50, 2}, {time.Second, 50, 3}}},
		{"a new leader keeps the count for a full delay", platform, 4, []step{
			{0, 0, 4}, {9 * time.Second, 0, 4}, {2 * time.Second, 0, 0}}},
		{"custom: over the threshold, multiply by the factor", Policy{Min: 1, Max: 16, Concurrency: 1, ScaleDownDelay: delay, Custom: up}, 1, []step{
			{0, 1, 2}, {time.Second, 2, 4}, {time.Second, 2, 4}, {time.Second, 4, 8}}},
		{"custom: from zero no stickiness holds a call up", Policy{Min: 0, Max: 16, Concurrency: 1, ScaleDownDelay: delay, Custom: sticky}, 0, []step{
			{0, 0, 0}, {time.Second, 1, 1}}},
		{"custom: scale-down never below what the calls in flight need", Policy{Min: 0, Max: 16, Concurrency: 10, ScaleDownDelay: delay, Custom: down}, 2, []step{
			{0, 1, 2}, {11 * time.Second, 1, 1}, {11 * time.Second, 1, 1}, {11 * time.Second, 0, 0}}},
		{"custom: stickiness waits for the condition to hold", Policy{Min: 1, Max: 16, Concurrency: 1, ScaleDownDelay: delay, Custom: sticky}, 1, []step{
			{0, 1, 1}, {time.Second, 1, 1}, {time.Second, 1, 1}, {time.Second, 1, 2}, {time.Second, 2, 2}, {time.Second, 0, 2}}},
		{"custom: stickiness counts from the first look that saw the condition", Policy{Min: 1, Max: 16, Concurrency: 1, ScaleDownDelay: delay, Custom: sticky}, 1, []step{
			{0, 0, 1}, {time.Second, 1, 1}, {time.Second, 1, 1}, {time.Second, 1, 1}, {time.Second, 1, 2}}},
		{"custom: under the scale-down threshold for the delay, halve", Policy{Min: 0, Max: 16, Concurrency: 1, ScaleDownDelay: delay, Custom: down}, 8, []step{
			{0, 1, 8}, {5 * time.Second, 1, 8}, {6 * time.Second, 1, 4}, {11 * time.Second, 0, 2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
			s := newSpec(tc.start, now)
			for i, st := range tc.steps {
				now = now.Add(st.after)
				got, why := s.decide(tc.policy, now, st.demand)
				if got != st.want {
					t.Fatalf("step %d (demand %v at +%v): %d instances (%q), want %d", i, st.demand, st.after, got, why, st.want)
				}
			}
		})
	}
}

func TestSplitFillsSpecsInOrder(t *testing.T) {
	specs := []model.GPUSpec{
		{MaxInstances: 2, MaxRequestConcurrency: model.Int(10)}, // 14 requests at 70%
		{MaxInstances: 3},
	}
	tests := []struct {
		demand float64
		want   []float64
	}{{0, []float64{0, 0}}, {10, []float64{10, 0}}, {20, []float64{14, 6}}}
	for _, tc := range tests {
		got := split(specs, tc.demand)
		if len(got) != 2 || got[0] != tc.want[0] || got[1] != tc.want[1] {
			t.Errorf("split(%v) = %v, want %v", tc.demand, got, tc.want)
		}
	}
}
