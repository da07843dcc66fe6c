package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// secretMarker is put into secret values; no error body may ever contain it.
const secretMarker = "gantry-e2e-secret-marker-9f41c2"

// validationCase is one request that breaks one rule of API.md.
type validationCase struct {
	name   string
	method string
	path   string
	header map[string]string
	body   string
	status int      // 400 unless set
	detail []string // substrings the problem detail must hold, naming the field
}

// TestValidationRejectsEachRule sends, through the real HTTP API, one request
// per validation rule that API.md lists, and checks the answer: the right 4xx
// status, an application/problem+json body, and a detail that names what was
// wrong. No answer may be a 5xx, and no answer may repeat a secret value.
func TestValidationRejectsEachRule(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)

	// live is deployed with a running instance (for pexec, PUT and PATCH);
	// idle is not deployed (for POST deployment, so that a rule that wrongly
	// passed would show as a 200 rather than be masked by a 409); edge takes
	// the deployments at the limits, with minInstances 0 so that nothing runs.
	live, err := p.c.CreateFunction(ctx, selfFunction(t, "live", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	dep := p.deploy(t, live, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1}, model.StatusActive)
	idle, err := p.c.CreateFunction(ctx, selfFunction(t, "idle", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	edge, err := p.c.CreateFunction(ctx, selfFunction(t, "edge", "echo"))
	if err != nil {
		t.Fatal(err)
	}

	var (
		fnPath      = "/v2/nvcf/functions"
		versionPath = fnPath + "/" + idle.ID + "/versions"
		idleDeploy  = "/v2/nvcf/deployments/functions/" + idle.ID + "/versions/" + idle.VersionID
		liveDeploy  = "/v2/nvcf/deployments/functions/" + live.ID + "/versions/" + live.VersionID
		patchPath   = "/v2/nvcf/deployments/" + dep.ID + "/gpu-specifications/" + dep.Specs[0].ID
		pexecPath   = "/v2/nvcf/pexec/functions/" + live.ID
		secretsPath = "/v2/nvcf/secrets/functions/" + live.ID + "/versions/" + live.VersionID
		metaPath    = "/v2/nvcf/metadata/functions/" + live.ID + "/versions/" + live.VersionID
		edgeDeploy  = "/v2/nvcf/deployments/functions/" + edge.ID + "/versions/" + edge.VersionID
		longID      = strings.Repeat("a", 65)
		uuid        = "00000000-0000-0000-0000-000000000000"
	)

	long := func(n int) string { return strings.Repeat("a", n) }

	// The baseline bodies are valid, also at every limit: each case below
	// breaks exactly one rule of them, so its 400 can only come from that
	// rule.
	for _, ok := range []validationCase{
		{name: "function", method: "POST", path: fnPath, body: fnBody(nil)},
		{name: "function at every limit", method: "POST", path: fnPath, body: fnBody(func(m jsonObj) {
			m["name"] = "A" + long(127)
			m["health"].(jsonObj)["protocol"] = "gRPC"
			m["health"].(jsonObj)["timeout"] = "PT1M30.5S"
			m["apiBodyFormat"] = "PREDICT_V2"
			m["functionType"] = "STREAMING"
			m["tags"] = append(manyTags(63), "team:vision="+long(128-len("team:vision=")))
			m["description"] = long(256)
			m["secrets"] = []jsonObj{{"name": "K" + long(47), "value": long(32768)}}
		})},
		{name: "version", method: "POST", path: versionPath, body: fnBody(nil)},
		{name: "deployment", method: "PUT", path: liveDeploy, body: deployBody(nil)},
		{name: "deployment at the limits", method: "POST", path: edgeDeploy, body: deployBody(func(s jsonObj) {
			s["minInstances"] = 0
			s["maxInstances"] = 1
			s["maxRequestConcurrency"] = 16384
		})},
		{name: "pexec with poll seconds", method: "POST", path: pexecPath, header: pollHeader("3600"), body: "{}"},
	} {
		resp := sendCase(t, p, ok)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("baseline %s %s %s: %d %s", ok.name, ok.method, ok.path, resp.StatusCode, b)
		}
	}
	edgeDep, err := p.c.GetDeployment(ctx, edge.ID, edge.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	edgePatch := "/v2/nvcf/deployments/" + edgeDep.ID + "/gpu-specifications/" + edgeDep.Specs[0].ID
	for _, body := range []string{`{"maxRequestConcurrency":16384}`, `{"minInstances":0,"maxInstances":1}`} {
		resp := sendCase(t, p, validationCase{method: "PATCH", path: edgePatch, body: body})
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("baseline PATCH %s: %d %s", body, resp.StatusCode, b)
		}
	}
	tooLongSecret := secretMarker + strings.Repeat("s", 32769-len(secretMarker))

	cases := []validationCase{
		// Function bodies (POST /v2/nvcf/functions).
		{name: "name/missing", body: fnBody(func(m jsonObj) { delete(m, "name") }), detail: []string{"name is required"}},
		{name: "name/too long", body: fnBody(func(m jsonObj) { m["name"] = long(129) }), detail: []string{"name", "129 characters", "1-128"}},
		{name: "name/charset", body: fnBody(func(m jsonObj) { m["name"] = "echo.v1!" }), detail: []string{"name", "invalid"}},
		{name: "name/leading dash", body: fnBody(func(m jsonObj) { m["name"] = "-echo" }), detail: []string{"name", "invalid"}},
		{name: "name/on a new version", path: versionPath, body: fnBody(func(m jsonObj) { m["name"] = "bad name" }), detail: []string{"name", "invalid"}},
		{name: "inferenceUrl/missing", body: fnBody(func(m jsonObj) { delete(m, "inferenceUrl") }), detail: []string{"inferenceUrl is required"}},
		{name: "health.protocol", body: fnBody(func(m jsonObj) { m["health"].(jsonObj)["protocol"] = "TCP" }), detail: []string{"health.protocol", "TCP"}},
		{name: "health.timeout/not ISO-8601", body: fnBody(func(m jsonObj) { m["health"].(jsonObj)["timeout"] = "10s" }), detail: []string{"health.timeout", "ISO-8601"}},
		{name: "health.timeout/months", body: fnBody(func(m jsonObj) { m["health"].(jsonObj)["timeout"] = "P1M" }), detail: []string{"health.timeout"}},
		{name: "health.timeout/zero", body: fnBody(func(m jsonObj) { m["health"].(jsonObj)["timeout"] = "PT0S" }), detail: []string{"health.timeout"}},
		{name: "containerImage/none", body: fnBody(func(m jsonObj) { delete(m, "containerImage") }), detail: []string{"containerImage is required"}},
		{name: "helmChart/scheme", body: fnBody(func(m jsonObj) {
			delete(m, "containerImage")
			m["helmChart"], m["helmChartServiceName"] = "ftp://registry.example/charts/echo-1.0.tgz", "echo"
		}), detail: []string{`helmChart scheme "ftp" is not supported`, "oci://"}},
		{name: "apiBodyFormat", body: fnBody(func(m jsonObj) { m["apiBodyFormat"] = "XML" }), detail: []string{"apiBodyFormat", "XML"}},
		{name: "tags/too many", body: fnBody(func(m jsonObj) { m["tags"] = manyTags(65) }), detail: []string{"tags has 65 entries", "64"}},
		{name: "tags/too long", body: fnBody(func(m jsonObj) { m["tags"] = []string{"ok", long(129)} }), detail: []string{"tags[1]"}},
		{name: "tags/charset", body: fnBody(func(m jsonObj) { m["tags"] = []string{"team vision"} }), detail: []string{"tags[0]", "team vision"}},
		{name: "description/too long", body: fnBody(func(m jsonObj) { m["description"] = long(257) }), detail: []string{"description", "256"}},
		{name: "secrets/name too long", body: fnBody(func(m jsonObj) { m["secrets"] = []jsonObj{{"name": long(49), "value": "v"}} }),
			detail: []string{"secrets[0].name", "49 characters"}},
		{name: "secrets/name missing", body: fnBody(func(m jsonObj) { m["secrets"] = []jsonObj{{"value": "v"}} }), detail: []string{"secrets[0].name is required"}},
		{name: "secrets/value too long", body: fnBody(func(m jsonObj) { m["secrets"] = []jsonObj{{"name": "API_KEY", "value": tooLongSecret}} }),
			detail: []string{"secrets[0].value", "32769 bytes", "32768"}},
		{name: "functionType", body: fnBody(func(m jsonObj) { m["functionType"] = "BATCH" }), detail: []string{"functionType", "BATCH"}},

		// Deployment bodies.
		{name: "deployment/minInstances negative", path: idleDeploy, body: deployBody(func(s jsonObj) { s["minInstances"] = -1 }),
			detail: []string{"deploymentSpecifications[0].minInstances -1"}},
		{name: "deployment/maxInstances zero", path: idleDeploy, body: deployBody(func(s jsonObj) { s["minInstances"] = 0; s["maxInstances"] = 0 }),
			detail: []string{"deploymentSpecifications[0].maxInstances 0"}},
		{name: "deployment/maxInstances below min", path: idleDeploy, body: deployBody(func(s jsonObj) { s["minInstances"] = 3; s["maxInstances"] = 2 }),
			detail: []string{"deploymentSpecifications[0].maxInstances 2 is less than minInstances 3"}},
		{name: "deployment/maxRequestConcurrency too high", path: idleDeploy, body: deployBody(func(s jsonObj) { s["maxRequestConcurrency"] = 16385 }),
			detail: []string{"deploymentSpecifications[0].maxRequestConcurrency 16385", "16384"}},
		{name: "deployment/maxRequestConcurrency negative", path: idleDeploy, body: deployBody(func(s jsonObj) { s["maxRequestConcurrency"] = -1 }),
			detail: []string{"deploymentSpecifications[0].maxRequestConcurrency -1"}},
		{name: "deployment/maxRequestConcurrency zero", method: "PUT", path: edgeDeploy,
			body:   deployBody(func(s jsonObj) { s["minInstances"] = 0; s["maxRequestConcurrency"] = 0 }),
			detail: []string{"deploymentSpecifications[0].maxRequestConcurrency 0"}},
		{name: "deployment/gpu missing", path: idleDeploy, body: deployBody(func(s jsonObj) { delete(s, "gpu") }),
			detail: []string{"deploymentSpecifications[0].gpu is required"}},
		{name: "deployment/no specs", path: idleDeploy, body: `{"deploymentSpecifications":[]}`, detail: []string{"deploymentSpecifications must list at least one"}},
		{name: "deployment/specs absent", path: idleDeploy, body: `{}`, detail: []string{"deploymentSpecifications must list at least one"}},
		{name: "deployment/PUT maxInstances zero", method: "PUT", path: liveDeploy, body: deployBody(func(s jsonObj) { s["minInstances"] = 0; s["maxInstances"] = 0 }),
			detail: []string{"deploymentSpecifications[0].maxInstances 0"}},

		// PATCH gpu-specifications: the same bounds on the patched spec.
		{name: "patch/minInstances negative", method: "PATCH", path: patchPath, body: `{"minInstances":-1}`, detail: []string{"minInstances -1"}},
		{name: "patch/maxInstances zero", method: "PATCH", path: patchPath, body: `{"minInstances":0,"maxInstances":0}`, detail: []string{"maxInstances 0"}},
		{name: "patch/min above max", method: "PATCH", path: patchPath, body: `{"minInstances":5}`, detail: []string{"maxInstances 1 is less than minInstances 5"}},
		{name: "patch/maxRequestConcurrency too high", method: "PATCH", path: patchPath, body: `{"maxRequestConcurrency":16385}`,
			detail: []string{"maxRequestConcurrency 16385"}},
		{name: "patch/maxRequestConcurrency zero", method: "PATCH", path: edgePatch, body: `{"maxRequestConcurrency":0}`,
			detail: []string{"maxRequestConcurrency 0"}},
		{name: "patch/maxRequestConcurrency changed", method: "PATCH", path: edgePatch, body: `{"maxRequestConcurrency":1}`,
			detail: []string{"maxRequestConcurrency cannot change in place (it is 16384)"}},
		{name: "patch/scale-up factor", method: "PATCH", path: patchPath, body: `{"autoscalingConfiguration":{"scaleUpDetails":{"factor":0.5,"threshold":80}}}`,
			detail: []string{"scaleUpDetails.factor 0.5", "greater than 1"}},
		{name: "patch/stickiness", method: "PATCH", path: patchPath,
			body:   `{"autoscalingConfiguration":{"scaleDownDetails":{"factor":0.5,"threshold":20,"stickiness":{"size":"PT5M","threshold":"PT10M"}}}}`,
			detail: []string{"stickiness.threshold \"PT10M\"", "shorter than stickiness.size"}},
		{name: "patch/nothing to change", method: "PATCH", path: patchPath, body: `{}`, detail: []string{"minInstances", "maxInstances", "maxRequestConcurrency"}},
		{name: "patch/gpu not patchable", method: "PATCH", path: patchPath, body: `{"gpu":"L40S"}`,
			detail: []string{`gpu cannot change in place (it is "H100")`, "PUT the deployment", "send at least one of"}},

		// Metadata and secrets endpoints apply the same tag and secret rules.
		{name: "metadata/tags charset", method: "PUT", path: metaPath, body: `{"tags":["ok","no spaces"]}`, detail: []string{"tags[1]"}},
		{name: "metadata/too many tags", method: "PUT", path: metaPath, body: mustJSON(jsonObj{"tags": manyTags(65)}), detail: []string{"tags has 65 entries"}},
		{name: "secrets endpoint/none", method: "PUT", path: secretsPath, body: `{"secrets":[]}`, detail: []string{"secrets must list at least one"}},
		{name: "secrets endpoint/name too long", method: "PUT", path: secretsPath, body: mustJSON(jsonObj{"secrets": []jsonObj{{"name": long(49), "value": "v"}}}),
			detail: []string{"secrets[0].name"}},
		{name: "secrets endpoint/value too long", method: "PUT", path: secretsPath, body: mustJSON(jsonObj{"secrets": []jsonObj{{"name": "API_KEY", "value": tooLongSecret}}}),
			detail: []string{"secrets[0].value", "32768"}},

		// NVCF-POLL-SECONDS, 1..3600, on pexec and on the status endpoint.
		{name: "poll seconds/zero", method: "POST", path: pexecPath, header: pollHeader("0"), body: "{}", detail: []string{"NVCF-POLL-SECONDS", "1 to 3600"}},
		{name: "poll seconds/too high", method: "POST", path: pexecPath, header: pollHeader("3601"), body: "{}", detail: []string{"NVCF-POLL-SECONDS", `"3601"`}},
		{name: "poll seconds/negative", method: "POST", path: pexecPath, header: pollHeader("-5"), body: "{}", detail: []string{"NVCF-POLL-SECONDS"}},
		{name: "poll seconds/not a number", method: "POST", path: pexecPath, header: pollHeader("soon"), body: "{}", detail: []string{"NVCF-POLL-SECONDS"}},
		{name: "poll seconds/fraction", method: "POST", path: pexecPath, header: pollHeader("1.5"), body: "{}", detail: []string{"NVCF-POLL-SECONDS"}},
		{name: "poll seconds/on a version", method: "POST", path: pexecPath + "/versions/" + live.VersionID, header: pollHeader("0"), body: "{}", detail: []string{"NVCF-POLL-SECONDS"}},
		{name: "poll seconds/on an undeployed function", method: "POST", path: "/v2/nvcf/pexec/functions/" + idle.ID, header: pollHeader("0"), body: "{}",
			detail: []string{"NVCF-POLL-SECONDS"}},
		{name: "poll seconds/on status", method: "GET", path: "/v2/nvcf/pexec/status/" + uuid, header: pollHeader("3601"), detail: []string{"NVCF-POLL-SECONDS"}},

		// Bodies that are not the JSON object the endpoint takes.
		{name: "json/truncated", body: `{"name":"echo"`, detail: []string{"not valid JSON"}},
		{name: "json/trailing comma", body: `{"name":"echo",}`, detail: []string{"not valid JSON", "byte offset"}},
		{name: "json/not json", body: `name=echo`, detail: []string{"not valid JSON"}},
		{name: "json/trailing data", body: fnBody(nil) + ` {}`, detail: []string{"more data after the JSON object"}},
		{name: "json/array", body: `[]`, detail: []string{"must be a JSON object", "array"}},
		{name: "json/null", body: `null`, detail: []string{"must be a JSON object", "null"}},
		{name: "json/deployment truncated", path: idleDeploy, body: `{"deploymentSpecifications":[`, detail: []string{"not valid JSON"}},
		{name: "json/patch truncated", method: "PATCH", path: patchPath, body: `{"minInstances":`, detail: []string{"not valid JSON"}},
		{name: "type/name number", body: fnBody(func(m jsonObj) { m["name"] = 5 }), detail: []string{"field name must be a string"}},
		{name: "type/inferencePort string", body: fnBody(func(m jsonObj) { m["inferencePort"] = "8000" }), detail: []string{"inferencePort", "integer"}},
		{name: "type/health string", body: fnBody(func(m jsonObj) { m["health"] = "yes" }), detail: []string{"health", "object"}},
		{name: "type/tags string", body: fnBody(func(m jsonObj) { m["tags"] = "a,b" }), detail: []string{"tags", "array"}},
		{name: "type/containerEnvironment object", body: fnBody(func(m jsonObj) { m["containerEnvironment"] = jsonObj{"A": "b"} }),
			detail: []string{"containerEnvironment", "array"}},
		{name: "type/minInstances string", path: idleDeploy, body: deployBody(func(s jsonObj) { s["minInstances"] = "1" }), detail: []string{"minInstances", "integer"}},
		{name: "type/patch maxInstances bool", method: "PATCH", path: patchPath, body: `{"maxInstances":true}`, detail: []string{"maxInstances", "integer"}},
		{name: "type/specs object", path: idleDeploy, body: `{"deploymentSpecifications":{"gpu":"H100"}}`, detail: []string{"deploymentSpecifications", "array"}},
		{name: "empty/function", body: "", detail: []string{"request body is empty"}},
		{name: "empty/whitespace", body: " \n", detail: []string{"request body is empty"}},
		{name: "empty/deployment", path: idleDeploy, body: "", detail: []string{"request body is empty"}},
		{name: "empty/patch", method: "PATCH", path: patchPath, body: "", detail: []string{"request body is empty"}},
		{name: "empty/secrets", method: "PUT", path: secretsPath, body: "", detail: []string{"request body is empty"}},
		{name: "empty/metadata", method: "PUT", path: metaPath, body: "", detail: []string{"request body is empty"}},
		{name: "size/function over 4 MiB", body: fnBody(func(m jsonObj) { m["description"] = long(4 << 20) }), status: 413,
			detail: []string{"larger than the limit", "4 MiB"}},

		// Malformed ids in paths.
		{name: "path/function id with space", method: "GET", path: "/v2/nvcf/functions/bad%20id/versions", detail: []string{"functionId", `"bad id"`, "not a valid id"}},
		{name: "path/function id on new version", path: "/v2/nvcf/functions/bad%20id/versions", body: fnBody(nil), detail: []string{"functionId", "not a valid id"}},
		{name: "path/function id too long", method: "GET", path: "/v2/nvcf/functions/" + longID + "/versions", detail: []string{"functionId", "not a valid id"}},
		{name: "path/function id non-ASCII", method: "GET", path: "/v2/nvcf/functions/caf%C3%A9/versions", detail: []string{"functionId", "not a valid id"}},
		{name: "path/version id", method: "GET", path: versionPath + "/bad%21id", detail: []string{"versionId", "not a valid id"}},
		{name: "path/delete version id", method: "DELETE", path: versionPath + "/bad%2Cid", detail: []string{"versionId", "not a valid id"}},
		{name: "path/deployment function id", method: "GET", path: "/v2/nvcf/deployments/functions/bad%20id/versions/" + live.VersionID,
			detail: []string{"functionId", "not a valid id"}},
		{name: "path/deployment id", method: "GET", path: "/v2/nvcf/deployments/bad%20id", detail: []string{"deploymentId", "not a valid id"}},
		{name: "path/gpu spec id", method: "PATCH", path: "/v2/nvcf/deployments/" + dep.ID + "/gpu-specifications/bad%20id", body: `{"maxInstances":1}`,
			detail: []string{"gpuSpecId", "not a valid id"}},
		{name: "path/metadata version id", method: "PUT", path: "/v2/nvcf/metadata/functions/" + live.ID + "/versions/bad%20id", body: `{"tags":[]}`,
			detail: []string{"versionId", "not a valid id"}},
		{name: "path/secrets function id", method: "PUT", path: "/v2/nvcf/secrets/functions/bad%20id/versions/" + live.VersionID,
			body: `{"secrets":[{"name":"A","value":"b"}]}`, detail: []string{"functionId", "not a valid id"}},
		{name: "path/pexec function id", method: "POST", path: "/v2/nvcf/pexec/functions/bad%20id", body: "{}", detail: []string{"function id", "not a valid id"}},
		{name: "path/pexec version id", method: "POST", path: pexecPath + "/versions/" + longID, body: "{}", detail: []string{"version id", "not a valid id"}},
		{name: "path/status request id", method: "GET", path: "/v2/nvcf/pexec/status/bad%20id", detail: []string{"request id", "not a valid id"}},
		{name: "path/queue function id", method: "GET", path: "/v2/nvcf/queues/functions/bad%20id", detail: []string{"function id", "not a valid id"}},

		// Unknown routes.
		{name: "route/unknown under v2", method: "GET", path: "/v2/nvcf/nothing-here", status: 404, detail: []string{"no route", "/v2/nvcf/nothing-here"}},
		{name: "route/unknown root", method: "GET", path: "/does/not/exist", status: 404, detail: []string{"no route"}},
		{name: "route/too deep", method: "GET", path: versionPath + "/" + live.VersionID + "/extra", status: 404, detail: []string{"no route"}},
		{name: "route/unknown v1", method: "POST", path: "/v1/unknown", body: "{}", status: 404, detail: []string{"no route"}},
	}

	// Secret values must never come back, whatever else is wrong with the
	// request. Every case above is also checked for the marker.
	leaks := []validationCase{
		{name: "secret/too long value", body: fnBody(func(m jsonObj) { m["secrets"] = []jsonObj{{"name": "API_KEY", "value": tooLongSecret}} }),
			detail: []string{"secrets[0].value"}},
		{name: "secret/bad name beside the value", body: fnBody(func(m jsonObj) { m["secrets"] = []jsonObj{{"name": "1bad", "value": secretMarker}} }),
			detail: []string{"secrets[0].name"}},
		{name: "secret/duplicate name", body: fnBody(func(m jsonObj) {
			m["secrets"] = []jsonObj{{"name": "K", "value": secretMarker + "1"}, {"name": "K", "value": secretMarker + "2"}}
		}), detail: []string{"secrets[1].name"}},
		{name: "secret/value of the wrong type", body: `{"name":"echo","secrets":[{"name":"K","value":["` + secretMarker + `"]}]}`,
			detail: []string{"secrets.value", "string"}},
		{name: "secret/bad JSON after the value", body: `{"secrets":[{"name":"K","value":"` + secretMarker + `"}],"name":}`,
			detail: []string{"not valid JSON"}},
		{name: "secret/bad escape inside the value", body: `{"secrets":[{"name":"K","value":"` + secretMarker + `\q"}]}`,
			detail: []string{"not valid JSON"}},
		{name: "secret/other field wrong", body: fnBody(func(m jsonObj) {
			m["secrets"] = []jsonObj{{"name": "K", "value": secretMarker}}
			m["functionType"] = "BATCH"
		}), detail: []string{"functionType"}},
		{name: "secret/secrets endpoint too long", method: "PUT", path: secretsPath,
			body: mustJSON(jsonObj{"secrets": []jsonObj{{"name": "K", "value": tooLongSecret}}}), detail: []string{"secrets[0].value"}},
		{name: "secret/over the body limit", body: fnBody(func(m jsonObj) {
			m["secrets"] = []jsonObj{{"name": "K", "value": secretMarker + long(4<<20)}}
		}), status: 413, detail: []string{"larger than the limit"}},
	}

	for _, tc := range append(cases, leaks...) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.method == "" {
				tc.method = "POST"
			}
			if tc.path == "" {
				tc.path = fnPath
			}
			if tc.status == 0 {
				tc.status = http.StatusBadRequest
			}
			checkProblem(t, sendCase(t, p, tc), tc)
		})
	}
}

// jsonObj is a JSON object under construction.
type jsonObj = map[string]any

// fnBody is a valid create-function body, changed by mod.
func fnBody(mod func(jsonObj)) string {
	m := jsonObj{
		"name":           "echo",
		"inferenceUrl":   "/echo",
		"containerImage": "process://gantry",
		"containerArgs":  "example echo",
		"health":         jsonObj{"protocol": "HTTP", "uri": "/health", "timeout": "PT5S", "expectedStatusCode": 200},
	}
	if mod != nil {
		mod(m)
	}
	return mustJSON(m)
}

// deployBody is a valid deployment body of one spec, changed by mod.
func deployBody(mod func(jsonObj)) string {
	s := jsonObj{"gpu": "H100", "minInstances": 1, "maxInstances": 1}
	if mod != nil {
		mod(s)
	}
	return mustJSON(jsonObj{"deploymentSpecifications": []jsonObj{s}})
}

// manyTags returns n valid tags.
func manyTags(n int) []string {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = "t" + strings.Repeat("x", i%5) + string(rune('a'+i%26))
	}
	return tags
}

// pollHeader sets NVCF-POLL-SECONDS to v.
func pollHeader(v string) map[string]string { return map[string]string{"NVCF-POLL-SECONDS": v} }

// mustJSON encodes a body built in the test; it cannot fail for the maps
// and slices used here.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// sendCase makes the case's request with the admin token. tc.path is sent as
// written, percent-escapes included.
func sendCase(t *testing.T, p *platform, tc validationCase) *http.Response {
	t.Helper()
	req := newRequest(t, tc.method, p.URL()+tc.path, p.AdminToken())
	if tc.body != "" || tc.method == "POST" || tc.method == "PUT" || tc.method == "PATCH" {
		req.Body = io.NopCloser(strings.NewReader(tc.body))
		req.ContentLength = int64(len(tc.body))
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range tc.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// checkProblem requires the case's status, a problem+json body whose status
// matches and whose detail holds every wanted substring, no 5xx, and no
// secret marker anywhere in the answer.
func checkProblem(t *testing.T, resp *http.Response, tc validationCase) {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 500 {
		t.Fatalf("%s %s answered %d, a server error: %s", tc.method, tc.path, resp.StatusCode, raw)
	}
	if strings.Contains(string(raw), secretMarker) {
		t.Fatalf("%s %s: the answer repeats a secret value: %.300s", tc.method, tc.path, raw)
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			if strings.Contains(v, secretMarker) {
				t.Fatalf("%s %s: header %s repeats a secret value", tc.method, tc.path, k)
			}
		}
	}
	if resp.StatusCode != tc.status {
		t.Fatalf("%s %s: status %d, want %d: %.500s", tc.method, tc.path, resp.StatusCode, tc.status, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s %s: Content-Type %q, want application/problem+json: %.300s", tc.method, tc.path, ct, raw)
	}
	var pb struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(raw, &pb); err != nil {
		t.Fatalf("%s %s: problem body does not parse: %v: %.300s", tc.method, tc.path, err, raw)
	}
	if pb.Status != tc.status || pb.Type == "" || pb.Title == "" {
		t.Fatalf("%s %s: problem %+v, want status %d with type and title", tc.method, tc.path, pb, tc.status)
	}
	for _, want := range tc.detail {
		if !strings.Contains(pb.Detail, want) {
			t.Fatalf("%s %s: detail %q does not contain %q", tc.method, tc.path, pb.Detail, want)
		}
	}
}
