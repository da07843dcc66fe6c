package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestAPIKeysCRUD(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	k := &store.APIKey{ID: "key1", Account: "acct", Hash: []byte{1, 2, 3}, Scopes: []string{"invoke_function"},
		Status: store.APIKeyActive, CreatedAt: time.Now().UTC()}
	if err := s.CreateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAPIKey(ctx, k); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	got, err := s.GetAPIKey(ctx, "key1")
	if err != nil || got.Account != "acct" || got.Revision != k.Revision {
		t.Fatalf("get: %+v %v", got, err)
	}
	stale := got
	got.Status = store.APIKeyRevoked
	if err := s.UpdateAPIKey(ctx, &got); err != nil {
		t.Fatal(err)
	}
	stale.Description = "lost"
	if err := s.UpdateAPIKey(ctx, &stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	all, err := s.ListAPIKeys(ctx)
	if err != nil || len(all) != 1 || all[0].Status != store.APIKeyRevoked {
		t.Fatalf("list: %+v %v", all, err)
	}
	if _, err := s.GetAPIKey(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}
