package model

import "time"

// InstanceStatus is the state of one function instance.
type InstanceStatus string

// Instance states. PENDING is Gantry's: placed nowhere yet, waiting for capacity.
const (
	InstancePending    InstanceStatus = "PENDING"
	InstanceStarting   InstanceStatus = "STARTING"
	InstanceRunning    InstanceStatus = "RUNNING"
	InstanceErrored    InstanceStatus = "ERRORED"
	InstancePreempted  InstanceStatus = "PREEMPTED"
	InstanceDeleted    InstanceStatus = "DELETED"
	InstanceTerminated InstanceStatus = "TERMINATED"
)

// Instance is one placed copy of a function version: the desired half, written
// by the scheduler. What the agent observes lives in InstanceState.
type Instance struct {
	ID                string `json:"id"`
	FunctionID        string `json:"functionId"`
	FunctionVersionID string `json:"functionVersionId"`
	NCAID             string `json:"ncaId"`
	DeploymentID      string `json:"deploymentId"`
	SpecIndex         int    `json:"specIndex"`
	ClusterID         string `json:"clusterId,omitempty"` // empty while pending
	GPU               string `json:"gpu"`
	InstanceType      string `json:"instanceType"`
	GPUCount          int    `json:"gpuCount"`
	PendingReason     string `json:"pendingReason,omitempty"`
	// SecretsGeneration is the function version's secrets generation when
	// the instance was created; an older one is replaced, rolling.
	SecretsGeneration int64     `json:"secretsGeneration,omitempty"`
	CreatedAt         time.Time `json:"createdAt"`

	Revision int64 `json:"-"`
}

// InstanceState is what an agent last reported about one instance.
type InstanceState struct {
	InstanceID string         `json:"instanceId"`
	ClusterID  string         `json:"clusterId"`
	Status     InstanceStatus `json:"status"`
	Reason     string         `json:"reason,omitempty"`
	GPUs       []int          `json:"gpus,omitempty"`
	Restarts   int            `json:"restarts,omitempty"`
	UpdatedAt  time.Time      `json:"updatedAt"`
}
