package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

func TestSigningKeyRotation(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	now := time.Now().UTC().Truncate(time.Second)

	if _, err := s.ActiveSigningKey(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("active key of an empty store: %v, want ErrNotFound", err)
	}
	first := &store.SigningKey{ID: "k1", Algorithm: "ES256", PublicKey: []byte{4, 1}, SealedPrivateKey: []byte{9}, CreatedAt: now}
	if err := s.RotateSigningKey(ctx, first, nil); err != nil {
		t.Fatal(err)
	}
	// A second replica starting at the same time loses the race.
	rival := &store.SigningKey{ID: "k1b", Algorithm: "ES256", CreatedAt: now}
	if err := s.RotateSigningKey(ctx, rival, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second first key: %v, want ErrConflict", err)
	}
	active, err := s.ActiveSigningKey(ctx)
	if err != nil || active.ID != "k1" || active.Revision == 0 {
		t.Fatalf("active: %+v %v", active, err)
	}

	stale := active
	retired := active
	retired.RetiredAt, retired.NotAfter = now, now.Add(time.Hour)
	second := &store.SigningKey{ID: "k2", Algorithm: "ES256", CreatedAt: now}
	if err := s.RotateSigningKey(ctx, second, &retired); err != nil {
		t.Fatal(err)
	}
	// A replica that read k1 before the rotation cannot rotate from it.
	stale.RetiredAt = now
	if err := s.RotateSigningKey(ctx, &store.SigningKey{ID: "k3", CreatedAt: now}, &stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("rotation from a stale key: %v, want ErrConflict", err)
	}
	active, err = s.ActiveSigningKey(ctx)
	if err != nil || active.ID != "k2" {
		t.Fatalf("active after rotation: %+v %v", active, err)
	}
	all, err := s.ListSigningKeys(ctx)
	if err != nil || len(all) != 2 || all[0].ID != "k1" || !all[0].NotAfter.Equal(now.Add(time.Hour)) || !all[1].NotAfter.IsZero() {
		t.Fatalf("list: %+v %v", all, err)
	}

	if err := s.DeleteSigningKey(ctx, active); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("deleting the active key: %v, want ErrConflict", err)
	}
	if err := s.DeleteSigningKey(ctx, all[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSigningKey(ctx, "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
}
