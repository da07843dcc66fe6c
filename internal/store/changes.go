package store

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrCompacted means the history asked for is gone: etcd compacted past the
// revision (the embedded etcd keeps an hour).
var ErrCompacted = errors.New("store: revision compacted")

// CompactedError is the ErrCompacted of WatchChanges: the history left
// starts at Revision.
type CompactedError struct {
	Revision, Asked int64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("store: revision compacted: history starts at %d, asked for %d", e.Revision, e.Asked)
}

// Is makes errors.Is(err, ErrCompacted) true.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// Change is one key's change with the value it replaced, for consumers that
// derive something from the difference (package events). Keys are relative
// to the installation prefix.
type Change struct {
	Key      string
	Value    []byte // nil on delete
	Prev     []byte // nil when the key was created
	Deleted  bool
	Revision int64
}

// WatchChanges calls fn with every change under the installation prefix
// after revision after, in revision order, one etcd watch response at a
// time, until ctx ends (nil), fn fails (its error) or the watch fails
// (a *CompactedError when after is no longer in etcd's history). It is one watch
// over the whole prefix, so changes of different kinds keep their order.
func (s *Store) WatchChanges(ctx context.Context, after int64, fn func([]Change) error) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.c.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(after+1))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) || resp.CompactRevision > 0 {
				return &CompactedError{Revision: resp.CompactRevision, Asked: after + 1}
			}
			return fmt.Errorf("store: watch changes: %w", err)
		}
		if len(resp.Events) == 0 {
			continue
		}
		out := make([]Change, 0, len(resp.Events))
		for _, e := range resp.Events {
			// A delete's Kv carries the key and the revision of the delete.
			c := Change{Key: string(e.Kv.Key[len(s.prefix):]), Revision: e.Kv.ModRevision,
				Deleted: e.Type == clientv3.EventTypeDelete}
			if !c.Deleted {
				c.Value = e.Kv.Value
			}
			if e.PrevKv != nil {
				c.Prev = e.PrevKv.Value
			}
			out = append(out, c)
		}
		if err := fn(out); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("store: watch changes ended")
}

// Revision is etcd's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.c.Get(ctx, s.key(keySchema), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("store: revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// ReadAt reads the raw value of key (relative to the installation prefix)
// as it was at revision rev: ErrNotFound if it did not exist then,
// ErrCompacted if that history is gone.
func (s *Store) ReadAt(ctx context.Context, key string, rev int64) ([]byte, error) {
	resp, err := s.c.Get(ctx, s.key(key), clientv3.WithRev(rev))
	if err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil, ErrCompacted
		}
		return nil, fmt.Errorf("store: read %s at %d: %w", key, rev, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, ErrNotFound
	}
	return resp.Kvs[0].Value, nil
}

// KeysAt lists the keys under prefix (relative) as they were at revision
// rev, relative to the installation prefix.
func (s *Store) KeysAt(ctx context.Context, prefix string, rev int64) ([]string, error) {
	resp, err := s.c.Get(ctx, s.key(prefix), clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithKeysOnly())
	if err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil, ErrCompacted
		}
		return nil, fmt.Errorf("store: list %s at %d: %w", prefix, rev, err)
	}
	out := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key[len(s.prefix):]))
	}
	return out, nil
}
