package store

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/model"
)

const prefixScales = "scales/"

// maxTxnOps stays under etcd's default limit of 128 operations per
// transaction.
const maxTxnOps = 100

// PutScales writes the autoscaler's records, many per transaction: a burst
// of decisions across many functions costs a few round trips, not one each.
func (s *Store) PutScales(ctx context.Context, scales []model.Scale) error {
	for len(scales) > 0 {
		n := min(len(scales), maxTxnOps)
		ops := make([]clientv3.Op, 0, n)
		for _, sc := range scales[:n] {
			op, err := putOp(s.key(prefixScales, sc.FunctionVersionID), sc)
			if err != nil {
				return err
			}
			ops = append(ops, op)
		}
		if _, err := s.c.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("store: put scales: %w", err)
		}
		scales = scales[n:]
	}
	return nil
}

// ListScales returns every autoscaler record by function version id.
func (s *Store) ListScales(ctx context.Context) (map[string]model.Scale, error) {
	all, _, err := list[model.Scale](ctx, s, s.key(prefixScales))
	if err != nil {
		return nil, err
	}
	out := make(map[string]model.Scale, len(all))
	for _, sc := range all {
		out[sc.FunctionVersionID] = sc
	}
	return out, nil
}

// GetScale returns the autoscaler's record of one version, or ErrNotFound.
func (s *Store) GetScale(ctx context.Context, versionID string) (model.Scale, error) {
	sc, _, err := get[model.Scale](ctx, s, s.key(prefixScales, versionID))
	return sc, err
}

// DeleteScale removes a version's record (its deployment is gone).
func (s *Store) DeleteScale(ctx context.Context, versionID string) error {
	err := s.deleteKey(ctx, s.key(prefixScales, versionID))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
