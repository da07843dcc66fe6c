package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Key layout of the encrypted secret store (package secrets). The prefixes
// live here, beside the records they hold, rather than in store.go's block.
const (
	keyESSMeta       = "ess/meta"
	prefixESSHeads   = "ess/heads/"     // ess/heads/<account>: the account's active NEK version
	prefixNEKs       = "ess/neks/"      // ess/neks/<account>/<version, 10 digits>: wrapped NEK
	prefixRotations  = "ess/rotations/" // ess/rotations/mek, ess/rotations/nek/<account>
	keyRotationsLock = "locks/ess-rotation"
)

// Statuses of a MEK or NEK version.
const (
	// KeyActive seals new data (MEK: wraps new NEKs; NEK: seals new secrets).
	KeyActive = "active"
	// KeyRetiring no longer seals anything new but still opens what it
	// sealed, until a rotation has moved everything off it.
	KeyRetiring = "retiring"
	// KeyRetired is no longer used by anything. A retired NEK's key
	// material is erased; a retired MEK is never asked for again.
	KeyRetired = "retired"
)

// Rotation kinds.
const (
	RotationMEK = "mek"
	RotationNEK = "nek"
)

// ErrLocked means another process holds the rotation lock.
var ErrLocked = errors.New("store: another rotation is running")

// MEKVersion is one version of the master key, as the secret store records
// it. The key itself lives only with its provider.
type MEKVersion struct {
	Version int    `json:"version"`
	Status  string `json:"status"`
	// Check is an authenticated encryption of nothing under this MEK, so a
	// server handed a different key by its provider refuses it at once
	// instead of failing every unwrap later.
	Check     []byte    `json:"check"`
	CreatedAt time.Time `json:"createdAt"`
	RetiredAt time.Time `json:"retiredAt,omitzero"`
}

// ESSMeta is the secret store's one metadata record: which MEK version is
// active and the status of each. Its revision guards NEK creation, so no NEK
// is ever wrapped with a MEK that a rotation has already moved away from.
type ESSMeta struct {
	ActiveMEK int          `json:"activeMek"`
	MEKs      []MEKVersion `json:"meks"`
	// LegacyDone records that no secret sealed directly with the key file
	// of releases before the secret store remains.
	LegacyDone bool  `json:"legacyDone"`
	Revision   int64 `json:"-"`
}

// MEK returns the record of version v.
func (m *ESSMeta) MEK(v int) (*MEKVersion, bool) {
	for i := range m.MEKs {
		if m.MEKs[i].Version == v {
			return &m.MEKs[i], true
		}
	}
	return nil, false
}

// NEKHead names an account's active NEK version. Secret writes compare its
// revision (SealedSecret.HeadRevision), and only a NEK rotation changes it,
// so a value sealed just before a rotation began cannot land under the
// retiring key after the rotation has swept past it.
type NEKHead struct {
	Account  string `json:"account"`
	Active   int    `json:"active"`
	Revision int64  `json:"-"`
}

// NEK is one version of an account's key, wrapped by a MEK version.
type NEK struct {
	Account string `json:"account"`
	Version int    `json:"version"`
	// MEK is the master key version that wraps this record's key.
	MEK int `json:"mek"`
	// Wrapped is the NEK encrypted under MEK; empty once retired.
	Wrapped   []byte    `json:"wrapped,omitempty"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"createdAt"`
	Revision  int64     `json:"-"`
}

// Rotation records a MEK or NEK rotation that has begun and not finished,
// so that running it again continues with the same target version.
type Rotation struct {
	Kind    string `json:"kind"`
	Account string `json:"account,omitempty"`
	From    int    `json:"from"`
	Target  int    `json:"target"`
	// Done and Total count NEKs re-wrapped (MEK) or secrets checked (NEK);
	// Changed counts secrets re-encrypted by a NEK rotation.
	Done    int `json:"done"`
	Total   int `json:"total"`
	Changed int `json:"changed,omitempty"`
	// Owner is the lock key of the process running it; when that key is
	// gone the rotation was interrupted.
	Owner     string    `json:"owner,omitempty"`
	StartedAt time.Time `json:"startedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	Revision  int64     `json:"-"`
}

func (s *Store) essHeadKey(account string) string {
	return s.key(prefixESSHeads, url.PathEscape(account))
}

func (s *Store) nekKey(account string, version int) string {
	return s.key(prefixNEKs, url.PathEscape(account), "/", fmt.Sprintf("%010d", version))
}

func (s *Store) rotationKey(kind, account string) string {
	if kind == RotationMEK {
		return s.key(prefixRotations, RotationMEK)
	}
	return s.key(prefixRotations, kind, "/", url.PathEscape(account))
}

// GetESSMeta reads the secret store's metadata.
func (s *Store) GetESSMeta(ctx context.Context) (ESSMeta, error) {
	m, rev, err := get[ESSMeta](ctx, s, s.key(keyESSMeta))
	m.Revision = rev
	return m, err
}

// CreateESSMeta writes the first metadata record, or fails with ErrExists.
func (s *Store) CreateESSMeta(ctx context.Context, m *ESSMeta) error {
	rev, err := s.create(ctx, s.key(keyESSMeta), m)
	if err == nil {
		m.Revision = rev
	}
	return err
}

// UpdateESSMeta writes m if it has not changed since read.
func (s *Store) UpdateESSMeta(ctx context.Context, m *ESSMeta) error {
	rev, err := s.update(ctx, s.key(keyESSMeta), m, m.Revision)
	if err == nil {
		m.Revision = rev
	}
	return err
}

// GetNEKHead reads an account's active NEK version.
func (s *Store) GetNEKHead(ctx context.Context, account string) (NEKHead, error) {
	h, rev, err := get[NEKHead](ctx, s, s.essHeadKey(account))
	h.Revision = rev
	return h, err
}

// GetNEK reads one NEK version of an account.
func (s *Store) GetNEK(ctx context.Context, account string, version int) (NEK, error) {
	n, rev, err := get[NEK](ctx, s, s.nekKey(account, version))
	n.Revision = rev
	return n, err
}

// ListAccountNEKs returns every NEK version of one account, oldest first.
func (s *Store) ListAccountNEKs(ctx context.Context, account string) ([]NEK, error) {
	out, revs, err := list[NEK](ctx, s, s.key(prefixNEKs, url.PathEscape(account), "/"))
	for i := range out {
		out[i].Revision = revs[i]
	}
	return out, err
}

// CountNEKs counts the NEK records of every account without reading them.
func (s *Store) CountNEKs(ctx context.Context) (int, error) {
	resp, err := s.c.Get(ctx, s.key(prefixNEKs), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("store: count NEKs: %w", err)
	}
	return int(resp.Count), nil
}

// ScanNEKs returns up to limit NEK records of all accounts in key order,
// starting after cursor ("" for the beginning), and the cursor of the next
// page ("" when there is none). Pages stay small however many accounts
// there are, and records written behind the cursor are not seen again.
func (s *Store) ScanNEKs(ctx context.Context, cursor string, limit int) ([]NEK, string, error) {
	return scan[NEK](ctx, s, s.key(prefixNEKs), cursor, limit, func(n *NEK, _ string, rev int64) { n.Revision = rev })
}

// scan pages through a prefix; see ScanNEKs.
func scan[T any](ctx context.Context, s *Store, prefix, cursor string, limit int, fill func(v *T, key string, rev int64)) ([]T, string, error) {
	from := prefix
	if cursor != "" {
		from = cursor
	}
	resp, err := s.c.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, "", fmt.Errorf("store: scan %s: %w", prefix, err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, "", fmt.Errorf("store: decode %s: %w", kv.Key, err)
		}
		fill(&v, string(kv.Key), kv.ModRevision)
		out = append(out, v)
	}
	next := ""
	if resp.More && len(resp.Kvs) > 0 {
		next = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	return out, next, nil
}

// CreateNEKs writes the first NEK of each account with its head, in one
// transaction, if the metadata is still at metaRev (so the wrapping MEK is
// still the active one) and none of the accounts has a head yet. It fails
// with ErrConflict otherwise.
func (s *Store) CreateNEKs(ctx context.Context, metaRev int64, neks []NEK) error {
	guards := []clientv3.Cmp{atRevision(s.key(keyESSMeta), metaRev)}
	ops := make([]clientv3.Op, 0, 2*len(neks))
	for _, n := range neks {
		head := s.essHeadKey(n.Account)
		guards = append(guards, notExists(head))
		hop, err := putOp(head, NEKHead{Account: n.Account, Active: n.Version})
		if err != nil {
			return err
		}
		nop, err := putOp(s.nekKey(n.Account, n.Version), n)
		if err != nil {
			return err
		}
		ops = append(ops, hop, nop)
	}
	_, err := s.txn(ctx, guards, ops, ErrConflict)
	return err
}

// StartNEKRotation makes next the account's active NEK and marks retiring
// the versions given (read at their revisions), and records the rotation,
// all at once. It fails with ErrConflict if the metadata, the head or any
// of those versions changed since read, or a rotation record exists.
func (s *Store) StartNEKRotation(ctx context.Context, metaRev int64, head NEKHead, next NEK, retiring []NEK, rot *Rotation) error {
	rotKey := s.rotationKey(RotationNEK, head.Account)
	headKey := s.essHeadKey(head.Account)
	nextKey := s.nekKey(next.Account, next.Version)
	guards := []clientv3.Cmp{atRevision(s.key(keyESSMeta), metaRev), atRevision(headKey, head.Revision), notExists(nextKey), notExists(rotKey)}
	head.Active = next.Version
	var ops []clientv3.Op
	for _, kv := range []struct {
		key string
		v   any
	}{{headKey, head}, {nextKey, next}, {rotKey, rot}} {
		op, err := putOp(kv.key, kv.v)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	for _, n := range retiring {
		k := s.nekKey(n.Account, n.Version)
		guards = append(guards, atRevision(k, n.Revision))
		n.Status = KeyRetiring
		op, err := putOp(k, n)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	rev, err := s.txn(ctx, guards, ops, ErrConflict)
	if err == nil {
		rot.Revision = rev
	}
	return err
}

// StartMEKRotation writes the metadata (with the new active MEK) and the
// rotation record at once, if the metadata is unchanged since read and no
// MEK rotation is recorded.
func (s *Store) StartMEKRotation(ctx context.Context, m *ESSMeta, rot *Rotation) error {
	rotKey := s.rotationKey(RotationMEK, "")
	mop, err := putOp(s.key(keyESSMeta), m)
	if err != nil {
		return err
	}
	rop, err := putOp(rotKey, rot)
	if err != nil {
		return err
	}
	rev, err := s.txn(ctx, []clientv3.Cmp{atRevision(s.key(keyESSMeta), m.Revision), notExists(rotKey)}, []clientv3.Op{mop, rop}, ErrConflict)
	if err == nil {
		m.Revision, rot.Revision = rev, rev
	}
	return err
}

// UpdateNEKs writes every record in one transaction if none changed since
// read, and fails with ErrConflict otherwise (then none is written). Keep
// batches within the etcd server's operations-per-transaction limit (128 by
// default).
func (s *Store) UpdateNEKs(ctx context.Context, neks []NEK) error {
	guards := make([]clientv3.Cmp, 0, len(neks))
	ops := make([]clientv3.Op, 0, len(neks))
	for _, n := range neks {
		k := s.nekKey(n.Account, n.Version)
		op, err := putOp(k, n)
		if err != nil {
			return err
		}
		guards = append(guards, atRevision(k, n.Revision))
		ops = append(ops, op)
	}
	rev, err := s.txn(ctx, guards, ops, ErrConflict)
	if err == nil {
		for i := range neks {
			neks[i].Revision = rev
		}
	}
	return err
}

// GetRotation reads the record of an unfinished rotation (account is
// ignored for MEK rotations).
func (s *Store) GetRotation(ctx context.Context, kind, account string) (Rotation, error) {
	r, rev, err := get[Rotation](ctx, s, s.rotationKey(kind, account))
	r.Revision = rev
	return r, err
}

// ListRotations returns every unfinished rotation.
func (s *Store) ListRotations(ctx context.Context) ([]Rotation, error) {
	out, revs, err := list[Rotation](ctx, s, s.key(prefixRotations))
	for i := range out {
		out[i].Revision = revs[i]
	}
	return out, err
}

// UpdateRotation records progress; it fails with ErrNotFound once the
// rotation has finished, so a late write cannot bring its record back.
func (s *Store) UpdateRotation(ctx context.Context, r *Rotation) error {
	k := s.rotationKey(r.Kind, r.Account)
	op, err := putOp(k, r)
	if err != nil {
		return err
	}
	rev, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), ">", 0)}, []clientv3.Op{op}, ErrNotFound)
	if err == nil {
		r.Revision = rev
	}
	return err
}

// FinishMEKRotation writes the metadata (old versions retired) and deletes
// the rotation record, if the metadata is unchanged since read.
func (s *Store) FinishMEKRotation(ctx context.Context, m *ESSMeta) error {
	mop, err := putOp(s.key(keyESSMeta), m)
	if err != nil {
		return err
	}
	rev, err := s.txn(ctx, []clientv3.Cmp{atRevision(s.key(keyESSMeta), m.Revision)},
		[]clientv3.Op{mop, clientv3.OpDelete(s.rotationKey(RotationMEK, ""))}, ErrConflict)
	if err == nil {
		m.Revision = rev
	}
	return err
}

// FinishNEKRotation writes the retired NEK records and deletes the account's
// rotation record, if none of the records changed since read.
func (s *Store) FinishNEKRotation(ctx context.Context, account string, retired []NEK) error {
	guards := make([]clientv3.Cmp, 0, len(retired))
	ops := []clientv3.Op{clientv3.OpDelete(s.rotationKey(RotationNEK, account))}
	for _, n := range retired {
		k := s.nekKey(n.Account, n.Version)
		op, err := putOp(k, n)
		if err != nil {
			return err
		}
		guards = append(guards, atRevision(k, n.Revision))
		ops = append(ops, op)
	}
	_, err := s.txn(ctx, guards, ops, ErrConflict)
	return err
}

// RotationLock is held by the one process running a rotation.
type RotationLock struct {
	sess *concurrency.Session
	mu   *concurrency.Mutex
}

// TryLockRotation takes the installation-wide rotation lock, or fails at
// once with ErrLocked. The lock lives in an etcd lease, so a process killed
// mid-rotation releases it within seconds.
func (s *Store) TryLockRotation(ctx context.Context) (*RotationLock, error) {
	sess, err := concurrency.NewSession(s.c, concurrency.WithTTL(10), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("store: rotation lock: %w", err)
	}
	mu := concurrency.NewMutex(sess, s.key(keyRotationsLock))
	if err := mu.TryLock(ctx); err != nil {
		sess.Close()
		if errors.Is(err, concurrency.ErrLocked) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("store: rotation lock: %w", err)
	}
	return &RotationLock{sess: sess, mu: mu}, nil
}

// Key names the lock holder; it is what Rotation.Owner records.
func (l *RotationLock) Key() string { return l.mu.Key() }

// Unlock releases the lock.
func (l *RotationLock) Unlock() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.mu.Unlock(ctx)
	l.sess.Close()
}

// LockHeld reports whether the lock key owner still exists, which tells a
// running rotation from an interrupted one.
func (s *Store) LockHeld(ctx context.Context, owner string) (bool, error) {
	if owner == "" || !strings.HasPrefix(owner, s.key(keyRotationsLock)) {
		return false, nil
	}
	resp, err := s.c.Get(ctx, owner, clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	return resp.Count > 0, nil
}
