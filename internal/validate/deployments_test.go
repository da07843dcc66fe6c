package validate

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func validSpec() model.GPUSpec {
	return model.GPUSpec{
		GPU:                   "H100",
		InstanceType:          "ON-PREM.GPU.H100_2x",
		MinInstances:          1,
		MaxInstances:          2,
		MaxRequestConcurrency: model.Int(8),
		Backend:               "lab",
		Clusters:              []string{"c1"},
		Regions:               []string{"eu"},
		Attributes:            []string{"fast"},
		AvailabilityZones:     []string{"eu-1a"},
	}
}

// validDeployment returns a fresh request with two distinct valid specs.
func validDeployment() *model.DeploymentRequest {
	second := validSpec()
	second.GPU, second.InstanceType, second.Backend = "L40S", "", ""
	return &model.DeploymentRequest{Specs: []model.GPUSpec{validSpec(), second}}
}

func TestDeploymentValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(r *model.DeploymentRequest)
	}{
		{"base", func(r *model.DeploymentRequest) {}},
		{"minimal", func(r *model.DeploymentRequest) {
			r.Specs = []model.GPUSpec{{GPU: "A10G", MaxInstances: 1}}
		}},
		{"gpu with dots, dashes, underscores", func(r *model.DeploymentRequest) {
			r.Specs[0].GPU, r.Specs[0].InstanceType = "RTX_6000-Ada.48GB", "ON-PREM.GPU.RTX_6000-Ada.48GB_1x"
		}},
		{"gpu of 64 characters", func(r *model.DeploymentRequest) {
			r.Specs[0].GPU, r.Specs[0].InstanceType = strings.Repeat("g", 64), ""
		}},
		{"min zero", func(r *model.DeploymentRequest) { r.Specs[0].MinInstances = 0 }},
		{"min equals max", func(r *model.DeploymentRequest) { r.Specs[0].MinInstances, r.Specs[0].MaxInstances = 3, 3 }},
		{"instances at the cap", func(r *model.DeploymentRequest) {
			r.Specs[0].MinInstances, r.Specs[0].MaxInstances = MaxSpecInstances, MaxSpecInstances
		}},
		{"concurrency default", func(r *model.DeploymentRequest) { r.Specs[0].MaxRequestConcurrency = nil }},
		{"concurrency at the cap", func(r *model.DeploymentRequest) { r.Specs[0].MaxRequestConcurrency = model.Int(16384) }},
		{"same gpu, different backend", func(r *model.DeploymentRequest) {
			r.Specs[1] = validSpec()
			r.Specs[1].Backend = "other"
		}},
		{"same gpu, instanceType set and unset", func(r *model.DeploymentRequest) {
			r.Specs[1] = validSpec()
			r.Specs[1].InstanceType = ""
		}},
		{"null configuration", func(r *model.DeploymentRequest) { r.Specs[0].Configuration = json.RawMessage("null") }},
		{"empty configuration", func(r *model.DeploymentRequest) { r.Specs[0].Configuration = json.RawMessage(" {} ") }},
		{"Helm values", func(r *model.DeploymentRequest) {
			r.Specs[0].Configuration = json.RawMessage(`{"replicaCount":1,"image":{"tag":"1.2"}}`)
		}},
		{"nvcf-cli's default instance type", func(r *model.DeploymentRequest) {
			r.Specs = []model.GPUSpec{{GPU: "H100", InstanceType: "NCP.GPU.H100_1x", MinInstances: 1, MaxInstances: 1}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validDeployment()
			tc.mutate(r)
			if err := Deployment(r); err != nil {
				t.Fatalf("Deployment: %v", err)
			}
		})
	}
}

func TestDeploymentRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(r *model.DeploymentRequest)
		want   string
	}{
		{"no specs", func(r *model.DeploymentRequest) { r.Specs = nil },
			"deploymentSpecifications must list at least one specification"},
		{"gpu missing", func(r *model.DeploymentRequest) { r.Specs[1].GPU = "" },
			`deploymentSpecifications[1].gpu is required: name the GPU model, e.g. "H100"; use 1-64 characters of letters, digits, '-', '_' and '.'`},
		{"gpu with space", func(r *model.DeploymentRequest) { r.Specs[1].GPU = "H 100" },
			`deploymentSpecifications[1].gpu "H 100" is invalid: use 1-64 characters`},
		{"gpu too long", func(r *model.DeploymentRequest) { r.Specs[1].GPU = strings.Repeat("g", 65) },
			"deploymentSpecifications[1].gpu \"ggg"},
		{"instanceType malformed", func(r *model.DeploymentRequest) { r.Specs[0].InstanceType = "H100x2" },
			`deploymentSpecifications[0].instanceType "H100x2" is invalid: use <provider>.GPU.<gpu>_<count>x`},
		{"instanceType zero count", func(r *model.DeploymentRequest) { r.Specs[0].InstanceType = "ON-PREM.GPU.H100_0x" },
			`instanceType "ON-PREM.GPU.H100_0x" is invalid`},
		{"instanceType for another gpu", func(r *model.DeploymentRequest) { r.Specs[0].InstanceType = "ON-PREM.GPU.A100_1x" },
			`deploymentSpecifications[0].instanceType "ON-PREM.GPU.A100_1x" is for GPU "A100" but gpu is "H100": they must name the same GPU`},
		{"minInstances negative", func(r *model.DeploymentRequest) { r.Specs[0].MinInstances = -1 },
			"deploymentSpecifications[0].minInstances -1 is invalid: use 0 or more"},
		{"minInstances over the cap", func(r *model.DeploymentRequest) {
			r.Specs[0].MinInstances, r.Specs[0].MaxInstances = MaxSpecInstances+1, MaxSpecInstances+1
		}, "deploymentSpecifications[0].minInstances 1025 is invalid: at most 1024 instances per specification"},
		{"maxInstances zero", func(r *model.DeploymentRequest) { r.Specs[1].MinInstances, r.Specs[1].MaxInstances = 0, 0 },
			"deploymentSpecifications[1].maxInstances 0 is invalid: use 1 or more, and at least minInstances"},
		{"maxInstances below min", func(r *model.DeploymentRequest) { r.Specs[0].MinInstances, r.Specs[0].MaxInstances = 3, 2 },
			"deploymentSpecifications[0].maxInstances 2 is less than minInstances 3: maxInstances must be at least minInstances"},
		{"maxInstances over the cap", func(r *model.DeploymentRequest) { r.Specs[0].MaxInstances = 5000 },
			"deploymentSpecifications[0].maxInstances 5000 is invalid: at most 1024"},
		{"concurrency negative", func(r *model.DeploymentRequest) { r.Specs[0].MaxRequestConcurrency = model.Int(-1) },
			"deploymentSpecifications[0].maxRequestConcurrency -1 is invalid: use 1-16384, or leave it out for the default of 1"},
		{"concurrency too big", func(r *model.DeploymentRequest) { r.Specs[0].MaxRequestConcurrency = model.Int(16385) },
			"deploymentSpecifications[0].maxRequestConcurrency 16385 is invalid"},
		{"empty cluster", func(r *model.DeploymentRequest) { r.Specs[0].Clusters = []string{"a", ""} },
			"deploymentSpecifications[0].clusters[1] is empty"},
		{"empty region", func(r *model.DeploymentRequest) { r.Specs[0].Regions = []string{""} },
			"deploymentSpecifications[0].regions[0] is empty"},
		{"empty attribute", func(r *model.DeploymentRequest) { r.Specs[0].Attributes = []string{""} },
			"deploymentSpecifications[0].attributes[0] is empty"},
		{"empty availability zone", func(r *model.DeploymentRequest) { r.Specs[0].AvailabilityZones = []string{""} },
			"deploymentSpecifications[0].availabilityZones[0] is empty"},
		{"duplicate specs", func(r *model.DeploymentRequest) { r.Specs = append(r.Specs, validSpec()) },
			`deploymentSpecifications[2] repeats deploymentSpecifications[0] (gpu "H100", instanceType "ON-PREM.GPU.H100_2x", backend "lab"): ` +
				"two specifications with the same gpu, instanceType and backend could not be told apart"},
		{"one shape under two provider prefixes", func(r *model.DeploymentRequest) {
			r.Specs = append(r.Specs, validSpec())
			r.Specs[2].InstanceType = "NCP.GPU.H100_2x"
		}, `deploymentSpecifications[2] repeats deploymentSpecifications[0] (gpu "H100", instanceType "NCP.GPU.H100_2x", backend "lab")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validDeployment()
			tc.mutate(r)
			wantProblem(t, Deployment(r), 400, tc.want)
		})
	}
}

// TestDeploymentRefusesUnsupported: every NVCF specification field Gantry
// has nothing behind is a 400 saying so and what to do instead.
func TestDeploymentRefusesUnsupported(t *testing.T) {
	t.Parallel()
	selector := func(field, what string) string {
		return "deploymentSpecifications[1]." + field + " is not supported: Gantry does not select instances by " + what +
			" yet; remove it, and choose the hardware with gpu and instanceType, or give the clusters that have it a capability and name that in attributes"
	}
	tests := []struct {
		name   string
		mutate func(s *model.GPUSpec)
		want   string // the whole detail
	}{
		{"configuration not an object", func(s *model.GPUSpec) { s.Configuration = json.RawMessage(`[1]`) },
			`deploymentSpecifications[1].configuration must be a JSON object of Helm values, e.g. {"replicaCount":1,"image":{"tag":"1.2"}}`},
		{"preferredOrder", func(s *model.GPUSpec) { s.PreferredOrder = 2 },
			"deploymentSpecifications[1].preferredOrder is not supported: Gantry orders clusters with schedule policies; remove it and " +
				"create a policy whose fillAndSpill tiers list the clusters in the order to fill them (POST /v1/gantry/policies)"},
		{"cpuArch", func(s *model.GPUSpec) { s.CPUArch = "arm64" }, selector("cpuArch", "CPU architecture")},
		{"os", func(s *model.GPUSpec) { s.OS = "linux" }, selector("os", "operating system")},
		{"driverVersion", func(s *model.GPUSpec) { s.DriverVersion = "550" }, selector("driverVersion", "driver version")},
		{"storage", func(s *model.GPUSpec) { s.Storage = "100Gi" }, selector("storage", "storage")},
		{"systemMemory", func(s *model.GPUSpec) { s.SystemMemory = "512Gi" }, selector("systemMemory", "system memory")},
		{"gpuMemory", func(s *model.GPUSpec) { s.GPUMemory = "80GB" }, selector("gpuMemory", "GPU memory")},
		{"all at once, in field order", func(s *model.GPUSpec) {
			s.PreferredOrder, s.Configuration, s.CPUArch, s.GPUMemory = 1, json.RawMessage(`{"a":1}`), "x86_64", "80GB"
		}, "deploymentSpecifications[1].preferredOrder is not supported: Gantry orders clusters with schedule policies; remove it and " +
			"create a policy whose fillAndSpill tiers list the clusters in the order to fill them (POST /v1/gantry/policies); " +
			selector("cpuArch", "CPU architecture") + "; " + selector("gpuMemory", "GPU memory")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validDeployment()
			tc.mutate(&r.Specs[1])
			wantDetail(t, Deployment(r), tc.want)
		})
	}
}

func TestDeploymentLeavesRequestAlone(t *testing.T) {
	t.Parallel()
	r := validDeployment()
	want := validDeployment()
	if err := Deployment(r); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("Deployment changed the request: %+v", r)
	}
	if err := Deployment(nil); err == nil {
		t.Error("Deployment(nil) = nil, want an error")
	}
}

func TestGPUSpecPatch(t *testing.T) {
	t.Parallel()
	n := func(i int) *int { return &i }
	tests := []struct {
		name  string
		patch *model.GPUSpecPatch
		want  func(s *model.GPUSpec) // nil when an error is expected
		err   string
	}{
		{"min only", &model.GPUSpecPatch{MinInstances: n(0)}, func(s *model.GPUSpec) { s.MinInstances = 0 }, ""},
		{"max only", &model.GPUSpecPatch{MaxInstances: n(10)}, func(s *model.GPUSpec) { s.MaxInstances = 10 }, ""},
		{"both", &model.GPUSpecPatch{MinInstances: n(5), MaxInstances: n(6)},
			func(s *model.GPUSpec) { s.MinInstances, s.MaxInstances = 5, 6 }, ""},
		{"concurrency unchanged", &model.GPUSpecPatch{MaxRequestConcurrency: n(validSpec().Concurrency())},
			func(s *model.GPUSpec) { s.MaxRequestConcurrency = model.Int(validSpec().Concurrency()) }, ""},
		{"concurrency changed", &model.GPUSpecPatch{MaxRequestConcurrency: n(64)}, nil, "maxRequestConcurrency cannot change in place"},
		{"concurrency zero", &model.GPUSpecPatch{MaxRequestConcurrency: n(0)}, nil, "maxRequestConcurrency 0 is invalid: use 1-16384"},
		{"nil patch", nil, nil, "send at least one of minInstances, maxInstances, maxRequestConcurrency, autoscalingConfigurationPolicy or autoscalingConfiguration"},
		{"empty patch", &model.GPUSpecPatch{}, nil, "send at least one of minInstances, maxInstances, maxRequestConcurrency, autoscalingConfigurationPolicy or autoscalingConfiguration"},
		{"custom autoscaling", &model.GPUSpecPatch{Autoscaling: &model.AutoscalingConfiguration{ScaleUp: &model.ScalingDetails{Factor: 2, Threshold: 80}}},
			func(s *model.GPUSpec) {
				s.AutoscalingPolicy = model.AutoscalingCustom
				s.Autoscaling = &model.AutoscalingConfiguration{ScaleUp: &model.ScalingDetails{Factor: 2, Threshold: 80}}
			}, ""},
		{"back to the platform's", &model.GPUSpecPatch{AutoscalingPolicy: model.AutoscalingPlatform},
			func(s *model.GPUSpec) { s.AutoscalingPolicy = model.AutoscalingPlatform }, ""},
		{"scale-up factor below 1", &model.GPUSpecPatch{Autoscaling: &model.AutoscalingConfiguration{ScaleUp: &model.ScalingDetails{Factor: 0.5, Threshold: 80}}},
			nil, "autoscalingConfiguration.scaleUpDetails.factor 0.5 is invalid: a scale-up factor multiplies the instance count, so it must be greater than 1"},
		{"min above current max", &model.GPUSpecPatch{MinInstances: n(5)}, nil,
			"maxInstances 2 is less than minInstances 5: maxInstances must be at least minInstances; maxInstances is unchanged at 2, so send a new maxInstances too"},
		{"max below current min", &model.GPUSpecPatch{MaxInstances: n(0)}, nil, "maxInstances 0 is invalid: use 1 or more"},
		{"max below current min, positive", &model.GPUSpecPatch{MaxInstances: n(1), MinInstances: nil}, nil, ""},
		{"both inverted", &model.GPUSpecPatch{MinInstances: n(4), MaxInstances: n(3)}, nil,
			"maxInstances 3 is less than minInstances 4: maxInstances must be at least minInstances"},
		{"negative min", &model.GPUSpecPatch{MinInstances: n(-1)}, nil, "minInstances -1 is invalid: use 0 or more"},
		{"concurrency too big", &model.GPUSpecPatch{MaxRequestConcurrency: n(1 << 20)}, nil, "maxRequestConcurrency 1048576 is invalid: use 1-16384"},
		{"fixed fields at their values", &model.GPUSpecPatch{MinInstances: n(0), GPU: "H100", InstanceType: "NCP.GPU.H100_2x", Backend: "lab",
			Clusters: []string{"c1"}, Regions: []string{"eu"}, Attributes: []string{"fast"}, AvailabilityZones: []string{"eu-1a"},
			Configuration: json.RawMessage("null")},
			func(s *model.GPUSpec) { s.MinInstances = 0 }, ""},
		{"gpu", &model.GPUSpecPatch{MinInstances: n(2), GPU: "A100"}, nil,
			`gpu cannot change in place (it is "H100"): PUT the deployment with the new gpu, which replaces its instances`},
		{"instanceType", &model.GPUSpecPatch{MinInstances: n(2), InstanceType: "ON-PREM.GPU.H100_4x"}, nil,
			`instanceType cannot change in place (it is "ON-PREM.GPU.H100_2x"): PUT the deployment with the new instanceType, which replaces its instances`},
		{"backend", &model.GPUSpecPatch{MinInstances: n(2), Backend: "other"}, nil,
			`backend cannot change in place (it is "lab"): PUT the deployment with the new backend, which replaces its instances`},
		{"clusters", &model.GPUSpecPatch{MinInstances: n(2), Clusters: []string{"c2"}}, nil,
			"clusters cannot change in place (its instances were placed by it): PUT the deployment with the new clusters"},
		{"regions", &model.GPUSpecPatch{MinInstances: n(2), Regions: []string{"us"}}, nil, "regions cannot change in place"},
		{"attributes", &model.GPUSpecPatch{MinInstances: n(2), Attributes: []string{"fast", "nvlink"}}, nil, "attributes cannot change in place"},
		{"availabilityZones", &model.GPUSpecPatch{MinInstances: n(2), AvailabilityZones: []string{"eu-1b"}}, nil, "availabilityZones cannot change in place"},
		{"preferredOrder", &model.GPUSpecPatch{MinInstances: n(2), PreferredOrder: 1}, nil, "preferredOrder is not supported"},
		{"configuration", &model.GPUSpecPatch{MinInstances: n(2), Configuration: json.RawMessage(`{"a":1}`)}, nil, "configuration cannot change in place: PUT the deployment"},
		{"gpuMemory", &model.GPUSpecPatch{MinInstances: n(2), GPUMemory: "80GB"}, nil, "gpuMemory is not supported"},
		{"gpu alone", &model.GPUSpecPatch{GPU: "A100"}, nil,
			`gpu cannot change in place (it is "H100"): PUT the deployment with the new gpu, which replaces its instances; send at least one of minInstances`},
		{"every problem at once", &model.GPUSpecPatch{MinInstances: n(-1), GPU: "A100", Regions: []string{"us"}, OS: "linux"}, nil,
			`minInstances -1 is invalid: use 0 or more; gpu cannot change in place (it is "H100"): PUT the deployment with the new gpu, which replaces its instances; ` +
				"regions cannot change in place (its instances were placed by it): PUT the deployment with the new regions; os is not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cur := validSpec()
			cur.ID = "spec-1"
			if tc.name == "max below current min, positive" {
				cur.MinInstances = 2
				tc.err = "maxInstances 1 is less than minInstances 2: maxInstances must be at least minInstances; minInstances is unchanged at 2, so send a new minInstances too"
			}
			before := validSpec()
			before.ID, before.MinInstances = cur.ID, cur.MinInstances
			got, err := GPUSpecPatch(tc.patch, cur)
			if !reflect.DeepEqual(cur, before) {
				t.Errorf("GPUSpecPatch changed current: %+v", cur)
			}
			if tc.err != "" {
				wantProblem(t, err, 400, tc.err)
				if !reflect.DeepEqual(got, model.GPUSpec{}) {
					t.Errorf("on error got %+v, want the zero GPUSpec", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("GPUSpecPatch: %v", err)
			}
			want := cur
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
			got.Clusters[0] = "changed"
			if cur.Clusters[0] == "changed" {
				t.Error("result shares its clusters slice with current")
			}
		})
	}
}
