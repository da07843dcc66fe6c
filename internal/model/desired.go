package model

import "encoding/json"

// DesiredState is the whole set of instances one cluster should run. The
// control plane publishes it and the agent converges on it: the agent never
// acts on deltas, so a lost notification or a restart loses nothing.
type DesiredState struct {
	ClusterID  string            `json:"clusterId"`
	Generation int64             `json:"generation"`
	Instances  []DesiredInstance `json:"instances"`
}

// DesiredInstance is everything an agent needs to run one instance and feed
// it work, with no further lookups.
type DesiredInstance struct {
	InstanceID        string `json:"instanceId"`
	FunctionID        string `json:"functionId"`
	FunctionVersionID string `json:"functionVersionId"`
	FunctionName      string `json:"functionName,omitempty"`
	NCAID             string `json:"ncaId"`
	GPU               string `json:"gpu"`
	GPUCount          int    `json:"gpuCount"`
	InstanceType      string `json:"instanceType,omitempty"`
	// Backend and Region are where the instance runs: its cluster's group
	// and region. With the function's name and the instance type they reach
	// the instance as the NVCF_* variables NVCF sets.
	Backend               string   `json:"backend,omitempty"`
	Region                string   `json:"region,omitempty"`
	MaxRequestConcurrency int      `json:"maxRequestConcurrency"`
	ContainerImage        string   `json:"containerImage"`
	ContainerArgs         string   `json:"containerArgs,omitempty"`
	ContainerEnvironment  []EnvVar `json:"containerEnvironment,omitempty"`
	InferenceURL          string   `json:"inferenceUrl"`
	InferencePort         int      `json:"inferencePort,omitempty"`
	Health                Health   `json:"health"`
	// SecretNames lists the function's secrets; the agent fetches their values
	// over its authenticated channel when it starts the instance, so plaintext
	// is never part of any stored message.
	SecretNames []string `json:"secretNames,omitempty"`
	// Models and Resources are the function's artifacts, which the agent
	// fetches into its cache and shows the instance before starting it.
	Models    []Artifact `json:"models,omitempty"`
	Resources []Artifact `json:"resources,omitempty"`
	// HelmChart and HelmChartServiceName make the instance a Helm release
	// (ContainerImage is empty then); Configuration, the deployment
	// spec's, is its values. A changed Configuration upgrades the release.
	HelmChart            string          `json:"helmChart,omitempty"`
	HelmChartServiceName string          `json:"helmChartServiceName,omitempty"`
	Configuration        json.RawMessage `json:"configuration,omitempty"`
}

// InstanceSecretsRequest is what an agent sends on its secrets subject when
// it starts an instance.
type InstanceSecretsRequest struct {
	InstanceID string `json:"instanceId"`
	// ImagePull asks for the image pull config too, and for the answer as
	// InstanceSecrets. Without it the answer is the bare map of secret
	// values, which is all agents from before image pull secrets read.
	ImagePull bool `json:"imagePull,omitempty"`
	// Telemetry asks only for the instance's telemetry endpoints and their
	// credentials, answered as InstanceTelemetry.
	Telemetry bool `json:"telemetry,omitempty"`
}

// InstanceSecrets answers an InstanceSecretsRequest with ImagePull. It only
// ever travels as a NATS reply to the agent's own inbox; nothing stores it.
type InstanceSecrets struct {
	// Secrets are the function's secret values by name; never null, so
	// the answer cannot be mistaken for a bare map.
	Secrets map[string]string `json:"secrets"`
	// DockerConfigJSON is a docker config ({"auths":{"<host>":{"auth":
	// "<base64 user:password>"}}}) holding the account's registry
	// credential for the image's registry host, or empty when it has
	// none. It is as secret as Secrets.
	DockerConfigJSON []byte `json:"dockerConfigJson,omitempty"`
}

// AgentReport is an agent's heartbeat: its inventory and the observed state of
// every instance it runs. It is complete, never a delta.
type AgentReport struct {
	ClusterID    string `json:"clusterId"`
	AgentVersion string `json:"agentVersion"`
	// HeartbeatMillis is how often the agent reports.
	HeartbeatMillis int64           `json:"heartbeatMillis,omitempty"`
	Inventory       Inventory       `json:"inventory"`
	Instances       []InstanceState `json:"instances"`
	// InstanceTypes is how the cluster's capacity is used, per instance
	// type. Idle counts running instances with no request in flight,
	// Standby instances that are placed here but not serving yet.
	InstanceTypes []InstanceTypeUsage `json:"instanceTypes,omitempty"`
	Idle          int                 `json:"idle"`
	Standby       int                 `json:"standby"`
	// Busy lists the running instances with a request in flight, so that
	// scale-down can remove idle ones first.
	Busy []string `json:"busy,omitempty"`
}
