package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/process"
	"github.com/gantry-dev/gantry/internal/model"
)

// Where secrets appear inside an instance besides its environment: NVCF
// functions read /var/secrets/secrets.json, one JSON object of all secrets.
const (
	SecretsDir  = "/var/secrets"
	SecretsFile = "secrets.json"
)

// Where an instance has room for input assets and for responses too large
// to return inline: the paths NVCF's own containers use, each an emptyDir
// that lives as long as the pod, named by NVCF_ASSET_DIR and
// NVCF_LARGE_OUTPUT_DIR.
const (
	AssetDir       = "/var/inf/inputAssets"
	LargeOutputDir = "/var/inf/response"
)

// Pod template settings.
const (
	// containerName is the function's container in every instance pod.
	containerName = "function"
	// shareFraction is the part of an instance type's CPU and memory share
	// that its pod requests. The rest is left for the daemon sets every GPU
	// node runs (device plugin, DCGM exporter, feature discovery), which
	// would otherwise keep a whole-node instance from ever being scheduled.
	shareFraction = 0.9
	// terminationGrace gives a function time to finish the requests it
	// holds after SIGTERM.
	terminationGrace    = 30
	defaultHealthPath   = "/health"
	defaultProbeTimeout = 5 * time.Second
	// startupWindow is how long a function may take to become healthy the
	// first time (loading model weights can take minutes) before the
	// kubelet restarts it. The liveness probe only runs after that.
	startupWindow = 10 * time.Minute
	probePeriod   = 2 * time.Second
)

// deploymentName derives the Deployment's name from the instance id: DNS-1123
// safe and at most 63 characters, so pods, which the ReplicaSet names after
// it, stay valid. Ids that are not already lowercase DNS labels, or too long,
// get a hash suffix so two ids never share a name.
func deploymentName(instanceID string) string {
	return dnsName(instanceID, validation.DNS1123LabelMaxLength)
}

// dnsName is "gantry-" and the instance id, made a DNS-1123 label of at
// most maxLen characters (see deploymentName).
func dnsName(instanceID string, maxLen int) string {
	const prefix = "gantry-"
	base := strings.ToLower(instanceID)
	clean := strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			return r
		}
		return '-'
	}, base)
	name := prefix + clean
	if clean == instanceID && len(name) <= maxLen && !strings.HasSuffix(name, "-") {
		return name
	}
	sum := sha256.Sum256([]byte(instanceID))
	suffix := "-" + hex.EncodeToString(sum[:])[:10]
	name = strings.TrimRight(name[:min(len(name), maxLen-len(suffix))], "-")
	return name + suffix
}

// labelsFor returns the labels of every object of an instance.
func (r *Runtime) labelsFor(spec runtime.Spec) map[string]string {
	return map[string]string{
		ManagedByLabel:       ManagedByValue,
		InstanceLabel:        spec.InstanceID,
		FunctionLabel:        spec.FunctionID,
		FunctionVersionLabel: spec.FunctionVersionID,
		ClusterLabel:         r.cfg.ClusterID,
	}
}

// checkSpec rejects a spec that cannot become valid Kubernetes objects,
// before anything is created.
func checkSpec(spec runtime.Spec) error {
	if strings.HasPrefix(spec.Image, model.ProcessImagePrefix) {
		return fmt.Errorf("kube: %w: the Kubernetes runtime runs container images, got %q; run %s functions with the process runtime",
			runtime.ErrUnsupportedImage, spec.Image, model.ProcessImagePrefix)
	}
	if strings.TrimSpace(spec.Image) == "" {
		return fmt.Errorf("kube: %w: instance %s has no container image", runtime.ErrUnsupportedImage, spec.InstanceID)
	}
	for _, f := range []struct{ what, value string }{
		{"instance id", spec.InstanceID}, {"function id", spec.FunctionID}, {"function version id", spec.FunctionVersionID},
	} {
		if errs := validation.IsValidLabelValue(f.value); len(errs) > 0 || f.value == "" {
			return fmt.Errorf("kube: %s %q cannot label Kubernetes objects: %s", f.what, f.value, strings.Join(errs, "; "))
		}
	}
	if spec.InferencePort <= 0 || spec.InferencePort > 65535 {
		return fmt.Errorf("kube: the function has no inferencePort (%d): a container must say which port it serves on; create a version with inferencePort set", spec.InferencePort)
	}
	return nil
}

// placement says where an instance's pod may run and what it asks for
// besides GPUs.
type placement struct {
	affinity *corev1.Affinity
	requests corev1.ResourceList
}

// placementFor pins a pod needing count GPUs of gpuModel to the nodes that
// have them. The GPU model is not a Kubernetes resource, so the pod selects
// nodes by the product labels that map to the model (and by GPUModelLabel
// where an operator set it), and by nvidia.com/gpu.count so the node is big
// enough. It also sizes the pod's CPU and memory requests to the instance
// type's share of the smallest such node, so it fits on any of them. Nodes
// are those that exist now: a product first seen later is not in the
// affinity of pods created before.
func placementFor(nodes []*corev1.Node, gpuModel string, count int) (placement, error) {
	var (
		products, overridden []string
		models               []string
		cpuMilli, memBytes   int64 = -1, -1
		largest              int
	)
	for _, n := range nodes {
		gpus := gpusOf(n)
		m := GPUModel(n.Labels)
		if gpus == 0 || m == "" {
			continue
		}
		if !slices.Contains(models, m) {
			models = append(models, m)
		}
		if m != gpuModel {
			continue
		}
		if n.Labels[GPUModelLabel] != "" {
			overridden = appendUnique(overridden, n.Labels[GPUModelLabel])
		} else if p := n.Labels[ProductLabel]; p != "" {
			products = appendUnique(products, p)
		}
		largest = max(largest, gpus)
		if gpus < count {
			continue
		}
		c := n.Status.Allocatable.Cpu().MilliValue() * int64(count) / int64(gpus)
		b := n.Status.Allocatable.Memory().Value() * int64(count) / int64(gpus)
		if cpuMilli < 0 || c < cpuMilli {
			cpuMilli = c
		}
		if memBytes < 0 || b < memBytes {
			memBytes = b
		}
	}
	switch {
	case len(products)+len(overridden) == 0:
		slices.Sort(models)
		have := "no GPU nodes"
		if len(models) > 0 {
			have = "GPU models " + strings.Join(models, ", ")
		}
		return placement{}, fmt.Errorf("kube: no node has %s GPUs (the cluster has %s)", gpuModel, have)
	case cpuMilli < 0:
		return placement{}, fmt.Errorf("kube: no node has %d %s GPUs; the largest has %d", count, gpuModel, largest)
	}
	slices.Sort(products)
	enough := corev1.NodeSelectorRequirement{Key: GPUCountLabel, Operator: corev1.NodeSelectorOpGt,
		Values: []string{strconv.Itoa(count - 1)}}
	var terms []corev1.NodeSelectorTerm
	if len(products) > 0 {
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			{Key: ProductLabel, Operator: corev1.NodeSelectorOpIn, Values: products},
			// A node an operator relabelled belongs to its label's model only.
			{Key: GPUModelLabel, Operator: corev1.NodeSelectorOpDoesNotExist},
			enough,
		}})
	}
	if len(overridden) > 0 {
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			{Key: GPUModelLabel, Operator: corev1.NodeSelectorOpIn, Values: overridden},
			enough,
		}})
	}
	const mi = 1 << 20
	return placement{
		affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
		}},
		requests: corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewMilliQuantity(int64(float64(cpuMilli)*shareFraction), resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(int64(float64(memBytes)*shareFraction)/mi*mi, resource.BinarySI),
		},
	}, nil
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// buildDeployment returns the Deployment that runs one instance: one
// replica, replaced rather than rolled (Recreate) so an instance never holds
// its GPUs twice.
func (r *Runtime) buildDeployment(spec runtime.Spec, p placement) (*appsv1.Deployment, error) {
	args, err := process.SplitArgs(spec.Args)
	if err != nil {
		return nil, fmt.Errorf("kube: instance %s: container arguments: %w", spec.InstanceID, err)
	}
	name := deploymentName(spec.InstanceID)
	labels := r.labelsFor(spec)
	limits, requests := corev1.ResourceList{}, corev1.ResourceList{}
	if spec.GPUCount > 0 {
		gpus := *resource.NewQuantity(int64(spec.GPUCount), resource.DecimalSI)
		limits[GPUResource], requests[GPUResource] = gpus, gpus
	}
	for k, v := range p.requests {
		requests[k] = v
	}
	container := corev1.Container{
		Name:  containerName,
		Image: spec.Image,
		Args:  args,
		Env:   envFor(spec),
		Ports: []corev1.ContainerPort{{Name: "inference", ContainerPort: int32(spec.InferencePort), Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			Limits:   limits,
			Requests: requests,
		},
		// The tail of the output on a crash becomes the termination
		// message, which stateOf puts in the restart-loop reason.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	container.StartupProbe, container.ReadinessProbe, container.LivenessProbe = probesFor(spec)
	var volumes []corev1.Volume
	for _, v := range []struct{ name, path string }{{"nvcf-assets", AssetDir}, {"nvcf-large-output", LargeOutputDir}} {
		volumes = append(volumes, corev1.Volume{Name: v.name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		container.VolumeMounts = append(container.VolumeMounts, corev1.VolumeMount{Name: v.name, MountPath: v.path})
	}
	pod := corev1.PodSpec{
		Containers:                    []corev1.Container{container},
		Volumes:                       volumes,
		Affinity:                      p.affinity,
		SchedulerName:                 r.cfg.SchedulerName,
		AutomountServiceAccountToken:  ptr.To(false),
		EnableServiceLinks:            ptr.To(false), // no env vars for every Service in the namespace
		TerminationGracePeriodSeconds: ptr.To[int64](terminationGrace),
		// GPU nodes are commonly tainted so only GPU workloads land there.
		Tolerations: []corev1.Toleration{{Key: string(GPUResource), Operator: corev1.TolerationOpExists,
			Effect: corev1.TaintEffectNoSchedule}},
	}
	// The instance's own pull Secret (its account's registry credential)
	// comes first, then the agent's: the kubelet tries them in order.
	if len(spec.DockerConfigJSON) > 0 {
		pod.ImagePullSecrets = append(pod.ImagePullSecrets, corev1.LocalObjectReference{Name: pullSecretName(name)})
	}
	for _, s := range r.cfg.ImagePullSecrets {
		pod.ImagePullSecrets = append(pod.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	if len(spec.Secrets) > 0 {
		addSecrets(&pod, name, spec.Secrets)
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: r.cfg.Namespace, Labels: labels,
			Finalizers: []string{Finalizer},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas:             ptr.To[int32](1),
			Selector:             &metav1.LabelSelector{MatchLabels: map[string]string{ManagedByLabel: ManagedByValue, InstanceLabel: spec.InstanceID}},
			Strategy:             appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			RevisionHistoryLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       pod,
			},
		},
	}, nil
}

// envFor is the container's environment: containerEnvironment, then the
// variables the platform owns (the same ones the process runtime sets, so a
// function behaves alike on both). A containerEnvironment entry the platform
// also sets is dropped rather than listed twice, so the platform's value is
// the only one, as it wins on the process runtime. Secrets are added by
// addSecrets, after these, and win over a containerEnvironment entry of the
// same name as they do on the process runtime.
func envFor(spec runtime.Spec) []corev1.EnvVar {
	platform := []corev1.EnvVar{
		{Name: "PORT", Value: strconv.Itoa(spec.InferencePort)},
		{Name: "GANTRY_INSTANCE_ID", Value: spec.InstanceID},
	}
	for _, e := range runtime.NVCFEnv(spec, AssetDir, LargeOutputDir) {
		platform = append(platform, corev1.EnvVar{Name: e.Key, Value: e.Value})
	}
	var env []corev1.EnvVar
	for _, e := range spec.Env {
		if _, secret := spec.Secrets[e.Key]; (secret && secretEnvKey(e.Key)) || e.Key == "" || strings.ContainsAny(e.Key, "=\x00") {
			continue
		}
		if slices.ContainsFunc(platform, func(p corev1.EnvVar) bool { return p.Name == e.Key }) {
			continue
		}
		env = append(env, corev1.EnvVar{Name: e.Key, Value: e.Value})
	}
	return append(env, platform...)
}

// addSecrets wires the instance's Secret into the pod: each secret as an
// environment variable and all of them as SecretsDir/SecretsFile. Variables
// reference single keys rather than using envFrom so that the JSON file's
// key does not also turn up as a variable.
func addSecrets(pod *corev1.PodSpec, secretName string, secrets map[string]string) {
	c := &pod.Containers[0]
	for _, k := range sortedKeys(secrets) {
		if !secretEnvKey(k) {
			continue
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: k},
		}})
	}
	pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "secrets", VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: secretName,
			Items: []corev1.KeyToPath{{Key: SecretsFile, Path: SecretsFile}}},
	}})
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "secrets", MountPath: SecretsDir, ReadOnly: true})
}

// secretEnvKey reports whether a secret can also be an environment variable:
// its name must be a valid Secret key, and not the JSON file's.
func secretEnvKey(k string) bool {
	return k != SecretsFile && len(validation.IsConfigMapKey(k)) == 0
}

// pullSecretName names the image pull Secret of the instance whose
// Deployment is deploymentName: Secret names may be longer than the
// Deployment's 63 characters, so the suffix always fits.
func pullSecretName(deploymentName string) string { return deploymentName + "-pull" }

// ownedBy makes an object of an instance a dependent of its Deployment, so
// Kubernetes deletes it with the Deployment (also on uninstall, which
// deletes the Deployments). BlockOwnerDeletion makes a foreground deletion
// of the Deployment, which Stop does, wait for it.
func ownedBy(d *appsv1.Deployment) []metav1.OwnerReference {
	return []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
}

// buildPullSecret returns the kubernetes.io/dockerconfigjson Secret the
// instance's pod pulls its image with (the function account's registry
// credential), owned by its Deployment.
func (r *Runtime) buildPullSecret(d *appsv1.Deployment, spec runtime.Spec) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: pullSecretName(d.Name), Namespace: d.Namespace, Labels: d.Labels, OwnerReferences: ownedBy(d),
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: spec.DockerConfigJSON},
	}
}

// buildSecret returns the Secret holding an instance's secrets, owned by its
// Deployment (see ownedBy).
func (r *Runtime) buildSecret(d *appsv1.Deployment, spec runtime.Spec) (*corev1.Secret, error) {
	all, err := json.Marshal(spec.Secrets)
	if err != nil {
		return nil, fmt.Errorf("kube: instance %s: encode secrets: %w", spec.InstanceID, err)
	}
	data := map[string][]byte{SecretsFile: all}
	for k, v := range spec.Secrets {
		if secretEnvKey(k) {
			data[k] = []byte(v)
		}
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name, Namespace: d.Namespace, Labels: d.Labels, OwnerReferences: ownedBy(d),
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}, nil
}

// probesFor turns the function's health check into a startup probe (a
// generous window for the first healthy answer), a readiness probe (the
// instance takes requests only while it answers) and a liveness probe
// (restart after about a minute without an answer). Kubernetes HTTP probes
// accept any 2xx or 3xx status, so a non-200 ExpectedStatus is not checked
// exactly; gRPC functions must serve the standard gRPC health service.
func probesFor(spec runtime.Spec) (startup, readiness, liveness *corev1.Probe) {
	hc := spec.Health
	port := hc.Port
	if port == 0 {
		port = spec.InferencePort
	}
	timeout := hc.Timeout
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	var handler corev1.ProbeHandler
	if strings.EqualFold(hc.Protocol, "grpc") {
		handler.GRPC = &corev1.GRPCAction{Port: int32(port)}
	} else {
		path := hc.Path
		if path == "" {
			path = defaultHealthPath
		}
		handler.HTTPGet = &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt(port)}
	}
	probe := func(period time.Duration, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     handler,
			TimeoutSeconds:   int32(max(1, (timeout+time.Second-1)/time.Second)),
			PeriodSeconds:    int32(period / time.Second),
			FailureThreshold: failures,
			SuccessThreshold: 1,
		}
	}
	return probe(probePeriod, int32(startupWindow/probePeriod)),
		probe(probePeriod, 3),
		probe(10*time.Second, 6)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
