package validate

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// Function body limits. The first group is NVCF's; the second is Gantry's own,
// where NVCF documents none but an unbounded value would only ever be a
// mistake or an attack on the agents that receive it.
const (
	// MaxNameLen is the longest function name, in characters.
	MaxNameLen = 128
	// MaxDescriptionLen is the longest description, in characters.
	MaxDescriptionLen = 256

	// MaxContainerArgsLen is the longest containerArgs string, in bytes
	// (16 KiB, far above any real command line and below ARG_MAX).
	MaxContainerArgsLen = 16 << 10
	// MaxHelmChartLen is the longest helmChart URL.
	MaxHelmChartLen = 2048
	// MaxContainerEnv is the most containerEnvironment entries a function may have.
	MaxContainerEnv = 256
	// MaxPathLen is the longest inferenceUrl or health.uri, in bytes.
	MaxPathLen = 2048
	// DefaultHealthTimeout is health.timeout when the request leaves it out.
	DefaultHealthTimeout = "PT10S"
)

// Health check protocols.
const (
	HealthHTTP = "HTTP"
	HealthGRPC = "gRPC"
)

const (
	nameRule   = "use 1-128 characters of letters, digits, '_' and '-', starting with a letter or digit"
	envKeyRule = "use letters, digits and '_', not starting with a digit"
)

// Function normalises req in place and checks it against the function rules
// of the API contract. Defaults applied: apiBodyFormat CUSTOM, functionType
// DEFAULT; when health is absent and the legacy healthUri is set, health
// becomes {protocol HTTP, uri healthUri, expectedStatusCode 200}; within
// health, protocol defaults to HTTP, expectedStatusCode to 200 and timeout to
// PT10S. A function with neither health nor healthUri keeps health nil, and
// the runtime decides how to check it. Normalising twice changes nothing.
//
// Beyond NVCF's documented rules Gantry also refuses: containerArgs over
// MaxContainerArgsLen bytes or holding NUL (it becomes a process's argv);
// more than MaxContainerEnv containerEnvironment entries, or values holding
// NUL; paths (inferenceUrl, health.uri) that do not start with "/", hold
// spaces or control characters, or exceed MaxPathLen; containerImage with
// spaces or control characters; healthUri and health.uri both set and
// different; a rateLimit that is not "<count>-<S|M|H|D>".
//
// models and resources must be http(s) URLs (checkArtifacts): the agent
// fetches them before the instance starts.
//
// helmChart with helmChartServiceName makes a Helm-chart function, which
// the Kubernetes runtime installs (checkHelmChart).
//
// Every NVCF field is honoured or refused, never stored and ignored:
// llmInvocationConfig, utilsContainerImage and functionType
// LLM are refused with what to do instead (see unsupportedFunction), and
// containerImage is required unless helmChart is set.
func Function(req *model.CreateFunctionRequest) error {
	if req == nil {
		return problem.BadRequest("request body is empty; send a JSON object")
	}
	var p problems
	normaliseFunction(&p, req)

	checkFunctionName(&p, req.Name)
	checkPath(&p, "inferenceUrl", req.InferenceURL, true)
	checkPort(&p, "inferencePort", req.InferencePort)
	checkHealth(&p, req)
	checkContainer(&p, req)
	checkArtifacts(&p, "models", req.Models)
	checkArtifacts(&p, "resources", req.Resources)
	checkHelmChart(&p, req)
	if req.ContainerImage == "" && req.HelmChart == "" {
		p.addf(`containerImage is required: give the image to run, e.g. "nvcr.io/org/server:1.0", or a local program as "process:///usr/local/bin/server"`)
	}
	switch req.APIBodyFormat {
	case model.BodyFormatCustom, model.BodyFormatPredictV2:
	default:
		p.addf(`apiBodyFormat %s is invalid: use "CUSTOM" (the default) or "PREDICT_V2"`, quote(req.APIBodyFormat))
	}
	checkTags(&p, req.Tags)
	if n := utf8.RuneCountInString(req.Description); n > MaxDescriptionLen {
		p.addf("description is %d characters long: at most %d are allowed", n, MaxDescriptionLen)
	}
	checkSecrets(&p, req.Secrets)
	switch req.FunctionType {
	case model.FunctionTypeDefault, model.FunctionTypeStreaming:
	case model.FunctionTypeLLM:
		p.addf(`functionType "LLM" is not supported: Gantry does not support LLM functions yet (NVCF builds them from models); ` +
			`use "DEFAULT" or "STREAMING" and serve the model from containerImage`)
	default:
		p.addf(`functionType %s is invalid: use "DEFAULT" (the default) or "STREAMING"`, quote(req.FunctionType))
	}
	checkRateLimit(&p, req.RateLimit)
	unsupportedFunction(&p, req)
	return p.err()
}

// dns1035 is a Kubernetes Service name.
var dns1035 = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// checkHelmChart checks a Helm-chart function: helmChart is the URL of a
// packaged chart (https://, http:// or oci://, as NVCF's
// oci://<registry>/<repository>/charts/<name>-<version>.tgz), without
// credentials in it (a HELM registry credential carries those);
// helmChartServiceName is the chart's Service, a DNS-1035 label; the two
// come together, with inferencePort (the Service's port), and exclude
// containerImage, containerArgs and containerEnvironment (the chart says
// what runs).
func checkHelmChart(p *problems, req *model.CreateFunctionRequest) {
	if req.HelmChart == "" {
		if req.HelmChartServiceName != "" {
			p.addf("helmChartServiceName is set without helmChart: it names a Helm chart's Service; add helmChart or remove helmChartServiceName")
		}
		return
	}
	chart := req.HelmChart
	u, err := url.Parse(chart)
	switch {
	case len(chart) > MaxHelmChartLen:
		p.addf("helmChart is %d bytes long: at most %d are allowed", len(chart), MaxHelmChartLen)
	case hasSpaceOrControl(chart) || err != nil || u.Host == "" || u.Opaque != "":
		p.addf(`helmChart is not a URL: give the packaged chart's URL, e.g. "https://charts.example.com/echo-1.0.0.tgz" or "oci://registry.example.com/org/charts/echo-1.0.0.tgz"`)
	case u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "oci":
		p.addf("helmChart scheme %s is not supported: use https:// (or http://) for a packaged chart (.tgz), or oci:// for a chart in an OCI registry", quote(u.Scheme))
	case u.User != nil:
		p.addf("helmChart must not carry credentials: remove them from the URL and add a HELM registry credential for %s (POST /v2/nvcf/registry-credentials)", quote(u.Hostname()))
	}
	switch name := req.HelmChartServiceName; {
	case name == "":
		p.addf("helmChartServiceName is required with helmChart: name the chart's Service that serves inferencePort (templated names are not supported)")
	case len(name) > 63 || !dns1035.MatchString(name):
		p.addf("helmChartServiceName %s is not a Kubernetes Service name: use at most 63 lowercase letters, digits and '-', starting with a letter", quote(name))
	}
	if req.InferencePort == 0 {
		p.addf("inferencePort is required with helmChart: give the port of the Service helmChartServiceName names")
	}
	for _, f := range []struct {
		field string
		set   bool
	}{{"containerImage", req.ContainerImage != ""}, {"containerArgs", req.ContainerArgs != ""},
		{"containerEnvironment", len(req.ContainerEnvironment) > 0}} {
		if f.set {
			p.addf("%s cannot be combined with helmChart: the chart says what runs; remove %s (configure the chart with the deployment's configuration, its values)", f.field, f.field)
		}
	}
}

// unsupportedFunction refuses the NVCF function fields Gantry has nothing
// behind yet.
func unsupportedFunction(p *problems, req *model.CreateFunctionRequest) {
	if err := FunctionTelemetries(req.Telemetries); err != nil {
		p.addf("%s", err.(*problem.Error).Detail)
	}
	if jsonSet(req.LLMInvocationConfig) {
		p.addf("llmInvocationConfig is not supported: Gantry does not support LLM functions yet; " +
			"remove it and serve the model behind inferenceUrl")
	}
	if req.UtilsContainerImage != "" {
		p.addf("utilsContainerImage is not supported: Gantry runs no utility container beside the function yet; " +
			"remove it and build what it does into containerImage")
	}
}

// jsonSet reports whether raw carries something: it is neither absent, nor
// null, nor an empty object.
func jsonSet(raw json.RawMessage) bool {
	c := bytes.TrimSpace(raw)
	if len(c) == 0 || bytes.Equal(c, []byte("null")) {
		return false
	}
	var obj map[string]json.RawMessage
	return json.Unmarshal(c, &obj) != nil || len(obj) > 0
}

// normaliseFunction fills in defaults. The one conflict it can meet, healthUri
// disagreeing with health.uri, goes to p.
func normaliseFunction(p *problems, req *model.CreateFunctionRequest) {
	if req.APIBodyFormat == "" {
		req.APIBodyFormat = model.BodyFormatCustom
	}
	if req.FunctionType == "" {
		req.FunctionType = model.FunctionTypeDefault
	}
	if req.Health == nil && req.HealthURI != "" {
		req.Health = &model.Health{Protocol: HealthHTTP, URI: req.HealthURI, ExpectedStatusCode: 200}
	}
	h := req.Health
	if h == nil {
		return
	}
	switch {
	case h.URI == "":
		h.URI = req.HealthURI
	case req.HealthURI != "" && req.HealthURI != h.URI:
		p.addf("healthUri %s and health.uri %s disagree: send only health.uri", quote(req.HealthURI), quote(h.URI))
	}
	if h.Protocol == "" {
		h.Protocol = HealthHTTP
	}
	if h.ExpectedStatusCode == 0 {
		h.ExpectedStatusCode = 200
	}
	if h.Timeout == "" {
		h.Timeout = DefaultHealthTimeout
	}
}

func checkFunctionName(p *problems, name string) {
	switch {
	case name == "":
		p.addf("name is required: %s", nameRule)
	case len(name) > MaxNameLen:
		p.addf("name %s is %d characters long: %s", quote(name), utf8.RuneCountInString(name), nameRule)
	case !(isLetter(name[0]) || isDigit(name[0])) ||
		!allBytes(name, func(c byte) bool { return isLetter(c) || isDigit(c) || c == '_' || c == '-' }):
		p.addf("name %s is invalid: %s", quote(name), nameRule)
	}
}

// checkPath checks a URL path the platform will call on the container.
func checkPath(p *problems, field, path string, required bool) {
	const rule = `it must be a path starting with "/", e.g. "/v1/infer"`
	switch {
	case path == "":
		if required {
			p.addf("%s is required: give the path your container serves, starting with \"/\", e.g. \"/v1/infer\"", field)
		}
	case path[0] != '/':
		p.addf("%s %s is invalid: %s", field, quote(path), rule)
	case len(path) > MaxPathLen:
		p.addf("%s is %d bytes long: at most %d are allowed", field, len(path), MaxPathLen)
	case hasSpaceOrControl(path):
		p.addf("%s %s is invalid: it must not contain spaces or control characters (percent-encode them)", field, quote(path))
	}
}

// checkPort checks an optional TCP port; 0 means "not set".
func checkPort(p *problems, field string, port int) {
	if port < 0 || port > 65535 {
		p.addf("%s %d is out of range: use 1-65535, or leave it out", field, port)
	}
}

func checkHealth(p *problems, req *model.CreateFunctionRequest) {
	h := req.Health
	if h == nil {
		return
	}
	if h.Protocol != HealthHTTP && h.Protocol != HealthGRPC {
		p.addf(`health.protocol %s is invalid: use "HTTP" (the default) or "gRPC"`, quote(h.Protocol))
	}
	uriField := "health.uri"
	if req.HealthURI != "" && req.HealthURI == h.URI {
		uriField = "healthUri" // name what the user sent
	}
	checkPath(p, uriField, h.URI, false)
	checkPort(p, "health.port", h.Port)
	if d, why := parseISODuration(h.Timeout); why != "" {
		p.addf("health.timeout %s is invalid: %s; %s", quote(h.Timeout), why, durationForms)
	} else if d <= 0 {
		p.addf("health.timeout %s is invalid: it must be longer than zero; %s", quote(h.Timeout), durationForms)
	}
	if h.ExpectedStatusCode < 100 || h.ExpectedStatusCode > 599 {
		p.addf("health.expectedStatusCode %d is invalid: use an HTTP status code from 100 to 599 (default 200)", h.ExpectedStatusCode)
	}
}

func checkContainer(p *problems, req *model.CreateFunctionRequest) {
	img := req.ContainerImage
	switch {
	case img == "":
	case hasSpaceOrControl(img):
		p.addf("containerImage %s is invalid: it must not contain spaces or control characters; put arguments in containerArgs", quote(img))
	case img == model.ProcessImagePrefix:
		p.addf(`containerImage %s is invalid: name the command after process://, e.g. "process:///usr/local/bin/server" or "process://server"`, quote(img))
	}
	if n := len(req.ContainerArgs); n > MaxContainerArgsLen {
		p.addf("containerArgs is %d bytes long: at most %d bytes (16 KiB) are allowed", n, MaxContainerArgsLen)
	} else if strings.IndexByte(req.ContainerArgs, 0) >= 0 {
		p.addf("containerArgs must not contain NUL characters")
	}
	env := req.ContainerEnvironment
	if len(env) > MaxContainerEnv {
		p.addf("containerEnvironment has %d entries: at most %d are allowed", len(env), MaxContainerEnv)
	}
	seen := make(map[string]int, len(env))
	for i, e := range env {
		switch {
		case e.Key == "":
			p.addf("containerEnvironment[%d].key is required: %s", i, envKeyRule)
		case !validEnvName(e.Key):
			p.addf("containerEnvironment[%d].key %s is invalid: %s", i, quote(e.Key), envKeyRule)
		default:
			if j, dup := seen[e.Key]; dup {
				p.addf("containerEnvironment[%d].key %s repeats containerEnvironment[%d]: each key may appear once", i, quote(e.Key), j)
			} else {
				seen[e.Key] = i
			}
		}
		if strings.IndexByte(e.Value, 0) >= 0 {
			p.addf("containerEnvironment[%d].value must not contain NUL characters", i)
		}
	}
}

// MaxRateLimitCount is the largest count a rateLimit may give.
const MaxRateLimitCount = 1_000_000_000

func checkRateLimit(p *problems, rl *model.RateLimit) {
	if rl == nil {
		return
	}
	const rule = `use a count from 1 to 1000000000 and a period, e.g. "100-S" (per second), "1000-M", "5000-H" or "10000-D"`
	count, unit, ok := strings.Cut(rl.RateLimit, "-")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n < 1 || n > MaxRateLimitCount || !allBytes(count, isDigit) ||
		(unit != "S" && unit != "M" && unit != "H" && unit != "D") {
		p.addf("rateLimit.rateLimit %s is invalid: %s", quote(rl.RateLimit), rule)
	}
	for i, id := range rl.ExemptedNCAIDs {
		if id == "" {
			p.addf("rateLimit.exemptedNcaIds[%d] is empty: remove it or give an account id", i)
		}
	}
}

// RateLimitRequest checks the body of PUT
// /v2/nvcf/ratelimit/functions/{id}/versions/{vid}: a rateLimit is required.
func RateLimitRequest(req *model.RateLimitRequest) error {
	if req == nil || req.RateLimit == nil {
		return problem.BadRequest(`rateLimit is required, e.g. {"rateLimit":{"rateLimit":"100-S"}}; to remove the limit, DELETE this path`)
	}
	var p problems
	checkRateLimit(&p, req.RateLimit)
	return p.err()
}
