package model

import "time"

// AutoscalingPolicy is a spec's autoscalingConfigurationPolicy: the
// platform's defaults, or the spec's own autoscalingConfiguration.
type AutoscalingPolicy string

const (
	AutoscalingPlatform AutoscalingPolicy = "PLATFORM_CONFIGURATION"
	AutoscalingCustom   AutoscalingPolicy = "CUSTOM_CONFIGURATION"
)

// AutoscalingConfiguration is NVCF's custom autoscaling: when utilization
// (requests queued and in flight over the running instances' capacity, in
// percent) reaches scaleUpDetails.threshold the instance count is multiplied
// by its factor (> 1); when it falls to scaleDownDetails.threshold, by that
// factor (< 1).
type AutoscalingConfiguration struct {
	ScaleUp   *ScalingDetails `json:"scaleUpDetails,omitempty"`
	ScaleDown *ScalingDetails `json:"scaleDownDetails,omitempty"`
}

// ScalingDetails is one direction of an AutoscalingConfiguration.
type ScalingDetails struct {
	Metric     string      `json:"metric,omitempty"`
	Factor     float64     `json:"factor"`
	Threshold  int         `json:"threshold"`
	Stickiness *Stickiness `json:"stickiness,omitempty"`
}

// Stickiness makes a scaling condition wait: it must have held for
// Threshold within the last Size (ISO-8601 durations, Size <= PT1H,
// Threshold < Size) before the count changes.
type Stickiness struct {
	Size      string `json:"size"`
	Threshold string `json:"threshold"`
}

// Scale is the autoscaler's record for one function version: per spec (by
// index), the instance count it wants and its latest decisions. The leader
// writes it; the reconciler sizes specs from it; the API shows it.
type Scale struct {
	FunctionVersionID string      `json:"functionVersionId"`
	DeploymentID      string      `json:"deploymentId"`
	Specs             []SpecScale `json:"specs"`
}

// SpecScale is one spec's share of a Scale.
type SpecScale struct {
	Desired   int               `json:"desired"`
	Decisions []ScalingDecision `json:"decisions,omitempty"`
}

// ScalingDecision is one change of a spec's desired instance count.
type ScalingDecision struct {
	At     time.Time `json:"at"`
	From   int       `json:"from"`
	To     int       `json:"to"`
	Reason string    `json:"reason"`
}

// MaxDecisions is how many decisions a SpecScale keeps.
const MaxDecisions = 10
