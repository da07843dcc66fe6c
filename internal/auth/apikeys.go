package auth

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/store"
)

// APIKeyStore is what the API key service reads and writes.
type APIKeyStore interface {
	CreateAPIKey(ctx context.Context, k *store.APIKey) error
	GetAPIKey(ctx context.Context, id string) (store.APIKey, error)
	ListAPIKeys(ctx context.Context) ([]store.APIKey, error)
	UpdateAPIKey(ctx context.Context, k *store.APIKey) error
}

var _ APIKeyStore = (*store.Store)(nil)

// Errors of the API key service.
var (
	// ErrKeyNotFound means no key with that id exists in the caller's
	// account (it may exist in another; callers answer 404 either way).
	ErrKeyNotFound = errors.New("auth: API key not found")
	// ErrUnknownScope means a scope Gantry does not know was asked for.
	ErrUnknownScope = errors.New("auth: unknown scope")
)

// APIKeyPrefix starts every API key value, as NVCF's do, so a leaked key is
// recognisable (and secret scanners find it).
const APIKeyPrefix = "nvapi-"

// Shape of a value: APIKeyPrefix, the key id as 32 hex digits (128 random
// bits, not secret: it is the id the API lists and revokes by), then 256
// random secret bits as 43 base64url characters. The id lets Verify read the
// one key it names instead of scanning.
const (
	keyIDBytes     = 16
	keySecretBytes = 32
	keyIDLen       = 2 * keyIDBytes
	keyValueLen    = len(APIKeyPrefix) + keyIDLen + (keySecretBytes*8+5)/6
)

// MaxKeyCacheTTL bounds how long a verified key is trusted without a store
// read, and so how long a revocation takes to reach every replica.
const MaxKeyCacheTTL = time.Second

// maxCachedKeys bounds the verified-key cache; it is cleared when full and
// refills from the store.
const maxCachedKeys = 10000

// APIKeysConfig tunes the API key service. Zero values take the defaults.
type APIKeysConfig struct {
	// CacheTTL is how long a verified key is trusted without a store read;
	// default and maximum MaxKeyCacheTTL, negative disables the cache.
	CacheTTL time.Duration
	Now      func() time.Time
}

// APIKeys creates, verifies, lists and revokes API keys. Keys are checked
// against their stored SHA-256; verified keys are cached for at most a
// second, so a check usually costs one hash and a map lookup, and a
// revocation on any replica is honoured everywhere within that second (on
// the revoking replica at once).
type APIKeys struct {
	st  APIKeyStore
	cfg APIKeysConfig

	mu    sync.RWMutex
	cache map[[sha256.Size]byte]cachedKey
}

type cachedKey struct {
	p     Principal
	until time.Time
}

var _ Authenticator = (*APIKeys)(nil)

// NewAPIKeys builds the API key service over st.
func NewAPIKeys(st APIKeyStore, cfg APIKeysConfig) *APIKeys {
	if cfg.CacheTTL == 0 || cfg.CacheTTL > MaxKeyCacheTTL {
		cfg.CacheTTL = MaxKeyCacheTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &APIKeys{st: st, cfg: cfg, cache: map[[sha256.Size]byte]cachedKey{}}
}

// Create stores a new key from spec, which says the account, what the key
// may do and who asked; Create fills in the id, hash, status and creation
// time. Scopes may carry the "apikey:" prefix and default to
// DefaultAPIKeyScopes; they are stored plain. It returns the stored key and
// its value, which exists nowhere else: show it once and forget it.
func (k *APIKeys) Create(ctx context.Context, spec store.APIKey) (store.APIKey, string, error) {
	if spec.Account == "" {
		return store.APIKey{}, "", errors.New("auth: an API key needs an account")
	}
	now := k.cfg.Now().UTC()
	if !spec.ExpiresAt.IsZero() && !spec.ExpiresAt.After(now) {
		return store.APIKey{}, "", errors.New("auth: an API key cannot expire in the past")
	}
	scopes, err := NormalizeScopes(spec.Scopes)
	if err != nil {
		return store.APIKey{}, "", err
	}
	raw := make([]byte, keyIDBytes+keySecretBytes)
	if _, err := rand.Read(raw); err != nil {
		return store.APIKey{}, "", fmt.Errorf("auth: %w", err)
	}
	id := hex.EncodeToString(raw[:keyIDBytes])
	value := APIKeyPrefix + id + base64.RawURLEncoding.EncodeToString(raw[keyIDBytes:])
	clear(raw)
	// A fast hash is right here: the value carries 256 random bits, so no
	// amount of guessing speed makes a brute force feasible, and a slow
	// password hash would cost every request.
	sum := sha256.Sum256([]byte(value))
	spec.ID, spec.Hash, spec.Scopes = id, sum[:], scopes
	spec.Status, spec.CreatedAt, spec.RevokedAt = store.APIKeyActive, now, time.Time{}
	if err := k.st.CreateAPIKey(ctx, &spec); err != nil {
		return store.APIKey{}, "", fmt.Errorf("auth: store API key: %w", err)
	}
	return spec, value, nil
}

// NormalizeScopes returns scopes without the "apikey:" prefix and without
// repeats, in the order given; nil or empty means DefaultAPIKeyScopes. A
// scope Gantry does not know is ErrUnknownScope.
func NormalizeScopes(scopes []string) ([]string, error) {
	if len(scopes) == 0 {
		return slices.Clone(DefaultAPIKeyScopes), nil
	}
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		name, ok := ParseScope(s)
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownScope, s)
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// Authenticate implements Authenticator for API keys.
func (k *APIKeys) Authenticate(r *http.Request) (Principal, error) {
	tok, ok := BearerToken(r)
	if !ok {
		return Principal{}, ErrNoCredential
	}
	return k.Verify(r.Context(), tok)
}

// Verify checks an API key value. A value of the wrong shape, an unknown
// id, a wrong secret, or a revoked or expired key wraps ErrBadCredential.
func (k *APIKeys) Verify(ctx context.Context, value string) (Principal, error) {
	id, ok := parseKeyValue(value)
	if !ok {
		return Principal{}, fmt.Errorf("%w: not an API key value", ErrBadCredential)
	}
	sum := sha256.Sum256([]byte(value))
	now := k.cfg.Now()
	k.mu.RLock()
	c, hit := k.cache[sum]
	k.mu.RUnlock()
	if hit && now.Before(c.until) && (c.p.ExpiresAt.IsZero() || now.Before(c.p.ExpiresAt)) {
		return c.p, nil
	}

	stored, err := k.st.GetAPIKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, fmt.Errorf("%w: unknown API key", ErrBadCredential)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("auth: read API key: %w", err)
	}
	switch {
	case subtle.ConstantTimeCompare(sum[:], stored.Hash) != 1:
		return Principal{}, fmt.Errorf("%w: unknown API key", ErrBadCredential)
	case stored.Status != store.APIKeyActive:
		k.forget(id)
		return Principal{}, fmt.Errorf("%w: API key %s is revoked", ErrBadCredential, id)
	case !stored.ExpiresAt.IsZero() && !now.Before(stored.ExpiresAt):
		k.forget(id)
		return Principal{}, fmt.Errorf("%w: API key %s expired", ErrBadCredential, id)
	}
	p := keyPrincipal(stored)
	if k.cfg.CacheTTL > 0 {
		k.mu.Lock()
		if len(k.cache) >= maxCachedKeys {
			clear(k.cache)
		}
		k.cache[sum] = cachedKey{p: p, until: now.Add(k.cfg.CacheTTL)}
		k.mu.Unlock()
	}
	return p, nil
}

// parseKeyValue returns the key id inside value, if value has the shape.
func parseKeyValue(value string) (string, bool) {
	if len(value) != keyValueLen || !strings.HasPrefix(value, APIKeyPrefix) {
		return "", false
	}
	id := value[len(APIKeyPrefix) : len(APIKeyPrefix)+keyIDLen]
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	return id, true
}

// keyPrincipal is who a stored key speaks for.
func keyPrincipal(k store.APIKey) Principal {
	subject := k.OwnerID
	if subject == "" {
		subject = "apikey:" + k.ID
	}
	fns := k.Functions
	if fns == nil && k.NoOwnFunctions {
		fns = []string{}
	}
	p := NewPrincipal(k.Account, subject, k.Scopes).LimitFunctions(fns).LimitShared(k.SharedFunctions)
	p.Kind, p.CredentialID, p.ExpiresAt = KindAPIKey, k.ID, k.ExpiresAt
	return p
}

// forget drops every cached verification of key id.
func (k *APIKeys) forget(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for sum, c := range k.cache {
		if c.p.CredentialID == id {
			delete(k.cache, sum)
		}
	}
}

// List returns the keys of account, oldest first.
func (k *APIKeys) List(ctx context.Context, account string) ([]store.APIKey, error) {
	all, err := k.st.ListAPIKeys(ctx)
	if err != nil {
		return nil, err
	}
	own := slices.DeleteFunc(all, func(key store.APIKey) bool { return key.Account != account })
	slices.SortStableFunc(own, func(a, b store.APIKey) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return own, nil
}

// Revoke revokes key id of account at once: this replica stops accepting it
// before Revoke returns, every other within MaxKeyCacheTTL. Revoking a
// revoked key is no error. Another account's key is ErrKeyNotFound.
func (k *APIKeys) Revoke(ctx context.Context, account, id string) (store.APIKey, error) {
	for ctx.Err() == nil {
		key, err := k.st.GetAPIKey(ctx, id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && key.Account != account) {
			return store.APIKey{}, ErrKeyNotFound
		}
		if err != nil {
			return store.APIKey{}, err
		}
		if key.Status == store.APIKeyRevoked {
			k.forget(id)
			return key, nil
		}
		key.Status, key.RevokedAt = store.APIKeyRevoked, k.cfg.Now().UTC()
		err = k.st.UpdateAPIKey(ctx, &key)
		if errors.Is(err, store.ErrConflict) {
			continue // changed since read; read again
		}
		if err != nil {
			return store.APIKey{}, err
		}
		k.forget(id)
		return key, nil
	}
	return store.APIKey{}, ctx.Err()
}
