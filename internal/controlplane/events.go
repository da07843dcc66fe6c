package controlplane

import "time"

// Events configures the platform event stream (package events).
type Events struct {
	// MaxAge drops events older than this (default 7 days).
	MaxAge time.Duration
	// MaxBytes bounds the stream (default 1 GiB); the oldest go first.
	MaxBytes int64
}
