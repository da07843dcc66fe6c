package events_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestStreamRetention checks the stream's defaults and that a configured
// retention is applied, to events already held too: they age out.
func TestStreamRetention(t *testing.T) {
	ctx := testutil.Context(t)
	nc, err := nats.Connect(testutil.StartNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Setup(ctx, js, events.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, events.Stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.MaxAge != 7*24*time.Hour || cfg.MaxBytes != 1<<30 || cfg.Duplicates != 10*time.Minute ||
		cfg.Retention != jetstream.LimitsPolicy || cfg.Discard != jetstream.DiscardOld || cfg.Storage != jetstream.FileStorage ||
		len(cfg.Subjects) != 1 || cfg.Subjects[0] != "gantry.events.>" {
		t.Errorf("default stream config %+v", cfg)
	}
	if _, err := js.Publish(ctx, "gantry.events.acct-a.function.created", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// A second start with a shorter retention (as a changed flag gives).
	if err := events.Setup(ctx, js, events.StreamConfig{MaxAge: time.Second, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if c := info.Config; c.MaxAge != time.Second || c.MaxBytes != 1<<20 || c.Duplicates != time.Second {
			return testutil.Errorf("config %+v", c)
		}
		if info.State.Msgs != 0 {
			return testutil.Errorf("%d events older than a second are still held", info.State.Msgs)
		}
		return nil
	})
}
