// Package autoscale sizes every GPU spec between its minInstances and
// maxInstances from the load the platform observes: the calls queued and in
// flight against the capacity of the spec's instances (maxRequestConcurrency
// each). The leading control-plane replica runs the Scaler; it writes each
// version's desired counts to the store (model.Scale), and the reconciler
// creates, places and releases instances to match.
//
// The platform's policy reacts to a burst at once and scales down slowly:
// the count is the most any moment of the last scale-down delay needed, so
// a spec shrinks (to zero, with minInstances 0) only after that long with
// less load. A CUSTOM_CONFIGURATION multiplies the count by its factors
// when utilization crosses its thresholds, optionally only after the
// condition held for its stickiness.
package autoscale

import (
	"fmt"
	"math"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/validate"
)

// TargetUtilization is the share of its capacity the platform's policy
// lets a spec's instances run at before it adds instances (Knative's
// default target is 70% as well).
const TargetUtilization = 0.7

// Policy is what bounds and shapes one spec's decisions.
type Policy struct {
	Min, Max    int
	Concurrency int
	Custom      *model.AutoscalingConfiguration // nil: the platform's policy
	// ScaleDownDelay is how long a spec must need fewer instances before
	// any are removed.
	ScaleDownDelay time.Duration
}

// sample is one observation of a spec.
type sample struct {
	at     time.Time
	demand float64
	want   int  // instances this moment's demand needs (what scale-down looks at)
	grow   int  // instances the demand that lasted needs (what scale-up looks at)
	up     bool // custom policy: scale-up condition held
	down   bool // custom policy: scale-down condition held
}

// spec is the memory one spec's decisions need.
type spec struct {
	current int
	changed time.Time // when current last changed (or the spec was first seen)
	samples []sample
}

// newSpec starts from the count the spec has now, as if that count had
// been needed until now: a new leader continues where the old one left
// off, and scales down only after a full delay.
func newSpec(current int, now time.Time) *spec {
	return &spec{current: current, changed: now, samples: []sample{{at: now, want: current}}}
}

// decide takes one observation of demand (calls queued and in flight) and
// returns the spec's desired count and, when it changed, why.
func (s *spec) decide(p Policy, now time.Time, demand float64) (int, string) {
	conc := float64(max(p.Concurrency, 1))
	util := math.Inf(1) // demand on no capacity
	if demand == 0 {
		util = 0
	} else if s.current > 0 {
		util = demand / (float64(s.current) * conc) * 100
	}
	smp := sample{at: now, demand: demand}
	if c := p.Custom; c != nil {
		smp.up = c.ScaleUp != nil && util >= float64(c.ScaleUp.Threshold) && demand > 0
		smp.down = c.ScaleDown != nil && util <= float64(c.ScaleDown.Threshold)
	}
	s.samples = append(s.samples, smp)
	s.trim(p, now)
	// From zero, any demand needs an instance at once; above it, only
	// demand that lasted buys more (see sustained). Any moment's demand
	// keeps what runs.
	last := &s.samples[len(s.samples)-1]
	last.want, last.grow = needed(demand, p.Concurrency), needed(demand, p.Concurrency)
	if s.current > 0 {
		last.grow = needed(s.sustained(), p.Concurrency)
	}

	next, why := s.current, ""
	if p.Custom == nil {
		next, why = s.platform(p, now, util, demand)
	} else {
		next, why = s.custom(p, now, util, demand)
	}
	next = min(max(next, p.Min), p.Max)
	if next == s.current {
		return s.current, ""
	}
	if why == "" {
		why = fmt.Sprintf("bounds %d-%d", p.Min, p.Max)
	}
	// Each step of a custom policy must earn its stickiness anew: held
	// only looks at what came after the change.
	s.current, s.changed = next, now
	return next, why
}

// needed is how many instances demand needs at the target utilization,
// an instance taking at least one request: with maxRequestConcurrency 1,
// one waiting request is one instance, not two (GPUs are too dear for a
// spare slot of headroom).
func needed(demand float64, concurrency int) int {
	per := max(float64(max(concurrency, 1))*TargetUtilization, 1)
	return int(math.Ceil(demand / per))
}

// sustained is the demand the last two looks agree on (the lower): a call
// caught moving from one slot to the next is briefly counted twice, and
// one look must not buy an instance for it. A real rise shows in both
// within a period.
func (s *spec) sustained() float64 {
	n := len(s.samples)
	if n < 2 {
		return s.samples[n-1].demand
	}
	return min(s.samples[n-1].demand, s.samples[n-2].demand)
}

// platform: the most instances any moment within the scale-down delay
// needed at the target utilization.
func (s *spec) platform(p Policy, now time.Time, util, demand float64) (int, string) {
	peak := 0
	for _, smp := range s.samples {
		peak = max(peak, smp.want)
	}
	latest := s.samples[len(s.samples)-1].grow
	switch {
	case latest > s.current:
		return latest, fmt.Sprintf("utilization %s with %.0f requests queued or in flight", pct(util), demand)
	case peak < s.current && peak == 0:
		return 0, fmt.Sprintf("idle for %v", p.ScaleDownDelay)
	case peak < s.current:
		return peak, fmt.Sprintf("at most %d instances needed over the last %v", peak, p.ScaleDownDelay)
	}
	return s.current, ""
}

// custom: NVCF's factors and thresholds, each condition held for its
// stickiness threshold within its window (or, for scaling down without
// stickiness, for the whole scale-down delay).
func (s *spec) custom(p Policy, now time.Time, util, demand float64) (int, string) {
	c := p.Custom
	if s.current == 0 && demand > 0 {
		// A call waits at zero instances: no stickiness holds it up.
		return max(1, s.samples[len(s.samples)-1].grow), fmt.Sprintf("%.0f requests wait at zero instances", demand)
	}
	if c.ScaleUp != nil && s.held(now, c.ScaleUp.Stickiness, 0, func(x sample) bool { return x.up }) {
		next := max(s.current+1, int(math.Ceil(float64(s.current)*c.ScaleUp.Factor)))
		return next, fmt.Sprintf("utilization %s >= scale-up threshold %d%%", pct(util), c.ScaleUp.Threshold)
	}
	if c.ScaleUp == nil {
		// Only scale-down is custom: scale up as the platform does.
		if want := s.samples[len(s.samples)-1].grow; want > s.current {
			return want, fmt.Sprintf("utilization %s with %.0f requests queued or in flight", pct(util), demand)
		}
	}
	if c.ScaleDown != nil && s.current > 0 && s.held(now, c.ScaleDown.Stickiness, p.ScaleDownDelay, func(x sample) bool { return x.down }) {
		next := min(s.current-1, int(math.Floor(float64(s.current)*c.ScaleDown.Factor)))
		// Never below what the calls in flight now need: a low
		// threshold must not take the last instance from a live call.
		if next = max(next, s.samples[len(s.samples)-1].want); next < s.current {
			return next, fmt.Sprintf("utilization %s <= scale-down threshold %d%%", pct(util), c.ScaleDown.Threshold)
		}
	}
	if c.ScaleDown == nil && s.current > 0 && now.Sub(s.changed) >= p.ScaleDownDelay {
		// Only scale-up is custom: scale down as the platform does, once
		// the last change is a delay old (a factor overshoots what the
		// load needed, by design).
		peak := 0
		for _, smp := range s.samples {
			peak = max(peak, smp.want)
		}
		if peak < s.current {
			return peak, fmt.Sprintf("at most %d instances needed over the last %v", peak, p.ScaleDownDelay)
		}
	}
	return s.current, ""
}

// held reports whether cond has held long enough since the last change:
// for the stickiness threshold within its window, or, without stickiness,
// continuously for hold (at once when hold is 0). A sample stands for the
// time since the sample before it.
func (s *spec) held(now time.Time, st *model.Stickiness, hold time.Duration, cond func(sample) bool) bool {
	last := len(s.samples) - 1
	if !cond(s.samples[last]) {
		return false
	}
	// since is when the sample before i was taken, but never before the
	// last change.
	since := func(i int) time.Time {
		if i == 0 || s.samples[i-1].at.Before(s.changed) {
			return s.changed
		}
		return s.samples[i-1].at
	}
	if st == nil {
		start := now
		for i := last; i >= 0 && cond(s.samples[i]) && !s.samples[i].at.Before(s.changed); i-- {
			start = since(i)
		}
		return now.Sub(start) >= hold
	}
	size, threshold := stickiness(st)
	var total time.Duration
	for i := last; i >= 0 && now.Sub(s.samples[i].at) < size && s.samples[i].at.After(s.changed); i-- {
		// A sample stands for the time before it only when the one before
		// it saw the condition too: the first sample that sees it cannot
		// tell since when it held, and crediting it the whole period
		// would let a condition held for a threshold minus a period pass.
		if cond(s.samples[i]) && i > 0 && cond(s.samples[i-1]) {
			from := since(i)
			if now.Sub(from) > size {
				from = now.Add(-size)
			}
			total += s.samples[i].at.Sub(from)
		}
	}
	return total >= threshold
}

// trimSlack is how early a look may be and still count as a window's end.
const trimSlack = 100 * time.Millisecond

// trim drops samples older than any window the policy looks back over.
func (s *spec) trim(p Policy, now time.Time) {
	keep := p.ScaleDownDelay
	if c := p.Custom; c != nil {
		for _, d := range []*model.ScalingDetails{c.ScaleUp, c.ScaleDown} {
			if d != nil && d.Stickiness != nil {
				size, _ := stickiness(d.Stickiness)
				keep = max(keep, size)
			}
		}
	}
	// A sample stands until the next one (the load it saw may have lasted
	// that long), so the one in effect at the window's start stays. The
	// slack keeps a look that comes a hair early from waiting a period.
	i := 0
	for i < len(s.samples)-1 && now.Sub(s.samples[i+1].at) >= keep-trimSlack {
		i++
	}
	s.samples = s.samples[i:]
}

// stickiness reads a validated stickiness window.
func stickiness(st *model.Stickiness) (size, threshold time.Duration) {
	size, _ = validate.ParseISODuration(st.Size)
	threshold, _ = validate.ParseISODuration(st.Threshold)
	return size, threshold
}

func pct(util float64) string {
	if math.IsInf(util, 1) {
		return "unbounded (no instance running)"
	}
	return fmt.Sprintf("%.0f%%", util)
}
