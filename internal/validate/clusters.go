package validate

import (
	"encoding/json"
	"regexp"

	"github.com/gantry-dev/gantry/internal/model"
)

// Cluster limits. Label keys follow the Kubernetes shape (an optional DNS
// prefix and a name) because cluster selectors match on them the same way.
const (
	MaxClusterLabels   = 64
	MaxLabelValueLen   = 63
	MaxTopologyNameLen = 63
)

var (
	labelKeyRe   = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValueRe = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
	httpsURLRe   = regexp.MustCompile(`^https://\S+$`)
)

// MaxAuthorizedAccounts bounds a cluster's authorizedNCAIds.
const MaxAuthorizedAccounts = 256

// Cluster checks the body of POST /v1/accounts/{ncaId}/clusters and of PUT on
// one cluster. clusterName and clusterGroupName follow function-name rules;
// region and zone are label values, since placement selects on them;
// authorizedNCAIds are account ids.
func Cluster(req *model.ClusterRequest) error {
	if req == nil {
		return (&problems{list: []string{"send a JSON object with clusterName and clusterGroupName"}}).err()
	}
	var p problems
	checkClusterName(&p, "clusterName", req.ClusterName)
	checkClusterName(&p, "clusterGroupName", req.ClusterGroupName)
	for field, v := range map[string]string{"region": req.Region, "zone": req.Zone, "cloudProvider": req.CloudProvider} {
		if !labelValueRe.MatchString(v) {
			p.addf("%s %s is invalid: use up to 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit", field, quote(v))
		}
	}
	if len(req.Labels) > MaxClusterLabels {
		p.addf("labels has %d entries; at most %d are allowed", len(req.Labels), MaxClusterLabels)
	}
	for k, v := range req.Labels {
		if !labelKeyRe.MatchString(k) {
			p.addf("labels key %s is invalid: use [prefix/]name, where name is up to 63 letters, digits, '-', '_' and '.'", quote(k))
		}
		if !labelValueRe.MatchString(v) {
			p.addf("labels[%s] value %s is invalid: use up to 63 letters, digits, '-', '_' and '.'", quote(k), quote(v))
		}
	}
	if len(req.AuthorizedNCAIDs) > MaxAuthorizedAccounts {
		p.addf("authorizedNCAIds has %d entries; at most %d are allowed", len(req.AuthorizedNCAIDs), MaxAuthorizedAccounts)
	}
	for i, id := range req.AuthorizedNCAIDs {
		if id == "" || len(id) > MaxIDLen || !allBytes(id, func(c byte) bool { return isLetter(c) || isDigit(c) || c == '-' || c == '_' }) {
			p.addf("authorizedNCAIds[%d] %s is not an account id: use 1-%d letters, digits, '-' and '_'", i, quote(id), MaxIDLen)
		}
	}
	if len(req.JWKS) > 0 {
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if json.Unmarshal(req.JWKS, &set) != nil || len(set.Keys) == 0 {
			p.addf(`jwks must be a JSON Web Key Set: {"keys":[...]} with at least one key`)
		}
	}
	if req.OIDCIssuer != "" && !httpsURLRe.MatchString(req.OIDCIssuer) {
		p.addf("oidcIssuer %s must be an https:// URL", quote(req.OIDCIssuer))
	}
	return p.err()
}

func checkClusterName(p *problems, field, name string) {
	if name == "" {
		p.addf("%s is required", field)
		return
	}
	if len(name) > MaxTopologyNameLen || !labelValueRe.MatchString(name) {
		p.addf("%s %s is invalid: use 1-63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit", field, quote(name))
	}
}
