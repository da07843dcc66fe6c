package store

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/model"
)

const prefixClusterCreds = "cluster-creds/"

// ClusterCredentials are the hashes of the secrets that prove an agent
// speaks for its cluster: a one-time bootstrap token, and the renewable
// credential it is exchanged for. Plaintext tokens are never stored.
type ClusterCredentials struct {
	ClusterID        string    `json:"clusterId"`
	BootstrapHash    []byte    `json:"bootstrapHash,omitempty"`
	BootstrapExpires time.Time `json:"bootstrapExpires"`
	CredentialHash   []byte    `json:"credentialHash,omitempty"`
	CredentialExpiry time.Time `json:"credentialExpires"`
	// PreviousHash stays valid until PreviousExpiry, so a renewal that the
	// agent never received does not lock it out.
	PreviousHash   []byte    `json:"previousHash,omitempty"`
	PreviousExpiry time.Time `json:"previousExpires"`
	Revision       int64     `json:"-"`
}

func (s *Store) clusterCredsKey(id string) string { return s.key(prefixClusterCreds, id) }

// RegisterCluster creates a cluster and its credentials in one transaction.
func (s *Store) RegisterCluster(ctx context.Context, c *model.Cluster, creds ClusterCredentials) error {
	cop, err := putOp(s.clusterKey(c.ID), c)
	if err != nil {
		return err
	}
	kop, err := putOp(s.clusterCredsKey(c.ID), creds)
	if err != nil {
		return err
	}
	rev, err := s.txn(ctx, []clientv3.Cmp{notExists(s.clusterKey(c.ID))}, []clientv3.Op{cop, kop}, ErrExists)
	if err == nil {
		c.Revision = rev
	}
	return err
}

// GetClusterCredentials reads a cluster's credential hashes.
func (s *Store) GetClusterCredentials(ctx context.Context, clusterID string) (ClusterCredentials, error) {
	c, rev, err := get[ClusterCredentials](ctx, s, s.clusterCredsKey(clusterID))
	c.Revision = rev
	return c, err
}

// UpdateClusterCredentials writes creds if unchanged since read, so a
// bootstrap token is exchanged at most once even when two agents race.
func (s *Store) UpdateClusterCredentials(ctx context.Context, creds *ClusterCredentials) error {
	rev, err := s.update(ctx, s.clusterCredsKey(creds.ClusterID), creds, creds.Revision)
	if err == nil {
		creds.Revision = rev
	}
	return err
}

// DeregisterCluster deletes a cluster and its credentials at once, which
// revokes every credential its agent holds. Its instances are released by
// the controller, which finds them placed on a cluster that is gone.
func (s *Store) DeregisterCluster(ctx context.Context, clusterID string) error {
	_, err := s.txn(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.clusterKey(clusterID)), ">", 0)},
		[]clientv3.Op{clientv3.OpDelete(s.clusterKey(clusterID)), clientv3.OpDelete(s.clusterCredsKey(clusterID)),
			clientv3.OpDelete(s.key(prefixHeartbeats, clusterID))},
		ErrNotFound)
	return err
}
