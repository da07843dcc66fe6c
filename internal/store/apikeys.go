package store

import (
	"context"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

// prefixAPIKeys holds API keys by id: api-keys/<id>. The id travels inside
// the key's value, so checking a key is one keyed read, never a scan.
const prefixAPIKeys = "api-keys/"

// API key statuses as stored. An expired key keeps its stored status; the
// API reports it EXPIRED from ExpiresAt.
const (
	APIKeyActive  = "ACTIVE"
	APIKeyRevoked = "REVOKED"
)

// APIKey is one API key. The value itself is never stored, only its SHA-256.
type APIKey struct {
	ID      string `json:"id"`
	Account string `json:"ncaId"`
	// Hash is the SHA-256 of the whole value.
	Hash        []byte `json:"hash"`
	Description string `json:"description,omitempty"`
	// Scopes are plain scope names (no "apikey:" prefix).
	Scopes []string `json:"scopes"`
	// Functions limits the key to these function ids; nil means every
	// function of the account.
	Functions []string `json:"functions,omitempty"`
	// NoOwnFunctions, with Functions nil, means the key reaches none of its
	// account's own functions (it names only authorized-functions).
	NoOwnFunctions bool `json:"noOwnFunctions,omitempty"`
	// SharedFunctions means the key reaches every function other accounts
	// share with its account, not only those listed in Functions.
	SharedFunctions bool `json:"sharedFunctions,omitempty"`
	// Policies and AudienceServiceIDs are the authorizations as requested,
	// kept so that listing shows what the key was created with.
	Policies           []model.APIKeyPolicy `json:"policies,omitempty"`
	AudienceServiceIDs []string             `json:"audienceServiceIds,omitempty"`
	Status             string               `json:"status"`
	CreatedAt          time.Time            `json:"createdAt"`
	// ExpiresAt is zero for a key that does not expire.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	// Who asked for the key, from the Key-Issuer-Service, Key-Issuer-Id and
	// Key-Owner-Id headers.
	IssuerService string `json:"issuerService,omitempty"`
	IssuerID      string `json:"issuerId,omitempty"`
	OwnerID       string `json:"ownerId,omitempty"`
	Revision      int64  `json:"-"`
}

func (s *Store) apiKeyKey(id string) string { return s.key(prefixAPIKeys, id) }

// CreateAPIKey stores a new key; ErrExists if its id is taken.
func (s *Store) CreateAPIKey(ctx context.Context, k *APIKey) error {
	rev, err := s.create(ctx, s.apiKeyKey(k.ID), k)
	if err != nil {
		return err
	}
	k.Revision = rev
	return nil
}

// GetAPIKey reads one key by id.
func (s *Store) GetAPIKey(ctx context.Context, id string) (APIKey, error) {
	k, rev, err := get[APIKey](ctx, s, s.apiKeyKey(id))
	k.Revision = rev
	return k, err
}

// ListAPIKeys returns the keys of every account, in id order. Callers keep
// the ones of the account they serve.
func (s *Store) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	out, revs, err := list[APIKey](ctx, s, s.key(prefixAPIKeys))
	for i := range out {
		out[i].Revision = revs[i]
	}
	return out, err
}

// UpdateAPIKey writes k if unchanged since it was read at k.Revision, else
// ErrConflict.
func (s *Store) UpdateAPIKey(ctx context.Context, k *APIKey) error {
	rev, err := s.update(ctx, s.apiKeyKey(k.ID), k, k.Revision)
	if err != nil {
		return err
	}
	k.Revision = rev
	return nil
}
