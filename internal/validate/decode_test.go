package validate

import (
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	intRange := "an integer from -9223372036854775808 to 9223372036854775807"
	tests := []struct {
		name   string
		body   string
		limit  int64
		status int // 0 when the body is valid
		want   string
	}{
		{"object", `{"name":"f","inferencePort":8000}`, 0, 0, ""},
		{"unknown fields accepted", `{"name":"f","nvcfExtra":{"a":[1,2]},"ownedByDifferentAccount":false}`, 0, 0, ""},
		{"surrounding whitespace", " \r\n\t{\"name\":\"f\"} \n", 0, 0, ""},
		{"exactly at the limit", `{"name":"f"}`, 12, 0, ""},
		{"no limit", `{"name":"f"}`, math.MaxInt64, 0, ""},

		{"empty", "", 0, 400, "request body is empty; send a JSON object"},
		{"whitespace only", " \n\t ", 0, 400, "request body is empty; send a JSON object"},
		{"syntax error", `{"name" x}`, 0, 400, "request body is not valid JSON: invalid character 'x' after object key at byte offset 8"},
		{"bad escape", `{"name":"\q"}`, 0, 400, "request body is not valid JSON: invalid character 'q' in string escape code"},
		{"not JSON at all", `name=f`, 0, 400, "request body is not valid JSON: invalid character 'a' in literal null"},
		{"truncated", `{"name":"f",`, 0, 400, "request body is not valid JSON: it ends after 12 bytes, before the JSON object is complete"},
		{"truncated string", `{"name":"f`, 0, 400, "it ends after 10 bytes"},
		{"string for integer", `{"inferencePort":"8000"}`, 0, 400, "field inferencePort must be " + intRange + ", got string"},
		{"fraction for integer", `{"health":{"port":1.5}}`, 0, 400, "field health.port must be " + intRange + ", got number 1.5"},
		{"huge integer", `{"inferencePort":1e999}`, 0, 400, "field inferencePort must be " + intRange + ", got number 1e999"},
		{"string for array", `{"tags":"a"}`, 0, 400, "field tags must be an array, got string"},
		{"number in string array", `{"tags":[1]}`, 0, 400, "field tags must be a string, got number"},
		{"array for object", `{"health":[]}`, 0, 400, "field health must be an object, got array"},
		{"object for string", `{"name":{}}`, 0, 400, "field name must be a string, got object"},
		{"string for bool", `{"rateLimit":{"syncCheck":"yes"}}`, 0, 400, "field rateLimit.syncCheck must be true or false, got string"},
		{"array body", `[{"name":"f"}]`, 0, 400, "request body must be a JSON object ({...}), got an array"},
		{"null body", `null`, 0, 400, "request body must be a JSON object ({...}), got null"},
		{"string body", `"f"`, 0, 400, "got a string"},
		{"number body", `-1`, 0, 400, "got a number"},
		{"bool body", `true`, 0, 400, "got a boolean"},
		{"array then garbage", `[] x`, 0, 400, "request body must be a JSON object ({...}), got array"},
		{"two objects", `{} {}`, 0, 400, "request body has more data after the JSON object, at byte offset 3; send exactly one JSON object"},
		{"trailing garbage", `{"name":"f"}x`, 0, 400, "at byte offset 12"},
		{"over the limit", `{"name":"ffff"}`, 12, 413, "request body is larger than the limit of 12 bytes; send a smaller body"},
		{"over the limit with bad JSON", `{{{{{{{{{{{{{{{{`, 12, 413, "limit of 12 bytes"},
		{"over the default limit", `{"name":"` + strings.Repeat("f", DefaultBodyLimit) + `"}`, 0, 413,
			"limit of 1048576 bytes (1 MiB)"},
		{"over a KiB limit", `{"description":"` + strings.Repeat("d", 2048) + `"}`, 2048, 413, "limit of 2048 bytes (2 KiB)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var req model.CreateFunctionRequest
			err := Decode(strings.NewReader(tc.body), tc.limit, &req)
			if tc.status != 0 {
				wantProblem(t, err, tc.status, tc.want)
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if req.Name != "f" {
				t.Errorf("name = %q, want f", req.Name)
			}
		})
	}
}

func TestDecodeNeverEchoesStringValues(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"secrets":[{"name":"K","value":12345678987654321}]}`,
		`{"secrets":[{"name":"K","value":{"TOPSECRET":1}}]}`,
		`{"secrets":[{"name":"K","value":["TOPSECRET"]}]}`,
	} {
		var req model.SecretsRequest
		err := Decode(strings.NewReader(body), 0, &req)
		wantProblem(t, err, 400, "field secrets.value must be a string")
		if strings.Contains(err.Error(), "TOPSECRET") || strings.Contains(err.Error(), "12345678987654321") {
			t.Errorf("error echoes the value: %v", err)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestDecodeReaders(t *testing.T) {
	t.Parallel()
	var req model.CreateFunctionRequest
	wantProblem(t, Decode(nil, 0, &req), 400, "request body is empty")
	wantProblem(t, Decode(failingReader{}, 0, &req), 400, "request body could not be read completely")

	// A MaxBytesReader the server wrapped around the body reports its own limit.
	r := http.MaxBytesReader(nil, io.NopCloser(strings.NewReader(`{"name":"long enough"}`)), 5)
	wantProblem(t, Decode(r, 100, &req), 413, "limit of 5 bytes")
}

func TestDecodeBadTargetIsNotAProblem(t *testing.T) {
	t.Parallel()
	var req model.CreateFunctionRequest
	err := Decode(strings.NewReader(`{}`), 0, req)
	if err == nil {
		t.Fatal("Decode into a non-pointer succeeded")
	}
	var pe *problem.Error
	if errors.As(err, &pe) {
		t.Errorf("Decode into a non-pointer returned a problem (%v); want a plain error the API layer maps to 500", pe)
	}
}
