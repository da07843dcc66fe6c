package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// Tests seal signing keys with real AES-256-GCM (testutil.KeySealer); the
// integrator swaps in secrets.Service, which has the same methods.
var _ KeySealer = (*testutil.KeySealer)(nil)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// assertNotStored fails if secret, raw or in a common encoding, appears in
// any key or value in etcd.
func assertNotStored(t *testing.T, st *store.Store, what string, secret []byte) {
	t.Helper()
	resp, err := st.Client().Get(context.Background(), "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		t.Fatal("etcd is empty; the check would prove nothing")
	}
	forms := [][]byte{secret,
		[]byte(base64.StdEncoding.EncodeToString(secret)),
		[]byte(base64.RawURLEncoding.EncodeToString(secret)),
		[]byte(base64.RawStdEncoding.EncodeToString(secret))}
	for _, kv := range resp.Kvs {
		for _, f := range forms {
			if bytes.Contains(kv.Key, f) || bytes.Contains(kv.Value, f) {
				t.Fatalf("%s found in etcd under %s", what, kv.Key)
			}
		}
	}
}
