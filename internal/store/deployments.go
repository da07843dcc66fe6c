package store

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/model"
)

func (s *Store) deploymentKey(versionID string) string { return s.key(prefixDeployments, versionID) }
func (s *Store) deploymentIDKey(id string) string      { return s.key(prefixDeployIDs, id) }

// CreateDeployment stores a deployment for a function version that has none,
// together with its id index, and only while the version exists.
func (s *Store) CreateDeployment(ctx context.Context, d *model.Deployment) error {
	key := s.deploymentKey(d.FunctionVersionID)
	op, err := putOp(key, d)
	if err != nil {
		return err
	}
	fn := s.functionKey(d.FunctionID, d.FunctionVersionID)
	rev, err := s.txn(ctx,
		[]clientv3.Cmp{notExists(key), clientv3.Compare(clientv3.CreateRevision(fn), ">", 0)},
		[]clientv3.Op{op, clientv3.OpPut(s.deploymentIDKey(d.ID), d.FunctionVersionID)},
		ErrExists)
	if errors.Is(err, ErrExists) {
		if _, gerr := s.GetFunction(ctx, d.FunctionID, d.FunctionVersionID); errors.Is(gerr, ErrNotFound) {
			return ErrNotFound
		}
	}
	if err != nil {
		return err
	}
	d.Revision = rev
	return nil
}

// GetDeployment reads the deployment of a function version.
func (s *Store) GetDeployment(ctx context.Context, versionID string) (model.Deployment, error) {
	d, rev, err := get[model.Deployment](ctx, s, s.deploymentKey(versionID))
	d.Revision = rev
	return d, err
}

// GetDeploymentByID reads a deployment by its deploymentId.
func (s *Store) GetDeploymentByID(ctx context.Context, id string) (model.Deployment, error) {
	resp, err := s.c.Get(ctx, s.deploymentIDKey(id))
	if err != nil {
		return model.Deployment{}, err
	}
	if len(resp.Kvs) == 0 {
		return model.Deployment{}, ErrNotFound
	}
	return s.GetDeployment(ctx, string(resp.Kvs[0].Value))
}

// ListDeployments returns every deployment.
func (s *Store) ListDeployments(ctx context.Context) ([]model.Deployment, error) {
	out, revs, err := list[model.Deployment](ctx, s, s.key(prefixDeployments))
	for i := range out {
		out[i].Revision = revs[i]
	}
	return out, err
}

// UpdateDeployment writes d if it has not changed since it was read.
func (s *Store) UpdateDeployment(ctx context.Context, d *model.Deployment) error {
	rev, err := s.update(ctx, s.deploymentKey(d.FunctionVersionID), d, d.Revision)
	if err != nil {
		return err
	}
	d.Revision = rev
	return nil
}

// DeleteDeployment removes a deployment and its index. Its instances are
// released by the controller, which notices they belong to no deployment.
func (s *Store) DeleteDeployment(ctx context.Context, d model.Deployment) error {
	_, err := s.txn(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.deploymentKey(d.FunctionVersionID)), ">", 0)},
		[]clientv3.Op{clientv3.OpDelete(s.deploymentKey(d.FunctionVersionID)), clientv3.OpDelete(s.deploymentIDKey(d.ID))},
		ErrNotFound)
	return err
}
