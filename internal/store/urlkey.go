package store

import "context"

// keyURLSigningKey holds the key that signs the URLs Gantry pre-signs (an
// asset's upload URL, an asset fetch by a worker), sealed by the secret
// store. One key for the installation, so any replica verifies what
// another signed.
const keyURLSigningKey = "url-signing-key"

// urlSigningKey is the stored form of the key: sealed bytes only.
type urlSigningKey struct {
	Sealed []byte `json:"sealed"`
}

// URLSigningKey returns the sealed URL signing key; ErrNotFound before the
// first replica created it.
func (s *Store) URLSigningKey(ctx context.Context) ([]byte, error) {
	k, _, err := get[urlSigningKey](ctx, s, s.key(keyURLSigningKey))
	return k.Sealed, err
}

// CreateURLSigningKey stores the sealed URL signing key unless one exists
// (ErrExists: another replica got there first; read theirs).
func (s *Store) CreateURLSigningKey(ctx context.Context, sealed []byte) error {
	_, err := s.create(ctx, s.key(keyURLSigningKey), urlSigningKey{Sealed: sealed})
	return err
}
