package bus

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// QueueDepth is how many calls a function version's work queue holds:
// waiting plus delivered and not yet answered; 0 before any worker made
// its consumer. The queues API and the queue-depth metric both read it.
func QueueDepth(ctx context.Context, js jetstream.JetStream, versionID string) (int, error) {
	c, err := js.Consumer(ctx, InvokeStream, ConsumerName(versionID))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int(info.NumPending) + info.NumAckPending, nil
}
