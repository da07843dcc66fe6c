package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// puller is one worker slot's connection to its work queue: a long-lived
// inbox subscription and at most one outstanding JetStream pull request for
// one message. It speaks the pull protocol directly ($JS.API.CONSUMER.MSG.NEXT)
// because the client library's helpers either subscribe a new inbox for
// every message (Next) or prefetch beyond the slot (Messages), and the slot
// must hold exactly one message at a time.
type puller struct {
	nc    *nats.Conn
	sub   *nats.Subscription
	inbox string
	api   string
	req   []byte
}

// errNoMessage means a pull request ended without a message (it expired or
// the consumer was busy); the caller simply pulls again.
var errNoMessage = errors.New("agent: no message")

// pullWait is how long a worker's pull request waits for a message. The
// worker holds the slot it pulls for until the request ends (next returns),
// so no pull request outlives the free slot it was made for (one that did
// would take a message while the slot serves an offered call); short, so
// that an empty queue holds the slot only briefly.
//
// It is not zero (no_wait) on purpose. nats-server answers a no_wait request
// from the consumer's count of pending messages, and that count can fall
// one short when a message is deleted before it is delivered (the gateway
// deletes the queued call of a caller who left): the server then answers
// "no messages" while a call waits in the queue, for as long as the count
// stays off (a minute and more in TestHangUpCancels). Reproduced on 2.15.2
// and 2.15.3 by TestPullerAfterADeletedCall. A waiting request is served
// from the stream itself.
const pullWait = 50 * time.Millisecond

// newPuller makes a worker's puller, whose requests wait pullWait.
func newPuller(nc *nats.Conn, stream, consumer string) (*puller, error) {
	return newPullerExpiring(nc, stream, consumer, pullWait)
}

// newPullerExpiring makes a puller whose requests wait up to expiry for a
// message; 0 means not at all.
func newPullerExpiring(nc *nats.Conn, stream, consumer string, expiry time.Duration) (*puller, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("agent: pull inbox: %w", err)
	}
	req, _ := json.Marshal(struct {
		Batch   int   `json:"batch"`
		Expires int64 `json:"expires,omitempty"`
		NoWait  bool  `json:"no_wait,omitempty"`
	}{1, int64(expiry), expiry == 0})
	return &puller{nc: nc, sub: sub, inbox: inbox, api: "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer, req: req}, nil
}

// next asks for one message and waits for it, an end-of-request status, or
// ctx. A message still in flight when ctx ends is never acknowledged, so
// JetStream redelivers it after its ack wait.
func (p *puller) next(ctx context.Context) (*nats.Msg, error) {
	if err := p.nc.PublishRequest(p.api, p.inbox, p.req); err != nil {
		return nil, err
	}
	for {
		msg, err := p.sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, err
		}
		status := msg.Header.Get("Status")
		if status == "" || len(msg.Data) > 0 {
			return msg, nil
		}
		switch status {
		case "100": // idle heartbeat; keep waiting
			continue
		case "404", "408", "409":
			return nil, errNoMessage
		default:
			return nil, fmt.Errorf("agent: pull answered %s %s", status, msg.Header.Get("Description"))
		}
	}
}

func (p *puller) close() { _ = p.sub.Unsubscribe() }

// Acknowledgements of the JetStream protocol, sent to a message's reply
// subject.
func ack(m *nats.Msg) error        { return m.Respond([]byte("+ACK")) }
func inProgress(m *nats.Msg) error { return m.Respond([]byte("+WPI")) }
func nakAfter(m *nats.Msg, d time.Duration) error {
	return m.Respond(fmt.Appendf(nil, `-NAK {"delay":%d}`, int64(d)))
}
