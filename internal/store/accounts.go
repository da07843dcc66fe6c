package store

import (
	"context"
	"time"
)

// Account is a tenant (NVCF's ncaId). Every other resource belongs to one.
type Account struct {
	ID        string    `json:"ncaId"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// EnsureAccount creates the account if it does not exist yet.
func (s *Store) EnsureAccount(ctx context.Context, a Account) error {
	_, err := s.create(ctx, s.key(prefixAccounts, a.ID), a)
	if err == ErrExists {
		return nil
	}
	return err
}

// GetAccount reads one account.
func (s *Store) GetAccount(ctx context.Context, id string) (Account, error) {
	a, _, err := get[Account](ctx, s, s.key(prefixAccounts, id))
	return a, err
}

// ListAccounts returns every account.
func (s *Store) ListAccounts(ctx context.Context) ([]Account, error) {
	out, _, err := list[Account](ctx, s, s.key(prefixAccounts))
	return out, err
}
