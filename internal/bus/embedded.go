package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Embedded is a nats-server with JetStream running inside the Gantry process.
type Embedded struct {
	srv  *server.Server
	auth *Authenticator
	mqtt string
	leaf string
}

// EmbeddedConfig configures the embedded server.
type EmbeddedConfig struct {
	Dir  string // JetStream storage lives in Dir/jetstream
	Host string // default 127.0.0.1
	Port int    // 0 picks a random free port
	// Auth makes every client authenticate: the control plane with its
	// internal token, agents with their cluster credential. Nil: no auth.
	Auth *Authenticator
	// Users, with Auth, also admits user credentials (API keys, admin
	// tokens), each allowed to subscribe to UserSubjects(account) only:
	// NATS clients, and MQTT clients giving one as their password.
	Users        UserVerifier
	UserSubjects func(account string) []string
	// UserRefused is told why a user connection was refused (no
	// credential in it).
	UserRefused func(remote, reason string)
	// MQTTListen, when set (host:port, port 0: random), serves MQTT there
	// with nats-server's MQTT support (sessions and QoS 1 in JetStream); a
	// topic a/b/c is the subject a.b.c.
	MQTTListen string
	// TLS, when set, is the tls.Config of the client and MQTT listeners
	// (ServerTLS): every connection over TCP must speak TLS, and with a
	// client CA present a certificate it signed. A verified certificate
	// does not authenticate on its own: the connection still needs its
	// token or password (Auth). In-process connections skip TLS.
	TLS *tls.Config
	// LeafListen, when set (host:port, port 0: random), accepts leaf nodes
	// there (hub.go), on TLS when TLS is set, each admitted as Auth's
	// AdmitLeaves says. The server then has the JetStream domain
	// HubDomain.
	LeafListen string
	// Cluster, when set, makes this server one node of a hub cluster.
	Cluster *ClusterConfig
}

// StartEmbedded starts nats-server with JetStream file storage and waits until
// it accepts connections.
func StartEmbedded(cfg EmbeddedConfig, startTimeout time.Duration) (*Embedded, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("bus: embedded nats: %w", err)
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "gantry",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.Dir, "jetstream"),
		MaxPayload: MaxPayload,
		// Keep JetStream's memory use modest on small machines.
		JetStreamMaxMemory: 256 << 20,
		NoSigs:             true,
		NoLog:              true,
	}
	if cfg.TLS != nil {
		opts.TLSConfig = cfg.TLS
		opts.TLSVerify = cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		opts.TLSTimeout = tlsTimeout
	}
	if cfg.Auth != nil {
		cfg.Auth.Apply(opts)
		if cfg.Users != nil && cfg.UserSubjects != nil {
			refused := cfg.UserRefused
			if refused == nil {
				refused = func(string, string) {}
			}
			opts.CustomClientAuthentication = &userAuthenticator{inner: cfg.Auth, users: cfg.Users, subjects: cfg.UserSubjects, refused: refused}
		}
	}
	if cfg.MQTTListen != "" {
		h, p, err := net.SplitHostPort(cfg.MQTTListen)
		if err != nil {
			return nil, fmt.Errorf("bus: MQTT listen address %q: %w", cfg.MQTTListen, err)
		}
		port, err := strconv.Atoi(p)
		if err != nil || port < 0 || port > 65535 {
			return nil, fmt.Errorf("bus: MQTT listen port %q is not a port number", p)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.MQTT.Host, opts.MQTT.Port = h, port
		if cfg.TLS != nil {
			opts.MQTT.TLSConfig, opts.MQTT.TLSTimeout = cfg.TLS, tlsTimeout
		}
	}
	if err := configureHub(opts, cfg); err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(startTimeout) {
		srv.Shutdown()
		return nil, errors.New("bus: embedded nats did not become ready in time")
	}
	e := &Embedded{srv: srv, auth: cfg.Auth}
	if cfg.MQTTListen != "" {
		// The server wrote the port it bound into its options.
		e.mqtt = net.JoinHostPort(opts.MQTT.Host, strconv.Itoa(opts.MQTT.Port))
	}
	if cfg.LeafListen != "" {
		e.leaf = net.JoinHostPort(opts.LeafNode.Host, strconv.Itoa(opts.LeafNode.Port))
	}
	return e, nil
}

// tlsTimeout bounds a TLS handshake on the embedded listeners, in seconds
// (nats-server's default is 2 s; agents across sites may need more).
const tlsTimeout = 5

// MQTTAddr is the MQTT listener's host:port, or "" when there is none.
func (e *Embedded) MQTTAddr() string { return e.mqtt }

// LeafAddr is the leaf-node listener's host:port, or "" when there is none.
func (e *Embedded) LeafAddr() string { return e.leaf }

// LeafURL is the URL leaf nodes dial (tls:// on TLS), or "" when there is
// no leaf-node listener.
func (e *Embedded) LeafURL() string {
	if e.leaf == "" {
		return ""
	}
	if e.srv.ClientURL() != "" && strings.HasPrefix(e.srv.ClientURL(), "tls://") {
		return "tls://" + e.leaf
	}
	return "nats-leaf://" + e.leaf
}

// Server is the nats-server, for tests and benchmarks that need its
// monitoring (Leafz, Routez).
func (e *Embedded) Server() *server.Server { return e.srv }

// URL is the client URL for processes outside this one.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Connect opens an in-process connection (no TCP) to the embedded server
// with the control plane's own, unrestricted identity.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.InProcessServer(e.srv)}
	if e.auth != nil {
		opts = append(opts, e.auth.InternalOption())
	}
	return Connect(e.inProcessURL(), name, opts...)
}

// ConnectAgent opens an in-process connection as the agent of clusterID,
// with exactly the permissions a remote agent gets.
func (e *Embedded) ConnectAgent(clusterID, credential string) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.InProcessServer(e.srv)}, AgentOptions(clusterID, credential)...)
	return Connect(e.inProcessURL(), "gantry-agent-"+clusterID, opts...)
}

// inProcessURL names the server for in-process connections: never tls://,
// which would make the client start a TLS handshake on the pipe.
func (e *Embedded) inProcessURL() string {
	return "nats://" + strings.TrimPrefix(strings.TrimPrefix(e.srv.ClientURL(), "tls://"), "nats://")
}

// Close shuts the server down and waits for it.
func (e *Embedded) Close() error {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	return nil
}
