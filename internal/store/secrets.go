package store

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SealedSecret is a secret value encrypted by the secret store. The store
// never sees plaintext: Ciphertext is opaque here.
type SealedSecret struct {
	Name       string `json:"name"`
	KeyID      string `json:"keyId"`
	Ciphertext []byte `json:"ciphertext"`
}

func (s *Store) secretKey(fnID, versionID, name string) string {
	return s.key(prefixSecrets, fnID, "/", versionID, "/", name)
}

// ListSecrets returns the sealed secrets of one function version.
func (s *Store) ListSecrets(ctx context.Context, fnID, versionID string) ([]SealedSecret, error) {
	out, _, err := list[SealedSecret](ctx, s, s.secretKey(fnID, versionID, ""))
	return out, err
}

// PutSecrets replaces or adds sealed secrets of one function version, all at
// once, and fails with ErrNotFound if the version does not exist.
func (s *Store) PutSecrets(ctx context.Context, fnID, versionID string, secrets []SealedSecret) error {
	ops := make([]clientv3.Op, 0, len(secrets))
	for _, sec := range secrets {
		op, err := putOp(s.secretKey(fnID, versionID, sec.Name), sec)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	fn := s.functionKey(fnID, versionID)
	_, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(fn), ">", 0)}, ops, ErrNotFound)
	return err
}
