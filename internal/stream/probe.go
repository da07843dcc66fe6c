package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// Liveness is what a probe learned of a call's endpoint.
type Liveness int

const (
	// Running: the endpoint is open; the call is still under way there.
	Running Liveness = iota + 1
	// Ended: the process that had the endpoint is up, and the call is not
	// there (any more): it ended, or the process restarted.
	Ended
	// Orphaned: nothing listens at the address: the process that had the
	// call is gone (or not connected to NATS right now).
	Orphaned
)

func (l Liveness) String() string {
	switch l {
	case Running:
		return "running"
	case Ended:
		return "ended"
	case Orphaned:
		return "orphaned"
	}
	return fmt.Sprintf("liveness(%d)", int(l))
}

var probeSeq atomic.Uint64

// Probe asks the endpoint at addr (another side's Endpoint.Addr) whether
// its call is still under way. The answer comes back to an endpoint of this
// mux, so it needs no permission beyond what the call itself uses. An error
// (such as ctx ending first) means the answer is unknown.
func (m *Mux) Probe(ctx context.Context, addr string) (Liveness, error) {
	ep, err := m.Open("probe-" + strconv.FormatUint(probeSeq.Add(1), 36))
	if err != nil {
		return 0, err
	}
	defer ep.Close()
	if err := m.nc.PublishMsg(&nats.Msg{Subject: addr, Reply: ep.Addr(), Data: encode(KindProbe, 0, nil)}); err != nil {
		return 0, fmt.Errorf("stream: probe %s: %w", addr, err)
	}
	f, err := ep.Next(ctx)
	switch {
	case errors.Is(err, ErrNoResponders):
		return Orphaned, nil
	case err != nil:
		return 0, fmt.Errorf("stream: probe %s: %w", addr, err)
	case f.Kind == KindProbe:
		return Running, nil
	case f.Kind == KindUnknown:
		return Ended, nil
	}
	return 0, fmt.Errorf("stream: probe %s: unexpected answer %s", addr, f.Kind)
}
