package store_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestAssetsPerAccount: records are kept per account, so another account's
// asset is not found; updates and the sweep's delete are guarded by the
// revision a record was read at.
func TestAssetsPerAccount(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	now := time.Now().UTC().Truncate(time.Second)
	a := &model.Asset{ID: "a1", NCAID: "acct", ContentType: "image/png", Description: "cat", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateAsset(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAsset(ctx, a); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	other := &model.Asset{ID: "a2", NCAID: "other", ContentType: "text/plain", Description: "x", CreatedAt: now, ExpiresAt: now}
	if err := s.CreateAsset(ctx, other); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAsset(ctx, "acct", "a1")
	if err != nil || !reflect.DeepEqual(&got, a) {
		t.Fatalf("get: %+v %v, want %+v", got, err, *a)
	}
	if _, err := s.GetAsset(ctx, "other", "a1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another account's asset: %v, want ErrNotFound", err)
	}
	if l, err := s.ListAssets(ctx, "acct"); err != nil || len(l) != 1 || l[0].ID != "a1" {
		t.Fatalf("list: %+v %v", l, err)
	}
	if l, err := s.ListAllAssets(ctx); err != nil || len(l) != 2 {
		t.Fatalf("list all: %+v %v", l, err)
	}

	stale := got
	got.Size, got.UploadedAt = 3, now
	if err := s.UpdateAsset(ctx, &got); err != nil || !got.Uploaded() {
		t.Fatal(err)
	}
	if err := s.UpdateAsset(ctx, &stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: %v, want ErrConflict", err)
	}
	if err := s.DeleteAssetAt(ctx, stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale delete: %v, want ErrConflict", err)
	}
	if err := s.DeleteAssetAt(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateAsset(ctx, &got); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a deleted asset: %v, want ErrNotFound", err)
	}
	if err := s.DeleteAsset(ctx, "other", "a2"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAsset(ctx, "other", "a2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
}

func TestURLSigningKeyCreatedOnce(t *testing.T) {
	s := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	if _, err := s.URLSigningKey(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("before any: %v, want ErrNotFound", err)
	}
	if err := s.CreateURLSigningKey(ctx, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateURLSigningKey(ctx, []byte("second")); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second: %v, want ErrExists", err)
	}
	if k, err := s.URLSigningKey(ctx); err != nil || !bytes.Equal(k, []byte("first")) {
		t.Fatalf("read %q %v, want the first", k, err)
	}
}
