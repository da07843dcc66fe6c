package agent

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/validate"
)

// The OTLP/HTTP JSON encoding of an ExportLogsServiceRequest
// (opentelemetry-proto, logs/v1), only the fields Gantry sets. 64-bit
// integers are strings in OTLP's JSON mapping.
type (
	otlpExportLogs struct {
		ResourceLogs []otlpResourceLogs `json:"resourceLogs"`
	}
	otlpResourceLogs struct {
		Resource  otlpResource    `json:"resource"`
		ScopeLogs []otlpScopeLogs `json:"scopeLogs"`
	}
	otlpResource struct {
		Attributes []otlpKeyValue `json:"attributes"`
	}
	otlpScopeLogs struct {
		Scope      otlpScope       `json:"scope"`
		LogRecords []otlpLogRecord `json:"logRecords"`
	}
	otlpScope struct {
		Name    string `json:"name"`
		Version string `json:"version,omitempty"`
	}
	otlpLogRecord struct {
		TimeUnixNano         string         `json:"timeUnixNano"`
		ObservedTimeUnixNano string         `json:"observedTimeUnixNano"`
		SeverityNumber       int            `json:"severityNumber,omitempty"`
		SeverityText         string         `json:"severityText,omitempty"`
		Body                 otlpAnyValue   `json:"body"`
		Attributes           []otlpKeyValue `json:"attributes,omitempty"`
	}
	otlpKeyValue struct {
		Key   string       `json:"key"`
		Value otlpAnyValue `json:"value"`
	}
	otlpAnyValue struct {
		StringValue string `json:"stringValue"`
	}
)

// OTLP severity numbers Gantry uses: a stream says no more than that.
const (
	otlpSeverityInfo  = 9
	otlpSeverityError = 17
)

func otlpString(k, v string) otlpKeyValue {
	return otlpKeyValue{Key: k, Value: otlpAnyValue{StringValue: v}}
}

// otlpLogs is one export request for lines of one instance. The resource
// names the function, version and instance with OpenTelemetry's service
// attributes and NVCF's own ids.
func otlpLogs(clusterID string, src runtime.LogSource, lines []model.LogLine) otlpExportLogs {
	service := src.FunctionName
	if service == "" {
		service = src.FunctionID
	}
	res := otlpResource{Attributes: []otlpKeyValue{
		otlpString("service.name", service),
		otlpString("service.version", src.FunctionVersionID),
		otlpString("service.instance.id", src.InstanceID),
		otlpString("nvcf.function.id", src.FunctionID),
		otlpString("nvcf.function.name", src.FunctionName),
		otlpString("nvcf.function.version.id", src.FunctionVersionID),
		otlpString("nvcf.instance.id", src.InstanceID),
		otlpString("nvcf.nca.id", src.NCAID),
		otlpString("gantry.cluster.id", clusterID),
	}}
	recs := make([]otlpLogRecord, 0, len(lines))
	for _, ln := range lines {
		ts := strconv.FormatInt(ln.Time.UnixNano(), 10)
		sev, text := otlpSeverityInfo, "INFO"
		if ln.Stream == runtime.StreamStderr {
			sev, text = otlpSeverityError, "ERROR"
		}
		recs = append(recs, otlpLogRecord{TimeUnixNano: ts, ObservedTimeUnixNano: ts, SeverityNumber: sev, SeverityText: text,
			Body: otlpAnyValue{StringValue: ln.Line}, Attributes: []otlpKeyValue{otlpString("log.iostream", ln.Stream)}})
	}
	return otlpExportLogs{ResourceLogs: []otlpResourceLogs{{Resource: res,
		ScopeLogs: []otlpScopeLogs{{Scope: otlpScope{Name: "gantry-agent", Version: Version}, LogRecords: recs}}}}}
}

// otlpLogsURL is where logs go for a telemetry endpoint: OTLP/HTTP's
// <endpoint>/v1/logs, unless the endpoint names that path already.
func otlpLogsURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return endpoint
	}
	if !strings.HasSuffix(u.Path, "/v1/logs") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/logs"
	}
	return u.String()
}

// telemetryHeaders turns a telemetry secret into request headers:
//   - a string is the Authorization header's value when it names a scheme
//     ("Basic ...", "Bearer ...", "Api-Token ..."), else a bearer token;
//   - {"username","password"} is Basic authentication;
//   - {"apiKey"} or {"token"} is a bearer token;
//   - any other object names headers and their values (e.g.
//     {"DD-API-KEY":"..."}).
func telemetryHeaders(secret json.RawMessage) map[string]string {
	var s string
	if json.Unmarshal(secret, &s) == nil {
		if s == "" {
			return nil
		}
		if scheme, _, ok := strings.Cut(s, " "); ok && scheme != "" && !strings.ContainsAny(scheme, ":=") {
			return map[string]string{"Authorization": s}
		}
		return map[string]string{"Authorization": "Bearer " + s}
	}
	var m map[string]string
	if json.Unmarshal(secret, &m) != nil || len(m) == 0 {
		return nil
	}
	if u, p := m["username"], m["password"]; u != "" || p != "" {
		return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))}
	}
	for _, k := range []string{"apiKey", "token"} {
		if v := m[k]; v != "" {
			return map[string]string{"Authorization": "Bearer " + v}
		}
	}
	return m
}

// redactEndpoint is an endpoint fit for a log line: no query or user
// information, which may carry credentials.
func redactEndpoint(endpoint string) string { return validate.RedactURL(endpoint) }
