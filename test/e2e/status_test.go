package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestStatus checks GET /v1/gantry/status (gantry status) on the real
// platform: every component ok with an agent connected, a failure naming
// the agents and clusters once the agent is cut off, and healthy again
// when it returns.
func TestStatus(t *testing.T) {
	t.Parallel()
	f := startFleet(t)
	ctx := testutil.Context(t)

	// No cluster yet: a warning that says to register one, still healthy.
	st, err := f.c.PlatformStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Healthy || check(st, "agents").Status != model.CheckWarn {
		t.Fatalf("before any cluster: healthy %v, agents %+v", st.Healthy, check(st, "agents"))
	}

	a := f.join("a", "prod", "r1", 2, "H100")
	want := func(healthy bool, agents model.CheckStatus) func() error {
		return func() error {
			st, err := f.c.PlatformStatus(ctx)
			if err != nil {
				return err
			}
			if st.Healthy != healthy || check(st, "agents").Status != agents {
				return testutil.Errorf("healthy %v, agents %+v; want %v, %s", st.Healthy, check(st, "agents"), healthy, agents)
			}
			return nil
		}
	}
	testutil.WaitFor(t, 30*time.Second, want(true, model.CheckOK))
	st, err = f.c.PlatformStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The real checks, not only the agents': each component answers ok.
	for _, name := range []string{"etcd", "nats", "jetstream", "mek", "leader", "clusters"} {
		if c := check(st, name); c.Status != model.CheckOK {
			t.Errorf("%s: %+v, want ok", name, c)
		}
	}

	a.proxy.Cut()
	testutil.WaitFor(t, 30*time.Second, want(false, model.CheckFail))
	// The agents check sees the silence first (three heartbeat periods);
	// the clusters one once the controller marks the cluster NOT_READY.
	testutil.WaitFor(t, 30*time.Second, func() error {
		st, err := f.c.PlatformStatus(ctx)
		if err != nil {
			return err
		}
		if c := check(st, "clusters"); st.Status != model.CheckFail || c.Status != model.CheckFail {
			return testutil.Errorf("with the only agent gone: status %s, clusters %+v", st.Status, c)
		}
		return nil
	})

	a.proxy.Heal()
	testutil.WaitFor(t, 30*time.Second, want(true, model.CheckOK))
}

// check is the named check of a status, or one saying it is missing.
func check(st model.PlatformStatus, name string) model.StatusCheck {
	for _, c := range st.Checks {
		if c.Name == name {
			return c
		}
	}
	return model.StatusCheck{Name: name, Message: fmt.Sprintf("no %q check in the status", name)}
}
