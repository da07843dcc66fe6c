package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterConfig makes an embedded server one node of a hub cluster: NATS
// routes between the nodes, JetStream clustered over them (streams then
// take Config.Replicas up to the node count).
type ClusterConfig struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// ServerName is this node's name, unique in the cluster (JetStream
	// needs it).
	ServerName string
	// Listen is where this node accepts routes (host:port, port 0: random).
	Listen string
	// Routes are the other nodes' route URLs (nats-route://host:port).
	Routes []string
	// TLS, when set, is the routes' TLS, both ways (the hub's certificate
	// from gen-secrets is issued for server and client use).
	TLS *tls.Config
}

// splitListen parses host:port, port 0 meaning a random one.
func splitListen(what, addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bus: %s listen address %q: %w", what, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bus: %s listen port %q is not a port number", what, p)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return h, port, nil
}

// configureHub sets the leaf-node listener and the cluster routes of cfg
// on opts.
func configureHub(opts *server.Options, cfg EmbeddedConfig) error {
	if cfg.LeafListen != "" {
		if cfg.Auth == nil || cfg.Auth.leaves == nil {
			// An unauthenticated leaf would get the global account with no
			// permissions at all.
			return errors.New("bus: a leaf-node listener needs the authenticator to admit leaves (Authenticator.AdmitLeaves)")
		}
		h, p, err := splitListen("leaf-node", cfg.LeafListen)
		if err != nil {
			return err
		}
		opts.LeafNode.Host, opts.LeafNode.Port = h, p
		// Leaves dial the URL they were given (a load balancer, a
		// TLSRoute); never tell them the nodes' own addresses, which a
		// remote site usually cannot reach.
		opts.LeafNode.NoAdvertise = true
		if cfg.TLS != nil {
			opts.LeafNode.TLSConfig, opts.LeafNode.TLSTimeout = cfg.TLS, tlsTimeout
		}
		opts.JetStreamDomain = HubDomain
	}
	if c := cfg.Cluster; c != nil {
		if c.Name == "" || c.ServerName == "" {
			return errors.New("bus: a hub cluster node needs the cluster's name and its own server name")
		}
		h, p, err := splitListen("route", c.Listen)
		if err != nil {
			return err
		}
		opts.ServerName = c.ServerName
		// Nodes learn each other from any one route (gossip): a new node
		// needs only one existing node's URL.
		opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port = c.Name, h, p
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" {
				return fmt.Errorf("bus: route URL %q: want nats-route://host:port", r)
			}
			opts.Routes = append(opts.Routes, u)
		}
		if c.TLS != nil {
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = c.TLS, tlsTimeout
		}
	}
	return nil
}

// RouteAddr is the route listener's host:port, or "" when this server is
// no cluster node.
func (e *Embedded) RouteAddr() string {
	addr := e.srv.ClusterAddr()
	if addr == nil {
		return ""
	}
	return addr.String()
}
