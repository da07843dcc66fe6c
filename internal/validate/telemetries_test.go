package validate

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

func validTelemetry() *model.TelemetryRequest {
	return &model.TelemetryRequest{Endpoint: "https://otlp.example.com:4318", Protocol: "HTTP",
		Provider: "OTEL_COLLECTOR", Types: []string{"LOGS"},
		Secret: &model.TelemetrySecret{Name: "otlp-key", Value: json.RawMessage(`"s3cr3t-value"`)}}
}

func TestTelemetry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(r *model.TelemetryRequest)
		want   string // part of the detail; "" passes
	}{
		{"valid", func(*model.TelemetryRequest) {}, ""},
		{"object secret", func(r *model.TelemetryRequest) {
			r.Secret.Value = json.RawMessage(`{"username":"u","password":"s3cr3t-value"}`)
		}, ""},
		{"lowercase enums", func(r *model.TelemetryRequest) {
			r.Protocol, r.Provider, r.Types = "grpc", "datadog", []string{"traces"}
		}, ""},
		{"no endpoint", func(r *model.TelemetryRequest) { r.Endpoint = "" }, "endpoint is required"},
		{"ftp endpoint", func(r *model.TelemetryRequest) { r.Endpoint = "ftp://h/x" }, "must be an http or https URL"},
		{"endpoint with user", func(r *model.TelemetryRequest) { r.Endpoint = "https://user:s3cr3t-value@h" }, "carries user information"},
		{"endpoint without host", func(r *model.TelemetryRequest) { r.Endpoint = "https:///v1/logs" }, "has no host"},
		{"no protocol", func(r *model.TelemetryRequest) { r.Protocol = "" }, "protocol is required: HTTP or GRPC"},
		{"bad protocol", func(r *model.TelemetryRequest) { r.Protocol = "TCP" }, `protocol "TCP" is not a telemetry protocol`},
		{"no provider", func(r *model.TelemetryRequest) { r.Provider = "" }, "provider is required"},
		{"bad provider", func(r *model.TelemetryRequest) { r.Provider = "ACME" }, `provider "ACME" is not a telemetry provider`},
		{"no types", func(r *model.TelemetryRequest) { r.Types = nil }, "types must list at least one"},
		{"empty types", func(r *model.TelemetryRequest) { r.Types = []string{} }, "types must list at least one"},
		{"invalid type", func(r *model.TelemetryRequest) { r.Types = []string{"LOGS", "INVALID_TYPE"} }, `types[1] "INVALID_TYPE" is not a telemetry type`},
		{"no secret", func(r *model.TelemetryRequest) { r.Secret = nil }, "secret is required"},
		{"no secret name", func(r *model.TelemetryRequest) { r.Secret.Name = "" }, "secret.name is required"},
		{"bad secret name", func(r *model.TelemetryRequest) { r.Secret.Name = "a b" }, `secret.name "a b" is invalid`},
		{"no secret value", func(r *model.TelemetryRequest) { r.Secret.Value = nil }, "secret.value is required"},
		{"null secret value", func(r *model.TelemetryRequest) { r.Secret.Value = json.RawMessage(`null`) }, "secret.value is required"},
		{"number secret", func(r *model.TelemetryRequest) { r.Secret.Value = json.RawMessage(`12`) }, "must be a string or an object"},
		{"nested secret", func(r *model.TelemetryRequest) { r.Secret.Value = json.RawMessage(`{"a":{"b":"s3cr3t-value"}}`) }, "must be a string or an object"},
		{"empty secret", func(r *model.TelemetryRequest) { r.Secret.Value = json.RawMessage(`""`) }, "empty or malformed string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validTelemetry()
			tc.mutate(r)
			err := Telemetry(r)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			wantProblem(t, err, 400, "")
			detail := err.(*problem.Error).Detail
			if !strings.Contains(detail, tc.want) {
				t.Errorf("detail %q does not say %q", detail, tc.want)
			}
			if strings.Contains(detail, "s3cr3t-value") {
				t.Errorf("detail %q echoes the secret", detail)
			}
		})
	}
}

func TestTelemetryNormalises(t *testing.T) {
	t.Parallel()
	r := validTelemetry()
	r.Protocol, r.Provider, r.Types = " http", "grafana_cloud", []string{"traces", "LOGS", "logs"}
	if err := Telemetry(r); err != nil {
		t.Fatal(err)
	}
	if r.Protocol != "HTTP" || r.Provider != "GRAFANA_CLOUD" || !slices.Equal(r.Types, []string{"LOGS", "TRACES"}) {
		t.Errorf("normalised to %+v", r)
	}
}

func TestFunctionTelemetries(t *testing.T) {
	t.Parallel()
	if err := FunctionTelemetries(&model.Telemetries{LogsTelemetryID: "0b7c7f1e-8f5e-4f3a-9d4e-1c2b3a4d5e6f"}); err != nil {
		t.Errorf("a UUID is refused: %v", err)
	}
	err := FunctionTelemetries(&model.Telemetries{MetricsTelemetryID: "../x"})
	wantProblem(t, err, 400, "")
	if !strings.Contains(err.(*problem.Error).Detail, "telemetries.metricsTelemetryId") {
		t.Errorf("detail %q does not name the field", err)
	}
}

func FuzzDecodeTelemetry(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var req model.TelemetryRequest
		err := Decode(bytes.NewReader(data), fuzzLimit, &req)
		wantClientError(t, err)
		if err != nil {
			return
		}
		var secret string
		if req.Secret != nil {
			secret = string(bytes.TrimSpace(req.Secret.Value))
		}
		err = Telemetry(&req)
		wantClientError(t, err)
		if err != nil {
			if msg := err.(*problem.Error).Detail; len(secret) > 8 && strings.Contains(msg, secret) {
				t.Fatalf("detail echoes the secret value: %q", msg)
			}
			return
		}
		if req.Endpoint == "" || req.Secret == nil || len(req.Types) == 0 {
			t.Fatalf("passed with %+v", req)
		}
		again := req
		again.Types = slices.Clone(req.Types)
		if err := Telemetry(&again); err != nil || !slices.Equal(again.Types, req.Types) || again.Protocol != req.Protocol {
			t.Fatalf("second pass: %+v %v, first %+v", again, err, req)
		}
	})
}
