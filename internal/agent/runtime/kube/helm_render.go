package kube

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// helmKinds are the kinds a Helm function's chart may create, as NVCF
// allows them; anything else (a ClusterRole, an Ingress, a DaemonSet, a
// CRD) is refused before anything is installed.
var helmKinds = map[string]bool{
	"ConfigMap": true, "Secret": true, "Service": true, "Deployment": true, "ReplicaSet": true,
	"StatefulSet": true, "Job": true, "CronJob": true, "Pod": true, "ServiceAccount": true,
	"Role": true, "RoleBinding": true, "PersistentVolumeClaim": true,
}

// podTemplatePaths is where each workload kind keeps its pod template.
var podTemplatePaths = map[string][]string{
	"Deployment":  {"spec", "template"},
	"ReplicaSet":  {"spec", "template"},
	"StatefulSet": {"spec", "template"},
	"Job":         {"spec", "template"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template"},
	"Pod":         nil, // the object itself
}

// helmPostRenderer checks and stamps a release's rendered objects before
// Helm applies them: every object gets Gantry's labels (so the runtime's
// informers see it and an uninstall finds it), every pod template too and
// the image pull Secret, the Service named by helmChartServiceName its
// inferencePort annotation. What a Helm function may not do fails the
// render, which installs nothing.
type helmPostRenderer struct {
	namespace  string
	labels     map[string]string
	digest     string
	service    string
	port       int
	pullSecret string
}

// errRender prefixes every refusal of a rendered chart.
var errRender = errors.New("kube: the chart's rendered objects are refused")

// Run implements Helm's postrenderer.PostRenderer.
func (p *helmPostRenderer) Run(in *bytes.Buffer) (*bytes.Buffer, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(in, 4096)
	var out bytes.Buffer
	objects, foundService := 0, false
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: not YAML: %v", errRender, err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if _, hook := u.GetAnnotations()["helm.sh/hook"]; !hook {
			found, err := p.stamp(u)
			if err != nil {
				return nil, err
			}
			foundService = foundService || found
			if objects++; objects > maxHelmObjects {
				return nil, fmt.Errorf("%w: the chart renders more than %d objects", errRender, maxHelmObjects)
			}
		}
		b, err := sigsyaml.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errRender, err)
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	if !foundService {
		return nil, fmt.Errorf("%w: it renders no Service named %q; helmChartServiceName must name the chart's Service "+
			"that serves inferencePort (templated Service names are not supported)", errRender, p.service)
	}
	return &out, nil
}

// stamp checks one object and adds Gantry's labels; it reports whether the
// object is the inference Service.
func (p *helmPostRenderer) stamp(u *unstructured.Unstructured) (bool, error) {
	kind, name := u.GetKind(), u.GetName()
	if !helmKinds[kind] {
		allowed := slices.Sorted(maps.Keys(helmKinds))
		return false, fmt.Errorf("%w: it renders %s %q; a Helm function may create only %s", errRender, kind, name, strings.Join(allowed, ", "))
	}
	if ns := u.GetNamespace(); ns != "" && ns != p.namespace {
		return false, fmt.Errorf("%w: %s %q is in namespace %q; a Helm function's objects go in the release's namespace, leave metadata.namespace out",
			errRender, kind, name, ns)
	}
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, p.labels)
	labels[helmDigestLabel] = p.digest
	u.SetLabels(labels)

	isService := false
	if kind == "Service" {
		if t, _, _ := unstructured.NestedString(u.Object, "spec", "type"); t != "" && t != "ClusterIP" {
			return false, fmt.Errorf("%w: Service %q is of type %s; only ClusterIP Services are allowed", errRender, name, t)
		}
		if name == p.service {
			isService = true
			ann := u.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[inferencePortAnnotation] = strconv.Itoa(p.port)
			u.SetAnnotations(ann)
			if !servesPort(u, p.port) {
				return false, fmt.Errorf("%w: Service %q has no port %d; its port must be the function's inferencePort", errRender, name, p.port)
			}
		}
	}
	path, ok := podTemplatePaths[kind]
	if !ok {
		return isService, nil
	}
	tmpl := u.Object
	if path != nil {
		m, found, err := unstructured.NestedMap(u.Object, path...)
		if err != nil || !found {
			return false, fmt.Errorf("%w: %s %q has no pod template at %s", errRender, kind, name, strings.Join(path, "."))
		}
		tmpl = m
	}
	t := &unstructured.Unstructured{Object: tmpl}
	tl := t.GetLabels()
	if tl == nil {
		tl = map[string]string{}
	}
	maps.Copy(tl, p.labels)
	t.SetLabels(tl)
	if p.pullSecret != "" {
		secrets, _, _ := unstructured.NestedSlice(tmpl, "spec", "imagePullSecrets")
		if !slices.ContainsFunc(secrets, func(s any) bool { m, _ := s.(map[string]any); return m["name"] == p.pullSecret }) {
			secrets = append(secrets, map[string]any{"name": p.pullSecret})
		}
		if err := unstructured.SetNestedSlice(tmpl, secrets, "spec", "imagePullSecrets"); err != nil {
			return false, fmt.Errorf("%w: %s %q: %v", errRender, kind, name, err)
		}
	}
	if path != nil {
		if err := unstructured.SetNestedMap(u.Object, tmpl, path...); err != nil {
			return false, fmt.Errorf("%w: %s %q: %v", errRender, kind, name, err)
		}
	}
	return isService, nil
}

// servesPort reports whether a Service's ports include port.
func servesPort(u *unstructured.Unstructured, port int) bool {
	ports, _, _ := unstructured.NestedSlice(u.Object, "spec", "ports")
	for _, p := range ports {
		m, _ := p.(map[string]any)
		if n, ok := m["port"].(int64); ok && int(n) == port {
			return true
		}
		if n, ok := m["port"].(float64); ok && int(n) == port {
			return true
		}
	}
	return false
}
