package validate

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// telemetryProviders are NVCF's TelemetryProviderEnum values. The
// provider is a label: Gantry exports OTLP to every one of them.
var telemetryProviders = []string{"AZURE_MONITOR", "DATADOG", "GRAFANA_CLOUD", "KRATOS", "KRATOS_THANOS",
	"OTEL_COLLECTOR", "PROMETHEUS", "SERVICENOW", "SPLUNK", "TIMESTREAM", "VICTORIAMETRICS"}

var telemetryTypes = []string{model.TelemetryLogs, model.TelemetryMetrics, model.TelemetryTraces}

// MaxTelemetryEndpointLen bounds a telemetry endpoint URL.
const MaxTelemetryEndpointLen = 2048

// Telemetry checks the body of POST /v2/nvcf/telemetries, upper-cases its
// enums and sorts and de-duplicates its types. Errors name the field and
// never the secret's value.
func Telemetry(req *model.TelemetryRequest) error {
	if req == nil {
		return problem.BadRequest(`a telemetry body is required: {"endpoint":"https://otlp.example.com","protocol":"HTTP","provider":"OTEL_COLLECTOR","types":["LOGS"],"secret":{"name":"otlp-key","value":"<api key>"}}`)
	}
	var p problems
	checkTelemetryEndpoint(&p, req.Endpoint)
	req.Protocol = strings.ToUpper(strings.TrimSpace(req.Protocol))
	switch req.Protocol {
	case model.TelemetryHTTP, model.TelemetryGRPC:
	case "":
		p.addf("protocol is required: HTTP or GRPC")
	default:
		p.addf("protocol %s is not a telemetry protocol: use HTTP or GRPC", quote(req.Protocol))
	}
	req.Provider = strings.ToUpper(strings.TrimSpace(req.Provider))
	switch {
	case req.Provider == "":
		p.addf("provider is required: one of %s", strings.Join(telemetryProviders, ", "))
	case !slices.Contains(telemetryProviders, req.Provider):
		p.addf("provider %s is not a telemetry provider: use one of %s", quote(req.Provider), strings.Join(telemetryProviders, ", "))
	}
	if len(req.Types) == 0 {
		p.addf("types must list at least one of LOGS, METRICS, TRACES")
	}
	for i, t := range req.Types {
		req.Types[i] = strings.ToUpper(strings.TrimSpace(t))
		if !slices.Contains(telemetryTypes, req.Types[i]) {
			p.addf("types[%d] %s is not a telemetry type: use LOGS, METRICS or TRACES", i, quote(t))
		}
	}
	if len(p.list) == 0 {
		req.Types = slices.Compact(slices.Sorted(slices.Values(req.Types)))
	}
	if req.Secret == nil {
		p.addf(`secret is required: {"name":"<name>","value":"<api key>"} or a value object such as {"username":"...","password":"..."}`)
	} else {
		checkTelemetrySecretName(&p, req.Secret.Name)
		checkTelemetrySecretValue(&p, req.Secret.Value)
	}
	return p.err()
}

// TelemetrySecretUpdate checks the body of PUT
// /v2/nvcf/secrets/telemetries/{id}.
func TelemetrySecretUpdate(req *model.TelemetrySecretUpdate) error {
	if req == nil {
		return problem.BadRequest(`a body is required: {"value":"<api key>"}`)
	}
	var p problems
	checkTelemetrySecretValue(&p, req.Value)
	return p.err()
}

// checkTelemetryEndpoint requires an http(s) URL with a host and no user
// information: credentials belong in the secret, which is sealed, not in
// the endpoint, which every read answers.
func checkTelemetryEndpoint(p *problems, raw string) {
	if raw == "" {
		p.addf("endpoint is required: the OTLP endpoint's URL, e.g. https://otlp.example.com:4318")
		return
	}
	if len(raw) > MaxTelemetryEndpointLen {
		p.addf("endpoint is %d characters, the limit is %d", len(raw), MaxTelemetryEndpointLen)
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Opaque != "" || strings.ContainsAny(raw, " \t\r\n"):
		p.addf("endpoint %s is not a URL: give http(s)://host[:port][/path]", RedactURL(raw))
	case u.Scheme != "http" && u.Scheme != "https":
		p.addf("endpoint %s must be an http or https URL", RedactURL(raw))
	case u.Host == "" || u.Hostname() == "":
		p.addf("endpoint %s has no host", RedactURL(raw))
	case u.User != nil:
		p.addf("endpoint %s carries user information: put credentials in secret.value instead", RedactURL(raw))
	case u.Fragment != "":
		p.addf("endpoint %s has a fragment: remove it", RedactURL(raw))
	}
}

func checkTelemetrySecretName(p *problems, name string) {
	switch {
	case name == "":
		p.addf("secret.name is required: 1-128 letters, digits, '.', '_' and '-'; it names the telemetry")
	case len(name) > 128 || !allBytes(name, func(c byte) bool {
		return isLetter(c) || isDigit(c) || c == '.' || c == '_' || c == '-'
	}):
		p.addf("secret.name %s is invalid: use 1-128 letters, digits, '.', '_' and '-'", quote(name))
	}
}

// checkTelemetrySecretValue takes a non-empty JSON string, or an object
// of non-empty string values. It reports shape, never content.
func checkTelemetrySecretValue(p *problems, raw json.RawMessage) {
	v := bytes.TrimSpace(raw)
	if len(v) == 0 || string(v) == "null" {
		p.addf(`secret.value is required: the endpoint's API key as a string, or an object such as {"username":"...","password":"..."}`)
		return
	}
	if len(v) > MaxSecretValueLen {
		p.addf("secret.value is %d bytes, the limit is %d", len(v), MaxSecretValueLen)
		return
	}
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil || s == "" {
			p.addf("secret.value is an empty or malformed string")
		}
	case '{':
		var m map[string]string
		if err := json.Unmarshal(v, &m); err != nil {
			p.addf("secret.value must be a string or an object of string values")
			return
		}
		if len(m) == 0 {
			p.addf("secret.value is an empty object")
		}
		for k, s := range m {
			if k == "" || s == "" {
				p.addf("secret.value has an empty key or value")
				break
			}
		}
	default:
		p.addf("secret.value must be a string or an object of string values")
	}
}

// FunctionTelemetries checks the shape of a function's telemetries: each
// id set is a valid id. Whether they exist is the API's to check.
func FunctionTelemetries(t *model.Telemetries) error {
	if t == nil {
		return nil
	}
	var p problems
	for _, f := range []struct{ field, id string }{
		{"telemetries.logsTelemetryId", t.LogsTelemetryID},
		{"telemetries.metricsTelemetryId", t.MetricsTelemetryID},
		{"telemetries.tracesTelemetryId", t.TracesTelemetryID},
	} {
		if f.id == "" {
			continue
		}
		if err := ID(f.field, f.id); err != nil {
			p.addf("%s", err.(*problem.Error).Detail)
		}
	}
	return p.err()
}
