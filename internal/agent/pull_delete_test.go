package agent

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestPullerAfterADeletedCall: a call queued behind one whose caller left
// (the gateway deletes that one from the queue) is pulled. With no_wait
// pull requests nats-server answered "no messages" within a few dozen
// rounds of this, and went on answering so (see pullWait).
func TestPullerAfterADeletedCall(t *testing.T) {
	nc, err := nats.Connect(testutil.StartNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := testutil.Context(t)
	js, _ := jetstream.New(nc)
	if err := bus.Setup(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	inst := model.DesiredInstance{FunctionID: "fn", FunctionVersionID: "v1"}
	if _, err := js.CreateOrUpdateConsumer(ctx, bus.InvokeStream, consumerConfig(inst)); err != nil {
		t.Fatal(err)
	}
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
