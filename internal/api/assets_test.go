package api_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/api"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestAssetSweep: the sweep deletes expired assets (record and content)
// and content whose record is gone, once older than an upload URL; it
// keeps live assets and young content.
func TestAssetSweep(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	nc, err := nats.Connect(testutil.StartNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if err := bus.Setup(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, bus.AssetsBucket)
	if err != nil {
		t.Fatal(err)
	}
	real := time.Now().UTC()
	put := func(account, id string) {
		if _, err := bus.PutObject(ctx, js, obs, bus.AssetObject(account, id), bytes.NewReader([]byte(id))); err != nil {
			t.Fatal(err)
		}
	}
	record := func(id string, expires time.Time) {
		if err := st.CreateAsset(ctx, &model.Asset{ID: id, NCAID: "acct", ContentType: "text/plain", Description: id,
			CreatedAt: real, ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	record("expired", real.Add(time.Hour))
	put("acct", "expired")
	record("live", real.Add(48*time.Hour))
	put("acct", "live")
	put("acct", "orphan")

	// Two hours on: "expired" is past its hour, and the orphan's content
	// is older than an upload URL (one hour).
	clock := real.Add(2 * time.Hour)
	a := api.NewAssets(api.AssetsConfig{Store: st, JS: js, Objects: obs, Now: func() time.Time { return clock }})
	n, err := a.SweepOnce(ctx)
	if err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v; want 1 asset deleted", n, err)
	}
	if _, err := st.GetAsset(ctx, "acct", "expired"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the expired record: %v", err)
	}
	if _, err := st.GetAsset(ctx, "acct", "live"); err != nil {
		t.Errorf("the live record: %v", err)
	}
	for id, want := range map[string]bool{"expired": false, "live": true, "orphan": false} {
		_, err := obs.GetInfo(ctx, bus.AssetObject("acct", id))
		if got := err == nil; got != want {
			t.Errorf("content of %s kept: %v (%v), want %v", id, got, err, want)
		}
	}

	// Content younger than an upload URL stays even without a record: its
	// asset may have been created after the sweep listed the records.
	put("acct", "young")
	clock = time.Now().UTC()
	if _, err := a.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := obs.GetInfo(ctx, bus.AssetObject("acct", "young")); err != nil {
		t.Errorf("young content was deleted: %v", err)
	}
}
