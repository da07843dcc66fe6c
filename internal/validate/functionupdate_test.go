package validate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestFunctionUpdate(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	const llmErr = "llmInvocationConfig is not supported: Gantry does not configure LLM invocation yet"
	const modelsErr = "modelUpdates is not supported: Gantry does not configure models or LLM settings yet"
	tests := []struct {
		name string
		body string // decoded with Decode, as the API does
		err  string // empty when valid
	}{
		{"nvcf-cli tags", `{"tags":["a","b"]}`, ""},
		{"clear tags", `{"tags":[]}`, ""},
		{"description only", `{"description":"echo v2"}`, ""},
		{"clear description", `{"description":""}`, ""},
		{"rate limit only", `{"rateLimit":{"rateLimit":"100-S","exemptedNcaIds":["acct-b"],"syncCheck":true}}`, ""},
		{"every supported field", `{"tags":["team:vision"],"description":"d","rateLimit":{"rateLimit":"5-M"}}`, ""},
		{"unknown fields are ignored", `{"tags":["a"],"functionType":"LLM"}`, ""},
		{"null llm config is left out", `{"tags":["a"],"llmInvocationConfig":null}`, ""},
		{"empty model updates are left out", `{"tags":["a"],"modelUpdates":[]}`, ""},

		{"empty object", `{}`, "the update changes nothing: send at least one of tags, description or rateLimit"},
		{"null tags are left out", `{"tags":null}`, "the update changes nothing"},
		{"empty model updates alone", `{"modelUpdates":[]}`, "the update changes nothing"},
		{"model updates", `{"modelUpdates":[{"modelName":"m","llmConfig":{"tokenRateLimit":"10-S"}}]}`, modelsErr},
		{"llm config", `{"llmInvocationConfig":{"priority":{"defaultPriority":1}}}`, llmErr},
		{"empty llm config is left out", `{"tags":["a"],"llmInvocationConfig":{}}`, ""},
		{"llm config with tags", `{"tags":["a"],"llmInvocationConfig":{"priority":{}}}`, llmErr},
		{"bad tag", `{"tags":["ok","not ok"]}`, `tags[1] "not ok" is invalid: ` + tagRule},
		{"too many tags", mustMarshal(t, model.UpdateFunctionRequest{Tags: make([]string, MaxTags+1)}),
			"tags has 65 entries: at most 64 tags are allowed"},
		{"description too long", mustMarshal(t, model.UpdateFunctionRequest{Description: str(strings.Repeat("é", MaxDescriptionLen+1))}),
			"description is 257 characters long: at most 256 are allowed"},
		{"bad rate limit", `{"rateLimit":{"rateLimit":"100/s"}}`, `rateLimit.rateLimit "100/s" is invalid`},
		{"empty exempted account", `{"rateLimit":{"rateLimit":"1-D","exemptedNcaIds":[""]}}`, "rateLimit.exemptedNcaIds[0] is empty"},
		{"every problem, in field order", `{"tags":["a b"],"rateLimit":{"rateLimit":"x"},"modelUpdates":[{"modelName":"m"}],"llmInvocationConfig":{}}`,
			`tags[0] "a b" is invalid: ` + tagRule + `; rateLimit.rateLimit "x" is invalid: use a count from 1 to 1000000000 and a period, ` +
				`e.g. "100-S" (per second), "1000-M", "5000-H" or "10000-D"; ` + modelsErr},
		{"tags of the wrong type", `{"tags":"a"}`, "field tags must be an array, got string"},
		{"not an object", `["a"]`, "request body must be a JSON object ({...}), got an array"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var req model.UpdateFunctionRequest
			err := Decode(strings.NewReader(tc.body), 0, &req)
			if err == nil {
				err = FunctionUpdate(&req)
			}
			if tc.err == "" {
				if err != nil {
					t.Fatalf("FunctionUpdate(%s): %v", tc.body, err)
				}
				return
			}
			wantProblem(t, err, 400, tc.err)
		})
	}
	t.Run("nil", func(t *testing.T) {
		t.Parallel()
		wantProblem(t, FunctionUpdate(nil), 400, "request body is empty")
	})
}

// TestFunctionUpdateTagsOnTheWire: an empty tag list travels (it clears the
// tags), a nil one does not (it keeps them).
func TestFunctionUpdateTagsOnTheWire(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  model.UpdateFunctionRequest
		want string
	}{
		{"nil tags are left out", model.UpdateFunctionRequest{RateLimit: &model.RateLimit{RateLimit: "1-S"}}, `{"rateLimit":{"rateLimit":"1-S"}}`},
		{"empty tags clear", model.UpdateFunctionRequest{Tags: []string{}}, `{"tags":[]}`},
		{"tags", model.UpdateFunctionRequest{Tags: []string{"a", "b"}}, `{"tags":["a","b"]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := mustMarshal(t, tc.req); got != tc.want {
				t.Errorf("marshal = %s, want %s", got, tc.want)
			}
		})
	}
}

func FuzzDecodeFunctionUpdate(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var req model.UpdateFunctionRequest
		err := Decode(bytes.NewReader(data), fuzzLimit, &req)
		wantClientError(t, err)
		if err != nil {
			return
		}
		before := cloneJSON(t, &req)
		err = FunctionUpdate(&req)
		wantClientError(t, err)
		if !reflect.DeepEqual(cloneJSON(t, &req), before) {
			t.Fatal("FunctionUpdate changed the request")
		}
		if err != nil {
			return
		}
		// What passes changes something Gantry supports, within the rules.
		if req.Tags == nil && req.Description == nil && req.RateLimit == nil {
			t.Fatalf("an update that changes nothing passed: %s", data)
		}
		if len(req.ModelUpdates) > 0 || hasLLMInvocationConfig(&req) {
			t.Fatalf("an update with models or LLM settings passed: %s", data)
		}
		if len(req.Tags) > MaxTags {
			t.Fatalf("%d tags passed", len(req.Tags))
		}
		if req.RateLimit != nil {
			if _, _, ok := req.RateLimit.Window(); !ok {
				t.Fatalf("rateLimit %q passed but does not parse", req.RateLimit.RateLimit)
			}
		}
	})
}

// TestFunctionUpdateSeeds keeps the seed corpus meaningful: a seed whose
// file name starts with "valid_" must decode and validate, every other one
// must be refused.
func TestFunctionUpdateSeeds(t *testing.T) {
	t.Parallel()
	names, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzDecodeFunctionUpdate", "*"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no seeds for FuzzDecodeFunctionUpdate (%v)", err)
	}
	for _, name := range names {
		t.Run(filepath.Base(name), func(t *testing.T) {
			t.Parallel()
			body := readSeed(t, name)
			var req model.UpdateFunctionRequest
			err := Decode(bytes.NewReader(body), fuzzLimit, &req)
			if err == nil {
				err = FunctionUpdate(&req)
			}
			valid := strings.HasPrefix(filepath.Base(name), "valid_")
			if valid && err != nil {
				t.Errorf("seed is named valid but fails: %v", err)
			}
			if !valid && err == nil {
				t.Errorf("seed passes; name it valid_... or make it fail")
			}
		})
	}
}

// readSeed returns the []byte of a one-argument "go test fuzz v1" seed file.
func readSeed(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" ||
		!strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		t.Fatalf("unexpected seed format: %q", raw)
	}
	body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("seed literal: %v", err)
	}
	return []byte(body)
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
