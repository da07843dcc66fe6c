package store

import (
	"context"
	"errors"

	"github.com/gantry-dev/gantry/internal/model"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// prefixRegistryCreds holds the clear part of registry credentials:
// registry-credentials/<account>/<id>.
const prefixRegistryCreds = "registry-credentials/"

// RegistryCredentialSecrets is the function id under which a registry
// credential's sealed secret is kept in the secrets prefix
// (secrets/registry-credentials/<id>/secret). Keeping it there means NEK
// rotation, key status counts and legacy re-sealing cover it with no code
// of their own; function ids are UUIDs, so it never collides with one.
const RegistryCredentialSecrets = "registry-credentials"

// RegistrySecretName is the secret name of a credential's sealed part.
const RegistrySecretName = "secret"

func (s *Store) registryCredKey(account, id string) string {
	return s.key(prefixRegistryCreds, account, "/", id)
}

func (s *Store) registrySecretKey(id string) string {
	return s.secretKey(RegistryCredentialSecrets, id, RegistrySecretName)
}

// CreateRegistryCredential writes a credential and its sealed secret at
// once. It fails with ErrExists if the id is taken and ErrConflict if the
// account's NEK rotated since sealing.
func (s *Store) CreateRegistryCredential(ctx context.Context, c *model.RegistryCredential, sealed SealedSecret) error {
	guards, err := s.secretGuards([]SealedSecret{sealed})
	if err != nil {
		return err
	}
	k := s.registryCredKey(c.NCAID, c.ID)
	rec, err := putOp(k, c)
	if err != nil {
		return err
	}
	sealed.Name = RegistrySecretName
	sec, err := putOp(s.registrySecretKey(c.ID), sealed)
	if err != nil {
		return err
	}
	guards = append(guards, notExists(k))
	_, err = s.txn(ctx, guards, []clientv3.Op{rec, sec}, ErrConflict)
	return err
}

// GetRegistryCredential reads one credential of an account; another
// account's is ErrNotFound.
func (s *Store) GetRegistryCredential(ctx context.Context, account, id string) (model.RegistryCredential, error) {
	c, _, err := get[model.RegistryCredential](ctx, s, s.registryCredKey(account, id))
	return c, err
}

// ListRegistryCredentials returns the credentials of one account.
func (s *Store) ListRegistryCredentials(ctx context.Context, account string) ([]model.RegistryCredential, error) {
	out, _, err := list[model.RegistryCredential](ctx, s, s.registryCredKey(account, ""))
	return out, err
}

// UpdateRegistryCredential rewrites a credential and, when sealed is not
// nil, its secret. It fails with ErrNotFound if the credential is gone.
func (s *Store) UpdateRegistryCredential(ctx context.Context, c *model.RegistryCredential, sealed *SealedSecret) error {
	k := s.registryCredKey(c.NCAID, c.ID)
	rec, err := putOp(k, c)
	if err != nil {
		return err
	}
	guards := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), ">", 0)}
	ops := []clientv3.Op{rec}
	if sealed != nil {
		g, err := s.secretGuards([]SealedSecret{*sealed})
		if err != nil {
			return err
		}
		guards = append(guards, g...)
		sealed.Name = RegistrySecretName
		op, err := putOp(s.registrySecretKey(c.ID), *sealed)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	_, err = s.txn(ctx, guards, ops, ErrConflict)
	if errors.Is(err, ErrConflict) {
		if _, gerr := s.GetRegistryCredential(ctx, c.NCAID, c.ID); errors.Is(gerr, ErrNotFound) {
			return ErrNotFound
		}
	}
	return err
}

// DeleteRegistryCredential removes a credential and its sealed secret.
func (s *Store) DeleteRegistryCredential(ctx context.Context, account, id string) error {
	k := s.registryCredKey(account, id)
	_, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), ">", 0)},
		[]clientv3.Op{clientv3.OpDelete(k), clientv3.OpDelete(s.registrySecretKey(id))}, ErrNotFound)
	return err
}

// GetRegistrySecret reads a credential's sealed secret, for the agent
// path that turns it into an image pull secret.
func (s *Store) GetRegistrySecret(ctx context.Context, id string) (SealedSecret, error) {
	return s.GetSecret(ctx, RegistryCredentialSecrets, id, RegistrySecretName)
}
