package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
)

// Identity is who an agent is: its cluster and the credential that proves
// it. It lives in the agent's state dir, so a restarted agent keeps its
// cluster and never registers a second one.
type Identity struct {
	ClusterID  string    `json:"clusterId"`
	Credential string    `json:"credential"`
	ExpiresAt  time.Time `json:"expiresAt"`
	NATSURL    string    `json:"natsUrl"`
}

// CredentialSource trades a token (a bootstrap token, or the current
// credential) for a cluster credential; the CLI backs it with the API.
type CredentialSource func(ctx context.Context, token string) (model.AgentCredential, error)

// IdentityStore keeps an agent's identity across restarts: a file in the
// state dir (FileIdentity), or a Kubernetes Secret in the agent's namespace
// (kube.SecretIdentity), so that an agent pod that is rescheduled keeps its
// cluster.
type IdentityStore interface {
	// Load returns the saved identity; ok is false if there is none.
	Load(ctx context.Context) (id Identity, ok bool, err error)
	// Save replaces the saved identity.
	Save(ctx context.Context, id Identity) error
	// String says where the identity lives, for messages.
	String() string
}

// identityFile is the identity's file name in the state dir.
const identityFile = "identity.json"

// FileIdentity keeps the identity in a file (mode 0600) in a directory.
type FileIdentity string

var _ IdentityStore = FileIdentity("")

// String names the identity file.
func (dir FileIdentity) String() string { return filepath.Join(string(dir), identityFile) }

// Load reads the identity file.
func (dir FileIdentity) Load(context.Context) (Identity, bool, error) {
	return LoadIdentity(string(dir))
}

// Save writes the identity file atomically.
func (dir FileIdentity) Save(_ context.Context, id Identity) error { return id.Save(string(dir)) }

// LoadIdentity reads the identity from dir; ok is false if there is none.
func LoadIdentity(dir string) (id Identity, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return id, false, nil
	}
	if err != nil {
		return id, false, fmt.Errorf("agent: read identity: %w", err)
	}
	return DecodeIdentity(b, filepath.Join(dir, identityFile))
}

// DecodeIdentity parses a saved identity; where names its place in the
// error a damaged one gets.
func DecodeIdentity(b []byte, where string) (id Identity, ok bool, err error) {
	if err := json.Unmarshal(b, &id); err != nil || id.ClusterID == "" || id.Credential == "" {
		return id, false, fmt.Errorf("agent: the identity in %s is damaged; remove it and start the agent with a new bootstrap token", where)
	}
	return id, true, nil
}

// Save writes the identity (mode 0600, atomically).
func (id Identity) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	b, _ := json.MarshalIndent(id, "", "  ")
	tmp := filepath.Join(dir, identityFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("agent: write identity: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, identityFile))
}

// Enroll returns the identity saved in store, or obtains one with enroll
// (an exchange of the bootstrap token, or of a JWT of the cluster's issuer)
// and saves it. A saved identity always wins, so restarting with the same,
// already used bootstrap token is harmless.
func Enroll(ctx context.Context, store IdentityStore, enroll func(context.Context) (model.AgentCredential, error)) (Identity, error) {
	id, ok, err := store.Load(ctx)
	if err != nil || ok {
		return id, err
	}
	cred, err := enroll(ctx)
	if err != nil {
		return id, fmt.Errorf("agent: no identity in %s yet, and enrolling failed: %w", store, err)
	}
	id = Identity{ClusterID: cred.ClusterID, Credential: cred.Credential, ExpiresAt: cred.ExpiresAt, NATSURL: cred.NATSURL}
	return id, store.Save(ctx, id)
}

// KeepRenewed renews id's credential at half its remaining life, saves it
// and hands it to set, until ctx ends. A refused renewal (the cluster was
// deleted) is returned; passing failures are retried.
func KeepRenewed(ctx context.Context, store IdentityStore, id Identity, src CredentialSource, set func(Identity)) error {
	for {
		wait := time.Until(id.ExpiresAt) / 2
		if wait < time.Second {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		cred, err := src(ctx, id.Credential)
		if err != nil {
			if errors.Is(err, ErrRefused) {
				return fmt.Errorf("agent: the control plane refused to renew the credential of cluster %s (was the cluster deleted?)", id.ClusterID)
			}
			continue
		}
		next := Identity{ClusterID: cred.ClusterID, Credential: cred.Credential, ExpiresAt: cred.ExpiresAt, NATSURL: id.NATSURL}
		if cred.NATSURL != "" {
			next.NATSURL = cred.NATSURL
		}
		if err := store.Save(ctx, next); err != nil {
			return err
		}
		id = next
		set(next)
	}
}

// ErrRefused is what a CredentialSource returns when the control plane says
// the token is not valid (as opposed to being unreachable).
var ErrRefused = errors.New("agent: credential refused")
