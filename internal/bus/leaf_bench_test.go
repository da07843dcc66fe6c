package bus_test

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// BenchmarkLeafFanout measures, in one run, events published on the hub at
// 10k/s for one second: their latency to a subscriber on a site's leaf (over
// the leaf link, mTLS, through a proxy) against the baseline of the same
// publish to a subscriber on the hub itself (one NATS server); and the time
// a leaf takes to be linked again after its link is cut and healed.
//
//	go test -run '^$' -bench BenchmarkLeafFanout -benchtime 1x ./internal/bus
func BenchmarkLeafFanout(b *testing.B) {
	dir := secretsDir(b, "east")
	h := startHub(b, dir, 1)
	s := leafTo(b, h, dir, "east", "east", "east", tokenEast)
	testutil.WaitFor(b, 30*time.Second, func() error {
		if !s.leaf.Connected() {
			return fmt.Errorf("leaf not connected")
		}
		return nil
	})
	local := s.client(b, tokenEast)
	onHub, err := h.nodes[0].Connect("bench-hub-subscriber")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(onHub.Close)

	const rate, n = 10000, 10000
	for b.Loop() {
		for _, tc := range []struct {
			name string
			sub  *nats.Conn
		}{{"hub", onHub}, {"leaf", local}} {
			p50, p99, lost := fanout(b, h.internal, tc.sub, bus.SiteSubject("west", "bench."+tc.name), rate, n)
			b.ReportMetric(float64(p50.Microseconds()), tc.name+"-p50-us")
			b.ReportMetric(float64(p99.Microseconds()), tc.name+"-p99-us")
			b.ReportMetric(float64(lost), tc.name+"-lost")
		}
		// Reconnect: cut the link, wait until the leaf sees it gone, heal,
		// and time until it is linked again and an event crosses.
		s.cut()
		testutil.WaitFor(b, 30*time.Second, func() error {
			if s.leaf.Connected() {
				return fmt.Errorf("leaf still linked")
			}
			return nil
		})
		healed := time.Now()
		s.heal()
		testutil.WaitFor(b, 30*time.Second, func() error {
			if !s.leaf.Connected() {
				return fmt.Errorf("leaf not linked again")
			}
			return nil
		})
		linked := time.Since(healed)
		ch := make(chan *nats.Msg, 1)
		sub, err := local.ChanSubscribe(bus.SiteSubject("west", "bench.after"), ch)
		if err != nil {
			b.Fatal(err)
		}
		testutil.WaitFor(b, 30*time.Second, func() error {
			if err := h.internal.Publish(bus.SiteSubject("west", "bench.after"), nil); err != nil {
				return err
			}
			select {
			case <-ch:
				return nil
			case <-time.After(50 * time.Millisecond):
				return fmt.Errorf("no event across the healed link yet")
			}
		})
		crossed := time.Since(healed)
		_ = sub.Unsubscribe()
		b.ReportMetric(float64(linked.Milliseconds()), "relink-ms")
		b.ReportMetric(float64(crossed.Milliseconds()), "first-event-ms")
	}
}

// fanout publishes n events on pub at rate per second, each carrying its
// send time, and returns the p50 and p99 latency at which sub received
// them, and how many never arrived.
func fanout(b *testing.B, pub, sub *nats.Conn, subject string, rate, n int) (p50, p99 time.Duration, lost int) {
	b.Helper()
	var (
		mu     sync.Mutex
		lat    = make([]time.Duration, 0, n)
		probes atomic.Int64
		seen   = map[uint64]bool{}
	)
	done := make(chan struct{})
	s, err := sub.Subscribe(subject, func(m *nats.Msg) {
		sent := int64(binary.BigEndian.Uint64(m.Data))
		if sent == 0 { // a probe
			probes.Add(1)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		lat = append(lat, time.Duration(time.Now().UnixNano()-sent))
		if len(m.Data) == 16 {
			seen[binary.BigEndian.Uint64(m.Data[8:])] = true
		}
		if len(lat) == n {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Unsubscribe()
	_ = s.SetPendingLimits(-1, -1)
	if err := sub.Flush(); err != nil {
		b.Fatal(err)
	}
	// The subscription's interest reaches the publisher's server.
	testutil.WaitFor(b, 30*time.Second, func() error {
		if err := pub.Flush(); err != nil {
			return err
		}
		if probes.Load() > 0 {
			return nil
		}
		return pub.Publish(subject, make([]byte, 8)) // a probe: zero time
	})
	tick := time.Second / time.Duration(rate)
	start := time.Now()
	buf := make([]byte, 16)
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * tick)); d > 0 {
			time.Sleep(d) // pacing the publisher, not waiting for a condition
		}
		binary.BigEndian.PutUint64(buf, uint64(time.Now().UnixNano()))
		binary.BigEndian.PutUint64(buf[8:], uint64(i))
		if err := pub.Publish(subject, buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		b.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	mu.Lock()
	got := slices.Clone(lat)
	for i := range n {
		if !seen[uint64(i)] {
			b.Logf("%s: event %d missing", subject, i)
		}
	}
	mu.Unlock()
	slices.Sort(got)
	if len(got) == 0 {
		b.Fatalf("%s: no event received", subject)
	}
	return got[len(got)/2], got[len(got)*99/100], n - len(got)
}
