package store

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Notify returns a channel that receives a value once the watch is in place
// (so a consumer knows every later change will be seen) and soon after
// anything under the installation's prefix changes. Bursts coalesce into one
// notification:
// controllers are level-triggered and re-read what they need, so they only
// need to know "something changed", never what. The channel is closed when
// ctx ends. A broken watch is re-established, with a notification, so a
// consumer never misses a change silently.
func (s *Store) Notify(ctx context.Context, sub string) <-chan struct{} {
	out := make(chan struct{}, 1)
	poke := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			wch := s.c.Watch(wctx, s.key(sub), clientv3.WithPrefix(), clientv3.WithCreatedNotify())
			for resp := range wch {
				if resp.Err() != nil {
					break
				}
				poke()
			}
			cancel()
			poke()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return out
}

// Event is one change under a watched prefix.
type Event struct {
	Key     string // relative to the installation prefix
	Value   []byte // nil on delete
	Deleted bool
}

// Watch streams changes under sub starting after revision rev (use the
// revision a List returned, so nothing between the list and the watch is
// missed). The channel closes when ctx ends or the watch fails; the consumer
// then re-lists and watches again.
func (s *Store) Watch(ctx context.Context, sub string, rev int64) <-chan []Event {
	out := make(chan []Event, 16)
	go func() {
		defer close(out)
		wch := s.c.Watch(clientv3.WithRequireLeader(ctx), s.key(sub), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if resp.Err() != nil {
				return
			}
			evs := make([]Event, 0, len(resp.Events))
			for _, e := range resp.Events {
				evs = append(evs, Event{
					Key:     string(e.Kv.Key[len(s.prefix):]),
					Value:   e.Kv.Value,
					Deleted: e.Type == clientv3.EventTypeDelete,
				})
			}
			select {
			case out <- evs:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Snapshot is a raw read of every key under sub with the revision it was
// taken at, for caches that then Watch from that revision.
func (s *Store) Snapshot(ctx context.Context, sub string) ([]Event, int64, error) {
	resp, err := s.c.Get(ctx, s.key(sub), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	evs := make([]Event, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		evs = append(evs, Event{Key: string(kv.Key[len(s.prefix):]), Value: kv.Value})
	}
	return evs, resp.Header.Revision, nil
}
