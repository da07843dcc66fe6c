// Package runtime defines what the agent needs from the thing that actually
// runs function instances: local processes (package process) or Kubernetes
// workloads (package kube). The agent owns placement decisions such as GPU indices; a runtime
// only starts, watches and stops what it is told to.
package runtime

import (
	"context"
	"errors"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

// ErrUnsupportedImage is returned by Start when a runtime cannot run the
// function's containerImage (for example a registry image on the process
// runtime).
var ErrUnsupportedImage = errors.New("runtime: unsupported image")

// State is the lifecycle state of one instance as a runtime sees it.
type State string

// Runtime states. They map one to one onto model instance statuses.
const (
	StateStarting   State = "STARTING"
	StateRunning    State = "RUNNING"
	StateErrored    State = "ERRORED"
	StateTerminated State = "TERMINATED"
)

// Spec is one instance to run.
type Spec struct {
	InstanceID        string
	FunctionID        string
	FunctionVersionID string
	Image             string // containerImage, e.g. process:///usr/bin/server
	// Helm, when set, makes the instance a Helm release instead of a
	// container (the kube runtime only); Image is empty then.
	Helm *HelmSpec
	Args string // containerArgs, split like a POSIX shell would
	Env  []model.EnvVar
	// Secrets are handed to the instance as environment variables. Runtimes
	// must never write them to disk or logs.
	Secrets map[string]string
	// DockerConfigJSON, when set, is a docker config ({"auths":{"<host>":
	// {"auth":"<base64 user:password>"}}}) holding the function account's
	// registry credential for Image's registry. It is as secret as
	// Secrets: runtimes hand it only to the cluster's own secret store
	// (the kube runtime makes it the pod's image pull Secret) and never
	// write it to disk or logs. The process runtime ignores it: processes
	// have no images to pull.
	DockerConfigJSON []byte
	InferencePort    int
	Health           HealthCheck
	// GPUModel and GPUCount are the instance type (ON-PREM.GPU.H100_2x is
	// H100 and 2). Runtimes on a cluster manager ask it for that many GPUs
	// of that model; GPUs is empty for them.
	GPUModel string
	GPUCount int
	GPUs     []int // GPU indices assigned by the agent (process runtime)

	// Who and where the instance is, handed to it as the NVCF_* variables
	// NVCF sets in every function container (see NVCFEnv).
	FunctionName string
	NCAID        string // the NVIDIA Cloud Account that owns the function
	Backend      string // the cluster group the instance runs in
	InstanceType string // e.g. ON-PREM.GPU.H100_2x
	Region       string // the cluster's region

	// ModelsDir and ResourcesDir, when set, hold the function's models and
	// resources, one directory per artifact name, fetched by the agent
	// before Start (NVCF mounts them at /config/models and
	// /config/resources). Runtimes hand them to the instance as
	// NVCF_MODELS_DIR and NVCF_RESOURCES_DIR (see NVCFEnv). They are paths
	// on the agent's file system: only the process runtime can use them.
	ModelsDir, ResourcesDir string
}

// HelmSpec is a Helm-chart function's instance: the chart, the Service
// that serves its inference endpoint, and the deployment's configuration,
// which becomes the chart's values.
type HelmSpec struct {
	Chart       string // helmChart: an http(s):// or oci:// URL of a packaged chart
	ServiceName string // helmChartServiceName
	// Values is the deployment spec's configuration, a JSON object (or
	// empty). Not secret: the function's secrets travel in Spec.Secrets.
	Values []byte
}

// HealthCheck says how to tell that an instance is ready and still alive.
type HealthCheck struct {
	Protocol       string        // "HTTP" (default) or "gRPC"
	Path           string        // e.g. /health
	Port           int           // port inside the instance; 0 means the serving port
	Timeout        time.Duration // per probe
	ExpectedStatus int           // default 200
}

// Status is a runtime's view of one instance.
type Status struct {
	InstanceID string
	State      State
	// Reason explains ERRORED and TERMINATED states in words a user can act
	// on, e.g. "restart loop: exited with code 1: <last stderr line>".
	Reason string
	// Endpoint is the base URL requests are forwarded to, e.g.
	// http://127.0.0.1:40123. Set once the instance is RUNNING.
	Endpoint string
	Restarts int
	// AssetDir and LargeOutputDir are the instance's NVCF_ASSET_DIR and
	// NVCF_LARGE_OUTPUT_DIR as the function sees them; a request's own
	// directories are below them, named by its request id.
	AssetDir, LargeOutputDir string
}

// Runtime runs function instances. Implementations are safe for concurrent use.
type Runtime interface {
	// Start begins running spec. It is idempotent: starting an instance that
	// is already known does nothing. It returns quickly; progress shows up in
	// List and through the notify callback the runtime was built with.
	Start(ctx context.Context, spec Spec) error
	// Stop stops an instance and forgets it, waiting for it to exit.
	Stop(ctx context.Context, instanceID string) error
	// List returns the status of every known instance.
	List() []Status
	// Close releases the runtime; it is unusable afterwards. Runtimes whose
	// instances die with the agent (process) stop every instance; runtimes
	// on a cluster manager (kube) leave them running for the next agent to
	// adopt.
	Close() error
}
