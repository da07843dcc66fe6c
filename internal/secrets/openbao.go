package secrets

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	bao "github.com/openbao/openbao/api/v2"
)

// OpenBaoConfig points the OpenBao provider at a KV version 2 secret whose
// versions are the MEK versions. Each version holds one field, "key": the
// 32-byte key, base64-encoded.
type OpenBaoConfig struct {
	// Address is the server URL, e.g. https://bao.example.com:8200. TLS
	// settings come from the client library's environment variables
	// (BAO_CACERT, BAO_CLIENT_CERT, ...).
	Address string
	// Mount is the KV v2 mount (default "secret"); Path the secret under
	// it (default "gantry/mek").
	Mount string
	Path  string
	// TokenFile holds a token (token auth). It is read before every call,
	// so an agent that renews the token in place is picked up.
	TokenFile string
	// KubernetesRole selects Kubernetes auth: the service-account JWT in
	// KubernetesJWTFile (default the pod's mounted token) is exchanged at
	// auth/<KubernetesMount>/login (default mount "kubernetes").
	KubernetesRole    string
	KubernetesJWTFile string
	KubernetesMount   string
}

// Defaults of OpenBaoConfig.
const (
	DefaultOpenBaoMount           = "secret"
	DefaultOpenBaoPath            = "gantry/mek"
	DefaultOpenBaoKubernetesMount = "kubernetes"
	DefaultKubernetesJWTFile      = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// OpenBao reads MEK versions from OpenBao (or Vault) KV v2 with the
// official OpenBao client. Keys are fetched only when the service first
// needs a version, and a new version is written with check-and-set, so two
// servers rotating at once cannot both create one.
type OpenBao struct {
	cfg OpenBaoConfig
	c   *bao.Client
}

var _ MEKProvider = (*OpenBao)(nil)

// NewOpenBao checks cfg and builds the client; it does not contact the
// server.
func NewOpenBao(cfg OpenBaoConfig) (*OpenBao, error) {
	if cfg.Address == "" {
		return nil, errors.New("secrets: OpenBao provider needs an address (--openbao-addr)")
	}
	if cfg.Mount == "" {
		cfg.Mount = DefaultOpenBaoMount
	}
	if cfg.Path == "" {
		cfg.Path = DefaultOpenBaoPath
	}
	if cfg.KubernetesMount == "" {
		cfg.KubernetesMount = DefaultOpenBaoKubernetesMount
	}
	if cfg.KubernetesJWTFile == "" {
		cfg.KubernetesJWTFile = DefaultKubernetesJWTFile
	}
	if cfg.KubernetesRole == "" && cfg.TokenFile == "" {
		return nil, errors.New("secrets: OpenBao provider needs a token file (--openbao-token-file) or a Kubernetes role (--openbao-k8s-role)")
	}
	bc := bao.DefaultConfig()
	if bc.Error != nil {
		return nil, fmt.Errorf("secrets: OpenBao client settings: %w", bc.Error)
	}
	bc.Address = cfg.Address
	c, err := bao.NewClient(bc)
	if err != nil {
		return nil, fmt.Errorf("secrets: OpenBao client: %w", err)
	}
	c.ClearToken() // never a token from the environment: only the configured auth
	return &OpenBao{cfg: cfg, c: c}, nil
}

// login sets a fresh token: read from the token file, or obtained with the
// service-account JWT. MEK reads are rare (once per version per process),
// so there is no lease to track.
func (o *OpenBao) login(ctx context.Context) error {
	if o.cfg.KubernetesRole == "" {
		b, err := os.ReadFile(o.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("secrets: OpenBao token file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return fmt.Errorf("secrets: OpenBao token file %s is empty", o.cfg.TokenFile)
		}
		o.c.SetToken(tok)
		return nil
	}
	jwt, err := os.ReadFile(o.cfg.KubernetesJWTFile)
	if err != nil {
		return fmt.Errorf("secrets: Kubernetes service-account token: %w", err)
	}
	o.c.ClearToken()
	path := "auth/" + strings.Trim(o.cfg.KubernetesMount, "/") + "/login"
	resp, err := o.c.Logical().WriteWithContext(ctx, path, map[string]any{
		"role": o.cfg.KubernetesRole,
		"jwt":  strings.TrimSpace(string(jwt)),
	})
	if err != nil {
		return fmt.Errorf("secrets: OpenBao Kubernetes login (role %s): %w", o.cfg.KubernetesRole, err)
	}
	if resp == nil || resp.Auth == nil || resp.Auth.ClientToken == "" {
		return fmt.Errorf("secrets: OpenBao Kubernetes login (role %s) returned no token", o.cfg.KubernetesRole)
	}
	o.c.SetToken(resp.Auth.ClientToken)
	return nil
}

// kv logs in and returns the KV v2 handle.
func (o *OpenBao) kv(ctx context.Context) (*bao.KVv2, error) {
	if err := o.login(ctx); err != nil {
		return nil, err
	}
	return o.c.KVv2(o.cfg.Mount), nil
}

func (o *OpenBao) where() string { return o.cfg.Mount + "/" + o.cfg.Path }

// Key reads KV version v.
func (o *OpenBao) Key(ctx context.Context, v int) ([]byte, error) {
	kv, err := o.kv(ctx)
	if err != nil {
		return nil, err
	}
	sec, err := kv.GetVersion(ctx, o.cfg.Path, v)
	if err != nil {
		return nil, fmt.Errorf("secrets: MEK version %d from OpenBao %s: %w", v, o.where(), err)
	}
	return o.decode(sec, v)
}

// Latest reads the current KV version.
func (o *OpenBao) Latest(ctx context.Context) (int, []byte, error) {
	kv, err := o.kv(ctx)
	if err != nil {
		return 0, nil, err
	}
	sec, err := kv.Get(ctx, o.cfg.Path)
	if errors.Is(err, bao.ErrSecretNotFound) {
		return 0, nil, ErrNoMEK
	}
	if err != nil {
		return 0, nil, fmt.Errorf("secrets: MEK from OpenBao %s: %w", o.where(), err)
	}
	if sec.VersionMetadata == nil {
		return 0, nil, fmt.Errorf("secrets: OpenBao %s has no version metadata; is the mount KV version 2?", o.where())
	}
	key, err := o.decode(sec, sec.VersionMetadata.Version)
	return sec.VersionMetadata.Version, key, err
}

// Create writes a new random key as the next KV version, with check-and-set
// on the current one.
func (o *OpenBao) Create(ctx context.Context) (int, error) {
	cur, _, err := o.Latest(ctx)
	if err != nil && !errors.Is(err, ErrNoMEK) {
		return 0, err
	}
	key, err := newKey()
	if err != nil {
		return 0, err
	}
	kv, err := o.kv(ctx)
	if err != nil {
		return 0, err
	}
	sec, err := kv.Put(ctx, o.cfg.Path, map[string]any{"key": base64.StdEncoding.EncodeToString(key)}, bao.WithCheckAndSet(cur))
	clear(key)
	if err != nil {
		return 0, fmt.Errorf("secrets: write a new MEK version to OpenBao %s: %w", o.where(), err)
	}
	if sec.VersionMetadata == nil || sec.VersionMetadata.Version <= cur {
		return 0, fmt.Errorf("secrets: OpenBao %s did not report a new version", o.where())
	}
	return sec.VersionMetadata.Version, nil
}

// decode extracts and checks the key of one version.
func (o *OpenBao) decode(sec *bao.KVSecret, v int) ([]byte, error) {
	if sec.Data == nil {
		return nil, fmt.Errorf("secrets: MEK version %d in OpenBao %s is deleted or destroyed", v, o.where())
	}
	s, ok := sec.Data["key"].(string)
	if !ok {
		return nil, fmt.Errorf(`secrets: MEK version %d in OpenBao %s has no string field "key"`, v, o.where())
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(key) != keySize {
		return nil, fmt.Errorf(`secrets: MEK version %d in OpenBao %s: "key" must be %d bytes, base64-encoded`, v, o.where(), keySize)
	}
	return key, nil
}
