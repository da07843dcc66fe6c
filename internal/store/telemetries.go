package store

import (
	"context"
	"errors"

	"github.com/gantry-dev/gantry/internal/model"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// prefixTelemetries holds the clear part of telemetry endpoints:
// telemetries/<account>/<id>.
const prefixTelemetries = "telemetries/"

// TelemetrySecrets is the function id under which a telemetry's sealed
// secret is kept in the secrets prefix (secrets/telemetries/<id>/secret),
// so that NEK rotation and key status cover it, as they do registry
// credentials. Function ids are UUIDs, so it never collides with one.
const TelemetrySecrets = "telemetries"

// TelemetrySecretName is the secret name of a telemetry's sealed part.
const TelemetrySecretName = "secret"

func (s *Store) telemetryKey(account, id string) string {
	return s.key(prefixTelemetries, account, "/", id)
}

func (s *Store) telemetrySecretKey(id string) string {
	return s.secretKey(TelemetrySecrets, id, TelemetrySecretName)
}

// CreateTelemetry writes a telemetry and its sealed secret at once. It
// fails with ErrExists if the id is taken and ErrConflict if the account's
// NEK rotated since sealing.
func (s *Store) CreateTelemetry(ctx context.Context, t *model.Telemetry, sealed SealedSecret) error {
	guards, err := s.secretGuards([]SealedSecret{sealed})
	if err != nil {
		return err
	}
	k := s.telemetryKey(t.NCAID, t.ID)
	rec, err := putOp(k, t)
	if err != nil {
		return err
	}
	sealed.Name = TelemetrySecretName
	sec, err := putOp(s.telemetrySecretKey(t.ID), sealed)
	if err != nil {
		return err
	}
	guards = append(guards, notExists(k))
	_, err = s.txn(ctx, guards, []clientv3.Op{rec, sec}, ErrConflict)
	return err
}

// GetTelemetry reads one telemetry of an account; another account's is
// ErrNotFound.
func (s *Store) GetTelemetry(ctx context.Context, account, id string) (model.Telemetry, error) {
	t, _, err := get[model.Telemetry](ctx, s, s.telemetryKey(account, id))
	return t, err
}

// ListTelemetries returns the telemetries of one account.
func (s *Store) ListTelemetries(ctx context.Context, account string) ([]model.Telemetry, error) {
	out, _, err := list[model.Telemetry](ctx, s, s.telemetryKey(account, ""))
	return out, err
}

// PutTelemetrySecret replaces a telemetry's sealed secret. It fails with
// ErrNotFound if the telemetry is gone and ErrConflict if the account's
// NEK rotated since sealing.
func (s *Store) PutTelemetrySecret(ctx context.Context, account, id string, sealed SealedSecret) error {
	guards, err := s.secretGuards([]SealedSecret{sealed})
	if err != nil {
		return err
	}
	k := s.telemetryKey(account, id)
	sealed.Name = TelemetrySecretName
	op, err := putOp(s.telemetrySecretKey(id), sealed)
	if err != nil {
		return err
	}
	guards = append(guards, clientv3.Compare(clientv3.CreateRevision(k), ">", 0))
	_, err = s.txn(ctx, guards, []clientv3.Op{op}, ErrConflict)
	if errors.Is(err, ErrConflict) {
		if _, gerr := s.GetTelemetry(ctx, account, id); errors.Is(gerr, ErrNotFound) {
			return ErrNotFound
		}
	}
	return err
}

// DeleteTelemetry removes a telemetry and its sealed secret.
func (s *Store) DeleteTelemetry(ctx context.Context, account, id string) error {
	k := s.telemetryKey(account, id)
	_, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), ">", 0)},
		[]clientv3.Op{clientv3.OpDelete(k), clientv3.OpDelete(s.telemetrySecretKey(id))}, ErrNotFound)
	return err
}

// GetTelemetrySecret reads a telemetry's sealed secret, for the agent
// path that exports an instance's logs.
func (s *Store) GetTelemetrySecret(ctx context.Context, id string) (SealedSecret, error) {
	return s.GetSecret(ctx, TelemetrySecrets, id, TelemetrySecretName)
}
