package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gantry-dev/gantry/internal/testutil"
)

// mekHarness is one MEK provider for the shared cases: newStore makes a
// fresh, empty place for MEK versions and returns how to open a provider
// over it (each call is another server or replica seeing the same
// versions) and how to destroy one version behind the provider's back, as
// an operator may once it is retired.
type mekHarness struct {
	name     string
	newStore func(t *testing.T) (open func() MEKProvider, destroy func(v int))
}

func mekHarnesses() []mekHarness {
	return []mekHarness{
		{"file", func(t *testing.T) (func() MEKProvider, func(int)) {
			keys := filepath.Join(t.TempDir(), "keys")
			open := func() MEKProvider { return NewFileMEK(keys) }
			destroy := func(v int) {
				if err := os.Remove(NewFileMEK(keys).path(v)); err != nil {
					t.Fatal(err)
				}
			}
			return open, destroy
		}},
		{"openbao token", func(t *testing.T) (func() MEKProvider, func(int)) {
			fake, srv := newFakeOpenBaoKV(t, "root-token")
			token := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(token, []byte("root-token\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return openBao(t, OpenBaoConfig{Address: srv.URL, Mount: "kv", TokenFile: token}), fake.destroy
		}},
		{"openbao kubernetes", func(t *testing.T) (func() MEKProvider, func(int)) {
			fake, srv := newFakeOpenBaoKV(t, "root-token")
			jwt := filepath.Join(t.TempDir(), "jwt")
			if err := os.WriteFile(jwt, []byte("service-account-jwt\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return openBao(t, OpenBaoConfig{Address: srv.URL, Mount: "kv", KubernetesRole: "gantry", KubernetesJWTFile: jwt}), fake.destroy
		}},
	}
}

func openBao(t *testing.T, cfg OpenBaoConfig) func() MEKProvider {
	return func() MEKProvider {
		p, err := NewOpenBao(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// destroy drops version v's data, as `bao kv destroy` does.
func (f *fakeOpenBaoKV) destroy(v int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.versions[v-1] = nil
}

// TestMEKProviders runs the same cases over every MEK provider: versions,
// racing creates, and the secret store rotating onto the provider.
func TestMEKProviders(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(t *testing.T, open func() MEKProvider, destroy func(int))
	}{
		{"versions", mekVersions},
		{"racing creates", mekRacingCreates},
		{"service rotates onto it", mekServiceRotates},
	}
	for _, h := range mekHarnesses() {
		t.Run(h.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					open, destroy := h.newStore(t)
					c.run(t, open, destroy)
				})
			}
		})
	}
}

// mekVersions: an empty provider has no MEK; versions count up from 1,
// each a distinct 32-byte key; Latest is the highest; another provider
// over the same store reads the same keys; a missing version is an error.
func mekVersions(t *testing.T, open func() MEKProvider, _ func(int)) {
	ctx := testutil.Context(t)
	p := open()
	if _, _, err := p.Latest(ctx); !errors.Is(err, ErrNoMEK) {
		t.Fatalf("Latest of an empty provider = %v, want ErrNoMEK", err)
	}
	var keys [][]byte
	for want := 1; want <= 3; want++ {
		v, err := p.Create(ctx)
		if err != nil || v != want {
			t.Fatalf("Create = %d, %v; want %d", v, err, want)
		}
		k, err := p.Key(ctx, v)
		if err != nil || len(k) != keySize {
			t.Fatalf("Key(%d) = %d bytes, %v", v, len(k), err)
		}
		if slices.ContainsFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }) {
			t.Fatalf("version %d has the key of an earlier version", v)
		}
		keys = append(keys, k)
	}
	v, latest, err := p.Latest(ctx)
	if err != nil || v != 3 || !bytes.Equal(latest, keys[2]) {
		t.Fatalf("Latest = %d, %v; want 3 with its key", v, err)
	}
	again := open()
	for i, want := range keys {
		if k, err := again.Key(ctx, i+1); err != nil || !bytes.Equal(k, want) {
			t.Errorf("another provider's Key(%d) = %v, want the same key", i+1, err)
		}
	}
	if _, err := p.Key(ctx, 4); err == nil || !strings.HasPrefix(err.Error(), "secrets: ") {
		t.Errorf("Key of a missing version = %v, want a secrets: error", err)
	}
}

// mekRacingCreates: servers creating a version at once never get the same
// number; a loser gets an error (and rotation retries), not a duplicate.
func mekRacingCreates(t *testing.T, open func() MEKProvider, _ func(int)) {
	ctx := testutil.Context(t)
	const racers = 4
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  []int
		errs []error
	)
	for range racers {
		p := open()
		wg.Go(func() {
			v, err := p.Create(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			won = append(won, v)
		})
	}
	wg.Wait()
	slices.Sort(won)
	if len(won) == 0 || len(slices.Compact(slices.Clone(won))) != len(won) {
		t.Fatalf("racing creates got versions %v (errors %v): want at least one, none twice", won, errs)
	}
	for _, err := range errs {
		if !strings.HasPrefix(err.Error(), "secrets: ") {
			t.Errorf("a losing create: %v, want a secrets: error", err)
		}
	}
	if v, _, err := open().Latest(ctx); err != nil || v != won[len(won)-1] {
		t.Errorf("Latest = %d, %v; want %d", v, err, won[len(won)-1])
	}
}

// mekServiceRotates: the secret store starts on the provider, seals, rotates
// the MEK to a new version, and a fresh replica opens what was sealed with
// the old version destroyed.
func mekServiceRotates(t *testing.T, open func() MEKProvider, destroy func(int)) {
	ctx := testutil.Context(t)
	st := testutil.StartEtcd(t)
	start := func() *Service {
		s := NewService(st, open(), nil)
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	place := Place{Account: "acct", FunctionID: "fn", VersionID: "v", Name: "X"}
	sealed, err := start().Seal(ctx, place, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := start().RotateMEK(ctx, nil)
	if err != nil || res.Target != 2 || res.Rewrapped != 1 {
		t.Fatalf("rotation: %+v %v", res, err)
	}
	destroy(1)
	if got, err := start().Open(ctx, place, sealed); err != nil || string(got) != "x" {
		t.Fatalf("open after the rotation, version 1 destroyed: %q %v", got, err)
	}
}
