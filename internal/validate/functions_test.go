package validate

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

// validFunction returns a fresh request that passes every rule.
func validFunction() *model.CreateFunctionRequest {
	return &model.CreateFunctionRequest{
		Name:           "echo-fn_1",
		InferenceURL:   "/v1/infer",
		InferencePort:  8000,
		Health:         &model.Health{Protocol: "HTTP", URI: "/health", Port: 8000, Timeout: "PT30S", ExpectedStatusCode: 200},
		ContainerImage: "nvcr.io/org/echo:1.0",
		ContainerArgs:  "--port 8000",
		ContainerEnvironment: []model.EnvVar{
			{Key: "LOG_LEVEL", Value: "debug"},
			{Key: "_PRIVATE", Value: ""},
		},
		APIBodyFormat: model.BodyFormatCustom,
		Tags:          []string{"team:vision", "env=prod", "a_b-c"},
		Description:   "echoes",
		Secrets:       []model.Secret{{Name: "API_KEY", Value: "s3cr3t"}},
		FunctionType:  model.FunctionTypeDefault,
		RateLimit:     &model.RateLimit{RateLimit: "100-S"},
	}
}

func TestFunctionValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(r *model.CreateFunctionRequest)
	}{
		{"base", func(r *model.CreateFunctionRequest) {}},
		{"minimal", func(r *model.CreateFunctionRequest) {
			*r = model.CreateFunctionRequest{Name: "f", InferenceURL: "/", ContainerImage: "img"}
		}},
		{"name of 128 characters", func(r *model.CreateFunctionRequest) { r.Name = strings.Repeat("a", 128) }},
		{"name starting with a digit", func(r *model.CreateFunctionRequest) { r.Name = "9lives" }},
		{"process image", func(r *model.CreateFunctionRequest) { r.ContainerImage = "process:///usr/bin/echo-server" }},
		{"process image on PATH", func(r *model.CreateFunctionRequest) { r.ContainerImage = "process://echo-server" }},
		{"grpc health", func(r *model.CreateFunctionRequest) {
			r.Health = &model.Health{Protocol: "gRPC", Port: 8001, Timeout: "PT1M30S"}
		}},
		{"fractional timeout", func(r *model.CreateFunctionRequest) { r.Health.Timeout = "PT0.5S" }},
		{"status codes at the bounds", func(r *model.CreateFunctionRequest) { r.Health.ExpectedStatusCode = 599 }},
		{"ports at the bounds", func(r *model.CreateFunctionRequest) { r.InferencePort, r.Health.Port = 65535, 1 }},
		{"legacy healthUri", func(r *model.CreateFunctionRequest) { r.Health, r.HealthURI = nil, "/health" }},
		{"healthUri equal to health.uri", func(r *model.CreateFunctionRequest) { r.HealthURI = r.Health.URI }},
		{"PREDICT_V2 streaming", func(r *model.CreateFunctionRequest) {
			r.APIBodyFormat, r.FunctionType = model.BodyFormatPredictV2, model.FunctionTypeStreaming
		}},
		{"empty unsupported fields carry nothing", func(r *model.CreateFunctionRequest) {
			r.Models, r.Resources = []model.Artifact{}, []model.Artifact{}
			r.Telemetries = &model.Telemetries{}
			r.LLMInvocationConfig = json.RawMessage(" null ")
		}},
		{"empty llmInvocationConfig object", func(r *model.CreateFunctionRequest) { r.LLMInvocationConfig = json.RawMessage("{ }") }},
		{"64 tags of 128 characters", func(r *model.CreateFunctionRequest) {
			r.Tags = make([]string, MaxTags)
			for i := range r.Tags {
				r.Tags[i] = strings.Repeat("t", MaxTagLen)
			}
		}},
		{"description of 256 multibyte characters", func(r *model.CreateFunctionRequest) { r.Description = strings.Repeat("é", 256) }},
		{"containerArgs at the cap", func(r *model.CreateFunctionRequest) { r.ContainerArgs = strings.Repeat("a", MaxContainerArgsLen) }},
		{"containerEnvironment at the cap", func(r *model.CreateFunctionRequest) {
			r.ContainerEnvironment = nil
			for i := range MaxContainerEnv {
				r.ContainerEnvironment = append(r.ContainerEnvironment, model.EnvVar{Key: "K" + itoa(i)})
			}
		}},
		{"secret at the limits", func(r *model.CreateFunctionRequest) {
			r.Secrets = []model.Secret{{Name: strings.Repeat("S", 48), Value: strings.Repeat("v", MaxSecretValueLen)}}
		}},
		{"rate limits", func(r *model.CreateFunctionRequest) {
			r.RateLimit = &model.RateLimit{RateLimit: "1000000000-D", ExemptedNCAIDs: []string{"acct"}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validFunction()
			tc.mutate(r)
			if err := Function(r); err != nil {
				t.Fatalf("Function: %v", err)
			}
		})
	}
}

func TestFunctionRules(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) []model.EnvVar {
		var out []model.EnvVar
		for i := 0; i < len(kv); i += 2 {
			out = append(out, model.EnvVar{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	tests := []struct {
		name   string
		mutate func(r *model.CreateFunctionRequest)
		want   string
	}{
		{"name missing", func(r *model.CreateFunctionRequest) { r.Name = "" },
			"name is required: use 1-128 characters of letters, digits, '_' and '-', starting with a letter or digit"},
		{"name with bad characters", func(r *model.CreateFunctionRequest) { r.Name = "9 bad!" },
			`name "9 bad!" is invalid: use 1-128 characters of letters, digits, '_' and '-', starting with a letter or digit`},
		{"name starting with underscore", func(r *model.CreateFunctionRequest) { r.Name = "_x" }, `name "_x" is invalid`},
		{"name starting with dash", func(r *model.CreateFunctionRequest) { r.Name = "-x" }, `name "-x" is invalid`},
		{"name not ASCII", func(r *model.CreateFunctionRequest) { r.Name = "héllo" }, `name "héllo" is invalid`},
		{"name too long", func(r *model.CreateFunctionRequest) { r.Name = strings.Repeat("a", 129) },
			"is 129 characters long: use 1-128"},
		{"inferenceUrl missing", func(r *model.CreateFunctionRequest) { r.InferenceURL = "" }, "inferenceUrl is required"},
		{"inferenceUrl relative", func(r *model.CreateFunctionRequest) { r.InferenceURL = "infer" },
			`inferenceUrl "infer" is invalid: it must be a path starting with "/"`},
		{"inferenceUrl absolute URL", func(r *model.CreateFunctionRequest) { r.InferenceURL = "http://x/infer" },
			`inferenceUrl "http://x/infer" is invalid: it must be a path`},
		{"inferenceUrl with space", func(r *model.CreateFunctionRequest) { r.InferenceURL = "/a b" },
			"must not contain spaces or control characters"},
		{"inferenceUrl too long", func(r *model.CreateFunctionRequest) { r.InferenceURL = "/" + strings.Repeat("a", MaxPathLen) },
			"inferenceUrl is 2049 bytes long: at most 2048"},
		{"inferencePort negative", func(r *model.CreateFunctionRequest) { r.InferencePort = -1 },
			"inferencePort -1 is out of range: use 1-65535"},
		{"inferencePort too big", func(r *model.CreateFunctionRequest) { r.InferencePort = 65536 },
			"inferencePort 65536 is out of range: use 1-65535"},
		{"health protocol unknown", func(r *model.CreateFunctionRequest) { r.Health.Protocol = "TCP" },
			`health.protocol "TCP" is invalid: use "HTTP" (the default) or "gRPC"`},
		{"health protocol wrong case", func(r *model.CreateFunctionRequest) { r.Health.Protocol = "grpc" },
			`health.protocol "grpc" is invalid`},
		{"health uri relative", func(r *model.CreateFunctionRequest) { r.Health.URI = "health" },
			`health.uri "health" is invalid: it must be a path starting with "/"`},
		{"legacy healthUri relative", func(r *model.CreateFunctionRequest) { r.Health, r.HealthURI = nil, "health" },
			`healthUri "health" is invalid: it must be a path starting with "/"`},
		{"healthUri disagrees with health.uri", func(r *model.CreateFunctionRequest) { r.HealthURI = "/other" },
			`healthUri "/other" and health.uri "/health" disagree: send only health.uri`},
		{"health port too big", func(r *model.CreateFunctionRequest) { r.Health.Port = 70000 },
			"health.port 70000 is out of range: use 1-65535"},
		{"health timeout not ISO", func(r *model.CreateFunctionRequest) { r.Health.Timeout = "10s" },
			`health.timeout "10s" is invalid: it must start with P; use an ISO-8601 duration such as PT10S`},
		{"health timeout zero", func(r *model.CreateFunctionRequest) { r.Health.Timeout = "PT0S" },
			`health.timeout "PT0S" is invalid: it must be longer than zero`},
		{"health timeout negative", func(r *model.CreateFunctionRequest) { r.Health.Timeout = "-PT10S" },
			`health.timeout "-PT10S" is invalid: it must not carry a sign`},
		{"health timeout in months", func(r *model.CreateFunctionRequest) { r.Health.Timeout = "P1M" },
			"years, months and weeks are not supported"},
		{"expectedStatusCode too small", func(r *model.CreateFunctionRequest) { r.Health.ExpectedStatusCode = 99 },
			"health.expectedStatusCode 99 is invalid: use an HTTP status code from 100 to 599"},
		{"expectedStatusCode too big", func(r *model.CreateFunctionRequest) { r.Health.ExpectedStatusCode = 600 },
			"health.expectedStatusCode 600 is invalid"},
		{"expectedStatusCode negative", func(r *model.CreateFunctionRequest) { r.Health.ExpectedStatusCode = -200 },
			"health.expectedStatusCode -200 is invalid"},
		{"no image", func(r *model.CreateFunctionRequest) { r.ContainerImage = "" },
			`containerImage is required: give the image to run, e.g. "nvcr.io/org/server:1.0", or a local program as "process:///usr/local/bin/server"`},
		{"process image without command", func(r *model.CreateFunctionRequest) { r.ContainerImage = "process://" },
			`containerImage "process://" is invalid: name the command after process://`},
		{"image with space", func(r *model.CreateFunctionRequest) { r.ContainerImage = "img --flag" },
			"put arguments in containerArgs"},
		{"containerArgs too long", func(r *model.CreateFunctionRequest) { r.ContainerArgs = strings.Repeat("a", MaxContainerArgsLen+1) },
			"containerArgs is 16385 bytes long: at most 16384 bytes (16 KiB) are allowed"},
		{"containerArgs with NUL", func(r *model.CreateFunctionRequest) { r.ContainerArgs = "a\x00b" },
			"containerArgs must not contain NUL characters"},
		{"too many env entries", func(r *model.CreateFunctionRequest) {
			r.ContainerEnvironment = nil
			for i := range MaxContainerEnv + 1 {
				r.ContainerEnvironment = append(r.ContainerEnvironment, model.EnvVar{Key: "K" + itoa(i)})
			}
		}, "containerEnvironment has 257 entries: at most 256 are allowed"},
		{"env key empty", func(r *model.CreateFunctionRequest) { r.ContainerEnvironment = env("", "x") },
			"containerEnvironment[0].key is required: use letters, digits and '_', not starting with a digit"},
		{"env key starting with digit", func(r *model.CreateFunctionRequest) { r.ContainerEnvironment = env("OK", "", "1ABC", "x") },
			`containerEnvironment[1].key "1ABC" is invalid: use letters, digits and '_', not starting with a digit`},
		{"env key with dash", func(r *model.CreateFunctionRequest) { r.ContainerEnvironment = env("A-B", "x") },
			`containerEnvironment[0].key "A-B" is invalid`},
		{"env key duplicated", func(r *model.CreateFunctionRequest) { r.ContainerEnvironment = env("A", "1", "B", "2", "A", "3") },
			`containerEnvironment[2].key "A" repeats containerEnvironment[0]: each key may appear once`},
		{"env value with NUL", func(r *model.CreateFunctionRequest) { r.ContainerEnvironment = env("A", "x\x00") },
			"containerEnvironment[0].value must not contain NUL characters"},
		{"apiBodyFormat unknown", func(r *model.CreateFunctionRequest) { r.APIBodyFormat = "JSON" },
			`apiBodyFormat "JSON" is invalid: use "CUSTOM" (the default) or "PREDICT_V2"`},
		{"functionType unknown", func(r *model.CreateFunctionRequest) { r.FunctionType = "BATCH" },
			`functionType "BATCH" is invalid: use "DEFAULT" (the default) or "STREAMING"`},
		{"too many tags", func(r *model.CreateFunctionRequest) { r.Tags = make([]string, 65); fill(r.Tags, "t") },
			"tags has 65 entries: at most 64 tags are allowed"},
		{"tag empty", func(r *model.CreateFunctionRequest) { r.Tags = []string{"ok", ""} },
			`tags[1] "" is invalid: use 1-128 characters of letters, digits, '_', ':', '=' and '-'`},
		{"tag with space", func(r *model.CreateFunctionRequest) { r.Tags = []string{"a b"} }, `tags[0] "a b" is invalid`},
		{"tag with slash", func(r *model.CreateFunctionRequest) { r.Tags = []string{"a/b"} }, `tags[0] "a/b" is invalid`},
		{"tag too long", func(r *model.CreateFunctionRequest) { r.Tags = []string{strings.Repeat("t", 129)} }, "tags[0]"},
		{"description too long", func(r *model.CreateFunctionRequest) { r.Description = strings.Repeat("d", 257) },
			"description is 257 characters long: at most 256 are allowed"},
		{"secret name missing", func(r *model.CreateFunctionRequest) { r.Secrets = []model.Secret{{Value: "v"}} },
			"secrets[0].name is required: use 1-48 characters of letters, digits and '_', not starting with a digit (the rule for environment variable names"},
		{"secret name too long", func(r *model.CreateFunctionRequest) {
			r.Secrets = []model.Secret{{Name: strings.Repeat("S", 49), Value: "v"}}
		},
			"secrets[0].name \"SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS\" is 49 characters long: use 1-48 characters"},
		{"secret name starting with digit", func(r *model.CreateFunctionRequest) { r.Secrets = []model.Secret{{Name: "1KEY", Value: "v"}} },
			`secrets[0].name "1KEY" is invalid`},
		{"secret name with dash", func(r *model.CreateFunctionRequest) { r.Secrets = []model.Secret{{Name: "API-KEY", Value: "v"}} },
			`secrets[0].name "API-KEY" is invalid`},
		{"secret name duplicated", func(r *model.CreateFunctionRequest) {
			r.Secrets = []model.Secret{{Name: "K", Value: "1"}, {Name: "K", Value: "2"}}
		}, `secrets[1].name "K" repeats secrets[0]: each secret name may appear once`},
		{"secret value empty", func(r *model.CreateFunctionRequest) { r.Secrets = []model.Secret{{Name: "K"}} },
			"secrets[0].value is empty"},
		{"secret value too long", func(r *model.CreateFunctionRequest) {
			r.Secrets = []model.Secret{{Name: "K", Value: strings.Repeat("v", MaxSecretValueLen+1)}}
		}, "secrets[0].value is 32769 bytes long: at most 32768 bytes are allowed"},
		{"rateLimit without period", func(r *model.CreateFunctionRequest) { r.RateLimit.RateLimit = "100" },
			`rateLimit.rateLimit "100" is invalid: use a count from 1 to 1000000000 and a period, e.g. "100-S"`},
		{"rateLimit zero", func(r *model.CreateFunctionRequest) { r.RateLimit.RateLimit = "0-S" }, `rateLimit.rateLimit "0-S" is invalid`},
		{"rateLimit signed", func(r *model.CreateFunctionRequest) { r.RateLimit.RateLimit = "+5-S" }, `rateLimit.rateLimit "+5-S" is invalid`},
		{"rateLimit bad period", func(r *model.CreateFunctionRequest) { r.RateLimit.RateLimit = "5-W" }, `rateLimit.rateLimit "5-W" is invalid`},
		{"rateLimit empty exemption", func(r *model.CreateFunctionRequest) { r.RateLimit.ExemptedNCAIDs = []string{""} },
			"rateLimit.exemptedNcaIds[0] is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validFunction()
			tc.mutate(r)
			wantProblem(t, Function(r), 400, tc.want)
		})
	}
}

// TestFunctionRefusesUnsupported: every NVCF function field Gantry has
// nothing behind is a 400 saying so and what to do instead, never stored
// and ignored.
func TestFunctionRefusesUnsupported(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(r *model.CreateFunctionRequest)
		want   string // the whole detail
	}{
		{"functionType LLM", func(r *model.CreateFunctionRequest) { r.FunctionType = model.FunctionTypeLLM },
			`functionType "LLM" is not supported: Gantry does not support LLM functions yet (NVCF builds them from models); ` +
				`use "DEFAULT" or "STREAMING" and serve the model from containerImage`},
		{"telemetries with a malformed id", func(r *model.CreateFunctionRequest) { r.Telemetries = &model.Telemetries{TracesTelemetryID: "t 1"} },
			`telemetries.tracesTelemetryId "t 1" is not a valid id: use 1-64 letters, digits and '-', such as a UUID`},
		{"llmInvocationConfig", func(r *model.CreateFunctionRequest) {
			r.LLMInvocationConfig = json.RawMessage(`{"chatTemplate":"x"}`)
		}, "llmInvocationConfig is not supported: Gantry does not support LLM functions yet; remove it and serve the model behind inferenceUrl"},
		{"llmInvocationConfig not an object", func(r *model.CreateFunctionRequest) { r.LLMInvocationConfig = json.RawMessage(`[1]`) },
			"llmInvocationConfig is not supported: Gantry does not support LLM functions yet; remove it and serve the model behind inferenceUrl"},
		{"utilsContainerImage", func(r *model.CreateFunctionRequest) { r.UtilsContainerImage = "nvcr.io/nvidia/utils:1" },
			"utilsContainerImage is not supported: Gantry runs no utility container beside the function yet; " +
				"remove it and build what it does into containerImage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validFunction()
			tc.mutate(r)
			wantDetail(t, Function(r), tc.want)
		})
	}
}

// TestFunctionHelmChart: a Helm-chart function needs its chart's URL, its
// Service and inferencePort, and no container fields.
func TestFunctionHelmChart(t *testing.T) {
	t.Parallel()
	helm := func(r *model.CreateFunctionRequest) {
		r.ContainerImage, r.ContainerArgs, r.ContainerEnvironment = "", "", nil
		r.HelmChart, r.HelmChartServiceName, r.InferencePort = "oci://registry.example.com/org/charts/echo-1.0.tgz", "echo-svc", 8000
	}
	tests := []struct {
		name   string
		mutate func(r *model.CreateFunctionRequest)
		want   string // the whole detail; empty: accepted
	}{
		{"oci chart", func(r *model.CreateFunctionRequest) {}, ""},
		{"https chart", func(r *model.CreateFunctionRequest) { r.HelmChart = "https://charts.example.com/echo-1.0.0.tgz" }, ""},
		{"no service", func(r *model.CreateFunctionRequest) { r.HelmChartServiceName = "" },
			"helmChartServiceName is required with helmChart: name the chart's Service that serves inferencePort (templated names are not supported)"},
		{"service alone", func(r *model.CreateFunctionRequest) { r.HelmChart, r.ContainerImage = "", "nvcr.io/e/echo:1" },
			"helmChartServiceName is set without helmChart: it names a Helm chart's Service; add helmChart or remove helmChartServiceName"},
		{"bad service name", func(r *model.CreateFunctionRequest) { r.HelmChartServiceName = "Echo_Svc" },
			`helmChartServiceName "Echo_Svc" is not a Kubernetes Service name: use at most 63 lowercase letters, digits and '-', starting with a letter`},
		{"no inferencePort", func(r *model.CreateFunctionRequest) { r.InferencePort = 0 },
			"inferencePort is required with helmChart: give the port of the Service helmChartServiceName names"},
		{"file scheme", func(r *model.CreateFunctionRequest) { r.HelmChart = "file:///etc/chart.tgz" },
			`helmChart is not a URL: give the packaged chart's URL, e.g. "https://charts.example.com/echo-1.0.0.tgz" or "oci://registry.example.com/org/charts/echo-1.0.0.tgz"`},
		{"ftp scheme", func(r *model.CreateFunctionRequest) { r.HelmChart = "ftp://charts.example.com/echo.tgz" },
			`helmChart scheme "ftp" is not supported: use https:// (or http://) for a packaged chart (.tgz), or oci:// for a chart in an OCI registry`},
		{"credentials in the URL", func(r *model.CreateFunctionRequest) { r.HelmChart = "https://user:pw@charts.example.com/echo.tgz" },
			`helmChart must not carry credentials: remove them from the URL and add a HELM registry credential for "charts.example.com" (POST /v2/nvcf/registry-credentials)`},
		{"with containerImage", func(r *model.CreateFunctionRequest) { r.ContainerImage = "nvcr.io/e/echo:1" },
			"containerImage cannot be combined with helmChart: the chart says what runs; remove containerImage (configure the chart with the deployment's configuration, its values)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validFunction()
			helm(r)
			tc.mutate(r)
			if tc.want == "" {
				if err := Function(r); err != nil {
					t.Fatalf("Function: %v", err)
				}
				return
			}
			wantDetail(t, Function(r), tc.want)
			if strings.Contains(tc.name, "credentials") && strings.Contains(Function(r).Error(), "pw") {
				t.Errorf("the problem repeats the URL's password")
			}
		})
	}
}

// TestFunctionRefusesEveryUnsupportedFieldAtOnce: one answer lists them all,
// in the order of the request type.
func TestFunctionRefusesEveryUnsupportedFieldAtOnce(t *testing.T) {
	t.Parallel()
	r := validFunction()
	r.FunctionType = model.FunctionTypeLLM
	r.LLMInvocationConfig = json.RawMessage(`{"a":1}`)
	r.UtilsContainerImage = "u"
	err := Function(r)
	wantProblem(t, err, 400, "")
	var fields []string
	for _, part := range strings.Split(err.(*problem.Error).Detail, "; ") {
		if f, ok := strings.CutSuffix(strings.SplitN(part, ":", 2)[0], " is not supported"); ok {
			fields = append(fields, f)
		}
	}
	want := []string{`functionType "LLM"`, "llmInvocationConfig", "utilsContainerImage"}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("refused %q, want %q (detail %q)", fields, want, err)
	}
}

// wantDetail fails unless err is a 400 whose detail is exactly want.
func wantDetail(t *testing.T, err error, want string) {
	t.Helper()
	wantProblem(t, err, 400, want)
	if pe, ok := err.(*problem.Error); ok && pe.Detail != want {
		t.Errorf("detail %q, want exactly %q", pe.Detail, want)
	}
}

func fill(s []string, v string) {
	for i := range s {
		s[i] = v
	}
}

func TestFunctionNil(t *testing.T) {
	t.Parallel()
	wantProblem(t, Function(nil), 400, "request body is empty")
}

func TestFunctionReportsEveryProblemInOrder(t *testing.T) {
	t.Parallel()
	r := validFunction()
	r.Name = "bad name"
	r.InferenceURL = ""
	r.Tags = []string{"a b"}
	r.FunctionType = "X"
	err := Function(r)
	wantProblem(t, err, 400,
		`name "bad name" is invalid: `+nameRule+`; inferenceUrl is required: give the path your container serves, starting with "/", e.g. "/v1/infer"; `+
			`tags[0] "a b" is invalid: `+tagRule+`; functionType "X" is invalid`)
}

func TestFunctionDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		mutate     func(r *model.CreateFunctionRequest)
		wantHealth *model.Health
	}{
		{"no health stays nil", func(r *model.CreateFunctionRequest) { r.Health = nil }, nil},
		{"legacy healthUri becomes health", func(r *model.CreateFunctionRequest) { r.Health, r.HealthURI = nil, "/ready" },
			&model.Health{Protocol: "HTTP", URI: "/ready", Timeout: "PT10S", ExpectedStatusCode: 200}},
		{"empty health gets defaults", func(r *model.CreateFunctionRequest) { r.Health = &model.Health{} },
			&model.Health{Protocol: "HTTP", Timeout: "PT10S", ExpectedStatusCode: 200}},
		{"health uri filled from healthUri", func(r *model.CreateFunctionRequest) {
			r.Health, r.HealthURI = &model.Health{Port: 9000}, "/ready"
		}, &model.Health{Protocol: "HTTP", URI: "/ready", Port: 9000, Timeout: "PT10S", ExpectedStatusCode: 200}},
		{"explicit values kept", func(r *model.CreateFunctionRequest) {
			r.Health = &model.Health{Protocol: "gRPC", Port: 9000, Timeout: "PT1M", ExpectedStatusCode: 204}
		}, &model.Health{Protocol: "gRPC", Port: 9000, Timeout: "PT1M", ExpectedStatusCode: 204}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validFunction()
			r.APIBodyFormat, r.FunctionType = "", ""
			tc.mutate(r)
			if err := Function(r); err != nil {
				t.Fatalf("Function: %v", err)
			}
			if r.APIBodyFormat != model.BodyFormatCustom || r.FunctionType != model.FunctionTypeDefault {
				t.Errorf("apiBodyFormat, functionType = %q, %q; want CUSTOM, DEFAULT", r.APIBodyFormat, r.FunctionType)
			}
			if !reflect.DeepEqual(r.Health, tc.wantHealth) {
				t.Errorf("health = %+v, want %+v", r.Health, tc.wantHealth)
			}
			// Normalising again changes nothing and still passes.
			again := *r
			if err := Function(&again); err != nil {
				t.Fatalf("second Function: %v", err)
			}
			if !reflect.DeepEqual(&again, r) {
				t.Errorf("second Function changed the request: %+v, want %+v", again, *r)
			}
		})
	}
}

func TestFunctionErrorsNeverEchoSecretValues(t *testing.T) {
	t.Parallel()
	value := "TOPSECRET-" + strings.Repeat("x", MaxSecretValueLen)
	r := validFunction()
	r.Name = "" // make sure the secret problem shares a Detail with others
	r.Secrets = []model.Secret{{Name: "K", Value: value}, {Name: "K", Value: "TOPSECRET2"}, {Name: "1bad", Value: "TOPSECRET3"}}
	err := Function(r)
	wantProblem(t, err, 400, "secrets[0].value is 32778 bytes long")
	if strings.Contains(err.Error(), "TOPSECRET") {
		t.Errorf("error echoes a secret value: %.200s", err.Error())
	}
}
