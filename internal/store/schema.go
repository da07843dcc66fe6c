package store

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// SchemaVersion is the data layout this release reads and writes.
const SchemaVersion = 1

// Migration upgrades stored data from version From to From+1. It runs under
// an etcd lock, once per installation, before any component starts; it must
// be idempotent in case it is interrupted and run again.
type Migration struct {
	From int
	Name string
	Run  func(ctx context.Context, s *Store) error
}

// migrations lists every upgrade step in order. A release that changes the
// layout appends one and bumps SchemaVersion.
var migrations []Migration

type schemaDoc struct {
	Version int `json:"version"`
}

// Migrate brings stored data to SchemaVersion. A fresh installation is
// stamped with the current version. Data written by a newer release is
// refused rather than misread.
func (s *Store) Migrate(ctx context.Context) error {
	return s.migrate(ctx, SchemaVersion, migrations)
}

func (s *Store) migrate(ctx context.Context, target int, steps []Migration) error {
	sess, err := concurrency.NewSession(s.c, concurrency.WithContext(ctx), concurrency.WithTTL(10))
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer sess.Close()
	mu := concurrency.NewMutex(sess, s.key("locks/schema"))
	if err := mu.Lock(ctx); err != nil {
		return fmt.Errorf("store: migrate: lock: %w", err)
	}
	defer mu.Unlock(context.WithoutCancel(ctx))

	doc, _, err := get[schemaDoc](ctx, s, s.key(keySchema))
	switch {
	case err == ErrNotFound:
		empty, err := s.isEmpty(ctx)
		if err != nil {
			return err
		}
		if empty {
			return s.putSchema(ctx, target)
		}
		doc.Version = 1 // data from before the schema key existed is version 1
	case err != nil:
		return err
	}
	if doc.Version > target {
		return fmt.Errorf("store: data is at schema version %d but this release understands up to %d; run a newer gantry", doc.Version, target)
	}
	for v := doc.Version; v < target; v++ {
		step, ok := findStep(steps, v)
		if !ok {
			return fmt.Errorf("store: no migration from schema version %d", v)
		}
		if err := step.Run(ctx, s); err != nil {
			return fmt.Errorf("store: migration %d (%s): %w", v, step.Name, err)
		}
		if err := s.putSchema(ctx, v+1); err != nil {
			return err
		}
	}
	return s.putSchema(ctx, target)
}

func findStep(steps []Migration, from int) (Migration, bool) {
	for _, m := range steps {
		if m.From == from {
			return m, true
		}
	}
	return Migration{}, false
}

func (s *Store) putSchema(ctx context.Context, v int) error {
	b, _ := json.Marshal(schemaDoc{Version: v})
	_, err := s.c.Put(ctx, s.key(keySchema), string(b))
	return err
}

func (s *Store) isEmpty(ctx context.Context) (bool, error) {
	resp, err := s.c.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	// The migration lock itself lives under the prefix.
	locks, err := s.c.Get(ctx, s.key("locks/"), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count-locks.Count == 0, nil
}

// SchemaVersionStored returns the schema version recorded in etcd.
func (s *Store) SchemaVersionStored(ctx context.Context) (int, error) {
	doc, _, err := get[schemaDoc](ctx, s, s.key(keySchema))
	return doc.Version, err
}
