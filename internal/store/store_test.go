package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestFunctionsCRUDAndConflicts(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	f := &model.Function{ID: "fn1", VersionID: "v1", NCAID: "acct", Name: "echo", CreatedAt: time.Now()}
	if err := s.CreateFunction(ctx, f, []store.SealedSecret{{Name: "TOKEN", Ciphertext: []byte{1, 2}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFunction(ctx, f, nil); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: got %v, want ErrExists", err)
	}
	got, err := s.GetFunction(ctx, "fn1", "v1")
	if err != nil || got.Name != "echo" || got.Revision == 0 {
		t.Fatalf("get: %+v %v", got, err)
	}
	stale := got
	got.Description = "first"
	if err := s.UpdateFunction(ctx, &got); err != nil {
		t.Fatal(err)
	}
	stale.Description = "lost update"
	if err := s.UpdateFunction(ctx, &stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: got %v, want ErrConflict", err)
	}
	secrets, err := s.ListSecrets(ctx, "fn1", "v1")
	if err != nil || len(secrets) != 1 {
		t.Fatalf("secrets: %v %v", secrets, err)
	}

	d := &model.Deployment{ID: "dep1", FunctionID: "fn1", FunctionVersionID: "v1", NCAID: "acct"}
	if err := s.CreateDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFunction(ctx, "fn1", "v1"); !errors.Is(err, store.ErrDeployed) {
		t.Fatalf("delete deployed: got %v, want ErrDeployed", err)
	}
	if _, err := s.GetDeploymentByID(ctx, "dep1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDeployment(ctx, *d); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFunction(ctx, "fn1", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFunction(ctx, "fn1", "v1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: got %v", err)
	}
	if secrets, _ := s.ListSecrets(ctx, "fn1", "v1"); len(secrets) != 0 {
		t.Fatalf("secrets survived their function: %v", secrets)
	}
	missing := &model.Deployment{ID: "dep2", FunctionID: "nope", FunctionVersionID: "nope"}
	if err := s.CreateDeployment(ctx, missing); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deployment of missing version: got %v", err)
	}
}

// TestPlacementNeverOverbooks races many placements of 1-GPU instances onto a
// cluster with 8 GPUs: the allocation transaction must admit exactly 8.
func TestPlacementNeverOverbooks(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	const gpus, tries = 8, 20
	var wg sync.WaitGroup
	placed := make(chan string, tries)
	for i := 0; i < tries; i++ {
		inst := &model.Instance{ID: "i" + string(rune('a'+i)), GPU: "H100", GPUCount: 1}
		if err := s.CreateInstance(ctx, inst); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				a, err := s.GetAllocation(ctx, "c1")
				if err != nil {
					t.Error(err)
					return
				}
				if a.Used["H100"]+inst.GPUCount > gpus {
					return
				}
				a.Used["H100"]++
				placedInst := *inst
				placedInst.ClusterID = "c1"
				err = s.PlaceInstance(ctx, &placedInst, &a)
				if errors.Is(err, store.ErrConflict) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				placed <- inst.ID
				return
			}
		}()
	}
	wg.Wait()
	close(placed)
	if n := len(placed); n != gpus {
		t.Fatalf("placed %d instances on %d GPUs", n, gpus)
	}
	a, _ := s.GetAllocation(ctx, "c1")
	if a.Used["H100"] != gpus {
		t.Fatalf("allocation says %d used, want %d", a.Used["H100"], gpus)
	}
}

func TestMigrateStampsFreshAndRefusesNewer(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := s.SchemaVersionStored(ctx); err != nil || v != store.SchemaVersion {
		t.Fatalf("schema version %d %v", v, err)
	}
	if _, err := s.Client().Put(ctx, s.Prefix()+"schema", `{"version":99}`); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err == nil {
		t.Fatal("migrate accepted data from a newer release")
	}
}

func TestNotifyCoalesces(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx, cancel := context.WithCancel(testutil.Context(t))
	ch := s.Notify(ctx, "clusters/")
	select {
	case <-ch: // the watch is in place
	case <-time.After(10 * time.Second):
		t.Fatal("no notification that the watch is in place")
	}
	for i := 0; i < 5; i++ {
		c := &model.Cluster{ID: "c" + string(rune('0'+i))}
		if err := s.CreateCluster(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
	cancel()
	for range ch {
	}
}

func TestEmbeddedRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := testutil.Context(t)
	e, err := store.StartEmbedded(dir, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := store.New(e.Client(), "")
	if err := s.CreateCluster(ctx, &model.Cluster{ID: "kept"}); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e, err = store.StartEmbedded(dir, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := store.New(e.Client(), "").GetCluster(ctx, "kept"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
