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
	// MaxAssetSize is the largest asset content accepted, in bytes
	// (default 5 GiB, NVCF's limit); a larger upload gets 413 and nothing
	// is stored.
	MaxAssetSize int64
	// AssetTTL is how long an asset lives before the leading replica
	// deletes it (default 24h, as NVCF).
	AssetTTL time.Duration
}

func (i Invocation) validate() error {
	if i.MaxRequestBody < 0 {
		return fmt.Errorf("controlplane: the request body limit must be positive, got %d bytes", i.MaxRequestBody)
	}
	if i.MaxAssetSize < 0 {
		return fmt.Errorf("controlplane: the asset size limit must be positive, got %d bytes", i.MaxAssetSize)
	}
	if i.AssetTTL < 0 {
		return fmt.Errorf("controlplane: the asset lifetime must be positive, got %s", i.AssetTTL)
	}
	if i.HostCallLimit < 0 {
		return fmt.Errorf("controlplane: the Host-routed call limit must be positive, got %s", i.HostCallLimit)
	}
	return nil
}
