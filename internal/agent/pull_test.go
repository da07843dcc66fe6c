package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// workQueue starts a nats-server with Gantry's streams and the work queue
// consumer of version v1 of function fn.
func workQueue(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(testutil.StartNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := testutil.Context(t)
	js, _ := jetstream.New(nc)
	if err := bus.Setup(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	inst := model.DesiredInstance{FunctionID: "fn", FunctionVersionID: "v1"}
	if _, err := js.CreateOrUpdateConsumer(ctx, bus.InvokeStream, consumerConfig(inst)); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func TestPullerTakesOneMessageAtATime(t *testing.T) {
	nc, js := workQueue(t)
	ctx := testutil.Context(t)
	for _, body := range []string{"a", "b"} {
		if _, err := js.Publish(ctx, bus.InvokeSubject("fn", "v1"), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := newPullerExpiring(nc, bus.InvokeStream, bus.ConsumerName("v1"), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for _, want := range []string{"a", "b"} {
		msg, err := p.next(ctx)
		if err != nil || string(msg.Data) != want {
			t.Fatalf("got %v %v, want %q", msg, err, want)
		}
		if err := ack(msg); err != nil {
			t.Fatal(err)
		}
	}
	// The queue is empty: the pull expires and says so.
	if _, err := p.next(ctx); !errors.Is(err, errNoMessage) {
		t.Fatalf("empty queue: got %v, want errNoMessage", err)
	}
	// Acknowledged messages leave the work queue.
	testutil.WaitFor(t, 5*time.Second, func() error {
		s, err := js.Stream(ctx, bus.InvokeStream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return testutil.Errorf("%d messages left", info.State.Msgs)
		}
		return nil
	})
	// A cancelled wait returns promptly.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.next(cctx); err == nil {
		t.Fatal("next on a cancelled context returned a message")
	}
}

// TestPullerAfterADeletedCall: a call queued behind one whose caller left
// (the gateway deletes that one from the queue) is pulled. With no_wait
// pull requests nats-server answered "no messages" within a few dozen
// rounds of this, and went on answering so (see pullWait).
func TestPullerAfterADeletedCall(t *testing.T) {
	nc, js := workQueue(t)
	ctx := testutil.Context(t)
	st, err := js.Stream(ctx, bus.InvokeStream)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPuller(nc, bus.InvokeStream, bus.ConsumerName("v1"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for i := range 300 {
		ack1, err := js.Publish(ctx, bus.InvokeSubject("fn", "v1"), []byte("left"))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteMsg(ctx, ack1.Sequence); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, bus.InvokeSubject("fn", "v1"), []byte("after")); err != nil {
			t.Fatal(err)
		}
		msg, err := p.next(ctx)
		if err == nil && string(msg.Data) != "after" {
			t.Fatalf("round %d: pulled %q, want the call after the deleted one", i, msg.Data)
		}
		if err != nil {
			c, _ := st.Consumer(ctx, bus.ConsumerName("v1"))
			ci, _ := c.Info(ctx)
			t.Fatalf("round %d: pull: %v; consumer pending %d delivered %+v", i, err, ci.NumPending, ci.Delivered)
		}
		_ = ack(msg)
	}
}
