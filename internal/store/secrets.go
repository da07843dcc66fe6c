package store

import (
	"context"
	"errors"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SealedSecret is a secret value encrypted by the secret store. The store
// never sees plaintext: Ciphertext is opaque here.
type SealedSecret struct {
	Name string `json:"name"`
	// Account and NEK say which account key version sealed Ciphertext. NEK
	// 0 marks a legacy record, sealed directly with the key file of
	// releases before the secret store; KeyID names that key.
	Account    string `json:"account,omitempty"`
	NEK        int    `json:"nek,omitempty"`
	KeyID      string `json:"keyId,omitempty"`
	Ciphertext []byte `json:"ciphertext"`
	// HeadRevision is the revision of the account's NEK head the value was
	// sealed at. Writes compare it, so a value sealed just before a NEK
	// rotation began fails with ErrConflict (seal it again) instead of
	// landing under the retiring key. Records with NEK > 0 must carry it.
	HeadRevision int64 `json:"-"`
	// FunctionID, VersionID and Revision locate a record read by
	// ScanSecrets or GetSecret.
	FunctionID string `json:"-"`
	VersionID  string `json:"-"`
	Revision   int64  `json:"-"`
}

// errNoHeadRevision guards against a writer that forgot to carry the head
// revision, which would reopen the race HeadRevision closes.
var errNoHeadRevision = errors.New("store: sealed secret has no head revision; seal it through the secret store")

func (s *Store) secretKey(fnID, versionID, name string) string {
	return s.key(prefixSecrets, fnID, "/", versionID, "/", name)
}

// secretGuards compares the NEK head of every account the secrets were
// sealed for.
func (s *Store) secretGuards(secrets []SealedSecret) ([]clientv3.Cmp, error) {
	var guards []clientv3.Cmp
	seen := map[string]bool{}
	for _, sec := range secrets {
		if sec.NEK == 0 {
			continue
		}
		if sec.HeadRevision == 0 {
			return nil, errNoHeadRevision
		}
		if !seen[sec.Account] {
			seen[sec.Account] = true
			guards = append(guards, atRevision(s.essHeadKey(sec.Account), sec.HeadRevision))
		}
	}
	return guards, nil
}

// ListSecrets returns the sealed secrets of one function version.
func (s *Store) ListSecrets(ctx context.Context, fnID, versionID string) ([]SealedSecret, error) {
	out, revs, err := list[SealedSecret](ctx, s, s.secretKey(fnID, versionID, ""))
	for i := range out {
		out[i].FunctionID, out[i].VersionID, out[i].Revision = fnID, versionID, revs[i]
	}
	return out, err
}

// GetSecret reads one sealed secret.
func (s *Store) GetSecret(ctx context.Context, fnID, versionID, name string) (SealedSecret, error) {
	sec, rev, err := get[SealedSecret](ctx, s, s.secretKey(fnID, versionID, name))
	sec.FunctionID, sec.VersionID, sec.Revision = fnID, versionID, rev
	return sec, err
}

// PutSecrets replaces or adds sealed secrets of one function version, all at
// once. It fails with ErrNotFound if the version does not exist and with
// ErrConflict if an account's NEK rotated since the values were sealed.
func (s *Store) PutSecrets(ctx context.Context, fnID, versionID string, secrets []SealedSecret) error {
	guards, err := s.secretGuards(secrets)
	if err != nil {
		return err
	}
	ops := make([]clientv3.Op, 0, len(secrets))
	for _, sec := range secrets {
		op, err := putOp(s.secretKey(fnID, versionID, sec.Name), sec)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	fn := s.functionKey(fnID, versionID)
	guards = append(guards, clientv3.Compare(clientv3.CreateRevision(fn), ">", 0))
	_, err = s.txn(ctx, guards, ops, ErrConflict)
	if errors.Is(err, ErrConflict) {
		if _, gerr := s.GetFunction(ctx, fnID, versionID); errors.Is(gerr, ErrNotFound) {
			return ErrNotFound
		}
	}
	return err
}

// ScanSecrets pages through the secrets of every function version in key
// order, like ScanNEKs.
func (s *Store) ScanSecrets(ctx context.Context, cursor string, limit int) ([]SealedSecret, string, error) {
	prefix := s.key(prefixSecrets)
	return scan[SealedSecret](ctx, s, prefix, cursor, limit, func(sec *SealedSecret, key string, rev int64) {
		parts := strings.SplitN(strings.TrimPrefix(key, prefix), "/", 3)
		if len(parts) == 3 {
			sec.FunctionID, sec.VersionID = parts[0], parts[1]
		}
		sec.Revision = rev
	})
}

// CountSecrets counts the secrets of every function version.
func (s *Store) CountSecrets(ctx context.Context) (int, error) {
	resp, err := s.c.Get(ctx, s.key(prefixSecrets), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return int(resp.Count), nil
}

// UpdateSecrets rewrites sealed secrets read by ScanSecrets or GetSecret,
// in one transaction, if none changed since read (and, for values carrying
// a head revision, their account's NEK did not rotate); otherwise it fails
// with ErrConflict and writes nothing. A secret deleted meanwhile is a
// conflict too, so a rewrite never brings it back.
func (s *Store) UpdateSecrets(ctx context.Context, secrets []SealedSecret) error {
	guards := make([]clientv3.Cmp, 0, len(secrets)+1)
	ops := make([]clientv3.Op, 0, len(secrets))
	for _, sec := range secrets {
		k := s.secretKey(sec.FunctionID, sec.VersionID, sec.Name)
		op, err := putOp(k, sec)
		if err != nil {
			return err
		}
		guards = append(guards, atRevision(k, sec.Revision))
		ops = append(ops, op)
	}
	heads := map[string]bool{}
	for _, sec := range secrets {
		if sec.HeadRevision != 0 && !heads[sec.Account] {
			heads[sec.Account] = true
			guards = append(guards, atRevision(s.essHeadKey(sec.Account), sec.HeadRevision))
		}
	}
	rev, err := s.txn(ctx, guards, ops, ErrConflict)
	if err == nil {
		for i := range secrets {
			secrets[i].Revision = rev
		}
	}
	return err
}
