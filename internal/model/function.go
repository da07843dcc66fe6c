package model

import (
	"strconv"
	"strings"
	"time"
)

// FunctionStatus is the lifecycle state of one function version, as NVCF reports it.
type FunctionStatus string

// Function statuses. Only ACTIVE and DEGRADING accept invocations.
const (
	StatusInactive  FunctionStatus = "INACTIVE"
	StatusDeploying FunctionStatus = "DEPLOYING"
	StatusActive    FunctionStatus = "ACTIVE"
	StatusDegrading FunctionStatus = "DEGRADING"
	StatusDegraded  FunctionStatus = "DEGRADED"
	StatusError     FunctionStatus = "ERROR"
	StatusDeleted   FunctionStatus = "DELETED"
)

// AcceptsInvocations reports whether a function in this status may be invoked.
func (s FunctionStatus) AcceptsInvocations() bool {
	return s == StatusActive || s == StatusDegrading
}

// Function types and API body formats NVCF defines.
const (
	FunctionTypeDefault   = "DEFAULT"
	FunctionTypeStreaming = "STREAMING"
	FunctionTypeLLM       = "LLM"

	BodyFormatCustom    = "CUSTOM"
	BodyFormatPredictV2 = "PREDICT_V2"
)

// ProcessImagePrefix marks a containerImage that the process runtime runs as a
// local executable: process:///abs/path or process://name-on-PATH.
const ProcessImagePrefix = "process://"

// Function is one version of a function. NVCF has no separate "function"
// object: a function is the set of versions sharing an id, and every read
// returns versions.
//
// Models and Resources are fetched by the agent before each instance
// starts (docs/architecture.md, model delivery). HelmChart and
// HelmChartServiceName are refused on create (Gantry runs containerImage
// only); a version stored by an earlier release may still hold them, and
// cannot be deployed.
type Function struct {
	ID                   string         `json:"id"`
	VersionID            string         `json:"versionId"`
	NCAID                string         `json:"ncaId"`
	Name                 string         `json:"name"`
	Status               FunctionStatus `json:"status"`
	InferenceURL         string         `json:"inferenceUrl"`
	InferencePort        int            `json:"inferencePort,omitempty"`
	Health               *Health        `json:"health,omitempty"`
	HealthURI            string         `json:"healthUri,omitempty"`
	ContainerImage       string         `json:"containerImage,omitempty"`
	ContainerArgs        string         `json:"containerArgs,omitempty"`
	ContainerEnvironment []EnvVar       `json:"containerEnvironment,omitempty"`
	Models               []Artifact     `json:"models,omitempty"`
	Resources            []Artifact     `json:"resources,omitempty"`
	HelmChart            string         `json:"helmChart,omitempty"`
	HelmChartServiceName string         `json:"helmChartServiceName,omitempty"`
	APIBodyFormat        string         `json:"apiBodyFormat,omitempty"`
	Tags                 []string       `json:"tags,omitempty"`
	Description          string         `json:"description,omitempty"`
	FunctionType         string         `json:"functionType,omitempty"`
	RateLimit            *RateLimit     `json:"rateLimit,omitempty"`
	Telemetries          *Telemetries   `json:"telemetries,omitempty"`
	Secrets              []string       `json:"secrets,omitempty"` // names only; values live in the secret store
	// SecretsGeneration counts updates of the secrets after creation
	// (Gantry's); instances started before the latest are replaced.
	SecretsGeneration int64            `json:"secretsGeneration,omitempty"`
	CreatedAt         time.Time        `json:"createdAt"`
	ActiveInstances   []InstanceDetail `json:"activeInstances,omitempty"`
	// OwnedByDifferentAccount is set on reads of a function another account
	// owns and shares with the caller's (ncaId is the owner's then).
	OwnedByDifferentAccount bool `json:"ownedByDifferentAccount,omitempty"`

	// Revision is the store revision this copy was read at, for optimistic
	// concurrency. It never leaves the server.
	Revision int64 `json:"-"`
}

// Health describes how the platform checks that an instance is ready.
type Health struct {
	Protocol           string `json:"protocol,omitempty"` // HTTP (default) or gRPC
	URI                string `json:"uri,omitempty"`
	Port               int    `json:"port,omitempty"`
	Timeout            string `json:"timeout,omitempty"` // ISO-8601 duration, e.g. PT10S
	ExpectedStatusCode int    `json:"expectedStatusCode,omitempty"`
}

// EnvVar is one entry of containerEnvironment.
type EnvVar struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Artifact is a model or resource reference NVCF attaches to a function.
// Gantry takes http(s) URLs as URI (validate.checkArtifacts); the agent
// fetches each into its cache and shows it to the instance under its
// models or resources directory, in a directory named Name.
type Artifact struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	URI     string `json:"uri"`
}

// Telemetries names the telemetry endpoints (ids of /v2/nvcf/telemetries
// of the function's account) NVCF exports a function's logs, metrics and
// traces to. Gantry's agent exports logs and metrics to them.
type Telemetries struct {
	LogsTelemetryID    string `json:"logsTelemetryId,omitempty"`
	MetricsTelemetryID string `json:"metricsTelemetryId,omitempty"`
	TracesTelemetryID  string `json:"tracesTelemetryId,omitempty"`
}

// RateLimit is NVCF's per-function invocation rate limit.
type RateLimit struct {
	RateLimit       string   `json:"rateLimit"` // e.g. "100-S", "1000-M"
	ExemptedNCAIDs  []string `json:"exemptedNcaIds,omitempty"`
	SyncCheck       bool     `json:"syncCheck,omitempty"`
	RateLimitStatus string   `json:"rateLimitStatus,omitempty"`
}

// Secret is a name and value pair as the API receives it. Values are sealed by
// the secret store before anything is persisted and are never returned.
type Secret struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// InstanceDetail is the shape NVCF uses for a function's activeInstances.
type InstanceDetail struct {
	InstanceID        string         `json:"instanceId"`
	FunctionID        string         `json:"functionId"`
	FunctionVersionID string         `json:"functionVersionId"`
	Backend           string         `json:"backend,omitempty"`
	GPU               string         `json:"gpu,omitempty"`
	InstanceType      string         `json:"instanceType,omitempty"`
	InstanceStatus    InstanceStatus `json:"instanceStatus"`
	NCAID             string         `json:"ncaId"`
	Location          string         `json:"location,omitempty"`
	InstanceCreatedAt time.Time      `json:"instanceCreatedAt"`
	InstanceUpdatedAt time.Time      `json:"instanceUpdatedAt"`
}

// Window parses RateLimit ("<count>-<S|M|H|D>"): count calls per window.
// ok is false for a malformed limit (the API refuses those).
func (r RateLimit) Window() (count int, window time.Duration, ok bool) {
	n, unit, found := strings.Cut(r.RateLimit, "-")
	count, err := strconv.Atoi(n)
	if !found || err != nil || count < 1 {
		return 0, 0, false
	}
	switch unit {
	case "S":
		window = time.Second
	case "M":
		window = time.Minute
	case "H":
		window = time.Hour
	case "D":
		window = 24 * time.Hour
	default:
		return 0, 0, false
	}
	return count, window, true
}
