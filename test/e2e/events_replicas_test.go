package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestEventsOncePerChangeAcrossReplicas runs three server replicas on one
// external etcd and NATS, makes changes through each, stops the leader
// while changes go on, and reads the events from every replica: each change
// is one event, whichever replica made it and whoever led.
func TestEventsOncePerChangeAcrossReplicas(t *testing.T) {
	t.Parallel()
	etcd := testutil.StartEtcdEndpoint(t)
	natsURL := testutil.StartNATS(t)
	ctx, cancel := context.WithTimeout(testutil.Context(t), 120*time.Second)
	defer cancel()
	shared := t.TempDir() // one master key and admin token for all, as a shared secret mount gives
	start := func() (*controlplane.Server, *client.Client) {
		t.Helper()
		s, err := controlplane.New(controlplane.Config{DataDir: shared, Listen: "127.0.0.1:0",
			EtcdEndpoints: []string{etcd}, NATSURL: natsURL, Resync: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, client.New(s.URL(), s.AdminToken())
	}
	var made []string
	create := func(c *client.Client) {
		t.Helper()
		f, err := c.CreateFunction(ctx, model.CreateFunctionRequest{Name: fmt.Sprintf("f%d", len(made)), InferenceURL: "/", ContainerImage: "process://true"})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, f.ID)
	}
	// The first replica is alone, so it leads; its events are published.
	first, c0 := start()
	create(c0)
	waitEvent(t, c0, "the first function.created", created(made[0]))
	_, c1 := start()
	_, c2 := start()
	for _, c := range []*client.Client{c0, c1, c2, c1, c2} {
		create(c)
	}
	// The leader goes; another takes over while changes keep coming.
	first.Close()
	for i := 0; i < 6; i++ {
		create([]*client.Client{c1, c2}[i%2])
	}
	for _, c := range []*client.Client{c1, c2} {
		all := waitEvent(t, c, "the last function.created", created(made[len(made)-1]))
		var ids []string
		seen := map[string]bool{}
		for _, e := range all {
			if e.Kind() != events.KindFunctionCreated {
				continue
			}
			if seen[e.ID] {
				t.Errorf("event %s twice", e.ID)
			}
			seen[e.ID] = true
			ids = append(ids, e.Function)
		}
		if !slices.Equal(ids, made) {
			t.Errorf("function.created for %v, want each of %v once, in order", ids, made)
		}
	}
}
