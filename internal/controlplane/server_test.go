package controlplane_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestReplicasOnExternalEngines runs two stateless server replicas against
// one external etcd and one external NATS, as production does: what one
// replica writes the other serves, and exactly one leads the reconciler.
func TestReplicasOnExternalEngines(t *testing.T) {
	etcd := testutil.StartEtcdEndpoint(t)
	nats := testutil.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	shared := t.TempDir() // both replicas read one admin token and key, as a shared secret mount would provide
	var replicas []*controlplane.Server
	for i := 0; i < 2; i++ {
		s, err := controlplane.New(controlplane.Config{DataDir: shared, Listen: "127.0.0.1:0",
			EtcdEndpoints: []string{etcd}, NATSURL: nats, Resync: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		replicas = append(replicas, s)
	}
	if _, err := os.Stat(filepath.Join(shared, "etcd")); !os.IsNotExist(err) {
		t.Fatal("a server with --etcd-endpoints started an embedded etcd anyway")
	}
	for _, r := range replicas {
		// The probes the Helm chart points at: alive, and ready once the
		// catalog has loaded (Start returned).
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, err := http.Get(r.URL() + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s answered %d on a started replica", path, resp.StatusCode)
			}
		}
	}
	a := client.New(replicas[0].URL(), replicas[0].AdminToken())
	b := client.New(replicas[1].URL(), replicas[1].AdminToken())
	f, err := a.CreateFunction(ctx, model.CreateFunctionRequest{Name: "shared", InferenceURL: "/", ContainerImage: "process://true"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetFunction(ctx, f.ID, f.VersionID); err != nil {
		t.Fatalf("replica b does not see replica a's function: %v", err)
	}
	// A deployment with minInstances 0 is ACTIVE at once, but only if some
	// replica leads the reconciler.
	if _, err := b.CreateDeployment(ctx, f.ID, f.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{{GPU: "H100", MaxInstances: 1}}}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, a, f)

	// Stop replica a (whichever led); b must take over reconciling.
	replicas[0].Close()
	g, err := b.CreateVersion(ctx, f.ID, model.CreateFunctionRequest{Name: "shared", InferenceURL: "/", ContainerImage: "process://true"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateDeployment(ctx, g.ID, g.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{{GPU: "H100", MaxInstances: 1}}}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, b, g)
}

func waitActive(t *testing.T, c *client.Client, f model.Function) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, func() error {
		d, err := c.GetDeployment(context.Background(), f.ID, f.VersionID)
		if err != nil {
			return err
		}
		if d.FunctionStatus != model.StatusActive {
			return testutil.Errorf("status %s", d.FunctionStatus)
		}
		return nil
	})
}
