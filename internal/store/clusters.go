package store

import (
	"context"

	"github.com/gantry-dev/gantry/internal/model"
)

func (s *Store) clusterKey(id string) string { return s.key(prefixClusters, id) }

// CreateCluster registers a cluster.
func (s *Store) CreateCluster(ctx context.Context, c *model.Cluster) error {
	rev, err := s.create(ctx, s.clusterKey(c.ID), c)
	if err != nil {
		return err
	}
	c.Revision = rev
	return nil
}

// GetCluster reads one cluster.
func (s *Store) GetCluster(ctx context.Context, id string) (model.Cluster, error) {
	c, rev, err := get[model.Cluster](ctx, s, s.clusterKey(id))
	c.Revision = rev
	return c, err
}

// ListClusters returns every registered cluster.
func (s *Store) ListClusters(ctx context.Context) ([]model.Cluster, error) {
	out, revs, err := list[model.Cluster](ctx, s, s.key(prefixClusters))
	for i := range out {
		out[i].Revision = revs[i]
	}
	return out, err
}

// UpdateCluster writes c if unchanged since read.
func (s *Store) UpdateCluster(ctx context.Context, c *model.Cluster) error {
	rev, err := s.update(ctx, s.clusterKey(c.ID), c, c.Revision)
	if err != nil {
		return err
	}
	c.Revision = rev
	return nil
}
