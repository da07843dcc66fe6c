package testutil

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"testing"
)

// KeySealer seals keys for tests with real encryption: AES-256-GCM under a
// random key, with the key's name as associated data, so a sealed key does
// not open under another name or another KeySealer. It has the methods of
// auth.KeySealer; the integrator swaps in secrets.Service, which has the
// same two, in the running server.
type KeySealer struct {
	aead cipher.AEAD
}

// NewKeySealer returns a sealer with a fresh random key.
func NewKeySealer(t testing.TB) *KeySealer {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatalf("testutil: %v", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	return &KeySealer{aead: aead}
}

// SealKey encrypts plaintext, bound to name.
func (s *KeySealer) SealKey(_ context.Context, name string, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plaintext, []byte(name)), nil
}

// OpenKey decrypts what SealKey sealed under the same name.
func (s *KeySealer) OpenKey(_ context.Context, name string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("testutil: sealed key too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
}
