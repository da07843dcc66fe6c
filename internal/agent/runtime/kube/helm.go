package kube

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/getter"
	helmkube "helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/registry"
	"helm.sh/helm/v4/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
)

// Labels and annotations of a Helm instance's objects, beside the labels
// every instance's objects carry.
const (
	// HelmReleaseLabel names the Helm release an object belongs to; it
	// marks an instance as a Helm one, also for an agent that adopts it.
	HelmReleaseLabel = "gantry.dev/helm-release"
	// helmDigestLabel is a digest of the chart URL and the values a
	// release was installed with; Start upgrades when it changes.
	helmDigestLabel = "gantry.dev/helm-digest"
	// inferencePortAnnotation, on the Service named by
	// helmChartServiceName, is the function's inferencePort, so an
	// adopted instance finds its endpoint without its spec.
	inferencePortAnnotation = "gantry.dev/inference-port"
)

// Limits on what a chart may do, as NVCF sets them.
const (
	maxHelmObjects = 300
	maxChartBytes  = 20 << 20
	helmTimeout    = 2 * time.Minute
)

// errNoHelm is returned for a Helm instance on a Runtime without a REST config.
var errNoHelm = errors.New("kube: this runtime cannot install Helm charts: Config.RESTConfig is not set")

// releaseName is the Helm release of an instance: DNS-1123 and at most 53
// characters, as Helm wants, derived like the Deployment name.
func releaseName(instanceID string) string { return dnsName(instanceID, 53) }

func helmSecretName(release string) string     { return release + "-secrets" }
func helmPullSecretName(release string) string { return release + "-pull" }

// helmDigest identifies what a release was made of: the chart's URL, the
// service, and the values without secret values.
func helmDigest(spec runtime.Spec, values map[string]any) string {
	b, _ := json.Marshal([]any{spec.Helm.Chart, spec.Helm.ServiceName, spec.InferencePort, values})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// restGetter hands Helm the runtime's own REST config instead of a
// kubeconfig file.
type restGetter struct {
	cfg       *rest.Config
	namespace string
	disc      discovery.CachedDiscoveryInterface
	mapper    meta.RESTMapper
}

func newRESTGetter(cfg *rest.Config, namespace string) (*restGetter, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: discovery client for Helm: %w", err)
	}
	disc := memory.NewMemCacheClient(dc)
	return &restGetter{cfg: cfg, namespace: namespace, disc: disc, mapper: restmapper.NewDeferredDiscoveryRESTMapper(disc)}, nil
}

func (g *restGetter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.cfg), nil }
func (g *restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.disc, nil
}
func (g *restGetter) ToRESTMapper() (meta.RESTMapper, error) { return g.mapper, nil }
func (g *restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return clientcmd.NewDefaultClientConfig(*clientcmdapi.NewConfig(),
		&clientcmd.ConfigOverrides{Context: clientcmdapi.Context{Namespace: g.namespace}})
}

// helmConfig returns the runtime's Helm action configuration, made on first
// use: releases are stored as Secrets in the runtime's namespace, as the
// helm CLI stores them. Helm's own log is dropped: it may print rendered
// manifests.
func (r *Runtime) helmConfig() (*action.Configuration, error) {
	r.helmOnce.Do(func() {
		if r.cfg.RESTConfig == nil {
			r.helmErr = errNoHelm
			return
		}
		g, err := newRESTGetter(r.cfg.RESTConfig, r.cfg.Namespace)
		if err != nil {
			r.helmErr = err
			return
		}
		cfg := action.NewConfiguration()
		cfg.SetLogger(slog.DiscardHandler)
		if err := cfg.Init(g, r.cfg.Namespace, "secret"); err != nil {
			r.helmErr = fmt.Errorf("kube: set up Helm: %w", err)
			return
		}
		r.helm = cfg
	})
	return r.helm, r.helmErr
}

// fetchChart downloads and loads the packaged chart at ref: an http(s) URL
// of a .tgz, or an oci:// reference, with Helm's own getters.
func fetchChart(ref string) (*chart.Chart, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("kube: helmChart %q is not a URL: %w", ref, err)
	}
	var g getter.Getter
	switch u.Scheme {
	case "http", "https":
		g, err = getter.NewHTTPGetter(getter.WithTimeout(time.Minute))
	case "oci":
		var rc *registry.Client
		if rc, err = registry.NewClient(); err == nil {
			g, err = getter.NewOCIGetter(getter.WithRegistryClient(rc), getter.WithTimeout(time.Minute))
		}
	default:
		return nil, fmt.Errorf("kube: helmChart %q: use an https:// URL of a packaged chart (.tgz) or an oci:// reference", ref)
	}
	if err != nil {
		return nil, fmt.Errorf("kube: Helm getter for %s: %w", u.Scheme, err)
	}
	buf, err := g.Get(ref)
	if err != nil {
		return nil, fmt.Errorf("kube: download Helm chart %s: %w", ref, err)
	}
	if buf.Len() > maxChartBytes {
		return nil, fmt.Errorf("kube: Helm chart %s is %d bytes; at most %d are allowed", ref, buf.Len(), maxChartBytes)
	}
	ch, err := loader.LoadArchive(buf)
	if err != nil {
		return nil, fmt.Errorf("kube: Helm chart %s is not a packaged chart: %w", ref, err)
	}
	return ch, nil
}

// helmValues are the chart's values: the deployment's configuration, with
// Gantry's own under the key "gantry" (which it replaces):
//
//	gantry:
//	  instanceId, functionId, functionVersionId, functionName, ncaId
//	  env:            [{name, value}] the NVCF_* variables of the instance
//	  gpu:            {model, count, resource: nvidia.com/gpu}
//	  resources:      {limits: {nvidia.com/gpu: N}, requests: {...}} (empty without GPUs)
//	  secretName:     the Secret holding the function's secrets, one key each and
//	                  secrets.json (empty without secrets)
//	  imagePullSecret: the image pull Secret (empty without a registry credential)
//
// Secret values never enter the values: Helm keeps values in its release
// records, and they show in helm get values.
func helmValues(spec runtime.Spec, release string) (map[string]any, error) {
	vals := map[string]any{}
	if v := bytes.TrimSpace(spec.Helm.Values); len(v) > 0 && !bytes.Equal(v, []byte("null")) {
		if err := json.Unmarshal(v, &vals); err != nil {
			return nil, fmt.Errorf("kube: the deployment's configuration is not a JSON object: %w", err)
		}
		if vals == nil {
			vals = map[string]any{}
		}
	}
	env := []any{}
	for _, e := range runtime.NVCFEnv(spec, AssetDir, LargeOutputDir) {
		env = append(env, map[string]any{"name": e.Key, "value": e.Value})
	}
	resources := map[string]any{}
	if spec.GPUCount > 0 {
		n := int64(spec.GPUCount)
		resources = map[string]any{
			"limits":   map[string]any{string(GPUResource): n},
			"requests": map[string]any{string(GPUResource): n},
		}
	}
	g := map[string]any{
		"instanceId": spec.InstanceID, "functionId": spec.FunctionID, "functionVersionId": spec.FunctionVersionID,
		"functionName": spec.FunctionName, "ncaId": spec.NCAID,
		"env":       env,
		"gpu":       map[string]any{"model": spec.GPUModel, "count": int64(spec.GPUCount), "resource": string(GPUResource)},
		"resources": resources, "secretName": "", "imagePullSecret": "",
	}
	if len(spec.Secrets) > 0 {
		g["secretName"] = helmSecretName(release)
	}
	if len(spec.DockerConfigJSON) > 0 {
		g["imagePullSecret"] = helmPullSecretName(release)
	}
	vals["gantry"] = g
	return vals, nil
}

// helmObjectLabels are the labels the post-renderer puts on every object of
// a release.
func (r *Runtime) helmObjectLabels(spec runtime.Spec, release string) map[string]string {
	l := r.labelsFor(spec)
	l[HelmReleaseLabel] = release
	return l
}

// installHelm installs or upgrades the release of a Helm instance. Its
// Secrets come first, so the pods find them. A chart that cannot be fetched
// or rendered leaves nothing behind; one that fails to install is
// uninstalled again (an upgrade that fails is rolled back), and the error
// says why.
func (r *Runtime) installHelm(ctx context.Context, spec runtime.Spec, upgrade bool) (string, error) {
	cfg, err := r.helmConfig()
	if err != nil {
		return "", err
	}
	release := releaseName(spec.InstanceID)
	ch, err := fetchChart(spec.Helm.Chart)
	if err != nil {
		return "", err
	}
	vals, err := helmValues(spec, release)
	if err != nil {
		return "", err
	}
	digest := helmDigest(spec, vals)
	labels := r.helmObjectLabels(spec, release)
	pr := &helmPostRenderer{
		namespace: r.cfg.Namespace, labels: labels, digest: digest,
		service: spec.Helm.ServiceName, port: spec.InferencePort,
	}
	if len(spec.DockerConfigJSON) > 0 {
		pr.pullSecret = helmPullSecretName(release)
	}
	if err := r.putHelmSecrets(ctx, spec, release, labels); err != nil {
		return "", err
	}
	r.helmMu.Lock()
	defer r.helmMu.Unlock()
	if upgrade {
		up := action.NewUpgrade(cfg)
		up.Namespace, up.DisableHooks, up.SkipCRDs = r.cfg.Namespace, true, true
		up.WaitStrategy, up.Timeout, up.MaxHistory = helmkube.HookOnlyStrategy, helmTimeout, 5
		up.PostRenderer = pr
		if _, err := up.RunWithContext(ctx, release, ch, vals); err != nil {
			rb := action.NewRollback(cfg)
			rb.DisableHooks, rb.WaitStrategy, rb.Timeout = true, helmkube.HookOnlyStrategy, helmTimeout
			if rerr := rb.Run(release); rerr != nil {
				return "", fmt.Errorf("kube: upgrade Helm release %s of instance %s: %w (and rolling it back failed: %v)",
					release, spec.InstanceID, err, rerr)
			}
			return "", fmt.Errorf("kube: upgrade Helm release %s of instance %s (rolled back to the previous revision): %w",
				release, spec.InstanceID, err)
		}
		return digest, nil
	}
	in := action.NewInstall(cfg)
	in.Namespace, in.ReleaseName, in.DisableHooks, in.SkipCRDs = r.cfg.Namespace, release, true, true
	in.WaitStrategy, in.Timeout = helmkube.HookOnlyStrategy, helmTimeout
	in.PostRenderer = pr
	if _, err := in.RunWithContext(ctx, ch, vals); err != nil {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if uerr := r.uninstallHelmLocked(uctx, cfg, release); uerr != nil {
			return "", fmt.Errorf("kube: install Helm chart %s for instance %s: %w (and removing what was installed failed: %v)",
				spec.Helm.Chart, spec.InstanceID, err, uerr)
		}
		return "", fmt.Errorf("kube: install Helm chart %s for instance %s: %w", spec.Helm.Chart, spec.InstanceID, err)
	}
	return digest, nil
}

// putHelmSecrets makes (or replaces) the Secrets a release's pods read: the
// function's secrets and the image pull config.
func (r *Runtime) putHelmSecrets(ctx context.Context, spec runtime.Spec, release string, labels map[string]string) error {
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: r.cfg.Namespace, Labels: labels}
	}
	var secrets []*corev1.Secret
	if len(spec.Secrets) > 0 {
		all, err := json.Marshal(spec.Secrets)
		if err != nil {
			return fmt.Errorf("kube: instance %s: encode secrets: %w", spec.InstanceID, err)
		}
		data := map[string][]byte{SecretsFile: all}
		for k, v := range spec.Secrets {
			if secretEnvKey(k) {
				data[k] = []byte(v)
			}
		}
		secrets = append(secrets, &corev1.Secret{ObjectMeta: meta(helmSecretName(release)), Type: corev1.SecretTypeOpaque, Data: data})
	}
	if len(spec.DockerConfigJSON) > 0 {
		secrets = append(secrets, &corev1.Secret{ObjectMeta: meta(helmPullSecretName(release)), Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: spec.DockerConfigJSON}})
	}
	for _, s := range secrets {
		if err := r.putSecret(ctx, s); err != nil {
			r.deleteHelmSecrets(ctx, release)
			return fmt.Errorf("kube: create Secret %s/%s for instance %s: %w", r.cfg.Namespace, s.Name, spec.InstanceID, err)
		}
	}
	return nil
}

// deleteHelmSecrets removes the Secrets putHelmSecrets made; best effort.
func (r *Runtime) deleteHelmSecrets(ctx context.Context, release string) {
	for _, name := range []string{helmSecretName(release), helmPullSecretName(release)} {
		_ = r.cfg.Client.CoreV1().Secrets(r.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	}
}

// uninstallHelm uninstalls an instance's release, if there is one, and
// deletes its Secrets. Pods go in the foreground; the caller waits for them.
func (r *Runtime) uninstallHelm(ctx context.Context, instanceID string) error {
	cfg, err := r.helmConfig()
	if err != nil {
		return err
	}
	r.helmMu.Lock()
	defer r.helmMu.Unlock()
	return r.uninstallHelmLocked(ctx, cfg, releaseName(instanceID))
}

func (r *Runtime) uninstallHelmLocked(ctx context.Context, cfg *action.Configuration, release string) error {
	defer r.deleteHelmSecrets(ctx, release)
	if _, err := cfg.Releases.Last(release); errors.Is(err, driver.ErrReleaseNotFound) {
		return nil
	}
	un := action.NewUninstall(cfg)
	un.DisableHooks, un.IgnoreNotFound, un.WaitStrategy, un.Timeout = true, true, helmkube.HookOnlyStrategy, helmTimeout
	un.DeletionPropagation = string(metav1.DeletePropagationForeground)
	if _, err := un.Run(release); err != nil && !errors.Is(err, driver.ErrReleaseNotFound) &&
		!apierrors.IsNotFound(err) && !strings.Contains(err.Error(), "not found") {
		return fmt.Errorf("kube: uninstall Helm release %s: %w", release, err)
	}
	return nil
}

// checkHelmSpec rejects a Helm spec that cannot become a release.
func checkHelmSpec(spec runtime.Spec) error {
	h := spec.Helm
	if strings.TrimSpace(h.Chart) == "" {
		return fmt.Errorf("kube: instance %s: a Helm function needs helmChart", spec.InstanceID)
	}
	if h.ServiceName == "" {
		return fmt.Errorf("kube: instance %s: a Helm function needs helmChartServiceName, the chart's Service that serves inferencePort", spec.InstanceID)
	}
	if spec.InferencePort <= 0 || spec.InferencePort > 65535 {
		return fmt.Errorf("kube: the Helm function has no inferencePort (%d): it must be the port of Service %s; create a version with inferencePort set",
			spec.InferencePort, h.ServiceName)
	}
	for _, f := range []struct{ what, value string }{
		{"instance id", spec.InstanceID}, {"function id", spec.FunctionID}, {"function version id", spec.FunctionVersionID},
	} {
		if errs := validation.IsValidLabelValue(f.value); len(errs) > 0 || f.value == "" {
			return fmt.Errorf("kube: %s %q cannot label Kubernetes objects: %s", f.what, f.value, strings.Join(errs, "; "))
		}
	}
	return nil
}

// startHelm installs a Helm instance's release, or upgrades it when the
// chart or values differ from what it was installed with; the same spec
// again does nothing. A release that cannot be installed leaves nothing
// behind and the instance ERRORED with the reason; an upgrade that fails
// is rolled back and the instance keeps running the previous revision,
// the failure in its status reason.
func (r *Runtime) startHelm(ctx context.Context, spec runtime.Spec) error {
	if err := checkHelmSpec(spec); err != nil {
		return err
	}
	id := spec.InstanceID
	vals, err := helmValues(spec, releaseName(id))
	if err != nil {
		return err
	}
	digest := helmDigest(spec, vals)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	in := r.instances[id]
	switch {
	case in == nil:
		in = &instance{id: id, helm: true}
		r.instances[id] = in
	case in.stopping || in.digest == digest:
		r.mu.Unlock()
		return nil
	}
	upgrade := in.digest != "" && in.failed == ""
	in.digest = digest
	r.mu.Unlock()

	_, err = r.installHelm(ctx, spec, upgrade)
	r.mu.Lock()
	if r.instances[id] == in {
		switch {
		case err == nil:
			in.failed, in.upgradeFailed = "", ""
		case upgrade:
			in.upgradeFailed = err.Error()
		default:
			in.failed = err.Error()
		}
	}
	r.mu.Unlock()
	if err != nil {
		r.log.Warn("Helm release failed", "instance", id, "chart", spec.Helm.Chart, "upgrade", upgrade, "err", err)
	} else {
		r.log.Info("Helm release applied", "instance", id, "function", spec.FunctionID, "chart", spec.Helm.Chart,
			"release", releaseName(id), "upgrade", upgrade, "gpus", spec.GPUCount, "gpuModel", spec.GPUModel)
	}
	r.refresh(id)
	return nil
}

// isHelm reports whether an instance is a Helm release: started or adopted
// as one, or with objects of a release in the caches.
func (r *Runtime) isHelm(in *instance, id string) bool {
	r.mu.Lock()
	helm := in != nil && in.helm
	r.mu.Unlock()
	if helm {
		return true
	}
	for _, s := range r.servicesOf(id) {
		if s.Labels[HelmReleaseLabel] != "" {
			return true
		}
	}
	d := r.deploymentOf(id)
	return d != nil && d.Labels[HelmReleaseLabel] != ""
}

// stopHelm uninstalls a Helm instance's release, waits until its pods and
// objects are gone, and forgets the instance.
func (r *Runtime) stopHelm(ctx context.Context, in *instance, id string) error {
	if err := r.uninstallHelm(ctx, id); err != nil {
		return fmt.Errorf("kube: stop %s: %w", id, err)
	}
	if err := r.waitFor(ctx, func() (bool, string) {
		if pods := r.podsOf(id); len(pods) > 0 {
			return false, describePods(pods)
		}
		if d := r.deploymentOf(id); d != nil {
			return false, fmt.Sprintf("Deployment %s is still being deleted", d.Name)
		}
		if s := r.servicesOf(id); len(s) > 0 {
			return false, fmt.Sprintf("Service %s is still there", s[0].Name)
		}
		if s := r.secretsOf(id); len(s) > 0 {
			return false, fmt.Sprintf("Secret %s is still there", s[0].Name)
		}
		return true, ""
	}); err != nil {
		return fmt.Errorf("kube: stop %s: %w", id, err)
	}
	r.mu.Lock()
	removed := in != nil && r.instances[id] == in
	if removed {
		delete(r.instances, id)
	}
	r.mu.Unlock()
	if removed {
		r.log.Info("instance stopped", "instance", id, "release", releaseName(id))
		r.notify()
	}
	return nil
}
