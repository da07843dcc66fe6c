package model

import (
	"encoding/json"
	"time"
)

// CreateFunctionRequest is the body of POST /v2/nvcf/functions and of
// POST /v2/nvcf/functions/{id}/versions.
type CreateFunctionRequest struct {
	Name                 string     `json:"name"`
	InferenceURL         string     `json:"inferenceUrl"`
	InferencePort        int        `json:"inferencePort,omitempty"`
	Health               *Health    `json:"health,omitempty"`
	HealthURI            string     `json:"healthUri,omitempty"`
	ContainerImage       string     `json:"containerImage,omitempty"`
	ContainerArgs        string     `json:"containerArgs,omitempty"`
	ContainerEnvironment []EnvVar   `json:"containerEnvironment,omitempty"`
	Models               []Artifact `json:"models,omitempty"`
	Resources            []Artifact `json:"resources,omitempty"`
	HelmChart            string     `json:"helmChart,omitempty"`
	HelmChartServiceName string     `json:"helmChartServiceName,omitempty"`
	APIBodyFormat        string     `json:"apiBodyFormat,omitempty"`
	Tags                 []string   `json:"tags,omitempty"`
	Description          string     `json:"description,omitempty"`
	Secrets              []Secret   `json:"secrets,omitempty"`
	FunctionType         string     `json:"functionType,omitempty"`
	RateLimit            *RateLimit `json:"rateLimit,omitempty"`
	// Telemetries names telemetry endpoints of the account; the API checks
	// that each exists and takes its signal.
	Telemetries *Telemetries `json:"telemetries,omitempty"`
	// LLMInvocationConfig and UtilsContainerImage (a field NVCF does not
	// document) are NVCF's and not supported by Gantry yet: they are
	// decoded only so that validate refuses them rather than drop them.
	LLMInvocationConfig json.RawMessage `json:"llmInvocationConfig,omitempty"`
	UtilsContainerImage string          `json:"utilsContainerImage,omitempty"`
}

// DeploymentRequest is the body of POST and PUT
// /v2/nvcf/deployments/functions/{id}/versions/{vid}.
type DeploymentRequest struct {
	Specs []GPUSpec `json:"deploymentSpecifications"`
}

// GPUSpecPatch is the body of PATCH
// /v2/nvcf/deployments/{deploymentId}/gpu-specifications/{gpuSpecId}: only
// the instance bounds, concurrency and autoscaling may change in place.
type GPUSpecPatch struct {
	MinInstances          *int                      `json:"minInstances,omitempty"`
	MaxInstances          *int                      `json:"maxInstances,omitempty"`
	MaxRequestConcurrency *int                      `json:"maxRequestConcurrency,omitempty"`
	AutoscalingPolicy     AutoscalingPolicy         `json:"autoscalingConfigurationPolicy,omitempty"`
	Autoscaling           *AutoscalingConfiguration `json:"autoscalingConfiguration,omitempty"`
	// The other deploymentSpecification fields cannot change in place
	// (NVCF marks gpu, instanceType, backend, clusters, availabilityZones
	// and preferredOrder immutable; regions and attributes would need the
	// instances placed again) or are not supported (configuration and the
	// instance selectors). They are decoded only so that sending one is a
	// 400 rather than ignored; a value equal to the spec's is no change.
	GPU               string          `json:"gpu,omitempty"`
	InstanceType      string          `json:"instanceType,omitempty"`
	Backend           string          `json:"backend,omitempty"`
	Clusters          []string        `json:"clusters,omitempty"`
	Regions           []string        `json:"regions,omitempty"`
	Attributes        []string        `json:"attributes,omitempty"`
	AvailabilityZones []string        `json:"availabilityZones,omitempty"`
	PreferredOrder    int             `json:"preferredOrder,omitempty"`
	Configuration     json.RawMessage `json:"configuration,omitempty"`
	CPUArch           string          `json:"cpuArch,omitempty"`
	OS                string          `json:"os,omitempty"`
	DriverVersion     string          `json:"driverVersion,omitempty"`
	Storage           string          `json:"storage,omitempty"`
	SystemMemory      string          `json:"systemMemory,omitempty"`
	GPUMemory         string          `json:"gpuMemory,omitempty"`
}

// SecretsRequest is the body of PUT /v2/nvcf/secrets/functions/{id}/versions/{vid}.
type SecretsRequest struct {
	Secrets []Secret `json:"secrets"`
}

// FunctionResponse wraps one function version: {"function": {...}}.
type FunctionResponse struct {
	Function Function `json:"function"`
}

// FunctionListResponse wraps a list: {"functions": [...]}.
type FunctionListResponse struct {
	Functions []Function `json:"functions"`
}

// FunctionIDsResponse is the body of GET /v2/nvcf/functions/ids.
type FunctionIDsResponse struct {
	FunctionIDs []string `json:"functionIds"`
}

// DeploymentResponse wraps one deployment: {"deployment": {...}}.
type DeploymentResponse struct {
	Deployment Deployment `json:"deployment"`
}

// ClusterGroupsResponse is the body of GET /v2/nvcf/clusterGroups.
type ClusterGroupsResponse struct {
	ClusterGroups []ClusterGroup `json:"clusterGroups"`
}

// QueueResponse is the body of GET /v2/nvcf/queues/functions/{id}[/versions/{vid}].
type QueueResponse struct {
	FunctionID string  `json:"functionId"`
	Queues     []Queue `json:"queues"`
}

// Queue is the depth of one function version's work queue. NVCF's API
// names the depth queueDepth; nvcf-cli reads it as size, next to the
// function id, so both are sent.
type Queue struct {
	FunctionID        string         `json:"functionId"`
	FunctionVersionID string         `json:"functionVersionId"`
	FunctionName      string         `json:"functionName"`
	FunctionStatus    FunctionStatus `json:"functionStatus"`
	QueueDepth        int            `json:"queueDepth"`
	Size              int            `json:"size"`
}

// QueuePosition is the body of GET /v2/nvcf/queues/{requestId}/position.
// Position repeats PositionInQueue under the name nvcf-cli reads.
type QueuePosition struct {
	FunctionID        string `json:"functionId"`
	FunctionVersionID string `json:"functionVersionId"`
	PositionInQueue   int    `json:"positionInQueue"`
	Position          int    `json:"position"`
}

// ClusterRequest is the body of POST /v1/accounts/{ncaId}/clusters (NVCF's
// self-hosted cluster registration) and of PUT on one cluster. zone and
// labels are Gantry's additions for placement.
type ClusterRequest struct {
	ClusterName      string            `json:"clusterName"`
	ClusterGroupName string            `json:"clusterGroupName"`
	NCAID            string            `json:"ncaId,omitempty"`
	CloudProvider    string            `json:"cloudProvider,omitempty"`
	Region           string            `json:"region,omitempty"`
	Zone             string            `json:"zone,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	NVCAVersion      string            `json:"nvcaVersion,omitempty"`
	Capabilities     []string          `json:"capabilities,omitempty"`
	JWKS             json.RawMessage   `json:"jwks,omitempty"`
	OIDCIssuer       string            `json:"oidcIssuer,omitempty"`
	// AuthorizedNCAIDs lists other accounts the cluster also serves.
	AuthorizedNCAIDs []string `json:"authorizedNCAIds,omitempty"`
}

// ClusterRegistration answers a registration: the cluster, and the one-time
// bootstrap token its agent exchanges for a cluster credential. The token is
// shown only here.
type ClusterRegistration struct {
	Cluster            Cluster   `json:"cluster"`
	ClusterID          string    `json:"clusterId"`
	ClusterGroupID     string    `json:"clusterGroupId"`
	BootstrapToken     string    `json:"bootstrapToken"`
	BootstrapExpiresAt time.Time `json:"bootstrapExpiresAt"`
}

// AgentCredential is what an agent gets for a bootstrap token (or a token of
// its cluster's own issuer), and again on renewal: its cluster id, the
// credential for HTTP and NATS, and where NATS is.
type AgentCredential struct {
	ClusterID  string    `json:"clusterId"`
	Credential string    `json:"credential"`
	ExpiresAt  time.Time `json:"expiresAt"`
	NATSURL    string    `json:"natsUrl"`
}

// RateLimitRequest is the body of PUT
// /v2/nvcf/ratelimit/functions/{id}/versions/{vid}.
type RateLimitRequest struct {
	RateLimit *RateLimit `json:"rateLimit"`
}
