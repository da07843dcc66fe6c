package model

import (
	"encoding/json"
	"time"
)

// Telemetry types: which signals a telemetry endpoint takes (NVCF's
// TelemetryTypeEnum).
const (
	TelemetryLogs    = "LOGS"
	TelemetryMetrics = "METRICS"
	TelemetryTraces  = "TRACES"
)

// Telemetry protocols (NVCF's TelemetryProtocolEnum). Gantry's agent
// exports over HTTP (OTLP/HTTP); GRPC endpoints are kept but not exported
// to yet.
const (
	TelemetryHTTP = "HTTP"
	TelemetryGRPC = "GRPC"
)

// TelemetryRequest is the body of POST /v2/nvcf/telemetries.
type TelemetryRequest struct {
	Endpoint string           `json:"endpoint"`
	Protocol string           `json:"protocol"`
	Provider string           `json:"provider"`
	Types    []string         `json:"types"`
	Secret   *TelemetrySecret `json:"secret"`
}

// TelemetrySecret is the credential of a telemetry endpoint. NVCF takes
// the value as a string or as a JSON object (username/password, an API
// key, certificates); Gantry keeps it as the JSON it was sent as, sealed,
// and never answers it.
type TelemetrySecret struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

// Telemetry is a telemetry endpoint's non-secret part: what is stored in
// the clear and what every read answers. Its name is its secret's name.
type Telemetry struct {
	ID        string    `json:"telemetryId"`
	NCAID     string    `json:"ncaId,omitempty"`
	Name      string    `json:"name"`
	Endpoint  string    `json:"endpoint"`
	Protocol  string    `json:"protocol"`
	Provider  string    `json:"provider"`
	Types     []string  `json:"types"`
	CreatedAt time.Time `json:"createdAt"`
}

// Has reports whether t takes signals of type typ.
func (t Telemetry) Has(typ string) bool {
	for _, x := range t.Types {
		if x == typ {
			return true
		}
	}
	return false
}

// TelemetryResponse is what create and get answer.
type TelemetryResponse struct {
	Telemetry Telemetry `json:"telemetry"`
}

// TelemetryList is what GET /v2/nvcf/telemetries answers.
type TelemetryList struct {
	Telemetries []Telemetry `json:"telemetries"`
}

// TelemetrySecretUpdate is the body of PUT
// /v2/nvcf/secrets/telemetries/{telemetryId}: a new value for the
// telemetry's secret (its name stays).
type TelemetrySecretUpdate struct {
	Value json.RawMessage `json:"value"`
}

// InstanceTelemetry answers an InstanceSecretsRequest with Telemetry: where
// an instance's logs go and the credential to send them with. It travels
// only as a NATS reply to the agent's own inbox; nothing stores it.
type InstanceTelemetry struct {
	// Logs is empty when the instance's function names no logs telemetry.
	Logs *TelemetryTarget `json:"logs,omitempty"`
	// Metrics, likewise, for the function's metrics telemetry.
	Metrics *TelemetryTarget `json:"metrics,omitempty"`
}

// TelemetryTarget is one telemetry endpoint as an agent exports to it.
type TelemetryTarget struct {
	TelemetryID string `json:"telemetryId"`
	Endpoint    string `json:"endpoint"`
	Protocol    string `json:"protocol"`
	Provider    string `json:"provider"`
	// Secret is the secret's value as it was sent (a JSON string or
	// object). As secret as function secrets.
	Secret json.RawMessage `json:"secret,omitempty"`
}

// LogLine is one line an instance wrote, as the agent keeps and publishes
// it and the logs API answers it.
type LogLine struct {
	Time              time.Time `json:"time"`
	InstanceID        string    `json:"instanceId"`
	FunctionID        string    `json:"functionId"`
	FunctionVersionID string    `json:"functionVersionId"`
	// Stream is stdout or stderr.
	Stream string `json:"stream"`
	// Seq numbers an instance's lines from 1 since the agent started, so
	// a reader joining recent lines with followed ones drops doubles.
	Seq  uint64 `json:"seq"`
	Line string `json:"line"`
}

// LogsRequest is what the control plane asks an agent for: the last Tail
// lines of each instance.
type LogsRequest struct {
	InstanceIDs []string `json:"instanceIds"`
	Tail        int      `json:"tail"`
}

// LogBatch carries log lines: an agent's answer to a LogsRequest, and
// what it publishes as its instances write.
type LogBatch struct {
	Lines []LogLine `json:"lines"`
	Error string    `json:"error,omitempty"`
}

// LogsResponse is what GET /v1/gantry/logs/functions/... answers without
// follow.
type LogsResponse struct {
	Logs []LogLine `json:"logs"`
	// Unreachable names clusters whose agent did not answer in time; their
	// instances' lines are missing.
	Unreachable []string `json:"unreachable,omitempty"`
}
