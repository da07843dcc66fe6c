// Package policy holds schedule policies (in the manner of Nova's
// SchedulePolicy): which functions a policy governs, which clusters their
// instances may use, and how they are laid out across those clusters
// (fill-and-spill tiers, a percentage spread over a topology key, group-by,
// bin-pack or spread ordering).
//
// Everything here is pure: the scheduler calls Select once per function and
// (*Policy).Choose once per instance, over the same snapshot of clusters and
// allocations it already reads, so a policy never adds a store read to the
// placement path and can be tested without one. Validation returns
// *problem.Error values the API sends as they are.
package policy

import (
	"cmp"
	"slices"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

// Strategies order the clusters a policy allows.
const (
	// StrategyBinPack fills the fullest cluster that fits first, so large
	// shapes keep finding whole nodes elsewhere. It is the default.
	StrategyBinPack = "binpack"
	// StrategySpread places on the emptiest cluster first, so one cluster's
	// failure takes down as few instances as possible.
	StrategySpread = "spread"
)

// Policy is one schedule policy of an account.
type Policy struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	NCAID string `json:"ncaId"`
	// Priority decides between policies that select the same function: the
	// highest wins, ties go to the name that sorts first.
	Priority         int              `json:"priority"`
	FunctionSelector FunctionSelector `json:"functionSelector"`
	// ClusterSelector limits the clusters every instance may use; nil allows all.
	ClusterSelector *Selector `json:"clusterSelector,omitempty"`
	// FillAndSpill lists cluster selectors in order of preference: the
	// clusters of the first are filled before any of the second is used.
	FillAndSpill []Selector `json:"fillAndSpill,omitempty"`
	// Spread splits a spec's instances across the values of a topology key.
	Spread *Spread `json:"spread,omitempty"`
	// GroupBy is a topology key: all instances of one deployment spec land
	// in one domain of it (one zone, one region, ...).
	GroupBy string `json:"groupBy,omitempty"`
	// Strategy is StrategyBinPack or StrategySpread.
	Strategy  string    `json:"strategy"`
	CreatedAt time.Time `json:"createdAt"`

	// Revision is the store revision this copy was read at, for optimistic
	// concurrency. It never leaves the server.
	Revision int64 `json:"-"`
}

// FunctionSelector says which functions a policy governs.
type FunctionSelector struct {
	// MatchTags must all be among the function version's tags. Empty
	// selects every function of the account.
	MatchTags []string `json:"matchTags,omitempty"`
}

// Matches reports whether the function with tags is selected.
func (s FunctionSelector) Matches(tags []string) bool {
	for _, t := range s.MatchTags {
		if !slices.Contains(tags, t) {
			return false
		}
	}
	return true
}

// Spread is a percentage split of a spec's instances across the values of a
// topology key, e.g. 50% in region us-east and 50% in us-west.
type Spread struct {
	TopologyKey string  `json:"topologyKey"`
	Splits      []Split `json:"splits"`
}

// Split is one topology value's share of a spread, in percent.
type Split struct {
	Value   string `json:"value"`
	Percent int    `json:"percent"`
}

// Response is the body of a single-policy answer of the API.
type Response struct {
	Policy Policy `json:"policy"`
}

// ListResponse is the body of the policy list answer of the API.
type ListResponse struct {
	Policies []Policy `json:"policies"`
}

// Select returns the policy that governs a function version: among the
// policies of the function's account whose function selector matches its
// tags, the one with the highest Priority; ties go to the name, then the id,
// that sorts first. It returns nil when none applies, and otherwise a pointer
// into policies.
func Select(policies []Policy, fn model.Function) *Policy {
	var best *Policy
	for i := range policies {
		p := &policies[i]
		if p.NCAID == "" || p.NCAID != fn.NCAID || !p.FunctionSelector.Matches(fn.Tags) {
			continue
		}
		if best == nil || better(p, best) {
			best = p
		}
	}
	return best
}

// better reports whether a takes precedence over b.
func better(a, b *Policy) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c < 0
	}
	return a.ID < b.ID
}
