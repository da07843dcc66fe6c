package registry_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestBootstrapExchangeVerifyRenewRevoke(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	now := time.Now()
	r := registry.New(st, registry.Config{Now: func() time.Time { return now }, CacheTTL: time.Nanosecond})

	a, boot, _, err := r.Register(ctx, model.Cluster{Name: "us-east", GroupName: "prod", NCAID: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _, err := r.Register(ctx, model.Cluster{Name: "us-west", GroupName: "prod", NCAID: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	if a.GroupID == "" || a.GroupID != b.GroupID {
		t.Fatalf("clusters of one group have group ids %q and %q", a.GroupID, b.GroupID)
	}

	cred, err := r.Exchange(ctx, boot)
	if err != nil || cred.ClusterID != a.ID {
		t.Fatalf("exchange: %+v %v", cred, err)
	}
	if _, err := r.Exchange(ctx, boot); !errors.Is(err, registry.ErrBadToken) {
		t.Fatalf("second exchange of one bootstrap token: %v", err)
	}
	if id, ok := r.Verify(ctx, cred.Credential); !ok || id != a.ID {
		t.Fatalf("verify: %q %v", id, ok)
	}
	for _, tc := range []struct{ name, tok string }{
		{"empty", ""},
		{"garbage", "nope"},
		{"bootstrap token is not a credential", boot},
		{"other cluster's id with this secret", strings.Replace(cred.Credential, a.ID, b.ID, 1)},
		{"tampered secret", cred.Credential + "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if id, ok := r.Verify(ctx, tc.tok); ok {
				t.Fatalf("accepted as cluster %s", id)
			}
		})
	}

	renewed, err := r.Renew(ctx, cred.Credential)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Verify(ctx, renewed.Credential); !ok {
		t.Fatal("renewed credential rejected")
	}
	if _, ok := r.Verify(ctx, cred.Credential); !ok {
		t.Fatal("previous credential rejected during the overlap")
	}
	now = now.Add(10 * time.Minute)
	if _, ok := r.Verify(ctx, cred.Credential); ok {
		t.Fatal("previous credential still accepted after the overlap")
	}

	// Tokens are stored only as hashes.
	kvs, err := st.Client().Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs.Kvs {
		for _, tok := range []string{boot, cred.Credential, renewed.Credential} {
			secret := tok[strings.LastIndexByte(tok, '.')+1:]
			if strings.Contains(string(kv.Value), secret) {
				t.Fatalf("etcd key %s holds a token in plaintext", kv.Key)
			}
		}
	}

	if err := r.Deregister(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Verify(ctx, renewed.Credential); ok {
		t.Fatal("credential of a deleted cluster still accepted")
	}
}

func TestBootstrapTokenExpires(t *testing.T) {
	st := testutil.StartEtcd(t)
	ctx := testutil.Context(t)
	now := time.Now()
	r := registry.New(st, registry.Config{BootstrapTTL: time.Minute, Now: func() time.Time { return now }})
	_, boot, _, err := r.Register(ctx, model.Cluster{Name: "late", GroupName: "g", NCAID: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := r.Exchange(ctx, boot); !errors.Is(err, registry.ErrBadToken) {
		t.Fatalf("expired bootstrap token: %v", err)
	}
}
