package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Retention defaults: a week of events, at most 1 GiB, whichever is reached
// first (the oldest go first).
const (
	DefaultMaxAge   = 7 * 24 * time.Hour
	DefaultMaxBytes = 1 << 30
	// DuplicateWindow is how long the stream remembers message ids. It
	// covers a leader change (the election lease is 10 s) with a wide
	// margin: a new leader replays from the last revision in the stream,
	// and what the old one published meanwhile is dropped as a duplicate.
	DuplicateWindow = 10 * time.Minute
)

// StreamConfig is the retention of the event stream.
type StreamConfig struct {
	// MaxAge drops events older than this (default DefaultMaxAge).
	MaxAge time.Duration
	// MaxBytes bounds the stream's size (default DefaultMaxBytes); the
	// oldest events go first.
	MaxBytes int64
	// Replicas is the JetStream replication factor (default 1).
	Replicas int
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

// Setup creates or updates the event stream. Every server replica runs it
// at start; it is idempotent, and a changed retention applies to the
// events already held.
func Setup(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	cfg = cfg.withDefaults()
	dup := min(DuplicateWindow, cfg.MaxAge)
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Stream,
		Description: "Gantry platform events, per account (CloudEvents JSON)",
		Subjects:    []string{Subjects},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		MaxMsgSize:  maxEventSize,
		Duplicates:  dup,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		// Readers start by time or sequence; direct gets let the new
		// leader read the last event's revision cheaply.
		AllowDirect: true,
	}); err != nil {
		return fmt.Errorf("events: stream %s: %w", Stream, err)
	}
	return nil
}
