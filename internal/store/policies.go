package store

import (
	"context"

	"github.com/gantry-dev/gantry/internal/policy"
)

// prefixPolicies holds schedule policies: policies/<policyID>. It lives here
// rather than beside the other prefixes in store.go so the resource stays in
// one file.
const prefixPolicies = "policies/"

func (s *Store) policyKey(id string) string { return s.key(prefixPolicies, id) }

// CreatePolicy stores a new schedule policy; ErrExists if its id is taken.
func (s *Store) CreatePolicy(ctx context.Context, p *policy.Policy) error {
	rev, err := s.create(ctx, s.policyKey(p.ID), p)
	if err != nil {
		return err
	}
	p.Revision = rev
	return nil
}

// GetPolicy reads one schedule policy.
func (s *Store) GetPolicy(ctx context.Context, id string) (policy.Policy, error) {
	p, rev, err := get[policy.Policy](ctx, s, s.policyKey(id))
	p.Revision = rev
	return p, err
}

// ListPolicies returns the schedule policies of every account, in id order.
// The scheduler reads them all once per pass and picks per function with
// policy.Select.
func (s *Store) ListPolicies(ctx context.Context) ([]policy.Policy, error) {
	out, revs, err := list[policy.Policy](ctx, s, s.key(prefixPolicies))
	for i := range out {
		out[i].Revision = revs[i]
	}
	return out, err
}

// UpdatePolicy writes p if unchanged since it was read at p.Revision, else
// ErrConflict.
func (s *Store) UpdatePolicy(ctx context.Context, p *policy.Policy) error {
	rev, err := s.update(ctx, s.policyKey(p.ID), p, p.Revision)
	if err != nil {
		return err
	}
	p.Revision = rev
	return nil
}

// DeletePolicy removes a schedule policy; ErrNotFound if it is absent.
// Instances it placed stay where they are.
func (s *Store) DeletePolicy(ctx context.Context, id string) error {
	return s.deleteKey(ctx, s.policyKey(id))
}
