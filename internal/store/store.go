// Package store is Gantry's typed persistence over etcd: accounts, functions,
// deployments, instances and clusters. Every object carries the etcd
// ModRevision it was read at; updates compare it, so two writers never
// silently overwrite each other (optimistic concurrency). Controllers watch
// key prefixes and re-read what changed.
//
// Consumers declare the narrow interfaces they need (see STYLE.md); *Store
// satisfies them without importing them.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
	// ErrConflict means the object changed since it was read; re-read and retry.
	ErrConflict = errors.New("store: revision conflict")
)

// Key layout. Everything lives under one root so a shared etcd can host
// several installations (Options.Prefix) and a dump of one is easy.
const (
	keySchema         = "schema"
	prefixAccounts    = "accounts/"
	prefixFunctions   = "functions/"   // functions/<fnID>/<versionID>
	prefixDeployments = "deployments/" // deployments/<versionID>
	prefixDeployIDs   = "deployment-ids/"
	prefixInstances   = "instances/"      // instances/<instanceID>: desired placement
	prefixInstStates  = "instance-state/" // instance-state/<instanceID>: observed
	prefixClusters    = "clusters/"
	prefixAlloc       = "alloc/" // alloc/<clusterID>: GPUs promised to instances
	prefixSecrets     = "secrets/"
)

// DefaultPrefix is the root key of a Gantry installation in etcd.
const DefaultPrefix = "/gantry/"

// Store is the etcd-backed store.
type Store struct {
	c      *clientv3.Client
	prefix string
}

// New wraps an etcd client. prefix defaults to DefaultPrefix.
func New(c *clientv3.Client, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Store{c: c, prefix: prefix}
}

// Client returns the underlying etcd client, for leader election and for
// tests that inspect raw keys.
func (s *Store) Client() *clientv3.Client { return s.c }

// Prefix returns the installation's root key.
func (s *Store) Prefix() string { return s.prefix }

func (s *Store) key(parts ...string) string {
	k := s.prefix
	for _, p := range parts {
		k += p
	}
	return k
}

// get reads one JSON object and returns its ModRevision.
func get[T any](ctx context.Context, s *Store, key string) (T, int64, error) {
	var v T
	resp, err := s.c.Get(ctx, key)
	if err != nil {
		return v, 0, fmt.Errorf("store: get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return v, 0, ErrNotFound
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
		return v, 0, fmt.Errorf("store: decode %s: %w", key, err)
	}
	return v, resp.Kvs[0].ModRevision, nil
}

// list reads every object under a prefix, in key order, with their revisions.
func list[T any](ctx context.Context, s *Store, prefix string) ([]T, []int64, error) {
	resp, err := s.c.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, fmt.Errorf("store: list %s: %w", prefix, err)
	}
	out := make([]T, 0, len(resp.Kvs))
	revs := make([]int64, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, nil, fmt.Errorf("store: decode %s: %w", kv.Key, err)
		}
		out = append(out, v)
		revs = append(revs, kv.ModRevision)
	}
	return out, revs, nil
}

// putOp encodes v for use in a transaction.
func putOp(key string, v any) (clientv3.Op, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return clientv3.Op{}, fmt.Errorf("store: encode %s: %w", key, err)
	}
	return clientv3.OpPut(key, string(b)), nil
}

// notExists and atRevision are the two guards every write uses.
func notExists(key string) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
}

func atRevision(key string, rev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(key), "=", rev)
}

// txn runs ops if every guard holds, returning the new revision, or onFail
// when a guard does not hold.
func (s *Store) txn(ctx context.Context, guards []clientv3.Cmp, ops []clientv3.Op, onFail error) (int64, error) {
	resp, err := s.c.Txn(ctx).If(guards...).Then(ops...).Commit()
	if err != nil {
		return 0, fmt.Errorf("store: txn: %w", err)
	}
	if !resp.Succeeded {
		return 0, onFail
	}
	return resp.Header.Revision, nil
}

// create writes v at key only if the key does not exist.
func (s *Store) create(ctx context.Context, key string, v any) (int64, error) {
	op, err := putOp(key, v)
	if err != nil {
		return 0, err
	}
	return s.txn(ctx, []clientv3.Cmp{notExists(key)}, []clientv3.Op{op}, ErrExists)
}

// update writes v at key only if the key is still at rev.
func (s *Store) update(ctx context.Context, key string, v any, rev int64) (int64, error) {
	op, err := putOp(key, v)
	if err != nil {
		return 0, err
	}
	return s.txn(ctx, []clientv3.Cmp{atRevision(key, rev)}, []clientv3.Op{op}, ErrConflict)
}

// deleteKey removes key, returning ErrNotFound if it was absent.
func (s *Store) deleteKey(ctx context.Context, key string) error {
	resp, err := s.c.Delete(ctx, key)
	if err != nil {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	if resp.Deleted == 0 {
		return ErrNotFound
	}
	return nil
}
