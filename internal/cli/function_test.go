package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestFunctionCreate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := writeFile(t, filepath.Join(dir, "api-key"), "hunter2-value\n")
	body := writeFile(t, filepath.Join(dir, "fn.json"), `{
		"name": "from-file", "inferenceUrl": "/infer", "containerImage": "nvcr.io/x:1",
		"containerEnvironment": [{"key":"A","value":"1"},{"key":"B","value":"2"}],
		"tags": ["file"], "health": {"protocol":"HTTP","uri":"/old","port":9000}
	}`)
	yamlBody := writeFile(t, filepath.Join(dir, "fn.yaml"), "name: from-yaml\ncontainerImage: process://gantry\n")
	typo := writeFile(t, filepath.Join(dir, "typo.json"), `{"name":"x","containerImage":"y","inferenceURL2":"/"}`)

	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		wantPath string
		want     model.CreateFunctionRequest
		stdout   []string
		stderr   []string
	}{
		{
			name: "all flags",
			args: []string{"function", "create", "--name", "echo", "--image", "process://gantry", "--args", "example echo",
				"--inference-port", "8000", "--health-uri", "/health", "--env", "A=1", "--env", "B=x=y,z",
				"--tag", "t1", "--tag", "t2", "--description", "d", "--function-type", "streaming",
				"--secret-file", "API_KEY=" + secret},
			wantPath: "/v2/nvcf/functions",
			want: model.CreateFunctionRequest{Name: "echo", InferenceURL: "/", InferencePort: 8000,
				Health: &model.Health{Protocol: "HTTP", URI: "/health"}, ContainerImage: "process://gantry",
				ContainerArgs: "example echo", ContainerEnvironment: []model.EnvVar{{Key: "A", Value: "1"}, {Key: "B", Value: "x=y,z"}},
				Tags: []string{"t1", "t2"}, Description: "d", FunctionType: "STREAMING",
				Secrets: []model.Secret{{Name: "API_KEY", Value: "hunter2-value"}}},
			stdout: []string{"ID", "VERSION", "NAME", "STATUS", "IMAGE", "AGE", "fn-1", "echo", "INACTIVE", "process://gantry"},
		},
		{
			name:     "file with flag overrides",
			args:     []string{"function", "create", "-f", body, "--name", "override", "--env", "B=3", "--health-uri", "/ready"},
			wantPath: "/v2/nvcf/functions",
			want: model.CreateFunctionRequest{Name: "override", InferenceURL: "/infer", ContainerImage: "nvcr.io/x:1",
				ContainerEnvironment: []model.EnvVar{{Key: "A", Value: "1"}, {Key: "B", Value: "3"}},
				Tags:                 []string{"file"}, Health: &model.Health{Protocol: "HTTP", URI: "/ready", Port: 9000}},
		},
		{
			name:     "YAML body from stdin, new version",
			args:     []string{"function", "create", "-f", "-", "--function-id", "fn-9"},
			stdin:    "name: from-stdin\ncontainerImage: process://gantry\n",
			wantPath: "/v2/nvcf/functions/fn-9/versions",
			want:     model.CreateFunctionRequest{Name: "from-stdin", InferenceURL: "/", ContainerImage: "process://gantry"},
			stdout:   []string{"fn-9"},
		},
		{
			name:     "YAML body file",
			args:     []string{"function", "create", "-f", yamlBody},
			wantPath: "/v2/nvcf/functions",
			want:     model.CreateFunctionRequest{Name: "from-yaml", InferenceURL: "/", ContainerImage: "process://gantry"},
		},
		{
			name: "unknown field in file", args: []string{"function", "create", "-f", typo}, code: 1,
			stderr: []string{"typo.json", "inferenceURL2", "Hint: the file must be an NVCF create-function request body"},
		},
		{
			name: "missing name", args: []string{"function", "create", "--image", "x"}, code: 1,
			stderr: []string{"--name is required"},
		},
		{
			name: "missing image", args: []string{"function", "create", "--name", "x"}, code: 1,
			stderr: []string{"--image is required"},
		},
		{
			name: "bad env", args: []string{"function", "create", "--name", "x", "--image", "y", "--env", "NOVALUE"}, code: 1,
			stderr: []string{`--env "NOVALUE": want KEY=VALUE`},
		},
		{
			name: "bad secret file", args: []string{"function", "create", "--name", "x", "--image", "y", "--secret-file", "S=" + filepath.Join(dir, "nope")}, code: 1,
			stderr: []string{"--secret-file S:", "nope"},
		},
		{
			name: "positional argument refused", args: []string{"function", "create", "echo"}, code: 1,
			stderr: []string{`unexpected argument "echo"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			r := f.gantry(t, tc.stdin, tc.args...)
			r.check(t, tc.code, tc.stdout, tc.stderr)
			if tc.code != 0 {
				if n := f.count("POST", "/v2/nvcf/functions"); n != 0 {
					t.Errorf("%d create requests sent for a bad command line", n)
				}
				return
			}
			req := f.last(t, "POST", "/v2/nvcf/functions")
			if req.Path != tc.wantPath {
				t.Errorf("path = %s, want %s", req.Path, tc.wantPath)
			}
			var got model.CreateFunctionRequest
			if err := json.Unmarshal(req.Body, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("request body:\n got %+v\nwant %+v", got, tc.want)
			}
			if strings.Contains(r.stdout+r.stderr, "hunter2") {
				t.Error("a secret value was printed")
			}
		})
	}
}

func TestReadSecretFileLimit(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(p, make([]byte, maxSecretBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecretFile(p); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("err = %v, want size limit error", err)
	}
	crlf := writeFile(t, filepath.Join(t.TempDir(), "crlf"), "v\r\n")
	if v, err := readSecretFile(crlf); err != nil || v != "v" {
		t.Errorf("readSecretFile = %q, %v", v, err)
	}
}

func TestFunctionReadAndDelete(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
		check  func(t *testing.T, f *fakeAPI, r result)
	}{
		{name: "list table", args: []string{"function", "list"},
			stdout: []string{"ID     VERSION   NAME    STATUS     IMAGE              AGE\n", "fn-1   v-1       echo    INACTIVE   process://gantry   2h\n", "fn-2   v-3       other   INACTIVE   process://gantry   1d\n"}},
		{name: "list json is an array", args: []string{"function", "list", "-o", "json"},
			check: func(t *testing.T, _ *fakeAPI, r result) {
				var fns []model.Function
				if err := json.Unmarshal([]byte(r.stdout), &fns); err != nil || len(fns) != 3 {
					t.Errorf("json = %q (%v)", r.stdout, err)
				}
			}},
		{name: "list yaml", args: []string{"-o", "yaml", "function", "list"}, stdout: []string{"- containerImage: process://gantry", "  versionId: v-1"}},
		{name: "get lists versions", args: []string{"function", "get", "fn-1"},
			stdout: []string{"v-1", "v-2"},
			check:  func(t *testing.T, f *fakeAPI, _ result) { f.last(t, "GET", "/v2/nvcf/functions/fn-1/versions") }},
		{name: "get one version json", args: []string{"function", "get", "fn-1", "--version", "v-2", "-o", "json"},
			check: func(t *testing.T, _ *fakeAPI, r result) {
				var fn model.Function
				if err := json.Unmarshal([]byte(r.stdout), &fn); err != nil || fn.VersionID != "v-2" {
					t.Errorf("json = %q (%v)", r.stdout, err)
				}
			}},
		{name: "get unknown", args: []string{"function", "get", "nope"}, code: 1, stderr: []string{"404 Not Found: function nope not found"}},
		{name: "delete needs version", args: []string{"function", "delete", "fn-1"}, code: 1,
			stderr: []string{"--version is required", "gantry function get fn-1"}},
		{name: "delete", args: []string{"function", "delete", "fn-1", "--version", "v-1"},
			stdout: []string{"Deleted function fn-1 version v-1"},
			check:  func(t *testing.T, f *fakeAPI, _ result) { f.last(t, "DELETE", "/v2/nvcf/functions/fn-1/versions/v-1") }},
		{name: "delete json", args: []string{"function", "delete", "fn-1", "--version", "v-1", "-o", "json"},
			stdout: []string{`"deleted": true`}},
		{name: "ids are path-escaped", args: []string{"function", "get", "a/b", "--version", "c d"}, code: 1,
			check: func(t *testing.T, f *fakeAPI, _ result) { f.last(t, "GET", "/v2/nvcf/functions/a%2Fb/versions/c%20d") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.addFunction("fn-1", "v-1", "echo", 2*time.Hour)
			f.addFunction("fn-1", "v-2", "echo", time.Hour)
			f.addFunction("fn-2", "v-3", "other", 30*time.Hour)
			r := f.gantry(t, "", tc.args...)
			r.check(t, tc.code, tc.stdout, tc.stderr)
			if tc.check != nil {
				tc.check(t, f, r)
			}
		})
	}
}
