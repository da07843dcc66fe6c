package invoke

import (
	"context"
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
	a = fitAnswer{at: time.Now()}
	var whys []string
	for _, s := range e.Deployment.Specs {
		ok, why := policy.EverFits(s, clusters)
		if ok {
			whys = nil
			break
		}
		whys = append(whys, why)
	}
	if whys != nil {
		a.err = problem.Unavailable(60, "function %s version %s has no instance and none can be started: %s; change the deployment's gpu or instanceType, or register a cluster that offers it",
			e.Function.ID, v, whys[0])
	}
	f.mu.Lock()
	if len(f.answers) > 4096 {
		clear(f.answers)
	}
	f.answers[v] = a
	f.mu.Unlock()
	return a.err
}
