package model

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
}

// DeploymentRequest is the body of POST and PUT
// /v2/nvcf/deployments/functions/{id}/versions/{vid}.
type DeploymentRequest struct {
	Specs []GPUSpec `json:"deploymentSpecifications"`
}

// GPUSpecPatch is the body of PATCH
// /v2/nvcf/deployments/{deploymentId}/gpu-specifications/{gpuSpecId}: only
// the instance bounds and concurrency may change in place.
type GPUSpecPatch struct {
	MinInstances          *int `json:"minInstances,omitempty"`
	MaxInstances          *int `json:"maxInstances,omitempty"`
	MaxRequestConcurrency *int `json:"maxRequestConcurrency,omitempty"`
}

// MetadataRequest is the body of PUT /v2/nvcf/metadata/functions/{id}/versions/{vid}.
type MetadataRequest struct {
	Tags []string `json:"tags"`
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

// SupportedGPUsResponse is the body of GET /v2/nvcf/supportedGpus.
type SupportedGPUsResponse struct {
	GPUs []string `json:"gpus"`
}

// QueueResponse is the body of GET /v2/nvcf/queues/functions/{id}[/versions/{vid}].
type QueueResponse struct {
	FunctionID string  `json:"functionId"`
	Queues     []Queue `json:"queues"`
}

// Queue is the depth of one function version's work queue.
type Queue struct {
	FunctionVersionID string         `json:"functionVersionId"`
	FunctionName      string         `json:"functionName"`
	FunctionStatus    FunctionStatus `json:"functionStatus"`
	QueueDepth        int            `json:"queueDepth"`
}
