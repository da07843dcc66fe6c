package controlplane

import (
	"fmt"
	"time"
)

// Invocation bounds the calls the gateway takes. Zero values mean the
// defaults.
type Invocation struct {
	// MaxRequestBody is the largest request body accepted, in bytes
	// (default NVCF's inline limit, 5 MiB); a larger one gets 413 before
	// anything is queued. Accepted bodies stream whatever their size.
	MaxRequestBody int64
	// HostCallLimit is how long a Host-routed pass-through call may run
	// (default 1h): such calls keep their connection, never turning into a
	// 202 that plain HTTP clients cannot follow.
	HostCallLimit time.Duration
}

func (i Invocation) validate() error {
	if i.MaxRequestBody < 0 {
		return fmt.Errorf("controlplane: the request body limit must be positive, got %d bytes", i.MaxRequestBody)
	}
	if i.HostCallLimit < 0 {
		return fmt.Errorf("controlplane: the Host-routed call limit must be positive, got %s", i.HostCallLimit)
	}
	return nil
}
