package stream

import (
	"context"
	"errors"
	"fmt"

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

// Probe asks the endpoint at addr (an Endpoint's Addr) whether its call is
// still under way. It costs one request and needs no endpoint of the
// caller's own. An error (such as ctx ending) means the answer is unknown.
func Probe(ctx context.Context, nc *nats.Conn, addr string) (Liveness, error) {
	msg, err := nc.RequestWithContext(ctx, addr, encode(KindProbe, 0, nil))
	if errors.Is(err, nats.ErrNoResponders) {
		return Orphaned, nil
	}
	if err != nil {
		return 0, fmt.Errorf("stream: probe %s: %w", addr, err)
	}
	k, _, _, err := decode(msg.Data)
	switch {
	case err != nil:
		return 0, fmt.Errorf("stream: probe %s: %w", addr, err)
	case k == KindPing:
		return Running, nil
	case k == KindUnknown:
		return Ended, nil
	}
	return 0, fmt.Errorf("stream: probe %s: unexpected answer %s", addr, k)
}
