package store

import (
	"context"
	"encoding/json"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/model"
)

const prefixHeartbeats = "heartbeats/"

// Heartbeat is when a cluster's agent last reported, and how often it
// reports. It lives apart from the cluster record, under a prefix the
// reconciler does not watch: a heartbeat is frequent, small and changes
// nothing to reconcile, so it must not wake a pass or rewrite the record.
//
// It also carries what changes with every placement and request, how the
// cluster's capacity is used, for the same reason.
type Heartbeat struct {
	At            time.Time                 `json:"at"`
	PeriodMillis  int64                     `json:"periodMillis,omitempty"`
	InstanceTypes []model.InstanceTypeUsage `json:"instanceTypes,omitempty"`
	Idle          int                       `json:"idle,omitempty"`
	Standby       int                       `json:"standby,omitempty"`
	Busy          []string                  `json:"busy,omitempty"` // running instances with requests in flight
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
