// Package secrets seals function secrets before they are stored. Each value is
// encrypted with AES-256-GCM and bound, as associated data, to the account,
// function version and secret name it belongs to, so a ciphertext copied to
// another place fails to open instead of leaking into the wrong function.
//
// This is the first tier of the envelope scheme in the architecture: one key
// read from a provider (a 0600 key file for now). The per-account key tier and
// online rotation build on the Sealer seam without changing callers.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrOpen means a ciphertext does not decrypt under its key and place: it was
// tampered with, moved from another secret, or sealed with another key.
var ErrOpen = errors.New("secrets: ciphertext does not open here (moved, tampered with, or wrong key)")

// Place identifies where a secret lives; it is the associated data.
type Place struct {
	Account, FunctionID, VersionID, Name string
}

func (p Place) aad() []byte {
	// Length-prefixing keeps distinct places from encoding to the same bytes.
	var b []byte
	for _, s := range []string{p.Account, p.FunctionID, p.VersionID, p.Name} {
		b = fmt.Appendf(b, "%d:%s|", len(s), s)
	}
	return b
}

// Keyring holds the key that seals secrets.
type Keyring struct {
	aead  cipher.AEAD
	keyID string
}

// LoadOrCreateKeyFile reads a 32-byte key from path, creating it (mode 0600,
// directory 0700) on first start.
func LoadOrCreateKeyFile(path string) (*Keyring, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("secrets: generate key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("secrets: %w", err)
		}
		if err := os.WriteFile(path, key, 0o600); err != nil {
			return nil, fmt.Errorf("secrets: write key file: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("secrets: read key file: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("secrets: key file %s holds %d bytes, want 32", path, len(key))
	}
	return NewKeyring(key)
}

// NewKeyring builds a keyring from a 32-byte key.
func NewKeyring(key []byte) (*Keyring, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	sum := sha256.Sum256(key)
	// The key id is a fingerprint, safe to store and log: it names the key
	// without revealing it.
	return &Keyring{aead: aead, keyID: "file:" + hex.EncodeToString(sum[:4])}, nil
}

// KeyID names the key that Seal uses.
func (k *Keyring) KeyID() string { return k.keyID }

// Seal encrypts plaintext for place. The output is nonce || ciphertext+tag.
func (k *Keyring) Seal(place Place, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("secrets: nonce: %w", err)
	}
	return k.aead.Seal(nonce, nonce, plaintext, place.aad()), nil
}

// Open decrypts a ciphertext sealed for place.
func (k *Keyring) Open(place Place, sealed []byte) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < ns+k.aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], place.aad())
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}
