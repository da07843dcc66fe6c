package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestLeaderChangeDuringABurst: two server replicas on one external etcd
// and NATS; a burst drives the autoscaler; the leading replica stops in the
// middle of it. The other replica takes over and carries the burst to
// maxInstances, and the version never has more instances than that.
func TestLeaderChangeDuringABurst(t *testing.T) {
	etcd := testutil.StartEtcdEndpoint(t)
	natsURL := testutil.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	shared := t.TempDir()
	var replicas []*controlplane.Server
	for range 2 {
		s, err := controlplane.New(controlplane.Config{DataDir: shared, Listen: "127.0.0.1:0",
			EtcdEndpoints: []string{etcd}, NATSURL: natsURL, Resync: 200 * time.Millisecond, Grace: fleetGrace,
			Autoscale: controlplane.Autoscale{ScaleDownDelay: time.Minute},
			Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		replicas = append(replicas, s)
	}
	var leader, follower *controlplane.Server
	testutil.WaitFor(t, 30*time.Second, func() error {
		switch {
		case replicas[0].Leading():
			leader, follower = replicas[0], replicas[1]
		case replicas[1].Leading():
			leader, follower = replicas[1], replicas[0]
		default:
			return fmt.Errorf("no replica leads yet")
		}
		return nil
	})
	// The agent enrolls through the follower, which outlives the test.
	f := &fleet{t: t, cp: follower, c: client.New(follower.URL(), follower.AdminToken())}
	f.join("gpu", "prod", "us-east", 8, "H100")
	req := selfFunction(t, "leaderless", "stream")
	req.ContainerEnvironment = append(req.ContainerEnvironment, model.EnvVar{Key: streamLogEnv, Value: filepath.Join(t.TempDir(), "function.log")})
	fn, err := f.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	const maxInstances = 4
	if _, err := f.c.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{
		{GPU: "H100", MinInstances: 0, MaxInstances: maxInstances, MaxRequestConcurrency: model.Int(1)}}}); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(fn, model.StatusActive)

	// Never more instance records than maxInstances, sampled all along.
	var most atomic.Int64
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil {
			insts, err := follower.Store().ListInstances(watchCtx)
			n := 0
			for _, in := range insts {
				if in.FunctionVersionID == fn.VersionID {
					n++
				}
			}
			if err == nil && int64(n) > most.Load() {
				most.Store(int64(n))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	defer func() { stopWatch(); <-watched }()

	// A burst the callers send through the follower's gateway: the count
	// climbs one instance per caller as calls queue; half-way the leader
	// stops.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 2 * maxInstances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("b%d-%d", w, i)
				if st, body := callAt(follower.URL(), follower.AdminToken(), fn, id, "300ms"); st != http.StatusOK || body != id {
					failed.Add(1)
					t.Errorf("call %s: %d %q", id, st, body)
				}
			}
		}()
		if w == 1 {
			// Two callers in: the old leader has scaled up from zero.
			testutil.WaitFor(t, 30*time.Second, func() error {
				if n := len(f.placements(fn)); n == 0 {
					return fmt.Errorf("no instance yet")
				}
				return nil
			})
			leader.Close()
		}
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		if !follower.Leading() {
			return fmt.Errorf("the follower does not lead yet")
		}
		d, err := f.c.GetDeployment(ctx, fn.ID, fn.VersionID)
		if err != nil {
			return err
		}
		if r := d.Specs[0].RunningInstances; r == nil || *r != maxInstances {
			return fmt.Errorf("%v running, want %d", r, maxInstances)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	stopWatch()
	<-watched
	if n := most.Load(); n > maxInstances {
		t.Errorf("the version had %d instances at once, more than maxInstances %d", n, maxInstances)
	}
	if failed.Load() > 0 {
		t.Errorf("%d calls failed across the leader change", failed.Load())
	}
}
