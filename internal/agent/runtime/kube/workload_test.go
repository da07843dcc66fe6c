package kube

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/model"
)

func TestDeploymentName(t *testing.T) {
	tests := []struct {
		name, id, want string
	}{
		{name: "uuid kept", id: "0b6f3c1e-5a7d-4c1e-9f2a-1d2e3f4a5b6c", want: "gantry-0b6f3c1e-5a7d-4c1e-9f2a-1d2e3f4a5b6c"},
		{name: "uppercase hashed", id: "ABC", want: "gantry-abc-"},
		{name: "trailing dash hashed", id: "abc-", want: "gantry-abc-"},
		{name: "too long hashed", id: strings.Repeat("a", 64), want: "gantry-aaaa"},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := deploymentName(tc.id)
			if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
				t.Errorf("deploymentName(%q) = %q: %v", tc.id, got, errs)
			}
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("deploymentName(%q) = %q, want prefix %q", tc.id, got, tc.want)
			}
			if other, dup := seen[got]; dup {
				t.Errorf("ids %q and %q share the name %q", other, tc.id, got)
			}
			seen[got] = tc.id
		})
	}
	if deploymentName("abc") == deploymentName("ABC") {
		t.Error("ids differing in case share a name")
	}
}

// gpuNode is a node as the GPU Operator labels it, for placement tests.
func gpuNode(name, product string, gpus int, cpu, mem string, extra map[string]string) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{ProductLabel: product}},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
			GPUResource: *resource.NewQuantity(int64(gpus), resource.DecimalSI)}},
	}
	for k, v := range extra {
		n.Labels[k] = v
	}
	return n
}

func TestPlacementFor(t *testing.T) {
	nodes := []*corev1.Node{
		gpuNode("h100-a", "NVIDIA-H100-80GB-HBM3", 8, "64", "512Gi", nil),
		gpuNode("h100-b", "NVIDIA-H100-NVL", 4, "16", "256Gi", nil),
		gpuNode("h100-c", "NVIDIA-H100-PCIe", 1, "8", "64Gi", nil), // too small for 2
		gpuNode("a100-a", "NVIDIA-A100-SXM4-80GB", 8, "64", "512Gi", nil),
		gpuNode("h100-x", "NVIDIA-H100-80GB-HBM3", 8, "64", "1Ti", map[string]string{GPUModelLabel: "H100-BIG"}),
		gpuNode("cpu-0", "", 0, "64", "512Gi", nil),
	}
	tests := []struct {
		name    string
		model   string
		count   int
		terms   []string // rendered node selector terms
		cpu     string
		memory  string
		wantErr string
	}{
		{name: "two H100 on the smaller nodes' share", model: "H100", count: 2,
			terms: []string{"nvidia.com/gpu.product In [NVIDIA-H100-80GB-HBM3 NVIDIA-H100-NVL NVIDIA-H100-PCIe]; " +
				"gantry.dev/gpu-model DoesNotExist []; nvidia.com/gpu.count Gt [1]"},
			cpu: "7200m", memory: "117964Mi"}, // 90% of min(64*2/8, 16*2/4) cores and of 128Gi, in whole Mi
		{name: "relabelled nodes", model: "H100-BIG", count: 8,
			terms: []string{"gantry.dev/gpu-model In [H100-BIG]; nvidia.com/gpu.count Gt [7]"},
			cpu:   "57600m", memory: "943718Mi"},
		{name: "unknown model", model: "B200", count: 1,
			wantErr: "kube: no node has B200 GPUs (the cluster has GPU models A100, H100, H100-BIG)"},
		{name: "too many GPUs", model: "A100", count: 16,
			wantErr: "kube: no node has 16 A100 GPUs; the largest has 8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := placementFor(nodes, tc.model, tc.count)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var terms []string
			for _, term := range p.affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
				var reqs []string
				for _, r := range term.MatchExpressions {
					reqs = append(reqs, r.Key+" "+string(r.Operator)+" ["+strings.Join(r.Values, " ")+"]")
				}
				terms = append(terms, strings.Join(reqs, "; "))
			}
			if strings.Join(terms, " OR ") != strings.Join(tc.terms, " OR ") {
				t.Errorf("terms:\n got %q\nwant %q", terms, tc.terms)
			}
			if got := p.requests.Cpu().String(); got != tc.cpu {
				t.Errorf("cpu = %s, want %s", got, tc.cpu)
			}
			if got := p.requests.Memory().String(); got != tc.memory {
				t.Errorf("memory = %s, want %s", got, tc.memory)
			}
		})
	}
}

func TestProbesFor(t *testing.T) {
	tests := []struct {
		name    string
		health  runtime.HealthCheck
		http    string // path:port, or "" for a gRPC probe
		grpc    int32
		timeout int32
	}{
		{name: "defaults", health: runtime.HealthCheck{}, http: "/health:8000", timeout: 5},
		{name: "own path, port and timeout", health: runtime.HealthCheck{Path: "/ready", Port: 9000, Timeout: 1500 * time.Millisecond},
			http: "/ready:9000", timeout: 2},
		{name: "grpc on the serving port", health: runtime.HealthCheck{Protocol: "gRPC"}, grpc: 8000, timeout: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := runtime.Spec{InferencePort: 8000, Health: tc.health}
			startup, readiness, liveness := probesFor(spec)
			for _, p := range []*corev1.Probe{startup, readiness, liveness} {
				switch {
				case tc.http != "" && (p.HTTPGet == nil || fmt.Sprintf("%s:%d", p.HTTPGet.Path, p.HTTPGet.Port.IntValue()) != tc.http):
					t.Errorf("probe %+v, want HTTP GET %s", p.ProbeHandler, tc.http)
				case tc.http == "" && (p.GRPC == nil || p.GRPC.Port != tc.grpc):
					t.Errorf("probe %+v, want gRPC on %d", p.ProbeHandler, tc.grpc)
				case p.TimeoutSeconds != tc.timeout:
					t.Errorf("timeout %ds, want %ds", p.TimeoutSeconds, tc.timeout)
				}
			}
			// A slow model load must not be killed: the startup window is
			// minutes, and liveness only starts after it.
			if window := time.Duration(startup.PeriodSeconds*startup.FailureThreshold) * time.Second; window < 5*time.Minute {
				t.Errorf("startup window %v", window)
			}
		})
	}
}

func TestEnvFor(t *testing.T) {
	t.Parallel()
	base := runtime.Spec{
		InstanceID: "inst-1", FunctionID: "fn-1", FunctionVersionID: "ver-1", FunctionName: "echo",
		NCAID: "nca-1", Backend: "group-a", InstanceType: "ON-PREM.GPU.H100_2x", Region: "eu-west",
		InferencePort: 8000,
	}
	platform := map[string]string{
		"PORT":                     "8000",
		"GANTRY_INSTANCE_ID":       "inst-1",
		"NVCF_FUNCTION_ID":         "fn-1",
		"NVCF_FUNCTION_VERSION_ID": "ver-1",
		"NVCF_FUNCTION_NAME":       "echo",
		"NVCF_NCA_ID":              "nca-1",
		"NVCF_BACKEND":             "group-a",
		"NVCF_INSTANCETYPE":        "ON-PREM.GPU.H100_2x",
		"NVCF_REGION":              "eu-west",
		"NVCF_ENV":                 runtime.NVCFEnvironment,
		"NVCF_INSTANCE_ID":         "inst-1",
		"NVCF_ASSET_DIR":           AssetDir,
		"NVCF_LARGE_OUTPUT_DIR":    LargeOutputDir,
	}
	tests := []struct {
		name    string
		env     []model.EnvVar
		secrets map[string]string
		want    map[string]string // besides platform
		absent  []string
	}{
		{name: "platform variables only"},
		{
			name: "containerEnvironment comes first",
			env:  []model.EnvVar{{Key: "LOG_LEVEL", Value: "debug"}},
			want: map[string]string{"LOG_LEVEL": "debug"},
		},
		{
			name: "containerEnvironment cannot set platform variables",
			env: []model.EnvVar{{Key: "NVCF_FUNCTION_ID", Value: "spoofed"}, {Key: "NVCF_ENV", Value: "prod"},
				{Key: "PORT", Value: "1"}},
		},
		{
			name:    "secrets are left to addSecrets",
			env:     []model.EnvVar{{Key: "HF_TOKEN", Value: "overridden by the secret"}},
			secrets: map[string]string{"HF_TOKEN": "hf_s3cret"},
			absent:  []string{"HF_TOKEN"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := base
			spec.Env, spec.Secrets = tc.env, tc.secrets
			got := map[string]string{}
			for _, e := range envFor(spec) {
				if _, dup := got[e.Name]; dup {
					t.Errorf("%s listed twice", e.Name)
				}
				got[e.Name] = e.Value
			}
			want := maps.Clone(platform)
			maps.Copy(want, tc.want)
			for k, v := range want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %q (set %v), want %q", k, g, ok, v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s is set", k)
				}
			}
			if len(got) != len(want) {
				t.Errorf("env = %v, want %v", got, want)
			}
		})
	}
}

// TestInstanceDirsMounted checks that the directories NVCF_ASSET_DIR and
// NVCF_LARGE_OUTPUT_DIR name exist in the pod, as writable emptyDirs.
func TestInstanceDirsMounted(t *testing.T) {
	t.Parallel()
	r := &Runtime{cfg: Config{Namespace: "gantry", ClusterID: "c1"}}
	spec := runtime.Spec{InstanceID: "inst-1", FunctionID: "fn-1", FunctionVersionID: "ver-1",
		Image: "nvcr.io/example/echo:1", InferencePort: 8000}
	d, err := r.buildDeployment(spec, placement{})
	if err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template.Spec
	env := map[string]string{}
	for _, e := range pod.Containers[0].Env {
		env[e.Name] = e.Value
	}
	for _, name := range []string{"NVCF_ASSET_DIR", "NVCF_LARGE_OUTPUT_DIR"} {
		t.Run(name, func(t *testing.T) {
			dir := env[name]
			i := slices.IndexFunc(pod.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir })
			if dir == "" || i < 0 {
				t.Fatalf("%s = %q is not mounted: %+v", name, dir, pod.Containers[0].VolumeMounts)
			}
			m := pod.Containers[0].VolumeMounts[i]
			v := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
			if m.ReadOnly || v < 0 || pod.Volumes[v].EmptyDir == nil {
				t.Errorf("%s: mount %+v, volumes %+v; want a writable emptyDir", name, m, pod.Volumes)
			}
		})
	}
}

// TestImagePullSecrets checks which Secrets an instance's pod pulls with:
// its own (its account's registry credential) first, then the agent's.
func TestImagePullSecrets(t *testing.T) {
	t.Parallel()
	config := []byte(`{"auths":{"nvcr.io":{"auth":"cm9ib3Q6aHVudGVyMg=="}}}`)
	tests := []struct {
		name   string
		agent  []string
		config []byte
		want   []string
	}{
		{name: "none"},
		{name: "the agent's only", agent: []string{"regcred"}, want: []string{"regcred"}},
		{name: "the instance's only", config: config, want: []string{"gantry-inst-1-pull"}},
		{name: "the instance's, then the agent's", agent: []string{"regcred"}, config: config,
			want: []string{"gantry-inst-1-pull", "regcred"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &Runtime{cfg: Config{Namespace: "gantry", ClusterID: "c1", ImagePullSecrets: tc.agent}}
			spec := runtime.Spec{InstanceID: "inst-1", FunctionID: "fn-1", FunctionVersionID: "ver-1",
				Image: "nvcr.io/example/echo:1", InferencePort: 8000, DockerConfigJSON: tc.config}
			d, err := r.buildDeployment(spec, placement{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range d.Spec.Template.Spec.ImagePullSecrets {
				got = append(got, s.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("imagePullSecrets = %v, want %v", got, tc.want)
			}
			if tc.config == nil {
				return
			}
			d.UID = "uid-1"
			s := r.buildPullSecret(d, spec)
			if s.Name != tc.want[0] || s.Namespace != "gantry" || s.Type != corev1.SecretTypeDockerConfigJson ||
				string(s.Data[corev1.DockerConfigJsonKey]) != string(config) || len(s.Data) != 1 {
				t.Errorf("pull Secret %s/%s type %s keys %v", s.Namespace, s.Name, s.Type, slices.Collect(maps.Keys(s.Data)))
			}
			if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != "uid-1" || s.OwnerReferences[0].Kind != "Deployment" ||
				s.Labels[InstanceLabel] != "inst-1" {
				t.Errorf("owner %+v, labels %v", s.OwnerReferences, s.Labels)
			}
		})
	}
}
