package auth

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/store"
)

// gcmSealer is a KeySealer that really encrypts: AES-256-GCM under a random
// key, with the name as associated data so a sealed key does not open under
// another name. The integrator swaps in secrets.Service, which has the same
// two methods, in the running server.
type gcmSealer struct {
	aead cipher.AEAD
}

var _ KeySealer = (*gcmSealer)(nil)

func newGCMSealer(t testing.TB) *gcmSealer {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return &gcmSealer{aead: aead}
}

func (s *gcmSealer) SealKey(_ context.Context, name string, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plaintext, []byte(name)), nil
}

func (s *gcmSealer) OpenKey(_ context.Context, name string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed key too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
}

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
