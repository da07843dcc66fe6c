package store

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/model"
)

// prefixAssets holds input assets' records: assets/<account>/<assetId>.
// The content lives in the NATS object store; the record says whose it is,
// what it is, whether it is in and when it expires.
const prefixAssets = "assets/"

func (s *Store) assetKey(account, id string) string {
	return s.key(prefixAssets, account, "/", id)
}

// CreateAsset stores a new asset record; ErrExists if the id is taken.
func (s *Store) CreateAsset(ctx context.Context, a *model.Asset) error {
	rev, err := s.create(ctx, s.assetKey(a.NCAID, a.ID), a)
	if err != nil {
		return err
	}
	a.Revision = rev
	return nil
}

// GetAsset reads one asset of an account; another account's is
// ErrNotFound.
func (s *Store) GetAsset(ctx context.Context, account, id string) (model.Asset, error) {
	a, rev, err := get[model.Asset](ctx, s, s.assetKey(account, id))
	a.Revision = rev
	return a, err
}

// ListAssets returns the assets of one account, in id order.
func (s *Store) ListAssets(ctx context.Context, account string) ([]model.Asset, error) {
	return s.listAssets(ctx, s.assetKey(account, ""))
}

// ListAllAssets returns every account's assets, for the expiry sweep.
func (s *Store) ListAllAssets(ctx context.Context) ([]model.Asset, error) {
	return s.listAssets(ctx, s.key(prefixAssets))
}

func (s *Store) listAssets(ctx context.Context, prefix string) ([]model.Asset, error) {
	out, revs, err := list[model.Asset](ctx, s, prefix)
	for i := range out {
		out[i].Revision = revs[i]
	}
	return out, err
}

// UpdateAsset writes a if unchanged since it was read at a.Revision: else
// ErrConflict, or ErrNotFound when the record is gone.
func (s *Store) UpdateAsset(ctx context.Context, a *model.Asset) error {
	k := s.assetKey(a.NCAID, a.ID)
	rev, err := s.update(ctx, k, a, a.Revision)
	if errors.Is(err, ErrConflict) {
		if _, gerr := s.GetAsset(ctx, a.NCAID, a.ID); errors.Is(gerr, ErrNotFound) {
			return ErrNotFound
		}
	}
	if err != nil {
		return err
	}
	a.Revision = rev
	return nil
}

// DeleteAsset removes an asset record; ErrNotFound if it is absent.
func (s *Store) DeleteAsset(ctx context.Context, account, id string) error {
	return s.deleteKey(ctx, s.assetKey(account, id))
}

// DeleteAssetAt removes an asset record only if it is still at a.Revision,
// so the sweep never deletes one that was just uploaded again; ErrConflict
// otherwise.
func (s *Store) DeleteAssetAt(ctx context.Context, a model.Asset) error {
	k := s.assetKey(a.NCAID, a.ID)
	_, err := s.txn(ctx, []clientv3.Cmp{atRevision(k, a.Revision)}, []clientv3.Op{clientv3.OpDelete(k)}, ErrConflict)
	return err
}
