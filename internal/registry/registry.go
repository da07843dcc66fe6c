// Package registry registers GPU clusters and proves who their agents are.
// Registering a cluster yields a one-time, expiring bootstrap token; the
// agent exchanges it once for a renewable cluster credential, which is what
// it then presents to the HTTP API and to NATS. Only SHA-256 hashes of
// tokens are stored. Credentials carry their cluster id, so checking one is
// a single keyed read (cached briefly; revocation takes effect within the
// cache TTL).
package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
)

// Errors the registry returns; callers map them to 401/404.
var (
	ErrBadToken = errors.New("registry: token is not valid, expired, or already used")
	ErrGone     = errors.New("registry: cluster is not registered")
)

// Store is what the registry reads and writes.
type Store interface {
	RegisterCluster(ctx context.Context, c *model.Cluster, creds store.ClusterCredentials) error
	GetCluster(ctx context.Context, id string) (model.Cluster, error)
	GetClusterCredentials(ctx context.Context, clusterID string) (store.ClusterCredentials, error)
	UpdateClusterCredentials(ctx context.Context, creds *store.ClusterCredentials) error
	DeregisterCluster(ctx context.Context, clusterID string) error
	ListClusters(ctx context.Context) ([]model.Cluster, error)
}

// Config tunes lifetimes.
type Config struct {
	BootstrapTTL  time.Duration // default 1h
	CredentialTTL time.Duration // default 24h
	CacheTTL      time.Duration // how long a verified credential is trusted without a read; default 1s
	Now           func() time.Time
}

// Registry registers clusters and verifies agents.
type Registry struct {
	st  Store
	cfg Config

	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	clusterID string
	until     time.Time
}

// New builds a registry.
func New(st Store, cfg Config) *Registry {
	if cfg.BootstrapTTL <= 0 {
		cfg.BootstrapTTL = time.Hour
	}
	if cfg.CredentialTTL <= 0 {
		cfg.CredentialTTL = 24 * time.Hour
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Registry{st: st, cfg: cfg, cache: map[[32]byte]cached{}}
}

// Token kinds, visible in the token so that a leaked one is recognisable.
const (
	bootstrapPrefix  = "gantry-bootstrap"
	credentialPrefix = "gantry-cluster"
)

// newToken returns "<prefix>.<clusterID>.<secret>" and the secret's hash.
func newToken(prefix, clusterID string) (string, []byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, fmt.Errorf("registry: %w", err)
	}
	tok := prefix + "." + clusterID + "." + base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(tok))
	return tok, sum[:], nil
}

// parseToken returns the cluster id a token names, if it has the shape.
func parseToken(prefix, tok string) (string, bool) {
	rest, ok := strings.CutPrefix(tok, prefix+".")
	if !ok {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, ".")
	return id, ok && id != "" && secret != ""
}

func matches(tok string, hash []byte) bool {
	sum := sha256.Sum256([]byte(tok))
	return len(hash) == len(sum) && subtle.ConstantTimeCompare(sum[:], hash) == 1
}

// Register creates a cluster (its group is created on first use: a group is
// the set of clusters sharing a name) and returns it with a bootstrap token.
func (r *Registry) Register(ctx context.Context, c model.Cluster) (model.Cluster, string, time.Time, error) {
	if c.ID == "" {
		c.ID = uuid.NewString()
	}
	c.GroupID = groupID(c.NCAID, c.GroupName)
	c.Status = model.ClusterNotReady
	c.CreatedAt = r.cfg.Now().UTC()
	tok, hash, err := newToken(bootstrapPrefix, c.ID)
	if err != nil {
		return c, "", time.Time{}, err
	}
	expires := c.CreatedAt.Add(r.cfg.BootstrapTTL)
	err = r.st.RegisterCluster(ctx, &c, store.ClusterCredentials{ClusterID: c.ID, BootstrapHash: hash, BootstrapExpires: expires})
	return c, tok, expires, err
}

// groupID derives a stable id for a group from its account and name, so
// every cluster of a group carries the same id without a group record.
func groupID(account, name string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("gantry:cluster-group:"+account+"/"+name)).String()
}

// Exchange trades a bootstrap token for a cluster credential. A token works
// once and only until it expires.
func (r *Registry) Exchange(ctx context.Context, bootstrap string) (model.AgentCredential, error) {
	id, ok := parseToken(bootstrapPrefix, bootstrap)
	if !ok {
		return model.AgentCredential{}, ErrBadToken
	}
	creds, err := r.st.GetClusterCredentials(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return model.AgentCredential{}, ErrBadToken
	}
	if err != nil {
		return model.AgentCredential{}, err
	}
	if len(creds.BootstrapHash) == 0 || r.cfg.Now().After(creds.BootstrapExpires) || !matches(bootstrap, creds.BootstrapHash) {
		return model.AgentCredential{}, ErrBadToken
	}
	creds.BootstrapHash = nil // one use
	return r.issue(ctx, creds)
}

// Issue gives a cluster a fresh credential without a bootstrap token, for
// callers that proved the cluster's identity another way (an in-process dev
// agent, or a token of the cluster's own issuer).
func (r *Registry) Issue(ctx context.Context, clusterID string) (model.AgentCredential, error) {
	creds, err := r.st.GetClusterCredentials(ctx, clusterID)
	if errors.Is(err, store.ErrNotFound) {
		return model.AgentCredential{}, ErrGone
	}
	if err != nil {
		return model.AgentCredential{}, err
	}
	return r.issue(ctx, creds)
}

// Renew trades a valid credential for a new one; the old one keeps working
// for a short overlap in case the answer is lost on the way.
func (r *Registry) Renew(ctx context.Context, credential string) (model.AgentCredential, error) {
	id, ok := r.Verify(ctx, credential)
	if !ok {
		return model.AgentCredential{}, ErrBadToken
	}
	creds, err := r.st.GetClusterCredentials(ctx, id)
	if err != nil {
		return model.AgentCredential{}, ErrGone
	}
	return r.issue(ctx, creds)
}

func (r *Registry) issue(ctx context.Context, creds store.ClusterCredentials) (model.AgentCredential, error) {
	tok, hash, err := newToken(credentialPrefix, creds.ClusterID)
	if err != nil {
		return model.AgentCredential{}, err
	}
	now := r.cfg.Now().UTC()
	if len(creds.CredentialHash) > 0 {
		overlap := now.Add(5 * time.Minute)
		if creds.CredentialExpiry.Before(overlap) {
			overlap = creds.CredentialExpiry
		}
		creds.PreviousHash, creds.PreviousExpiry = creds.CredentialHash, overlap
	}
	creds.CredentialHash, creds.CredentialExpiry = hash, now.Add(r.cfg.CredentialTTL)
	if err := r.st.UpdateClusterCredentials(ctx, &creds); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return model.AgentCredential{}, ErrBadToken // a racing exchange won
		}
		return model.AgentCredential{}, err
	}
	return model.AgentCredential{ClusterID: creds.ClusterID, Credential: tok, ExpiresAt: creds.CredentialExpiry}, nil
}

// Verify checks a cluster credential and returns the cluster it speaks for.
func (r *Registry) Verify(ctx context.Context, credential string) (string, bool) {
	id, ok := parseToken(credentialPrefix, credential)
	if !ok {
		return "", false
	}
	key := sha256.Sum256([]byte(credential))
	now := r.cfg.Now()
	r.mu.Lock()
	c, hit := r.cache[key]
	r.mu.Unlock()
	if hit && now.Before(c.until) {
		return c.clusterID, true
	}
	creds, err := r.st.GetClusterCredentials(ctx, id)
	if err != nil {
		return "", false
	}
	valid := (matches(credential, creds.CredentialHash) && now.Before(creds.CredentialExpiry)) ||
		(matches(credential, creds.PreviousHash) && now.Before(creds.PreviousExpiry))
	r.mu.Lock()
	defer r.mu.Unlock()
	if !valid {
		delete(r.cache, key)
		return "", false
	}
	if len(r.cache) > 10000 { // bound the cache; it refills from the store
		clear(r.cache)
	}
	r.cache[key] = cached{clusterID: id, until: now.Add(r.cfg.CacheTTL)}
	return id, true
}

// VerifyAgent is Verify for callers without a context (the NATS server's
// authentication hook).
func (r *Registry) VerifyAgent(credential string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.Verify(ctx, credential)
}

// Deregister deletes a cluster and revokes its credentials.
func (r *Registry) Deregister(ctx context.Context, clusterID string) error {
	err := r.st.DeregisterCluster(ctx, clusterID)
	if errors.Is(err, store.ErrNotFound) {
		return ErrGone
	}
	return err
}
