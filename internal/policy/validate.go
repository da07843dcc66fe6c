package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gantry-dev/gantry/internal/problem"
)

// Limits of one policy. They are far above any sensible policy and only stop
// a body from making every scheduling pass slow.
const (
	MaxNameLen      = 128
	MaxTags         = 64
	MaxTerms        = 32 // matchLabels entries, matchExpressions, or values of one expression
	MaxFillAndSpill = 16
	MaxSplits       = 32
	MinPriority     = -1000
	MaxPriority     = 1000
)

const (
	nameRule  = "use 1-128 characters of letters, digits, '_' and '-', starting with a letter or digit"
	tagRule   = "use 1-128 characters of letters, digits, '_', ':', '=' and '-'"
	keyRule   = "use a label key such as \"topology.kubernetes.io/region\" or \"tier\": an optional DNS-name prefix and '/', then 1-63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
	valueRule = "use 1-63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
	opRule    = "use In, NotIn, Exists or DoesNotExist"
)

// maxProblems caps how many problems one message lists.
const maxProblems = 20

type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	list := []string(p)
	if len(list) > maxProblems {
		list = append(list[:maxProblems:maxProblems], fmt.Sprintf("and %d more problems", len(p)-maxProblems))
	}
	return problem.BadRequest("%s", strings.Join(list, "; "))
}

// Validate normalises p in place (strategy lower-cased, "binpack" when
// empty) and checks it. It returns nil or one 400 *problem.Error whose detail
// names every wrong field, in field order, and says what is allowed. The
// server-owned fields (id, ncaId, createdAt) are not checked.
func Validate(p *Policy) error {
	if p == nil {
		return problem.BadRequest("request body is empty; send a policy as a JSON object")
	}
	var ps problems
	p.Strategy = strings.ToLower(p.Strategy)
	if p.Strategy == "" {
		p.Strategy = StrategyBinPack
	}

	switch {
	case p.Name == "":
		ps.addf("name is required: %s", nameRule)
	case len(p.Name) > MaxNameLen:
		ps.addf("name %s is %d characters long: %s", quote(p.Name), utf8.RuneCountInString(p.Name), nameRule)
	case !validName(p.Name):
		ps.addf("name %s is invalid: %s", quote(p.Name), nameRule)
	}
	if p.Priority < MinPriority || p.Priority > MaxPriority {
		ps.addf("priority %d is out of range: use %d to %d (the highest matching policy wins)", p.Priority, MinPriority, MaxPriority)
	}

	tags := p.FunctionSelector.MatchTags
	if len(tags) > MaxTags {
		ps.addf("functionSelector.matchTags has %d entries: at most %d are allowed", len(tags), MaxTags)
	}
	for i, t := range tags {
		switch {
		case !validTag(t):
			ps.addf("functionSelector.matchTags[%d] %s is invalid: %s", i, quote(t), tagRule)
		case slices.Index(tags, t) < i:
			ps.addf("functionSelector.matchTags[%d] %s repeats an earlier tag; list each tag once", i, quote(t))
		}
	}

	if p.ClusterSelector != nil {
		checkSelector(&ps, "clusterSelector", p.ClusterSelector)
	}

	if len(p.FillAndSpill) > MaxFillAndSpill {
		ps.addf("fillAndSpill has %d tiers: at most %d are allowed", len(p.FillAndSpill), MaxFillAndSpill)
	}
	for i := range p.FillAndSpill {
		s := &p.FillAndSpill[i]
		field := fmt.Sprintf("fillAndSpill[%d]", i)
		if s.Empty() && i < len(p.FillAndSpill)-1 {
			ps.addf("%s is empty, so it matches every cluster and the tiers after it are never used; give it matchLabels or matchExpressions, or move the catch-all to the end", field)
			continue
		}
		checkSelector(&ps, field, s)
	}

	if sp := p.Spread; sp != nil {
		if len(p.FillAndSpill) > 0 {
			ps.addf("fillAndSpill and spread cannot be combined: fill-and-spill fills one set of clusters before using the next, while spread keeps a fixed share of the instances in each topology domain, so one of them would be ignored; keep one (to spread within some clusters only, narrow them with clusterSelector)")
		}
		checkTopologyKey(&ps, "spread.topologyKey", sp.TopologyKey)
		switch {
		case len(sp.Splits) == 0:
			ps.addf(`spread.splits is required: give each topology value its percentage, e.g. [{"value":"us-east","percent":50},{"value":"us-west","percent":50}]`)
		case len(sp.Splits) > MaxSplits:
			ps.addf("spread.splits has %d entries: at most %d are allowed", len(sp.Splits), MaxSplits)
		}
		sum := 0
		for i, s := range sp.Splits {
			field := fmt.Sprintf("spread.splits[%d]", i)
			switch {
			case s.Value == "":
				ps.addf("%s.value is required: name the %s value that gets this share", field, sp.TopologyKey)
			case !validLabelValue(s.Value):
				ps.addf("%s.value %s is invalid: %s", field, quote(s.Value), valueRule)
			case slices.IndexFunc(sp.Splits[:i], func(o Split) bool { return o.Value == s.Value }) >= 0:
				ps.addf("%s.value %s repeats an earlier split; give each value one entry", field, quote(s.Value))
			}
			if s.Percent < 1 || s.Percent > 100 {
				ps.addf("%s.percent %d is out of range: use 1 to 100 (leave out a value that should get nothing)", field, s.Percent)
			}
			sum += s.Percent
		}
		if len(sp.Splits) > 0 && sum != 100 {
			ps.addf("spread.splits percentages sum to %d: they must sum to 100, e.g. %s", sum, exampleSplits(sp.Splits))
		}
	}

	if p.GroupBy != "" {
		checkTopologyKey(&ps, "groupBy", p.GroupBy)
		if p.Spread != nil && p.Spread.TopologyKey == p.GroupBy {
			ps.addf("groupBy %s keeps all instances of a spec in one %s domain, so a spread across the same key could never split them; spread across a finer key (e.g. groupBy region, spread by zone) or drop one", quote(p.GroupBy), quote(p.GroupBy))
		}
	}

	if p.Strategy != StrategyBinPack && p.Strategy != StrategySpread {
		ps.addf("strategy %s is invalid: use %q (fill the fullest cluster that fits, the default) or %q (emptiest cluster first)", quote(p.Strategy), StrategyBinPack, StrategySpread)
	}
	return ps.err()
}

// checkSelector checks a cluster selector named field.
func checkSelector(ps *problems, field string, s *Selector) {
	if len(s.MatchLabels) > MaxTerms {
		ps.addf("%s.matchLabels has %d entries: at most %d are allowed", field, len(s.MatchLabels), MaxTerms)
	}
	for _, k := range slices.Sorted(maps.Keys(s.MatchLabels)) {
		v := s.MatchLabels[k]
		if !validLabelKey(k) {
			ps.addf("%s.matchLabels key %s is invalid: %s", field, quote(k), keyRule)
		}
		if !validLabelValue(v) {
			ps.addf("%s.matchLabels[%s] value %s is invalid: %s (to match any value use a matchExpressions entry with operator Exists)", field, quote(k), quote(v), valueRule)
		}
	}
	if len(s.MatchExpressions) > MaxTerms {
		ps.addf("%s.matchExpressions has %d entries: at most %d are allowed", field, len(s.MatchExpressions), MaxTerms)
	}
	for i, r := range s.MatchExpressions {
		f := fmt.Sprintf("%s.matchExpressions[%d]", field, i)
		if !validLabelKey(r.Key) {
			if r.Key == "" {
				ps.addf("%s.key is required: %s", f, keyRule)
			} else {
				ps.addf("%s.key %s is invalid: %s", f, quote(r.Key), keyRule)
			}
		}
		switch r.Operator {
		case OpIn, OpNotIn:
			switch {
			case len(r.Values) == 0:
				ps.addf("%s.values is required with operator %s: list at least one value", f, r.Operator)
			case len(r.Values) > MaxTerms:
				ps.addf("%s.values has %d entries: at most %d are allowed", f, len(r.Values), MaxTerms)
			}
			for j, v := range r.Values {
				if !validLabelValue(v) {
					ps.addf("%s.values[%d] %s is invalid: %s", f, j, quote(v), valueRule)
				}
			}
		case OpExists, OpDoesNotExist:
			if len(r.Values) > 0 {
				ps.addf("%s.values must be empty with operator %s, which tests only whether the key is present; use In or NotIn to compare values", f, r.Operator)
			}
		case "":
			ps.addf("%s.operator is required: %s", f, opRule)
		default:
			ps.addf("%s.operator %s is invalid: %s (spelled exactly so)", f, quote(string(r.Operator)), opRule)
		}
	}
}

// checkTopologyKey checks a key that names one domain per cluster.
func checkTopologyKey(ps *problems, field, key string) {
	switch {
	case key == "":
		ps.addf("%s is required: name a topology label such as %q or %q", field, LabelRegion, LabelZone)
	case !validLabelKey(key):
		ps.addf("%s %s is invalid: %s", field, quote(key), keyRule)
	case key == LabelGPUProduct:
		ps.addf("%s cannot be %s: a cluster may hold several GPU models, so it is not in one domain of that key; use %q or %q, and select GPU models with clusterSelector",
			field, quote(key), LabelRegion, LabelZone)
	}
}

// exampleSplits suggests an even split over the values the user gave.
func exampleSplits(splits []Split) string {
	n := len(splits)
	if n == 0 {
		return ""
	}
	parts := make([]string, n)
	for i, s := range splits {
		pct := 100 / n
		if i < 100%n {
			pct++
		}
		v := s.Value
		if v == "" {
			v = "?"
		}
		parts[i] = fmt.Sprintf("%s=%d", v, pct)
	}
	return strings.Join(parts, ", ")
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func allBytes(s string, ok func(c byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// validName applies the function name rules.
func validName(s string) bool {
	return s != "" && len(s) <= MaxNameLen && isAlnum(s[0]) &&
		allBytes(s, func(c byte) bool { return isAlnum(c) || c == '_' || c == '-' })
}

// validTag applies the function tag rules, so that a selector can only name
// tags a function can carry.
func validTag(s string) bool {
	return s != "" && len(s) <= 128 &&
		allBytes(s, func(c byte) bool { return isAlnum(c) || c == '_' || c == ':' || c == '=' || c == '-' })
}

// validLabelValue is a Kubernetes label value, but not empty.
func validLabelValue(s string) bool {
	return s != "" && len(s) <= 63 && isAlnum(s[0]) && isAlnum(s[len(s)-1]) &&
		allBytes(s, func(c byte) bool { return isAlnum(c) || c == '-' || c == '_' || c == '.' })
}

// validLabelKey is a Kubernetes qualified name: [prefix/]name, where prefix is
// a lower-case DNS subdomain of at most 253 characters.
func validLabelKey(s string) bool {
	prefix, name, hasPrefix := strings.Cut(s, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	} else if prefix == "" || len(prefix) > 253 || !validDNSSubdomain(prefix) {
		return false
	}
	return validLabelValue(name)
}

func validDNSSubdomain(s string) bool {
	for _, part := range strings.Split(s, ".") {
		if part == "" || len(part) > 63 || part[0] == '-' || part[len(part)-1] == '-' ||
			!allBytes(part, func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' }) {
			return false
		}
	}
	return true
}

// quote renders a user's value for a message: Go-quoted, so control
// characters stay visible, and cut to 64 characters.
func quote(s string) string {
	const maxQuoted = 64
	if utf8.RuneCountInString(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	n := 0
	for i := range s {
		if n == maxQuoted {
			return fmt.Sprintf("%q", s[:i]) + "…"
		}
		n++
	}
	return fmt.Sprintf("%q", s)
}
