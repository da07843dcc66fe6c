package store

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/model"
)

// PrefixAuthorizations holds who each function is shared with:
// authorizations/<fnID>. The catalog follows it, so a grant or a removal
// reaches every gateway with the next catalog update.
const PrefixAuthorizations = "authorizations/"

func (s *Store) authorizationKey(fnID string) string { return s.key(PrefixAuthorizations, fnID) }

// GetAuthorization reads who function fnID is shared with; ErrNotFound when
// it is shared with nobody.
func (s *Store) GetAuthorization(ctx context.Context, fnID string) (model.FunctionAuthorization, error) {
	a, rev, err := get[model.FunctionAuthorization](ctx, s, s.authorizationKey(fnID))
	a.Revision = rev
	return a, err
}

// ListAuthorizations reads every function's sharing record.
func (s *Store) ListAuthorizations(ctx context.Context) ([]model.FunctionAuthorization, error) {
	out, revs, err := list[model.FunctionAuthorization](ctx, s, s.key(PrefixAuthorizations))
	for i := range out {
		out[i].Revision = revs[i]
	}
	return out, err
}

// PutAuthorization writes a's record: created when a.Revision is 0,
// otherwise only if unchanged since it was read (ErrConflict). An empty
// record is deleted instead, so that a function shared with nobody has none.
func (s *Store) PutAuthorization(ctx context.Context, a *model.FunctionAuthorization) error {
	key := s.authorizationKey(a.FunctionID)
	if a.Empty() {
		if a.Revision == 0 {
			return nil
		}
		_, err := s.txn(ctx, []clientv3.Cmp{atRevision(key, a.Revision)}, []clientv3.Op{clientv3.OpDelete(key)}, ErrConflict)
		return err
	}
	var rev int64
	var err error
	if a.Revision == 0 {
		rev, err = s.create(ctx, key, a)
		if errors.Is(err, ErrExists) {
			err = ErrConflict // written since the caller looked: read again
		}
	} else {
		rev, err = s.update(ctx, key, a, a.Revision)
	}
	if err != nil {
		return err
	}
	a.Revision = rev
	return nil
}

// DeleteAuthorization forgets who fnID was shared with (its last version is
// gone). Absent is no error.
func (s *Store) DeleteAuthorization(ctx context.Context, fnID string) error {
	err := s.deleteKey(ctx, s.authorizationKey(fnID))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
