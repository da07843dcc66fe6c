// Package testutil starts real engines for tests: embedded etcd and
// nats-server with JetStream, in-process on random loopback ports with their
// data in t.TempDir(), stopped by t.Cleanup. It also has the polling helper
// tests use instead of sleeping.
package testutil

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/store"
)

// StartEtcd starts an embedded etcd and returns a store on it.
func StartEtcd(t testing.TB) *store.Store {
	t.Helper()
	e, err := store.StartEmbedded(t.TempDir(), 30*time.Second)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return store.New(e.Client(), "")
}

// Context returns a context cancelled when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// WaitFor polls cond until it returns nil or timeout passes, then fails the
// test with cond's last error. Use it instead of sleeping.
//
// The interval starts at 5ms and doubles up to waitForMaxInterval: a
// condition met a moment after a poll is seen at most that late, and
// every wait in a suite pays about half of it.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testutil: condition not met after %v: %v", timeout, err)
		}
		time.Sleep(interval)
		interval = min(2*interval, waitForMaxInterval)
	}
}

// waitForMaxInterval caps WaitFor's poll interval.
const waitForMaxInterval = 100 * time.Millisecond

// Errorf is a shorthand for building WaitFor conditions.
func Errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// StartNATS starts an embedded nats-server with JetStream and returns its URL.
func StartNATS(t testing.TB) string {
	t.Helper()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Dir: t.TempDir()}, 30*time.Second)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e.URL()
}

// StartEtcdEndpoint starts an embedded etcd and returns its client URL, for
// code that connects the way it would to an external cluster.
func StartEtcdEndpoint(t testing.TB) string {
	t.Helper()
	e, err := store.StartEmbedded(t.TempDir(), 30*time.Second)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e.Endpoint()
}
