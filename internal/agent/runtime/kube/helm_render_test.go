package kube

import (
	"bytes"
	"strings"
	"testing"

	sigsyaml "sigs.k8s.io/yaml"
)

const renderService = `apiVersion: v1
kind: Service
metadata:
  name: echo-svc
spec:
  selector: {app: echo}
  ports: [{port: 8000, targetPort: http}]
`

const renderDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  labels: {app.kubernetes.io/managed-by: Helm}
spec:
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers: [{name: server, image: registry.example.com/echo:1}]
`

func testRenderer() *helmPostRenderer {
	return &helmPostRenderer{namespace: "fns", labels: map[string]string{InstanceLabel: "i-1", ClusterLabel: "c-1"},
		digest: "d1", service: "echo-svc", port: 8000, pullSecret: "gantry-i-1-pull"}
}

// TestHelmPostRenderer: what a Helm function may render is stamped with
// the instance's labels; what it may not is refused with what and why.
func TestHelmPostRenderer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string // want: empty accepts, else a piece of the error
	}{
		{"service and deployment", renderService + "---\n" + renderDeployment, ""},
		{"no inference service", renderDeployment, `renders no Service named "echo-svc"`},
		{"service without the port", strings.Replace(renderService, "port: 8000", "port: 9000", 1), "has no port 8000"},
		{"load balancer", strings.Replace(renderService, "spec:\n", "spec:\n  type: LoadBalancer\n", 1), "only ClusterIP Services"},
		{"cluster role", renderService + "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\n",
			`renders ClusterRole "x"`},
		{"daemon set", renderService + "---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: d}\n", `renders DaemonSet "d"`},
		{"other namespace", renderService + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: kube-system}\n",
			`is in namespace "kube-system"`},
		{"hook passes untouched", renderService + "---\napiVersion: batch/v1\nkind: ClusterRole\nmetadata:\n  name: h\n  annotations: {helm.sh/hook: pre-install}\n", ""},
		{"not yaml", "kind: [", "not YAML"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := testRenderer().Run(bytes.NewBufferString(tc.in))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), InstanceLabel+": i-1") {
				t.Errorf("output lacks the instance label:\n%s", out)
			}
		})
	}
}

// TestHelmPostRendererStampsPodTemplates: pod templates get the labels the
// runtime finds pods by, and the image pull Secret; the Service its port.
func TestHelmPostRendererStampsPodTemplates(t *testing.T) {
	t.Parallel()
	out, err := testRenderer().Run(bytes.NewBufferString(renderService + "---\n" + renderDeployment))
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(out.String(), "---\n")
	var dep, svc map[string]any
	for _, d := range docs {
		var m map[string]any
		if err := sigsyaml.Unmarshal([]byte(d), &m); err != nil || m == nil {
			continue
		}
		switch m["kind"] {
		case "Deployment":
			dep = m
		case "Service":
			svc = m
		}
	}
	tmpl := dep["spec"].(map[string]any)["template"].(map[string]any)
	labels := tmpl["metadata"].(map[string]any)["labels"].(map[string]any)
	if labels[InstanceLabel] != "i-1" || labels["app"] != "echo" {
		t.Errorf("pod template labels %v, want the chart's and the instance's", labels)
	}
	pull := tmpl["spec"].(map[string]any)["imagePullSecrets"].([]any)
	if len(pull) != 1 || pull[0].(map[string]any)["name"] != "gantry-i-1-pull" {
		t.Errorf("imagePullSecrets %v, want the instance's pull Secret", pull)
	}
	if ann := svc["metadata"].(map[string]any)["annotations"].(map[string]any); ann[inferencePortAnnotation] != "8000" {
		t.Errorf("Service annotations %v, want the inference port", ann)
	}
}

// FuzzHelmPostRender: whatever a chart renders, the post-renderer answers
// with objects or an error, never a panic.
func FuzzHelmPostRender(f *testing.F) {
	f.Add(renderService + "---\n" + renderDeployment)
	f.Add("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: 5\n")
	f.Add("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec: {jobTemplate: {spec: {template: []}}}\n")
	f.Fuzz(func(t *testing.T, in string) {
		_, _ = testRenderer().Run(bytes.NewBufferString(in))
	})
}
