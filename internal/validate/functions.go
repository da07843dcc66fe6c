package validate

import (
	"bytes"
	"encoding/json"
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
// Every NVCF field is honoured or refused, never stored and ignored: Gantry
// runs containerImage only, so helmChart,
// helmChartServiceName, telemetries, llmInvocationConfig,
// utilsContainerImage and functionType LLM are refused with what to do
// instead (see unsupportedFunction), and containerImage is required.
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
	unsupportedArtifacts(&p, req)
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

// unsupportedArtifacts refuses what a function could run instead of its
// containerImage: Gantry runs container and process:// images only.
func unsupportedArtifacts(p *problems, req *model.CreateFunctionRequest) {
	switch {
	case req.HelmChart != "" && req.HelmChartServiceName != "":
		p.addf("helmChart is not supported: Gantry does not run Helm charts yet; " +
			"build the function as a container image, send it as containerImage, and remove helmChart and helmChartServiceName")
	case req.HelmChart != "":
		p.addf("helmChart is not supported: Gantry does not run Helm charts yet; " +
			"build the function as a container image, send it as containerImage, and remove helmChart")
	case req.HelmChartServiceName != "":
		p.addf("helmChartServiceName is not supported: it names a Helm chart's Service, and Gantry does not run Helm charts yet; remove it")
	}
}

// unsupportedFunction refuses the NVCF function fields Gantry has nothing
// behind yet.
func unsupportedFunction(p *problems, req *model.CreateFunctionRequest) {
	if t := req.Telemetries; t != nil && (t.LogsTelemetryID != "" || t.MetricsTelemetryID != "" || t.TracesTelemetryID != "") {
		p.addf("telemetries is not supported: Gantry has no telemetry endpoints yet; " +
			"remove telemetries and export logs, metrics and traces from the container itself")
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
