// Package deploy holds Gantry's Kubernetes deployment files: the Helm charts
// of the control plane (helm/gantry) and of the cluster agent
// (helm/gantry-agent), and kustomize manifests of the control plane
// (kustomize/base, kustomize/overlays/ha). It has no Go code; its tests
// render every chart and overlay and have a real kube-apiserver accept the
// result in a server-side dry run, and run the agent's Kubernetes code with
// only the RBAC the agent chart grants. See README.md in this directory.
package deploy
