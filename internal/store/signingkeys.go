package store

import (
	"context"
	"encoding/json"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Admin-token signing keys: signing-keys/<kid> holds each key, and
// signing-key-active names the one new tokens are signed with. The pointer is
// a key of its own so that creating the first key, or rotating, is one guarded
// transaction: two replicas starting at once cannot both install a key.
const (
	prefixSigningKeys   = "signing-keys/"
	keyActiveSigningKey = "signing-key-active"
)

// SigningKey is one admin-token signing key. The private half is stored only
// sealed, by a sealer the store knows nothing about; the public half is
// plain, since verifying needs nothing secret.
type SigningKey struct {
	ID        string `json:"kid"`
	Algorithm string `json:"alg"`
	// PublicKey is the SEC 1 uncompressed point.
	PublicKey []byte `json:"publicKey"`
	// SealedPrivateKey is the sealed raw private scalar.
	SealedPrivateKey []byte    `json:"sealedPrivateKey"`
	CreatedAt        time.Time `json:"createdAt"`
	// RetiredAt is when a newer key replaced this one; zero while it is
	// active. A retired key signs nothing more.
	RetiredAt time.Time `json:"retiredAt,omitzero"`
	// NotAfter is when a retired key stops verifying: every token it signed
	// has expired by then. Zero while the key is active.
	NotAfter time.Time `json:"notAfter,omitzero"`
	Revision int64     `json:"-"`
}

// activeSigningKey is the value of the pointer key.
type activeSigningKey struct {
	ID string `json:"kid"`
}

func (s *Store) signingKeyKey(kid string) string { return s.key(prefixSigningKeys, kid) }

// GetSigningKey reads one signing key by its key id.
func (s *Store) GetSigningKey(ctx context.Context, kid string) (SigningKey, error) {
	k, rev, err := get[SigningKey](ctx, s, s.signingKeyKey(kid))
	k.Revision = rev
	return k, err
}

// ListSigningKeys returns every signing key, active and retired, in key id
// order.
func (s *Store) ListSigningKeys(ctx context.Context) ([]SigningKey, error) {
	out, revs, err := list[SigningKey](ctx, s, s.key(prefixSigningKeys))
	for i := range out {
		out[i].Revision = revs[i]
	}
	return out, err
}

// ActiveSigningKey returns the key new tokens are signed with; ErrNotFound
// before the first one is installed.
func (s *Store) ActiveSigningKey(ctx context.Context) (SigningKey, error) {
	ptr, _, err := get[activeSigningKey](ctx, s, s.key(keyActiveSigningKey))
	if err != nil {
		return SigningKey{}, err
	}
	return s.GetSigningKey(ctx, ptr.ID)
}

// RotateSigningKey installs next as the active key in one transaction. With
// retire nil it is the first key, and the store must hold no active key yet.
// Otherwise retire is the active key as read (its RetiredAt and NotAfter set
// by the caller) and must be unchanged since. Either way a racing writer
// that got there first makes this ErrConflict; re-read the active key.
func (s *Store) RotateSigningKey(ctx context.Context, next *SigningKey, retire *SigningKey) error {
	ptrKey := s.key(keyActiveSigningKey)
	nextOp, err := putOp(s.signingKeyKey(next.ID), next)
	if err != nil {
		return err
	}
	ptrOp, err := putOp(ptrKey, activeSigningKey{ID: next.ID})
	if err != nil {
		return err
	}
	guards := []clientv3.Cmp{notExists(s.signingKeyKey(next.ID))}
	ops := []clientv3.Op{nextOp, ptrOp}
	if retire == nil {
		guards = append(guards, notExists(ptrKey))
	} else {
		cur, err := json.Marshal(activeSigningKey{ID: retire.ID})
		if err != nil {
			return err
		}
		oldOp, err := putOp(s.signingKeyKey(retire.ID), retire)
		if err != nil {
			return err
		}
		guards = append(guards,
			clientv3.Compare(clientv3.Value(ptrKey), "=", string(cur)),
			atRevision(s.signingKeyKey(retire.ID), retire.Revision))
		ops = append(ops, oldOp)
	}
	rev, err := s.txn(ctx, guards, ops, ErrConflict)
	if err != nil {
		return err
	}
	next.Revision = rev
	if retire != nil {
		retire.Revision = rev
	}
	return nil
}

// DeleteSigningKey removes a retired key if it is unchanged since read, else
// ErrConflict. The active key is never deleted: the pointer guard refuses.
func (s *Store) DeleteSigningKey(ctx context.Context, k SigningKey) error {
	cur, err := json.Marshal(activeSigningKey{ID: k.ID})
	if err != nil {
		return err
	}
	_, err = s.txn(ctx,
		[]clientv3.Cmp{
			atRevision(s.signingKeyKey(k.ID), k.Revision),
			clientv3.Compare(clientv3.Value(s.key(keyActiveSigningKey)), "!=", string(cur)),
		},
		[]clientv3.Op{clientv3.OpDelete(s.signingKeyKey(k.ID))}, ErrConflict)
	return err
}
