package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// rig is a started Service on a real embedded etcd with the file provider.
type rig struct {
	st   *store.Store
	svc  *Service
	keys string // the provider's keys directory
}

func newRig(t *testing.T, opts ...Option) *rig {
	t.Helper()
	st := testutil.StartEtcd(t)
	keys := filepath.Join(t.TempDir(), "keys")
	svc := NewService(st, NewFileMEK(keys), nil, opts...)
	if err := svc.Start(testutil.Context(t)); err != nil {
		t.Fatal(err)
	}
	return &rig{st: st, svc: svc, keys: keys}
}

// replica is another server over the same etcd and key files, with empty
// caches.
func (r *rig) replica(t *testing.T) *Service {
	t.Helper()
	svc := NewService(r.st, NewFileMEK(r.keys), nil)
	if err := svc.Start(testutil.Context(t)); err != nil {
		t.Fatal(err)
	}
	return svc
}

// putSecrets creates a function version of account with the secrets named,
// each sealed to the value "<name>=<value>", and returns their places.
func (r *rig) putSecrets(t *testing.T, account, fnID string, names ...string) []Place {
	t.Helper()
	ctx := testutil.Context(t)
	var sealed []store.SealedSecret
	var places []Place
	for _, n := range names {
		p := Place{Account: account, FunctionID: fnID, VersionID: fnID + "-v1", Name: n}
		s, err := r.svc.Seal(ctx, p, []byte(value(p)))
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, store.SealedSecret{Name: n, Account: account, NEK: s.NEK, Ciphertext: s.Ciphertext, HeadRevision: s.HeadRevision})
		places = append(places, p)
	}
	f := &model.Function{ID: fnID, VersionID: fnID + "-v1", NCAID: account, Name: fnID}
	if err := r.st.CreateFunction(ctx, f, sealed); err != nil {
		t.Fatal(err)
	}
	return places
}

func value(p Place) string { return "value-of-" + p.Name + "-in-" + p.FunctionID }

// openAll checks that every place's stored secret opens to its value.
func openAll(t *testing.T, st *store.Store, svc *Service, places []Place) {
	t.Helper()
	ctx := testutil.Context(t)
	for _, p := range places {
		sec, err := st.GetSecret(ctx, p.FunctionID, p.VersionID, p.Name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := svc.Open(ctx, p, Sealed{NEK: sec.NEK, Ciphertext: sec.Ciphertext})
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		if want := value(p); string(got) != want && !strings.HasPrefix(string(got), "updated-") {
			t.Fatalf("open %s: got %q, want %q", p, got, want)
		}
	}
}

func TestSealOpenBindsPlace(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := testutil.Context(t)
	here := Place{"acct", "fn", "v1", "TOKEN"}
	marker := []byte("marker-3f1c-plaintext")
	sealed, err := r.svc.Seal(ctx, here, marker)
	if err != nil {
		t.Fatal(err)
	}
	if sealed.NEK != 1 || sealed.HeadRevision == 0 {
		t.Fatalf("first seal of an account: NEK %d, head revision %d", sealed.NEK, sealed.HeadRevision)
	}
	if bytes.Contains(sealed.Ciphertext, marker) {
		t.Fatal("ciphertext contains the plaintext")
	}
	for _, svc := range []*Service{r.svc, r.replica(t)} {
		got, err := svc.Open(ctx, here, sealed)
		if err != nil || !bytes.Equal(got, marker) {
			t.Fatalf("open: %q %v", got, err)
		}
	}
	other, err := r.svc.Seal(ctx, Place{"acct2", "fn", "v1", "TOKEN"}, marker)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		place  Place
		sealed Sealed
		want   string
	}{
		{"other secret name", Place{"acct", "fn", "v1", "OTHER"}, sealed, "secret OTHER of function fn version v1 (account acct)"},
		{"other version", Place{"acct", "fn", "v2", "TOKEN"}, sealed, "version v2"},
		{"other account", Place{"acct2", "fn", "v1", "TOKEN"}, sealed, "account acct2"},
		{"shifted boundaries", Place{"acctf", "n", "v1", "TOKEN"}, sealed, "has no key version 1"},
		{"another account's ciphertext", here, other, "account acct"},
		{"key version that does not exist", here, Sealed{NEK: 7, Ciphertext: sealed.Ciphertext}, "has no key version 7"},
		{"truncated", here, Sealed{NEK: 1, Ciphertext: sealed.Ciphertext[:5]}, "key version 1"},
		{"tampered", here, Sealed{NEK: 1, Ciphertext: flip(sealed.Ciphertext)}, "key version 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.svc.Open(ctx, tc.place, tc.sealed)
			if !errors.Is(err, ErrOpen) {
				t.Fatalf("moved ciphertext opened: %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "moved, tampered with, or wrong key") {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func flip(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)-1] ^= 1
	return c
}

func TestSealKeyOpenKey(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := testutil.Context(t)
	key := []byte("signing-key-marker-9a7d")
	sealed, err := r.svc.SealKey(ctx, "admin-signing-key", key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.replica(t).OpenKey(ctx, "admin-signing-key", sealed)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("OpenKey: %q %v", got, err)
	}
	for _, tc := range []struct {
		name   string
		key    string
		sealed []byte
	}{
		{"other name", "other-key", sealed},
		{"garbage", "admin-signing-key", []byte("not sealed")},
		{"empty", "admin-signing-key", nil},
		{"tampered", "admin-signing-key", flip(sealed)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.svc.OpenKey(ctx, tc.key, tc.sealed); !errors.Is(err, ErrOpen) {
				t.Fatalf("OpenKey: %v", err)
			}
		})
	}
	if _, err := r.svc.RotateNEK(ctx, SystemAccount, nil); !errors.Is(err, ErrSystemAccount) {
		t.Fatalf("rotating the system account: %v", err)
	}
}

// TestNoPlaintextInEtcd dumps every key and value after sealing marker
// values and looks for the markers and for the key bytes, raw and base64.
func TestNoPlaintextInEtcd(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := testutil.Context(t)
	marker := "marker-51d2-secret-value"
	places := r.putSecrets(t, "acct", "fn", "A", "B")
	for _, p := range places {
		s, err := r.svc.Seal(ctx, p, []byte(marker))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.st.PutSecrets(ctx, p.FunctionID, p.VersionID, []store.SealedSecret{{Name: p.Name, Account: p.Account, NEK: s.NEK, Ciphertext: s.Ciphertext, HeadRevision: s.HeadRevision}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.svc.SealKey(ctx, "signing", []byte(marker)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.RotateMEK(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.RotateNEK(ctx, "acct", nil); err != nil {
		t.Fatal(err)
	}

	forbidden := map[string][]byte{"marker": []byte(marker)}
	for v := 1; v <= 2; v++ {
		mek, err := NewFileMEK(r.keys).Key(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		forbidden[fmt.Sprintf("MEK v%d", v)] = mek
	}
	neks, err := r.st.ListAccountNEKs(ctx, "acct")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neks {
		if len(n.Wrapped) == 0 {
			continue
		}
		key, err := r.svc.unwrap(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		forbidden[fmt.Sprintf("NEK v%d", n.Version)] = key
	}
	resp, err := r.st.Client().Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) < 5 {
		t.Fatalf("dump has only %d keys", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		for what, b := range forbidden {
			for _, form := range [][]byte{b, []byte(base64.StdEncoding.EncodeToString(b)), []byte(base64.RawURLEncoding.EncodeToString(b))} {
				if bytes.Contains(kv.Key, form) || bytes.Contains(kv.Value, form) {
					t.Errorf("etcd key %s holds the %s", kv.Key, what)
				}
			}
		}
	}
}

func TestStartChecksTheMasterKey(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := testutil.Context(t)
	// Another installation's key file in place of this one's.
	if err := os.WriteFile(filepath.Join(r.keys, "mek", "v1.key"), bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	err := NewService(r.st, NewFileMEK(r.keys), nil).Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "not the key this installation recorded") {
		t.Fatalf("started with the wrong MEK: %v", err)
	}
}

func TestConcurrentFirstSealsShareOneKey(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := testutil.Context(t)
	other := r.replica(t)
	errs := make(chan error, 2)
	sealed := make([]Sealed, 2)
	for i, svc := range []*Service{r.svc, other} {
		go func() {
			var err error
			sealed[i], err = svc.Seal(ctx, Place{Account: "new", Name: "X"}, []byte("x"))
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, svc := range []*Service{other, r.svc} {
		if _, err := svc.Open(ctx, Place{Account: "new", Name: "X"}, sealed[i]); err != nil {
			t.Fatalf("replica %d cannot open the other's value: %v", i, err)
		}
	}
	neks, err := r.st.ListAccountNEKs(ctx, "new")
	if err != nil || len(neks) != 1 {
		t.Fatalf("NEKs: %v %v", neks, err)
	}
}

// waitNoLock waits until the rotation lock is free, for tests that run a
// rotation right after another returned.
func waitNoLock(t *testing.T, st *store.Store) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() error {
		l, err := st.TryLockRotation(context.Background())
		if err != nil {
			return err
		}
		l.Unlock()
		return nil
	})
}
