package policy

import (
	"maps"
	"slices"
	"strings"

	"github.com/gantry-dev/gantry/internal/model"
)

// Well-known label keys. Every cluster carries them, derived from its
// registration and inventory, beside the labels it was registered with; the
// Kubernetes and NVIDIA spellings let a policy written for Nova or GPU
// Operator clusters read the same here.
const (
	LabelRegion       = "topology.kubernetes.io/region" // Cluster.Region
	LabelZone         = "topology.kubernetes.io/zone"   // Cluster.Zone
	LabelClusterGroup = "gantry.dev/cluster-group"      // Cluster.GroupName
	LabelCluster      = "gantry.dev/cluster"            // Cluster.Name
	// LabelGPUProduct has one value per GPU model in the cluster's inventory,
	// so a cluster with H100 and L40S nodes matches "In [H100]".
	LabelGPUProduct = "nvidia.com/gpu.product"
)

// keyAliases are the short names the CLI accepts for the well-known keys.
var keyAliases = map[string]string{
	"region":  LabelRegion,
	"zone":    LabelZone,
	"group":   LabelClusterGroup,
	"cluster": LabelCluster,
	"gpu":     LabelGPUProduct,
}

// ExpandKey turns a short name (region, zone, group, cluster, gpu) into its
// well-known key and returns any other key unchanged. The API itself takes
// keys literally; this is for command lines, where the full keys are long.
func ExpandKey(k string) string {
	if full, ok := keyAliases[k]; ok {
		return full
	}
	return k
}

// ShortKey is the inverse of ExpandKey, for compact display.
func ShortKey(k string) string {
	for short, full := range keyAliases {
		if full == k {
			return short
		}
	}
	return k
}

// ClusterLabels returns the labels a selector sees on c: its own labels, and
// the well-known keys, which take precedence over a registered label of the
// same name because they are derived from what the cluster reports. Keys
// whose source is empty are absent. Every key has one value except
// LabelGPUProduct, which lists each GPU model of the inventory once, sorted.
func ClusterLabels(c model.Cluster) map[string][]string {
	out := make(map[string][]string, len(c.Labels)+5)
	for k, v := range c.Labels {
		out[k] = []string{v}
	}
	set := func(k, v string) {
		if v != "" {
			out[k] = []string{v}
		}
	}
	set(LabelRegion, c.Region)
	set(LabelZone, c.Zone)
	set(LabelClusterGroup, c.GroupName)
	set(LabelCluster, c.Name)
	var gpus []string
	for _, n := range c.Inventory.Nodes {
		if n.GPUModel != "" && n.GPUs > 0 && !slices.Contains(gpus, n.GPUModel) {
			gpus = append(gpus, n.GPUModel)
		}
	}
	if len(gpus) > 0 {
		slices.Sort(gpus)
		out[LabelGPUProduct] = gpus
	}
	return out
}

// Operator is how a Requirement compares a label's values.
type Operator string

// Operators, spelled as in Kubernetes label selectors.
const (
	OpIn           Operator = "In"
	OpNotIn        Operator = "NotIn"
	OpExists       Operator = "Exists"
	OpDoesNotExist Operator = "DoesNotExist"
)

// Selector selects clusters by label, as a Kubernetes label selector does:
// every matchLabels entry and every expression must hold. An empty selector
// matches every cluster.
type Selector struct {
	MatchLabels      map[string]string `json:"matchLabels,omitempty"`
	MatchExpressions []Requirement     `json:"matchExpressions,omitempty"`
}

// Requirement is one matchExpressions entry.
type Requirement struct {
	Key      string   `json:"key"`
	Operator Operator `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// Empty reports whether s has no terms, and so matches everything.
func (s *Selector) Empty() bool {
	return s == nil || len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
}

// Matches reports whether a cluster with labels (see ClusterLabels) is
// selected. A nil selector matches everything. With multi-valued labels, k=v
// and "k In [v]" hold if any value is v, and "k NotIn [v]" holds only if none is.
func (s *Selector) Matches(labels map[string][]string) bool {
	if s == nil {
		return true
	}
	for k, v := range s.MatchLabels {
		if !slices.Contains(labels[k], v) {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		if !r.Matches(labels) {
			return false
		}
	}
	return true
}

// Matches reports whether the requirement holds for labels. An unknown
// operator never holds (Validate refuses it before it is stored).
func (r Requirement) Matches(labels map[string][]string) bool {
	have, ok := labels[r.Key]
	ok = ok && len(have) > 0
	anyIn := func() bool {
		for _, v := range have {
			if slices.Contains(r.Values, v) {
				return true
			}
		}
		return false
	}
	switch r.Operator {
	case OpIn:
		return ok && anyIn()
	case OpNotIn:
		return !ok || !anyIn()
	case OpExists:
		return ok
	case OpDoesNotExist:
		return !ok
	}
	return false
}

// String renders s compactly for tables and messages, with well-known keys
// shortened: "region=us-east,gpu In (H100,A100)". An empty selector is "*".
func (s *Selector) String() string {
	if s.Empty() {
		return "*"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.MatchLabels)) {
		parts = append(parts, ShortKey(k)+"="+s.MatchLabels[k])
	}
	for _, r := range s.MatchExpressions {
		switch r.Operator {
		case OpExists:
			parts = append(parts, ShortKey(r.Key))
		case OpDoesNotExist:
			parts = append(parts, "!"+ShortKey(r.Key))
		default:
			parts = append(parts, ShortKey(r.Key)+" "+string(r.Operator)+" ("+strings.Join(r.Values, ",")+")")
		}
	}
	return strings.Join(parts, ",")
}

// topologyValue returns c's value for a single-valued topology key.
func topologyValue(labels map[string][]string, key string) (string, bool) {
	v := labels[key]
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}
