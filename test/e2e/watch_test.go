package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestDetachedCallOutlivesItsWorker: a call answered 202 while it ran
// straight on a worker slot (the fast path, in no durable queue) still gets
// its result when that worker's agent is cut off mid-call: the gateways'
// watcher finds the worker gone and re-queues the call, and another
// cluster's worker runs it. It runs twice (the cut-off worker's function
// kept going), and no more.
func TestDetachedCallOutlivesItsWorker(t *testing.T) {
	t.Parallel()
	f := startFleet(t)
	members := []*member{f.join("a", "prod", "r1", 1, "H100"), f.join("b", "prod", "r2", 1, "H100")}
	ctx := testutil.Context(t)
	log := filepath.Join(t.TempDir(), "function.log")
	req := selfFunction(t, "survivor", "stream")
	req.ContainerEnvironment = append(req.ContainerEnvironment, model.EnvVar{Key: streamLogEnv, Value: log})
	fn, err := f.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// One GPU per cluster: one instance on each.
	if _, err := f.c.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{
		{GPU: "H100", MinInstances: 2, MaxInstances: 2, MaxRequestConcurrency: model.Int(1)}}}); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(fn, model.StatusActive)

	resp, err := f.c.Invoke(ctx, client.InvokeRequest{FunctionID: fn.ID, PollSeconds: 1,
		Header: http.Header{"Call-Id": {"durable"}, "Call-Delay": {"4s"}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, want 202", resp.StatusCode)
	}
	// Cut off the agent whose instance runs it.
	var ranOn string
	testutil.WaitFor(t, 10*time.Second, func() error {
		if on := readStreamLog(t, log).ranOn["durable"]; len(on) == 1 {
			ranOn = on[0]
			return nil
		}
		return fmt.Errorf("the call has not started")
	})
	insts, err := f.cp.Store().ListInstances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var cut *member
	for _, in := range insts {
		for _, m := range members {
			if in.ID == ranOn && in.ClusterID == m.clusterID {
				cut = m
			}
		}
	}
	if cut == nil {
		t.Fatalf("instance %s is on no member cluster: %+v", ranOn, insts)
	}
	cut.proxy.Cut()
	cutAt := time.Now()

	var final *client.InvokeResponse
	testutil.WaitFor(t, 60*time.Second, func() error {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		final, err = f.c.InvocationStatus(pctx, resp.RequestID, 5)
		if err != nil {
			return err
		}
		if final.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", final.StatusCode)
		}
		return nil
	})
	if string(final.Body) != "durable" {
		t.Fatalf("result %q, want the call's answer", final.Body)
	}
	t.Logf("result %v after the cut", time.Since(cutAt).Round(10*time.Millisecond))
	on := readStreamLog(t, log).ranOn["durable"]
	if len(on) != 2 || on[1] == ranOn {
		t.Fatalf("the call ran on %v: want its first instance, then once on the other cluster's", on)
	}
	cut.proxy.Heal()
}

// TestDetachedCallRunsOnce: with its worker alive, a call answered 202 on
// the fast path runs once, and its watch record goes with its result.
//
// Not parallel: under load the watcher has re-queued the call while it still
// ran, so it ran twice.
func TestDetachedCallRunsOnce(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	fn, log := streamFunction(t, p, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(2)})
	ctx := testutil.Context(t)
	resp, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: fn.ID, PollSeconds: 1,
		Header: http.Header{"Call-Id": {"once"}, "Call-Delay": {"7s"}}}) // past one watch recheck (5s)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("%v %+v, want 202", err, resp)
	}
	st, err := p.ControlPlane().JetStream().Stream(ctx, bus.WatchStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("watch stream %+v %v, want the call's record", info, err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		final, err := p.c.InvocationStatus(ctx, resp.RequestID, 5)
		if err != nil {
			return err
		}
		if final.StatusCode != http.StatusOK || string(final.Body) != "once" {
			return fmt.Errorf("status %d %s", final.StatusCode, final.Body)
		}
		return nil
	})
	testutil.WaitFor(t, 15*time.Second, func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("%d watch records left", info.State.Msgs)
		}
		return nil
	})
	if n := readStreamLog(t, log).calls["once"]; n != 1 {
		t.Fatalf("the call ran %d times, want once", n)
	}
}
