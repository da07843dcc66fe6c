package model

import (
	"encoding/json"
	"slices"
	"time"
)

// Deployment places one function version onto GPUs. There is at most one
// deployment per function version.
type Deployment struct {
	ID                string         `json:"deploymentId"`
	FunctionID        string         `json:"functionId"`
	FunctionVersionID string         `json:"functionVersionId"`
	NCAID             string         `json:"ncaId"`
	FunctionStatus    FunctionStatus `json:"functionStatus"`
	Specs             []GPUSpec      `json:"deploymentSpecifications"`
	HealthInfo        []HealthInfo   `json:"healthInfo,omitempty"`
	CreatedAt         time.Time      `json:"createdAt"`
	// EverActive records that the deployment once reached ACTIVE, which is what
	// separates DEPLOYING from DEGRADED when instances are missing.
	EverActive bool `json:"everActive,omitempty"`

	Revision int64 `json:"-"`
}

// GPUSpec is one deploymentSpecification: how many instances of which GPU
// shape, and where they may run.
type GPUSpec struct {
	ID                    string          `json:"gpuSpecificationId,omitempty"`
	GPU                   string          `json:"gpu"`
	InstanceType          string          `json:"instanceType,omitempty"`
	MinInstances          int             `json:"minInstances"`
	MaxInstances          int             `json:"maxInstances"`
	MaxRequestConcurrency *int            `json:"maxRequestConcurrency,omitempty"` // nil: the default
	Backend               string          `json:"backend,omitempty"`
	Clusters              []string        `json:"clusters,omitempty"`
	Regions               []string        `json:"regions,omitempty"`
	Attributes            []string        `json:"attributes,omitempty"`
	AvailabilityZones     []string        `json:"availabilityZones,omitempty"`
	Configuration         json.RawMessage `json:"configuration,omitempty"`
	// PreferredOrder, CPUArch, OS, DriverVersion, Storage, SystemMemory and
	// GPUMemory are NVCF's, as configuration (Helm values) is: Gantry does
	// not support them yet, and decodes them only so that validate refuses
	// them rather than drop them, so no stored spec has them set.
	PreferredOrder int    `json:"preferredOrder,omitempty"`
	CPUArch        string `json:"cpuArch,omitempty"`
	OS             string `json:"os,omitempty"`
	DriverVersion  string `json:"driverVersion,omitempty"`
	Storage        string `json:"storage,omitempty"`
	SystemMemory   string `json:"systemMemory,omitempty"`
	GPUMemory      string `json:"gpuMemory,omitempty"`
	// AutoscalingPolicy and Autoscaling are NVCF's: the platform's scaling
	// defaults (empty or PLATFORM_CONFIGURATION), or the spec's own.
	AutoscalingPolicy AutoscalingPolicy         `json:"autoscalingConfigurationPolicy,omitempty"`
	Autoscaling       *AutoscalingConfiguration `json:"autoscalingConfiguration,omitempty"`
	// DesiredInstances, RunningInstances and ScalingDecisions are Gantry's,
	// shown on reads and never stored with the spec: how many instances the
	// autoscaler wants now (between minInstances and maxInstances), how many
	// run, and why the count last changed.
	DesiredInstances *int              `json:"desiredInstances,omitempty"`
	RunningInstances *int              `json:"runningInstances,omitempty"`
	ScalingDecisions []ScalingDecision `json:"scalingDecisions,omitempty"`
}

// DefaultMaxRequestConcurrency applies when a spec leaves it unset.
const DefaultMaxRequestConcurrency = 1

// Concurrency returns the spec's request concurrency with the default applied.
func (s GPUSpec) Concurrency() int {
	if s.MaxRequestConcurrency == nil || *s.MaxRequestConcurrency <= 0 {
		return DefaultMaxRequestConcurrency
	}
	return *s.MaxRequestConcurrency
}

// Int returns a pointer to v, for optional integer fields such as
// maxRequestConcurrency, where an explicit value must differ from "not set".
func Int(v int) *int { return &v }

// Shape resolves the spec to the instance type clusters offer and the GPUs
// per instance: an instanceType names its count, whatever its provider
// prefix (NCP.GPU.H100_1x is ON-PREM.GPU.H100_1x); without one, one GPU of
// the spec's model. The spec keeps the name as the caller sent it.
func (s GPUSpec) Shape() (instanceType string, gpuCount int) {
	if m, n, ok := ParseInstanceTypeName(s.InstanceType); ok {
		return InstanceTypeName(m, n), n
	}
	return InstanceTypeName(s.GPU, 1), 1
}

// Allows reports whether the spec lets an instance be placed on c: c takes
// placements, and it satisfies the spec's own backend, clusters, regions,
// availabilityZones and attributes. Schedulers and policies only ever
// narrow this further.
func (s GPUSpec) Allows(c Cluster) bool {
	return c.Schedulable() && s.Selects(c)
}

// Selects reports whether c satisfies the spec's own backend, clusters,
// regions, availabilityZones and attributes, whatever c's state. An
// attribute is a capability the cluster must have been registered with
// (NVCF's attributes select clusters the same way).
func (s GPUSpec) Selects(c Cluster) bool {
	if s.Backend != "" && s.Backend != c.GroupName && s.Backend != c.GroupID {
		return false
	}
	if len(s.Clusters) > 0 && !slices.Contains(s.Clusters, c.ID) && !slices.Contains(s.Clusters, c.Name) {
		return false
	}
	if len(s.Regions) > 0 && !slices.Contains(s.Regions, c.Region) {
		return false
	}
	if len(s.AvailabilityZones) > 0 && !slices.Contains(s.AvailabilityZones, c.Zone) {
		return false
	}
	return len(s.MissingCapabilities(c)) == 0
}

// MissingCapabilities returns the spec's attributes that are not among c's
// capabilities, in the spec's order; none when c has them all.
func (s GPUSpec) MissingCapabilities(c Cluster) []string {
	var out []string
	for _, a := range s.Attributes {
		if !slices.Contains(c.Capabilities, a) {
			out = append(out, a)
		}
	}
	return out
}

// HealthInfo explains why part of a deployment is not healthy, for example an
// instance that cannot be placed or one that keeps crashing.
type HealthInfo struct {
	GPU          string `json:"gpu"`
	Backend      string `json:"backend,omitempty"`
	InstanceType string `json:"instanceType,omitempty"`
	Error        string `json:"error"`
}
