package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Leaf is a nats-server leaf node in a GPU cluster, run by its agent: the
// cluster's clients (the agent, its functions, local consumers) connect to
// it and publish and subscribe locally; what they send the hub, or want
// from it, crosses one outbound connection that the leaf keeps, and resumes
// after a cut. While the hub is unreachable local traffic goes on; the
// JetStream API (which lives on the hub) fails until the link is back.
type Leaf struct {
	srv     *server.Server
	cluster string
	url     string
}

// LeafConfig configures a leaf node.
type LeafConfig struct {
	// ClusterID is the cluster whose leaf this is; the hub admits it with
	// that cluster's permissions only (leafPermissions).
	ClusterID string
	// Hub are the hub's leaf-node URLs (nats-leaf://host:port, or tls://
	// when the hub's leaf listener speaks TLS); the leaf keeps one
	// connection to one of them.
	Hub []string
	// Seed is the site's user NKey seed (gen-secrets' cpc/<id>/nkeys/user/
	// seed); the leaf signs the hub's nonce with it.
	Seed []byte
	// TLS is the link's TLS (ClientTLS: the hub's CA and the site's client
	// certificate); nil for plaintext, which the hub refuses beyond
	// loopback unless it runs insecure.
	TLS *tls.Config
	// Listen, when set (host:port, port 0: random), serves the cluster's
	// clients over TCP; empty serves only in-process connections
	// (ConnectAgent). Beyond loopback it needs Insecure (it speaks no TLS).
	Listen   string
	Insecure bool
	// Credential returns the cluster's current credential: clients of the
	// leaf present it as their token, as they would to the hub, and get an
	// agent's permissions (agentPermissions).
	Credential func() string
	// ReconnectWait is the pause between attempts to reach the hub
	// (default 500ms).
	ReconnectWait time.Duration
	// Logger, when set, receives the leaf server's notices, warnings and
	// errors (the link going down and coming back).
	Logger *slog.Logger
}

// localVerifier admits the cluster's own credential on the leaf.
type localVerifier struct {
	cluster    string
	credential func() string
}

func (v localVerifier) VerifyAgent(token string) (string, bool) {
	want := v.credential()
	if want == "" || !constantTimeEqual(token, want) {
		return "", false
	}
	return v.cluster, true
}

// StartLeaf starts a leaf node and waits until it accepts local
// connections; it need not have reached the hub yet (Connected).
func StartLeaf(cfg LeafConfig, startTimeout time.Duration) (*Leaf, error) {
	if !isSubjectToken(cfg.ClusterID) {
		return nil, fmt.Errorf("bus: leaf: cluster id %q cannot name a subject", cfg.ClusterID)
	}
	if len(cfg.Hub) == 0 {
		return nil, errors.New("bus: leaf: no hub URL: give the hub's leaf-node URL (gantry server --nats-leaf-listen)")
	}
	if cfg.Credential == nil {
		return nil, errors.New("bus: leaf: no credential for local clients")
	}
	kp, err := nkeys.FromSeed(cfg.Seed)
	if err != nil {
		return nil, errors.New("bus: leaf: the NKey seed is not one (give gen-secrets' cpc/<id>/nkeys/user/seed)")
	}
	pub, err := kp.PublicKey()
	kp.Wipe()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, errors.New("bus: leaf: the NKey seed is not a user key (give gen-secrets' cpc/<id>/nkeys/user/seed)")
	}
	var urls []*url.URL
	for _, h := range cfg.Hub {
		u, err := url.Parse(h)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("bus: leaf: hub URL %q: want nats-leaf://host:port or tls://host:port", h)
		}
		// The user names the cluster (checkLeaf).
		u.User = url.User(cfg.ClusterID)
		urls = append(urls, u)
	}
	wait := cfg.ReconnectWait
	if wait <= 0 {
		wait = 500 * time.Millisecond
	}
	opts := &server.Options{
		ServerName: "gantry-leaf-" + cfg.ClusterID,
		MaxPayload: MaxPayload,
		NoSigs:     true,
		NoLog:      cfg.Logger == nil,
		LeafNode: server.LeafNodeOpts{
			ReconnectInterval: wait,
			Remotes: []*server.RemoteLeafOpts{{
				URLs:        urls,
				Nkey:        string(cfg.Seed),
				TLS:         cfg.TLS != nil,
				TLSConfig:   cfg.TLS,
				TLSTimeout:  tlsTimeout,
				NoRandomize: false,
			}},
		},
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		h, p, err := splitListen("leaf's client", cfg.Listen)
		if err != nil {
			return nil, err
		}
		if !IsLoopback(h) && !cfg.Insecure {
			return nil, fmt.Errorf("bus: leaf: the leaf would serve this cluster's clients on %s without TLS, so the cluster credential would cross the network in cleartext: listen on 127.0.0.1, or pass --nats-insecure on a network you trust", cfg.Listen)
		}
		opts.Host, opts.Port = h, p
	}
	// The leaf maps its clients' JetStream API (leafMappings) before it
	// checks their permissions, so they get an agent's as they cross to
	// the hub.
	local := NewAuthenticator("", localVerifier{cluster: cfg.ClusterID, credential: cfg.Credential})
	local.perms = leafPermissions
	local.Apply(opts)
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: leaf: %w", err)
	}
	for src, dst := range leafMappings {
		if err := srv.GlobalAccount().AddMapping(src, dst); err != nil {
			return nil, fmt.Errorf("bus: leaf: mapping %s: %w", src, err)
		}
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(&slogAdapter{log: cfg.Logger.With("component", "bus-leaf", "cluster", cfg.ClusterID)}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(startTimeout) {
		srv.Shutdown()
		return nil, errors.New("bus: leaf node did not become ready in time")
	}
	l := &Leaf{srv: srv, cluster: cfg.ClusterID}
	if cfg.Listen != "" {
		l.url = srv.ClientURL()
	}
	return l, nil
}

// Connected reports whether the link to the hub is up.
func (l *Leaf) Connected() bool { return l.srv.NumLeafNodes() > 0 }

// URL is the URL the cluster's clients connect to, or "" when the leaf
// serves in-process connections only.
func (l *Leaf) URL() string { return l.url }

// Server is the nats-server, for tests and benchmarks.
func (l *Leaf) Server() *server.Server { return l.srv }

// ConnectAgent opens an in-process connection as the cluster's agent,
// presenting the credential token returns at every (re)connect and the
// agent's inbox prefix.
func (l *Leaf) ConnectAgent(token func() string) (*nats.Conn, error) {
	return Connect("nats://in-process", "gantry-agent-"+l.cluster, nats.InProcessServer(l.srv),
		nats.TokenHandler(token), nats.CustomInboxPrefix(AgentInboxPrefix(l.cluster)))
}

// Close shuts the leaf down and waits for it.
func (l *Leaf) Close() error {
	l.srv.Shutdown()
	l.srv.WaitForShutdown()
	return nil
}

// slogAdapter is nats-server's logger on slog: notices at info, warnings
// and errors as such; debug and trace are not enabled.
type slogAdapter struct{ log *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.log.Info(sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.log.Error(sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  {}
func (a *slogAdapter) Tracef(format string, v ...any)  {}

func sprintf(format string, v ...any) string {
	return strings.TrimSpace(fmt.Sprintf(format, v...))
}
