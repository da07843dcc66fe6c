// Package secrets is the encrypted secret store (ESS): envelope encryption
// with a two-tier key hierarchy and online rotation.
//
//   - The master key (MEK) is one 256-bit key, versioned, held by a provider
//     (a 0600 key file per version, or an OpenBao/Vault KV v2 path). It never
//     reaches etcd.
//   - Each account has its own AES-256-GCM key (NEK), versioned, stored in
//     etcd wrapped by a MEK version with the account and NEK version bound
//     as associated data.
//   - Secrets are sealed with the account's active NEK and bound, as
//     associated data, to the account, function version and secret name,
//     so a ciphertext copied to another place fails to open instead of
//     leaking into the wrong function.
//
// Rotating the MEK re-wraps NEK records only (no secret is rewritten);
// rotating an account's NEK re-encrypts that account's secrets. Both run
// online in guarded etcd transactions, record their progress, and resume
// with the same target version when run again after an interruption.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors.
var (
	// ErrOpen means a ciphertext does not decrypt under its key and place:
	// it was tampered with, moved from another secret, or sealed with
	// another key.
	ErrOpen = errors.New("secrets: ciphertext does not open here (moved, tampered with, or wrong key)")
	// ErrNoMEK is what a provider answers when it holds no MEK version yet.
	ErrNoMEK = errors.New("secrets: the provider holds no master key yet")
	// ErrRotationRunning means another rotation holds the lock.
	ErrRotationRunning = errors.New("secrets: another key rotation is running; wait for it (gantry keys status)")
	// ErrNoAccountKey means the account has no NEK yet: it gets one when its
	// first secret is sealed.
	ErrNoAccountKey = errors.New("secrets: the account has no key yet (it gets one when its first secret is sealed)")
	// ErrSystemAccount refuses to rotate the system account's NEK: the keys
	// it seals are held by their owners, outside the secret store, so a
	// rotation could not re-encrypt them.
	ErrSystemAccount = errors.New("secrets: the system account's key seals internal keys held outside the secret store and is not rotated by itself")
)

// SystemAccount is the reserved account whose NEK seals Gantry's internal
// keys (SealKey). Account ids are letters, digits and '-', so no tenant can
// be named this.
const SystemAccount = "_gantry"

// keySize is the size of every MEK and NEK: AES-256.
const keySize = 32

// Place identifies where a secret lives; it is the associated data.
type Place struct {
	Account, FunctionID, VersionID, Name string
}

func (p Place) aad() []byte {
	return lengthPrefixed(nil, p.Account, p.FunctionID, p.VersionID, p.Name)
}

// String names the place for error messages; it holds no secret.
func (p Place) String() string {
	if p.FunctionID == "" && p.VersionID == "" {
		return fmt.Sprintf("key %q of account %s", p.Name, p.Account)
	}
	return fmt.Sprintf("secret %s of function %s version %s (account %s)", p.Name, p.FunctionID, p.VersionID, p.Account)
}

// lengthPrefixed appends each string with its length, so distinct tuples
// never encode to the same bytes.
func lengthPrefixed(b []byte, parts ...string) []byte {
	for _, s := range parts {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
		b = append(b, '|')
	}
	return b
}

// nekAAD binds a wrapped NEK to its account and version.
func nekAAD(account string, version int) []byte {
	return lengthPrefixed([]byte("gantry-nek|"), account, strconv.Itoa(version))
}

// checkAAD binds a MEK check value to its version.
func checkAAD(version int) []byte {
	return lengthPrefixed([]byte("gantry-mek-check|"), strconv.Itoa(version))
}

// Sealed is a secret value sealed by Service.Seal: the NEK version and the
// ciphertext (nonce || ciphertext+tag).
type Sealed struct {
	NEK        int    `json:"nek"`
	Ciphertext []byte `json:"ciphertext"`
	// HeadRevision is the etcd revision of the account's NEK head at
	// sealing; store writes compare it (store.SealedSecret.HeadRevision).
	HeadRevision int64 `json:"-"`
}

// newAEAD builds AES-256-GCM from a 32-byte key.
func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("secrets: key is %d bytes, want %d", len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return aead, nil
}

// seal encrypts with a fresh random nonce: nonce || ciphertext+tag.
func seal(aead cipher.AEAD, plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("secrets: nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, plaintext, aad), nil
}

// open reverses seal; any failure is ErrOpen.
func open(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	ns := aead.NonceSize()
	if len(sealed) < ns+aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := aead.Open(nil, sealed[:ns], sealed[ns:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// newKey returns 32 random bytes.
func newKey() ([]byte, error) {
	k := make([]byte, keySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("secrets: generate key: %w", err)
	}
	return k, nil
}
