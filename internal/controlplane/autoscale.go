package controlplane

import "time"

// Autoscale tunes the autoscaler the leading replica runs.
type Autoscale struct {
	// Period is how often every spec is looked at (default 1s).
	Period time.Duration
	// ScaleDownDelay is how long a spec must need fewer instances before
	// any are removed, so also how long an idle version with minInstances
	// 0 keeps its last instance (default 10m).
	ScaleDownDelay time.Duration
}
