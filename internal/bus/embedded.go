package bus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Embedded is a nats-server with JetStream running inside the Gantry process.
type Embedded struct {
	srv  *server.Server
	auth *Authenticator
}

// EmbeddedConfig configures the embedded server.
type EmbeddedConfig struct {
	Dir  string // JetStream storage lives in Dir/jetstream
	Host string // default 127.0.0.1
	Port int    // 0 picks a random free port
	// Auth makes every client authenticate: the control plane with its
	// internal token, agents with their cluster credential. Nil: no auth.
	Auth *Authenticator
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
	if cfg.Auth != nil {
		cfg.Auth.Apply(opts)
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
	return &Embedded{srv: srv, auth: cfg.Auth}, nil
}

// URL is the client URL for processes outside this one.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Connect opens an in-process connection (no TCP) to the embedded server
// with the control plane's own, unrestricted identity.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.InProcessServer(e.srv)}
	if e.auth != nil {
		opts = append(opts, e.auth.InternalOption())
	}
	return Connect(e.srv.ClientURL(), name, opts...)
}

// ConnectAgent opens an in-process connection as the agent of clusterID,
// with exactly the permissions a remote agent gets.
func (e *Embedded) ConnectAgent(clusterID, credential string) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.InProcessServer(e.srv)}, AgentOptions(clusterID, credential)...)
	return Connect(e.srv.ClientURL(), "gantry-agent-"+clusterID, opts...)
}

// Close shuts the server down and waits for it.
func (e *Embedded) Close() error {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	return nil
}
