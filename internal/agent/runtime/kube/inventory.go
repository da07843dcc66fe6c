package kube

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/gantry-dev/gantry/internal/model"
)

// Node labels and the resource the NVIDIA GPU Operator sets up: its feature
// discovery labels every GPU node with the product, count and memory of its
// GPUs, and its device plugin advertises the GPUs as an extended resource.
const (
	GPUResource    corev1.ResourceName = "nvidia.com/gpu"
	ProductLabel                       = "nvidia.com/gpu.product"
	GPUCountLabel                      = "nvidia.com/gpu.count"
	GPUMemoryLabel                     = "nvidia.com/gpu.memory" // MiB per GPU
	// GPUModelLabel lets an operator name a node's GPU model when the rule
	// in GPUModel gets it wrong (a new product name) or to tell apart two
	// variants that it maps to one model. Its value is used as it is.
	GPUModelLabel = "gantry.dev/gpu-model"
)

// brandPrefixes are dropped from product names: they say who made the GPU,
// not which one it is.
var brandPrefixes = []string{"NVIDIA-", "TESLA-", "GEFORCE-", "QUADRO-"}

// seriesTokens are product tokens that name a family, not a GPU: the model is
// the series joined with the token after it, so "RTX-4090" and "RTX-A6000"
// stay apart.
var seriesTokens = map[string]bool{"RTX": true, "GTX": true, "TITAN": true, "PRO": true}

// GPUModel names the GPU model of a node with the given labels, as Gantry's
// instance types use it (ON-PREM.GPU.<model>_<n>x): GPUModelLabel if set,
// else derived from the product label. Products vary in memory and form
// factor ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-NVL"), and functions ask for
// the chip, so the rule keeps the chip: drop brand prefixes, then take the
// first token, joined with the next one for a series name. Examples:
// NVIDIA-A100-SXM4-80GB is A100, Tesla-T4 is T4, NVIDIA-GeForce-RTX-4090 is
// RTX4090. It returns "" when the node says nothing about its GPUs.
func GPUModel(nodeLabels map[string]string) string {
	if m := strings.TrimSpace(nodeLabels[GPUModelLabel]); m != "" {
		return m
	}
	return modelOfProduct(nodeLabels[ProductLabel])
}

func modelOfProduct(product string) string {
	p := strings.ToUpper(strings.TrimSpace(product))
	for trimmed := true; trimmed; {
		trimmed = false
		for _, prefix := range brandPrefixes {
			if strings.HasPrefix(p, prefix) {
				p, trimmed = p[len(prefix):], true
			}
		}
	}
	tokens := strings.FieldsFunc(p, func(r rune) bool { return r == '-' || r == '_' || r == ' ' })
	var m strings.Builder
	for _, tok := range tokens {
		m.WriteString(tok)
		if !seriesTokens[tok] {
			break
		}
	}
	return m.String()
}

// Inventory reports the cluster's GPU nodes as the control plane places
// instances on them. Only nodes that can take a new instance now count:
// Ready, not cordoned, with allocatable GPUs and a known model. Nodes are
// sorted by name so that an unchanged cluster gives an equal inventory.
func (r *Runtime) Inventory() model.Inventory {
	nodes, _ := r.nodes.List(labels.Everything())
	return inventoryOf(nodes, r.version)
}

func inventoryOf(nodes []*corev1.Node, version string) model.Inventory {
	inv := model.Inventory{Nodes: []model.Node{}, KubernetesVersion: version}
	for _, n := range nodes {
		if mn, ok := inventoryNode(n); ok {
			inv.Nodes = append(inv.Nodes, mn)
		}
	}
	slices.SortFunc(inv.Nodes, func(a, b model.Node) int { return strings.Compare(a.Name, b.Name) })
	return inv
}

// inventoryNode describes one node, or says it does not count.
func inventoryNode(n *corev1.Node) (model.Node, bool) {
	gpus := gpusOf(n)
	gpuModel := GPUModel(n.Labels)
	if gpus == 0 || gpuModel == "" || n.Spec.Unschedulable || !nodeReady(n) {
		return model.Node{}, false
	}
	alloc := n.Status.Allocatable
	mib, _ := strconv.Atoi(n.Labels[GPUMemoryLabel])
	return model.Node{
		Name:        n.Name,
		GPUModel:    gpuModel,
		GPUMemoryGB: (mib + 512) / 1024,
		GPUs:        gpus,
		CPUCores:    int(alloc.Cpu().MilliValue() / 1000),
		MemoryGiB:   int(alloc.Memory().Value() >> 30),
	}, true
}

// gpusOf is a node's allocatable GPUs: what the device plugin says are
// healthy and usable, which may be fewer than the label's count.
func gpusOf(n *corev1.Node) int {
	q, ok := n.Status.Allocatable[GPUResource]
	if !ok {
		return 0
	}
	return int(q.Value())
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
