package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestFunctionEnvironment checks, through real invocations, that a function
// finds the NVCF_* variables NVCF sets in its containers, with the values
// the platform knows about it: code written for NVCF reads them unchanged.
func TestFunctionEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startPlatform(t, dir)
	ctx := testutil.Context(t)
	req := selfFunction(t, "env-reader", "env")
	// NVCF reserves the prefix: a function cannot set these itself.
	req.ContainerEnvironment = append(req.ContainerEnvironment,
		model.EnvVar{Key: "NVCF_FUNCTION_NAME", Value: "spoofed"}, model.EnvVar{Key: "NVCF_ENV", Value: "prod"})
	f, err := p.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", InstanceType: model.InstanceTypeName("H100", 1), MinInstances: 1, MaxInstances: 1},
		model.StatusActive)
	got, err := p.c.GetFunction(ctx, f.ID, f.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.ActiveInstances) != 1 {
		t.Fatalf("active instances %+v, want one", got.ActiveInstances)
	}
	inst := got.ActiveInstances[0]
	// The dev platform's agent keeps its process runtime under <data>/agent.
	work := filepath.Join(dir, "agent", "work", inst.InstanceID)

	tests := []struct {
		name, want string
	}{
		{"NVCF_FUNCTION_ID", f.ID},
		{"NVCF_FUNCTION_VERSION_ID", f.VersionID},
		{"NVCF_FUNCTION_NAME", "env-reader"},
		{"NVCF_NCA_ID", f.NCAID},
		{"NVCF_BACKEND", dev.LocalCluster}, // the dev cluster's group
		{"NVCF_INSTANCETYPE", "ON-PREM.GPU.H100_1x"},
		{"NVCF_REGION", "local"},
		{"NVCF_ENV", runtime.NVCFEnvironment},
		{"NVCF_INSTANCE_ID", inst.InstanceID},
		{"NVCF_ASSET_DIR", filepath.Join(work, "assets")},
		{"NVCF_LARGE_OUTPUT_DIR", filepath.Join(work, "large-output")},
	}
	if f.NCAID == "" || inst.InstanceType != "ON-PREM.GPU.H100_1x" || inst.Location != dev.LocalCluster {
		t.Fatalf("function %+v instance %+v: not what the table expects", f, inst)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, Header: http.Header{"Env-Name": {tc.name}}})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
			}
			if string(resp.Body) != tc.want {
				t.Errorf("%s = %q, want %q", tc.name, resp.Body, tc.want)
			}
		})
	}
	for _, d := range []string{filepath.Join(work, "assets"), filepath.Join(work, "large-output")} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("%s is not a directory: %v", d, err)
		}
	}
}
