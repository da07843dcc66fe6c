package cli

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestDeployCreate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		setup    func(f *fakeAPI)
		code     int
		wantPath string
		want     []model.GPUSpec
		stdout   []string
		stderr   []string
		notErr   []string
	}{
		{
			name:     "newest version and defaults",
			args:     []string{"deploy", "create", "fn-1", "--gpu", "L40S"},
			wantPath: "/v2/nvcf/deployments/functions/fn-1/versions/v-new",
			want:     []model.GPUSpec{{GPU: "L40S", MinInstances: 1, MaxInstances: 1}},
			stdout: []string{"DEPLOYMENT   FUNCTION   VERSION   STATUS      GPU    INSTANCE TYPE   MIN   MAX   DESIRED   RUNNING   LAST SCALED   AGE",
				"dep-1        fn-1       v-new     DEPLOYING   L40S   -               1     1     -         -         -             0s"},
			stderr: []string{"Using version v-new, the newest of 2"},
		},
		{
			name: "all spec flags",
			args: []string{"deploy", "create", "fn-1", "--version", "v-old", "--gpu", "H100", "--instance-type", "ON-PREM.GPU.H100_2x",
				"--min", "2", "--max", "5", "--concurrency", "8", "--backend", "local", "--cluster", "c1", "--cluster", "c2,c3", "--region", "eu"},
			wantPath: "/v2/nvcf/deployments/functions/fn-1/versions/v-old",
			want: []model.GPUSpec{{GPU: "H100", InstanceType: "ON-PREM.GPU.H100_2x", MinInstances: 2, MaxInstances: 5,
				MaxRequestConcurrency: model.Int(8), Backend: "local", Clusters: []string{"c1", "c2", "c3"}, Regions: []string{"eu"}}},
			notErr: []string{"Using version"},
		},
		{
			name:     "max follows min",
			args:     []string{"deploy", "create", "fn-1", "--version", "v-old", "--gpu", "L40S", "--min", "3"},
			wantPath: "/v2/nvcf/deployments/functions/fn-1/versions/v-old",
			want:     []model.GPUSpec{{GPU: "L40S", MinInstances: 3, MaxInstances: 3}},
		},
		{
			name:     "min zero keeps max one",
			args:     []string{"deploy", "create", "fn-1", "--version", "v-old", "--gpu", "L40S", "--min", "0"},
			wantPath: "/v2/nvcf/deployments/functions/fn-1/versions/v-old",
			want:     []model.GPUSpec{{GPU: "L40S", MinInstances: 0, MaxInstances: 1}},
		},
		{
			name:   "gpu required, with the platform's GPUs",
			args:   []string{"deploy", "create", "fn-1"},
			code:   1,
			stderr: []string{"Error: --gpu is required", "Hint: this platform offers: H100, L40S"},
		},
		{
			name:   "unknown function",
			args:   []string{"deploy", "create", "nope", "--gpu", "L40S"},
			code:   1,
			stderr: []string{"404 Not Found: function nope not found"},
		},
		{
			name: "wait until active",
			args: []string{"deploy", "create", "fn-1", "--version", "v-old", "--gpu", "L40S", "--wait"},
			setup: func(f *fakeAPI) {
				f.deployStatuses = []model.FunctionStatus{model.StatusDeploying, model.StatusActive}
			},
			wantPath: "/v2/nvcf/deployments/functions/fn-1/versions/v-old",
			want:     []model.GPUSpec{{GPU: "L40S", MinInstances: 1, MaxInstances: 1}},
			stdout:   []string{"ACTIVE"},
			stderr: []string{"Waiting up to 10m0s for function fn-1 version v-old to become ACTIVE",
				"s  DEPLOYING  (0/1 instances ready)\n", "s  ACTIVE  (0/1 instances ready)\n"},
		},
		{
			name: "wait fails on ERROR with the health error",
			args: []string{"deploy", "create", "fn-1", "--version", "v-old", "--gpu", "L40S", "--wait"},
			setup: func(f *fakeAPI) {
				f.deployStatuses = []model.FunctionStatus{model.StatusError}
				f.deployHealth = []model.HealthInfo{{GPU: "L40S", Backend: "local", Error: "image pull failed: not found"}}
			},
			code: 1,
			stderr: []string{"s  ERROR  (0/1 instances ready)\n", "! L40S@local: image pull failed: not found",
				"Error: deployment of function fn-1 version v-old failed: L40S@local: image pull failed: not found",
				"Hint: check `gantry deploy get fn-1 --version v-old`"},
		},
		{
			name: "wait times out",
			args: []string{"deploy", "create", "fn-1", "--version", "v-old", "--gpu", "L40S", "--wait", "--timeout", "700ms"},
			setup: func(f *fakeAPI) {
				f.readyInstances = 1
				f.deployStatuses = []model.FunctionStatus{model.StatusDeploying}
			},
			code: 1,
			stderr: []string{"(1/1 instances ready)",
				"Error: timed out after 700ms waiting for function fn-1 version v-old to become ACTIVE (last status DEPLOYING  (1/1 instances ready))",
				"Hint: the deployment goes on in the background"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.addFunction("fn-1", "v-old", "echo", 2*time.Hour)
			f.addFunction("fn-1", "v-new", "echo", time.Hour)
			if tc.setup != nil {
				tc.setup(f)
			}
			r := f.gantry(t, "", tc.args...)
			r.check(t, tc.code, tc.stdout, tc.stderr)
			for _, s := range tc.notErr {
				if strings.Contains(r.stderr, s) {
					t.Errorf("stderr has %q:\n%s", s, r.stderr)
				}
			}
			if tc.want == nil {
				return
			}
			req := f.last(t, "POST", "/v2/nvcf/deployments/")
			if req.Path != tc.wantPath {
				t.Errorf("path = %s, want %s", req.Path, tc.wantPath)
			}
			var got model.DeploymentRequest
			if err := json.Unmarshal(req.Body, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Specs, tc.want) {
				t.Errorf("specs:\n got %+v\nwant %+v", got.Specs, tc.want)
			}
		})
	}
}

func TestDeployGetUpdateDelete(t *testing.T) {
	t.Parallel()
	l40 := model.GPUSpec{GPU: "L40S", InstanceType: "ON-PREM.GPU.L40S_1x", MinInstances: 1, MaxInstances: 1, Backend: "local"}
	h100 := model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1}
	tests := []struct {
		name   string
		specs  []model.GPUSpec // of fn-1 v-1's deployment
		args   []string
		code   int
		stdout []string
		stderr []string
		put    []model.GPUSpec // the PUT body's specs, when one is expected
		check  func(t *testing.T, f *fakeAPI)
	}{
		{name: "get newest", specs: []model.GPUSpec{l40}, args: []string{"deploy", "get", "fn-1"},
			stdout: []string{"dep-v-1", "ACTIVE", "ON-PREM.GPU.L40S_1x", "2h"}},
		{name: "get json", specs: []model.GPUSpec{l40}, args: []string{"deploy", "get", "fn-1", "-o", "json"},
			stdout: []string{`"deploymentId": "dep-v-1"`, `"functionStatus": "ACTIVE"`, `"deploymentSpecifications": [`}},
		{name: "get without deployment", args: []string{"deploy", "get", "fn-1"}, code: 1,
			stderr: []string{"404 Not Found: no deployment", "Hint: showing version v-1; pass --version"}},
		{name: "update keeps unchanged fields", specs: []model.GPUSpec{l40}, args: []string{"deploy", "update", "fn-1", "--max", "4"},
			put: []model.GPUSpec{{GPU: "L40S", InstanceType: "ON-PREM.GPU.L40S_1x", MinInstances: 1, MaxInstances: 4, Backend: "local"}}},
		{name: "update raises max with min", specs: []model.GPUSpec{l40}, args: []string{"deploy", "update", "fn-1", "--min", "3"},
			put: []model.GPUSpec{{GPU: "L40S", InstanceType: "ON-PREM.GPU.L40S_1x", MinInstances: 3, MaxInstances: 3, Backend: "local"}}},
		{name: "update switching GPU drops the instance type", specs: []model.GPUSpec{l40}, args: []string{"deploy", "update", "fn-1", "--gpu", "H100"},
			put: []model.GPUSpec{{GPU: "H100", MinInstances: 1, MaxInstances: 1, Backend: "local"}}},
		{name: "update picks a spec by GPU", specs: []model.GPUSpec{l40, h100}, args: []string{"deploy", "update", "fn-1", "--gpu", "H100", "--min", "0"},
			put: []model.GPUSpec{l40, {GPU: "H100", MinInstances: 0, MaxInstances: 1}}},
		{name: "update needs --gpu with several specs", specs: []model.GPUSpec{l40, h100}, args: []string{"deploy", "update", "fn-1", "--max", "2"},
			code: 1, stderr: []string{"the deployment has 2 GPU specifications (L40S, H100); pass --gpu"}},
		{name: "delete the only version", specs: []model.GPUSpec{l40}, args: []string{"deploy", "delete", "fn-1"},
			stdout: []string{"Deleted deployment of function fn-1 version v-1"},
			check: func(t *testing.T, f *fakeAPI) {
				f.last(t, "DELETE", "/v2/nvcf/deployments/functions/fn-1/versions/v-1")
			}},
		{name: "delete yaml", specs: []model.GPUSpec{l40}, args: []string{"deploy", "delete", "fn-1", "--version", "v-1", "-o", "yaml"},
			stdout: []string{"undeployed: true", "versionId: v-1"}},
		{name: "delete refuses to guess among versions", specs: []model.GPUSpec{l40}, args: []string{"deploy", "delete", "fn-2"},
			code: 1, stderr: []string{"function fn-2 has 2 versions; pass --version"},
			check: func(t *testing.T, f *fakeAPI) {
				if f.count("DELETE", "/") != 0 {
					t.Error("a DELETE was sent")
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeAPI(t)
			f.addFunction("fn-1", "v-1", "echo", time.Hour)
			f.addFunction("fn-2", "v-2", "two", 2*time.Hour)
			f.addFunction("fn-2", "v-3", "two", time.Hour)
			if tc.specs != nil {
				f.addDeployment("fn-1", "v-1", tc.specs[0], model.StatusActive)
				d := f.deployments["fn-1/v-1"]
				d.Specs = tc.specs
				f.deployments["fn-1/v-1"] = d
			}
			r := f.gantry(t, "", tc.args...)
			r.check(t, tc.code, tc.stdout, tc.stderr)
			if tc.put != nil {
				req := f.last(t, "PUT", "/v2/nvcf/deployments/functions/fn-1/versions/v-1")
				var got model.DeploymentRequest
				if err := json.Unmarshal(req.Body, &got); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got.Specs, tc.put) {
					t.Errorf("PUT specs:\n got %+v\nwant %+v", got.Specs, tc.put)
				}
			}
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}

func TestElapsed(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		3100 * time.Millisecond: "3.1s",
		65 * time.Second:        "1m5s",
	} {
		if got := elapsed(d); got != want {
			t.Errorf("elapsed(%s) = %q, want %q", d, got, want)
		}
	}
}
