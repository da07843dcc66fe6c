package store

import (
	"context"
	"encoding/json"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const prefixHeartbeats = "heartbeats/"

// Heartbeat is when a cluster's agent last reported, and how often it
// reports. It lives apart from the cluster record, under a prefix the
// reconciler does not watch: a heartbeat is frequent, small and changes
// nothing to reconcile, so it must not wake a pass or rewrite the record.
type Heartbeat struct {
	At           time.Time `json:"at"`
	PeriodMillis int64     `json:"periodMillis,omitempty"`
}

// PutHeartbeat records a cluster's latest heartbeat.
func (s *Store) PutHeartbeat(ctx context.Context, clusterID string, hb Heartbeat) error {
	op, err := putOp(s.key(prefixHeartbeats, clusterID), hb)
	if err != nil {
		return err
	}
	_, err = s.c.Do(ctx, op)
	return err
}

// ListHeartbeats returns the latest heartbeat of every cluster that has one.
func (s *Store) ListHeartbeats(ctx context.Context) (map[string]Heartbeat, error) {
	resp, err := s.c.Get(ctx, s.key(prefixHeartbeats), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make(map[string]Heartbeat, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var hb Heartbeat
		if err := json.Unmarshal(kv.Value, &hb); err != nil {
			continue
		}
		out[string(kv.Key[len(s.key(prefixHeartbeats)):])] = hb
	}
	return out, nil
}
