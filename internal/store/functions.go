package store

import (
	"context"
	"errors"
	"fmt"
	"sort"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/model"
)

// ErrDeployed means a function version cannot be deleted while deployed.
var ErrDeployed = errors.New("store: function version is deployed")

func (s *Store) functionKey(fnID, versionID string) string {
	return s.key(prefixFunctions, fnID, "/", versionID)
}

// CreateFunction stores a new function version. Secret values are not part of
// model.Function; sealed secrets are written in the same transaction so a
// version never exists without its secrets. It fails with ErrConflict if an
// account's NEK rotated since the secrets were sealed: seal them again.
func (s *Store) CreateFunction(ctx context.Context, f *model.Function, secrets []SealedSecret) error {
	key := s.functionKey(f.ID, f.VersionID)
	op, err := putOp(key, f)
	if err != nil {
		return err
	}
	ops := []clientv3.Op{op}
	for _, sec := range secrets {
		sop, err := putOp(s.secretKey(f.ID, f.VersionID, sec.Name), sec)
		if err != nil {
			return err
		}
		ops = append(ops, sop)
	}
	guards, err := s.secretGuards(secrets)
	if err != nil {
		return err
	}
	rev, err := s.txn(ctx, append(guards, notExists(key)), ops, ErrExists)
	if errors.Is(err, ErrExists) && len(guards) > 0 {
		// Say which guard failed: a NEK rotation began since the secrets
		// were sealed, or the version exists.
		if _, gerr := s.GetFunction(ctx, f.ID, f.VersionID); errors.Is(gerr, ErrNotFound) {
			return ErrConflict
		}
	}
	if err != nil {
		return err
	}
	f.Revision = rev
	return nil
}

// GetFunction reads one function version.
func (s *Store) GetFunction(ctx context.Context, fnID, versionID string) (model.Function, error) {
	f, rev, err := get[model.Function](ctx, s, s.functionKey(fnID, versionID))
	f.Revision = rev
	return f, err
}

// ListFunctionVersions returns every version of one function, oldest first.
// It returns ErrNotFound when the function has no versions.
func (s *Store) ListFunctionVersions(ctx context.Context, fnID string) ([]model.Function, error) {
	out, err := s.listFunctions(ctx, s.key(prefixFunctions, fnID, "/"))
	if err == nil && len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, err
}

// ListFunctions returns every function version of every account, oldest first.
func (s *Store) ListFunctions(ctx context.Context) ([]model.Function, error) {
	return s.listFunctions(ctx, s.key(prefixFunctions))
}

func (s *Store) listFunctions(ctx context.Context, prefix string) ([]model.Function, error) {
	out, revs, err := list[model.Function](ctx, s, prefix)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Revision = revs[i]
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// UpdateFunction writes f if it has not changed since it was read.
func (s *Store) UpdateFunction(ctx context.Context, f *model.Function) error {
	rev, err := s.update(ctx, s.functionKey(f.ID, f.VersionID), f, f.Revision)
	if err != nil {
		return err
	}
	f.Revision = rev
	return nil
}

// DeleteFunction removes a function version and its secrets. It refuses with
// ErrDeployed while a deployment exists for the version, so that no instance
// is left running a version nobody can see.
func (s *Store) DeleteFunction(ctx context.Context, fnID, versionID string) error {
	key := s.functionKey(fnID, versionID)
	_, err := s.txn(ctx,
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(key), ">", 0),
			notExists(s.deploymentKey(versionID)),
		},
		[]clientv3.Op{
			clientv3.OpDelete(key),
			clientv3.OpDelete(s.secretKey(fnID, versionID, ""), clientv3.WithPrefix()),
		}, errDeleteFunction)
	if err != errDeleteFunction {
		return err
	}
	// Say which guard failed.
	if _, gerr := s.GetFunction(ctx, fnID, versionID); errors.Is(gerr, ErrNotFound) {
		return ErrNotFound
	}
	return fmt.Errorf("%w: delete its deployment first", ErrDeployed)
}

var errDeleteFunction = errors.New("store: delete function guard failed")
