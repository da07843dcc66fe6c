package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/gantry-dev/gantry/internal/store"
)

// URLKeyStore keeps the sealed URL signing key.
type URLKeyStore interface {
	URLSigningKey(ctx context.Context) ([]byte, error)
	CreateURLSigningKey(ctx context.Context, sealed []byte) error
}

var _ URLKeyStore = (*store.Store)(nil)

// Errors of URLSigner.Verify.
var (
	// ErrURLSignature: the signature does not match what was signed (the
	// URL was altered, or was never Gantry's).
	ErrURLSignature = errors.New("auth: URL signature does not match")
	// ErrURLExpired: an authentic signature past its expiry.
	ErrURLExpired = errors.New("auth: signed URL expired")
)

// urlKeyName binds the sealed key to its use.
const urlKeyName = "url-signing-key"

// URLSigner signs what Gantry hands out instead of a credential: the
// pre-signed upload URL of an asset (the client PUTs to it with no
// Authorization, as to NVCF's pre-signed S3 URL) and the fetch tokens a
// worker presents for a call's assets. A signature is HMAC-SHA256 over a
// purpose, the parts it binds (account, asset id) and the expiry, with one
// 256-bit key per installation, created by the first replica and kept in
// etcd sealed by the secret store, so every replica verifies what any
// signed.
type URLSigner struct {
	key []byte
	now func() time.Time
}

// NewURLSigner signs with key (32 random bytes; tests).
func NewURLSigner(key []byte) *URLSigner { return &URLSigner{key: key, now: time.Now} }

// LoadURLSigner reads the installation's URL signing key, creating it on
// first use. Two replicas starting at once both end with the one stored.
func LoadURLSigner(ctx context.Context, st URLKeyStore, sealer KeySealer) (*URLSigner, error) {
	for range 2 {
		sealed, err := st.URLSigningKey(ctx)
		if err == nil {
			key, err := sealer.OpenKey(ctx, urlKeyName, sealed)
			if err != nil {
				return nil, fmt.Errorf("auth: open the URL signing key: %w", err)
			}
			return NewURLSigner(key), nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("auth: URL signing key: %w", err)
		}
		if sealed, err = sealer.SealKey(ctx, urlKeyName, key); err != nil {
			return nil, fmt.Errorf("auth: seal the URL signing key: %w", err)
		}
		switch err := st.CreateURLSigningKey(ctx, sealed); {
		case err == nil:
			return NewURLSigner(key), nil
		case !errors.Is(err, store.ErrExists):
			return nil, err
		}
		// Another replica stored one first: use theirs.
	}
	return nil, errors.New("auth: the URL signing key could not be read or created")
}

// Sign returns the base64url signature of purpose, parts and expires.
func (s *URLSigner) Sign(purpose string, expires time.Time, parts ...string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac(purpose, expires, parts))
}

// Verify checks sig against purpose, parts and expires: ErrURLSignature
// when it does not match, ErrURLExpired when it matches but expires has
// passed.
func (s *URLSigner) Verify(sig, purpose string, expires time.Time, parts ...string) error {
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(purpose, expires, parts)) {
		return ErrURLSignature
	}
	if !s.now().Before(expires) {
		return ErrURLExpired
	}
	return nil
}

// mac is HMAC-SHA256 over the length-prefixed purpose and parts and the
// expiry in Unix seconds, so no two different inputs sign the same bytes.
func (s *URLSigner) mac(purpose string, expires time.Time, parts []string) []byte {
	m := hmac.New(sha256.New, s.key)
	var b []byte
	for _, p := range append([]string{purpose}, parts...) {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(expires.Unix()))
	m.Write(b)
	return m.Sum(nil)
}
