package invoke

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/catalog"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/policy"
	"github.com/gantry-dev/gantry/internal/problem"
)

// Clusters lists the registered clusters, for telling whether a version
// with no instance can ever get one.
type Clusters interface {
	ListClusters(ctx context.Context) ([]model.Cluster, error)
}

// fitsTTL is how long a version's "can it ever be placed" answer is kept:
// it is asked on every queued call of a version that may be at zero.
const fitsTTL = 5 * time.Second

// fits answers, for versions whose specs allow zero instances, whether any
// registered cluster could ever run one of their instances; a call to a
// version that can never have an instance fails at once instead of waiting.
type fits struct {
	clusters Clusters
	mu       sync.Mutex
	answers  map[string]fitAnswer // version id -> answer
}

type fitAnswer struct {
	err error
	at  time.Time
}

// check returns the problem to answer a call of e with when no spec of its
// deployment can ever be placed, or nil. Deployments whose specs keep an
// instance running (minInstances > 0) are not checked: they have one, or
// their status already says why not.
func (f *fits) check(ctx context.Context, e catalog.Entry) error {
	if f == nil || f.clusters == nil || e.Deployment == nil {
		return nil
	}
	for _, s := range e.Deployment.Specs {
		if s.MinInstances > 0 {
			return nil
		}
	}
	v := e.Function.VersionID
	f.mu.Lock()
	a, ok := f.answers[v]
	f.mu.Unlock()
	if ok && time.Since(a.at) < fitsTTL {
		return a.err
	}
	clusters, err := f.clusters.ListClusters(ctx)
	if err != nil {
		return nil // unknown: let the call wait for an instance
	}
	registered := len(clusters)
	clusters = slices.DeleteFunc(clusters, func(c model.Cluster) bool { return !c.Serves(e.Function.NCAID) })
	a = fitAnswer{at: time.Now()}
	why := ""
	if registered > 0 && len(clusters) == 0 {
		why = "no registered cluster serves account " + e.Function.NCAID + " (a cluster's owner can list it in authorizedNCAIds)"
	} else {
		why = neverFits(e.Deployment.Specs, clusters)
	}
	if why != "" {
		a.err = problem.Unavailable(60, "function %s version %s has no instance and none can be started: %s; change the deployment's gpu or instanceType, or register a cluster that offers it",
			e.Function.ID, v, why)
	}
	f.mu.Lock()
	if len(f.answers) > 4096 {
		clear(f.answers)
	}
	f.answers[v] = a
	f.mu.Unlock()
	return a.err
}

// neverFits says why no spec can ever be placed on clusters, or "" when one
// can.
func neverFits(specs []model.GPUSpec, clusters []model.Cluster) string {
	first := ""
	for _, s := range specs {
		ok, why := policy.EverFits(s, clusters)
		if ok {
			return ""
		}
		if first == "" {
			first = why
		}
	}
	return first
}
