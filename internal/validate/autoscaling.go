package validate

import (
	"math"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

// MaxStickiness is the longest stickiness window NVCF allows.
const MaxStickiness = time.Hour

// checkAutoscaling applies NVCF's autoscaling rules to a spec: a known
// policy; a custom configuration only with the custom policy; scale-up
// factors above 1 and scale-down factors below it (and above 0); thresholds
// of 0-100 percent; stickiness windows of at most PT1H whose threshold is
// shorter than their size.
func checkAutoscaling(p *problems, prefix string, s *model.GPUSpec) {
	switch s.AutoscalingPolicy {
	case "", model.AutoscalingPlatform, model.AutoscalingCustom:
	default:
		p.addf("%sautoscalingConfigurationPolicy %s is invalid: use %s (the platform's defaults) or %s (the spec's autoscalingConfiguration)",
			prefix, quote(string(s.AutoscalingPolicy)), model.AutoscalingPlatform, model.AutoscalingCustom)
		return
	}
	if s.AutoscalingPolicy == model.AutoscalingCustom && s.Autoscaling == nil {
		p.addf("%sautoscalingConfigurationPolicy %s needs an autoscalingConfiguration with scaleUpDetails and/or scaleDownDetails",
			prefix, model.AutoscalingCustom)
	}
	a := s.Autoscaling
	if a == nil {
		return
	}
	if s.AutoscalingPolicy == model.AutoscalingPlatform {
		p.addf("%sautoscalingConfiguration is set but autoscalingConfigurationPolicy is %s: send %s to use it, or leave the configuration out",
			prefix, model.AutoscalingPlatform, model.AutoscalingCustom)
	}
	if a.ScaleUp == nil && a.ScaleDown == nil {
		p.addf("%sautoscalingConfiguration is empty: give scaleUpDetails and/or scaleDownDetails, e.g. "+
			`{"scaleUpDetails":{"factor":2,"threshold":80}}`, prefix)
	}
	checkScaling(p, prefix+"autoscalingConfiguration.scaleUpDetails.", a.ScaleUp, true)
	checkScaling(p, prefix+"autoscalingConfiguration.scaleDownDetails.", a.ScaleDown, false)
}

func checkScaling(p *problems, prefix string, d *model.ScalingDetails, up bool) {
	if d == nil {
		return
	}
	switch {
	case math.IsNaN(d.Factor) || math.IsInf(d.Factor, 0):
		p.addf("%sfactor is not a number", prefix)
	case up && d.Factor <= 1:
		p.addf("%sfactor %g is invalid: a scale-up factor multiplies the instance count, so it must be greater than 1, e.g. 2", prefix, d.Factor)
	case up && d.Factor > 100:
		p.addf("%sfactor %g is invalid: use at most 100", prefix, d.Factor)
	case !up && (d.Factor <= 0 || d.Factor >= 1):
		p.addf("%sfactor %g is invalid: a scale-down factor must be greater than 0 and less than 1, e.g. 0.5", prefix, d.Factor)
	}
	if d.Threshold < 0 || d.Threshold > 100 {
		p.addf("%sthreshold %d is invalid: it is a utilization percentage, 0-100", prefix, d.Threshold)
	}
	if d.Metric != "" {
		p.addf("%smetric %s is not supported: Gantry scales on utilization (requests queued and in flight over capacity); leave metric out", prefix, quote(d.Metric))
	}
	st := d.Stickiness
	if st == nil {
		return
	}
	size, serr := parseISODuration(st.Size)
	if serr != "" {
		p.addf("%sstickiness.size %s is invalid: %s; %s", prefix, quote(st.Size), serr, durationForms)
	}
	th, terr := parseISODuration(st.Threshold)
	if terr != "" {
		p.addf("%sstickiness.threshold %s is invalid: %s; %s", prefix, quote(st.Threshold), terr, durationForms)
	}
	if serr != "" || terr != "" {
		return
	}
	switch {
	case size <= 0 || size > MaxStickiness:
		p.addf("%sstickiness.size %s is invalid: use more than PT0S and at most PT1H", prefix, quote(st.Size))
	case th >= size:
		p.addf("%sstickiness.threshold %s is invalid: it must be shorter than stickiness.size %s", prefix, quote(st.Threshold), quote(st.Size))
	}
}
