package bus_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/bus"
)

func TestAssetGrantRoundTrip(t *testing.T) {
	t.Parallel()
	exp := time.Unix(1_900_000_000, 0)
	gs := []bus.AssetGrant{{ID: "a-1", Expires: exp, Signature: "c2ln"}, {ID: "b", Expires: exp, Signature: "x_y-z"}}
	header := gs[0].String() + "," + gs[1].String()
	got, err := bus.ParseAssetGrants(header)
	if err != nil || len(got) != 2 || got[0] != gs[0] || got[1] != gs[1] {
		t.Fatalf("parse %q: %+v %v", header, got, err)
	}
	for _, bad := range []string{"a;1", "a.b;1;s", "a;x;s", "a;1;", "a;1;s;t"} {
		if _, err := bus.ParseAssetGrant(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestIsAgentInbox(t *testing.T) {
	t.Parallel()
	for subject, want := range map[string]bool{
		bus.AgentInboxPrefix("c1") + ".abc.x1": true,
		bus.AgentInboxPrefix("c1"):             false,
		"_INBOX.abc":                           false,
		bus.ReplyPrefix("gw") + "call":         false,
		"_GANTRY_INBOX.*.x":                    false,
	} {
		if got := bus.IsAgentInbox(subject); got != want {
			t.Errorf("IsAgentInbox(%q) = %v, want %v", subject, got, want)
		}
	}
}

// TestAgentsCannotReadAssets: an agent may ask a gateway for an asset but
// cannot read the assets object store itself, whose content belongs to
// every account.
func TestAgentsCannotReadAssets(t *testing.T) {
	env := startAuthEnv(t)
	ctx := testContext(t, 30*time.Second)
	obs, err := env.js.ObjectStore(ctx, bus.AssetsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: bus.AssetObject("acct", "a1")}, bytes.NewReader([]byte("private"))); err != nil {
		t.Fatal(err)
	}
	nc := env.connectAgent(t, "a", tokenA)
	if err := nc.Publish(bus.AssetFetchSubject, nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil || nc.LastError() != nil {
		t.Fatalf("asking for an asset: %v %v", err, nc.LastError())
	}
	js, _ := jetstream.New(nc)
	short := testContext(t, 500*time.Millisecond)
	if _, err := js.ObjectStore(short, bus.AssetsBucket); err == nil {
		t.Fatal("an agent bound the assets object store")
	}
	_ = nc.Flush()
	if err := nc.LastError(); !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "OBJ_"+bus.AssetsBucket) {
		t.Fatalf("last error %v, want a permission violation on the assets store", err)
	}
}
