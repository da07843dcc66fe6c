// Package controlplane wires Gantry's server: store, bus, management API,
// invocation gateway, agent handlers and the reconciler, with one lifecycle:
// New(cfg) -> Start(ctx) -> Ready() -> Close(). The binary, `gantry dev` and
// the tests all start it through this package.
package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/gantry-dev/gantry/internal/api"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/autoscale"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/catalog"
	"github.com/gantry-dev/gantry/internal/controller"
	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/invoke"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/ui"
	"github.com/gantry-dev/gantry/internal/web"
)

// DefaultAccount is the account gantry dev's admin token acts for.
const DefaultAccount = "gantry-local"

// EtcdTLS names the files for TLS to an external etcd: the CA that signed
// etcd's certificate and, for client-certificate authentication, this
// server's certificate and key.
type EtcdTLS struct {
	CAFile, CertFile, KeyFile string
}

// Config configures a control-plane server.
type Config struct {
	// DataDir holds embedded etcd and NATS data, the admin token and, with
	// the file provider, the master key versions (keys/mek/v<N>.key).
	DataDir string
	// Listen is the HTTP address, e.g. 127.0.0.1:8080 (port 0: random).
	Listen string
	// EtcdEndpoints selects an external etcd cluster; empty embeds one.
	EtcdEndpoints []string
	// EtcdTLS is the client TLS for external etcd (files; all optional).
	EtcdTLS EtcdTLS
	// NATSURL selects an external NATS; empty embeds nats-server.
	NATSURL string
	// NATSCredsFile is a NATS credentials file (JWT and NKey seed) for
	// external NATS.
	NATSCredsFile string
	// NATSListen is where embedded NATS listens for agents in other
	// processes (host:port; port 0: random).
	NATSListen string
	// NATSTLS is TLS on the bus. Embedded: the server's certificate and
	// key for the client and MQTT listeners and, with CA, the CA every
	// client certificate must chain to (mTLS). External (NATSURL): the CA
	// that signed that server's certificate and this server's client
	// certificate.
	NATSTLS bus.TLSFiles
	// NATSInsecure lets the embedded NATS (or MQTT) listen beyond loopback
	// without TLS; otherwise that is refused at start.
	NATSInsecure bool
	// Account is the account the admin token acts for.
	Account string
	// NATSAdvertise is the NATS URL agents are told to use (default: the
	// embedded server's client URL, or NATSURL).
	NATSAdvertise string
	// NATSLeafListen, when set (host:port), accepts the GPU clusters'
	// leaf nodes (gantry agent --leaf) on the embedded NATS, on TLS with
	// NATSTLS; NATSLeafKeys is gen-secrets' output directory, whose
	// cpc/<id>/nkeys/user/pubkey say which key is which site's.
	NATSLeafListen string
	NATSLeafKeys   string
	// MetricsListen, when set (host:port), serves GET /metrics there
	// without authentication, for a scraper.
	MetricsListen string
	// DisableMetrics leaves the metrics out entirely (no /metrics, nothing
	// observed), for gantry bench invoke --metrics to measure their cost.
	DisableMetrics bool
	// Invocation bounds the calls the gateway takes.
	Invocation Invocation
	// GRPC is the gRPC invocation listener.
	GRPC GRPC
	// Autoscale tunes the autoscaler.
	Autoscale Autoscale
	// Events is the retention of the platform event stream.
	Events Events
	// Resync is the reconciler's periodic pass (default 5s).
	Resync time.Duration
	// Grace is how long a NOT_READY cluster keeps its instances (default 30s).
	Grace time.Duration
	// MEKProvider is where the secret store's master key lives: "file"
	// (default; versions under <DataDir>/keys/mek) or "openbao" (a KV v2
	// secret, configured by OpenBao).
	MEKProvider string
	OpenBao     secrets.OpenBaoConfig
	// AdminKeys says who may mint admin tokens (POST /v1/admin/keys) and
	// call the installation's key routes: auth.InstallLoopback (default),
	// auth.InstallBootstrap (bearer = BootstrapSecret) or auth.InstallOpen.
	AdminKeys auth.InstallMode
	// BootstrapSecret is the installation's bootstrap secret. With
	// AdminKeys bootstrap and none given, one is generated on first start
	// into <DataDir>/bootstrap-secret (0600).
	BootstrapSecret string
	// AdminTokenTTL is how long the admin token written to
	// <DataDir>/admin-token at each start stays valid (default 30 days).
	AdminTokenTTL time.Duration
	Logger        *slog.Logger
}

// MEK providers.
const (
	MEKProviderFile    = "file"
	MEKProviderOpenBao = "openbao"
)

// Server is a running control plane.
type Server struct {
	cfg Config
	log *slog.Logger

	etcd     *store.Embedded
	etcdCli  *clientv3.Client
	st       *store.Store
	nats     *bus.Embedded
	nc       *nats.Conn
	js       jetstream.JetStream
	gateway  *invoke.Gateway
	assets   *invoke.Assets
	reg      *registry.Registry
	ess      *secrets.Service
	issuer   *auth.Issuer
	agentSub []*nats.Subscription
	http     *http.Server
	listener net.Listener
	grpc     *grpcListener
	token    string
	users    busUsers

	metrics    *metrics.Metrics
	metricsSrv *http.Server
	metricsLis net.Listener
	ui         *ui.UI

	cancel    context.CancelFunc
	bg        chan struct{} // closed when background loops have exited
	closeOnce sync.Once
	ready     chan struct{}
}

// New validates cfg. Nothing starts until Start.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("controlplane: a data dir is required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if cfg.Account == "" {
		cfg.Account = DefaultAccount
	}
	switch cfg.MEKProvider {
	case "":
		cfg.MEKProvider = MEKProviderFile
	case MEKProviderFile, MEKProviderOpenBao:
	default:
		return nil, fmt.Errorf("controlplane: unknown MEK provider %q: use %s or %s", cfg.MEKProvider, MEKProviderFile, MEKProviderOpenBao)
	}
	if err := cfg.Invocation.validate(); err != nil {
		return nil, err
	}
	if err := cfg.GRPC.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, ready: make(chan struct{})}, nil
}

// Start brings every component up in dependency order and returns once the
// server accepts requests.
func (s *Server) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("controlplane: data dir: %w", err)
	}
	if err := s.startStore(ctx); err != nil {
		return err
	}
	s.reg = registry.New(s.st, registry.Config{})
	if err := s.startBus(ctx); err != nil {
		return err
	}
	mek, err := s.mekProvider()
	if err != nil {
		return err
	}
	s.ess = secrets.NewService(s.st, mek, s.log)
	if err := s.ess.Start(ctx); err != nil {
		return err
	}
	s.issuer = auth.NewIssuer(s.st, s.ess, auth.IssuerConfig{Logger: s.log})
	if err := s.issuer.Start(ctx); err != nil {
		return err
	}
	if err := s.writeAdminToken(ctx); err != nil {
		return err
	}
	gate, err := s.installGate()
	if err != nil {
		return err
	}
	apiKeys := auth.NewAPIKeys(s.st, auth.APIKeysConfig{})
	authn := auth.NewChain(s.issuer, apiKeys)
	s.users.chain.Store(authn) // MQTT and NATS users from now on

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel

	cat := catalog.New(s.st, s.log)
	cat.Start(runCtx)
	results, err := s.js.KeyValue(ctx, bus.ResultsBucket)
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	large, err := s.js.ObjectStore(ctx, bus.LargeBucket)
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	limits, err := s.js.KeyValue(ctx, bus.LimitsBucket)
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	assetObjects, err := s.js.ObjectStore(ctx, bus.AssetsBucket)
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	urlSigner, err := auth.LoadURLSigner(ctx, s.st, s.ess)
	if err != nil {
		return err
	}
	s.assets = invoke.NewAssets(invoke.AssetsConfig{Conn: s.nc, JS: s.js, Store: s.st, Objects: assetObjects, Signer: urlSigner, Logger: s.log})
	if err := s.assets.Start(); err != nil {
		return err
	}
	assetAPI := api.NewAssets(api.AssetsConfig{Store: s.st, JS: s.js, Objects: assetObjects, Signer: urlSigner, Guard: web.Guard{Auth: authn, Log: s.log},
		MaxSize: s.cfg.Invocation.MaxAssetSize, TTL: s.cfg.Invocation.AssetTTL})
	s.gateway = invoke.New(invoke.Config{Conn: s.nc, JS: s.js, Results: results, Large: large, Limits: limits, Catalog: cat, Clusters: s.st, Auth: authn, Logger: s.log,
		MaxRequestBody: s.cfg.Invocation.MaxRequestBody, HostCallLimit: s.cfg.Invocation.HostCallLimit, Assets: s.assets})
	if err := s.gateway.Start(); err != nil {
		return err
	}
	if s.agentSub, err = controller.NewAgents(s.st, s.ess, s.log).Subscribe(s.nc); err != nil {
		return err
	}
	desired, err := s.js.KeyValue(ctx, bus.DesiredBucket)
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	ctrl := controller.New(s.st, controller.NewKVPublisher(desired), controller.Config{Resync: s.cfg.Resync, Grace: s.cfg.Grace, Logger: s.log})
	scaler := autoscale.New(autoscale.Config{Store: s.st, Conn: s.nc, JS: s.js, Period: s.cfg.Autoscale.Period,
		ScaleDownDelay: s.cfg.Autoscale.ScaleDownDelay, Logger: s.log})
	// The leader derives the platform events from etcd's history
	// (events.Source); every replica serves them (events.Log).
	eventSource := events.NewSource(events.SourceConfig{Store: s.st, JS: s.js, Logger: s.log})
	s.bg = make(chan struct{})
	go func() {
		defer close(s.bg)
		s.lead(runCtx, ctrl, scaler, assetAPI.Sweep, eventSource.Run)
	}()

	if err := s.startMetrics(); err != nil {
		return err
	}
	mux := http.NewServeMux()
	s.registerMetrics(mux, web.Guard{Auth: authn, Log: s.log})
	api.New(api.Config{Store: s.st, Sealer: s.ess, Registry: s.reg, Auth: authn, NATSURL: s.agentNATSURL(), Logger: s.log}).Register(mux)
	api.NewKeys(api.KeysConfig{Issuer: s.issuer, Keys: apiKeys, Accounts: s.st, Gate: gate,
		Guard: web.Guard{Auth: authn, Log: s.log}, DefaultAccount: s.cfg.Account}).Register(mux)
	// The secret store's key routes act on the whole installation, so they
	// sit behind the same gate as minting admin tokens.
	api.NewESS(s.ess, gate.Gate, s.log).Register(mux)
	s.registerStatus(mux, gate.Gate)
	s.gateway.Register(mux)
	assetAPI.Register(mux)
	eventsAPI := api.NewEvents(events.NewLog(s.js), web.Guard{Auth: authn, Log: s.log})
	eventsAPI.Register(mux)
	if err := s.startUI(ctx, mux, authn); err != nil {
		return err
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	// Ready once the catalog has loaded: a load balancer should not send
	// invocations to a replica that cannot resolve functions yet.
	mux.Handle("GET /readyz", web.Unguarded(s.log, func(w http.ResponseWriter, r *http.Request) error {
		select {
		case <-s.ready:
			_, err := w.Write([]byte("ok\n"))
			return err
		default:
			return problem.Unavailable(1, "not ready: the function catalog is still loading; try again shortly")
		}
	}))
	s.listener, err = net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("controlplane: listen on %s: %w (is another gantry running? pick another address with --listen)", s.cfg.Listen, err)
	}
	s.http = &http.Server{
		Handler:           s.withMetrics(s.gateway.Routing(mux, web.ProblemFallback(mux))),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.http.RegisterOnShutdown(eventsAPI.Close) // followed event streams end
	s.http.RegisterOnShutdown(s.ui.Close)
	go func() {
		if err := s.http.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("controlplane: http server stopped", "err", err)
		}
	}()
	if err := s.startGRPC(); err != nil {
		return err
	}
	select {
	case <-cat.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	close(s.ready)
	s.log.Info("controlplane: ready", "url", s.URL())
	return nil
}

func (s *Server) startStore(ctx context.Context) error {
	if len(s.cfg.EtcdEndpoints) == 0 {
		e, err := store.StartEmbedded(filepath.Join(s.cfg.DataDir, "etcd"), 30*time.Second)
		if err != nil {
			return err
		}
		s.etcd, s.etcdCli = e, e.Client()
	} else {
		cc := clientv3.Config{Endpoints: s.cfg.EtcdEndpoints, DialTimeout: 5 * time.Second}
		if t := s.cfg.EtcdTLS; t != (EtcdTLS{}) {
			tlsCfg, err := (transport.TLSInfo{TrustedCAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}).ClientConfig()
			if err != nil {
				return fmt.Errorf("controlplane: etcd TLS files: %w", err)
			}
			cc.TLS = tlsCfg
		}
		c, err := clientv3.New(cc)
		if err != nil {
			return fmt.Errorf("controlplane: etcd %v: %w", s.cfg.EtcdEndpoints, err)
		}
		s.etcdCli = c
	}
	s.st = store.New(s.etcdCli, "")
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.st.Migrate(mctx); err != nil {
		return err
	}
	return s.st.EnsureAccount(ctx, store.Account{ID: s.cfg.Account, Name: s.cfg.Account, CreatedAt: time.Now().UTC()})
}

// mekProvider builds the configured master key provider.
func (s *Server) mekProvider() (secrets.MEKProvider, error) {
	if s.cfg.MEKProvider == MEKProviderOpenBao {
		return secrets.NewOpenBao(s.cfg.OpenBao)
	}
	return secrets.NewFileMEK(filepath.Join(s.cfg.DataDir, "keys")), nil
}

func (s *Server) startBus(ctx context.Context) error {
	var err error
	if s.cfg.NATSURL == "" {
		host, port, perr := splitHostPort(s.cfg.NATSListen)
		if perr != nil {
			return perr
		}
		// Every client authenticates: this process with a token that lives
		// only in its memory, agents with their cluster credential.
		internal, terr := randomToken()
		if terr != nil {
			return terr
		}
		tlsCfg, terr := s.busTLS(host)
		if terr != nil {
			return terr
		}
		authn := bus.NewAuthenticator(internal, s.reg)
		if s.cfg.NATSLeafListen != "" {
			if s.cfg.NATSLeafKeys == "" {
				return errors.New("controlplane: --nats-leaf-listen needs --nats-leaf-keys (the directory gantry bus gen-secrets wrote), which says which NKey is which site's")
			}
			if fi, serr := os.Stat(s.cfg.NATSLeafKeys); serr != nil || !fi.IsDir() {
				return fmt.Errorf("controlplane: --nats-leaf-keys %s is no directory: give the --out directory of gantry bus gen-secrets", s.cfg.NATSLeafKeys)
			}
			authn.AdmitLeaves(bus.LeafAuth{Keys: bus.LeafKeyDir(s.cfg.NATSLeafKeys), Refused: func(remote, reason string) {
				s.log.Warn("controlplane: leaf node refused", "remote", remote, "reason", reason)
			}})
		}
		s.nats, err = bus.StartEmbedded(bus.EmbeddedConfig{Dir: filepath.Join(s.cfg.DataDir, "nats"), Host: host, Port: port, TLS: tlsCfg,
			Auth: authn, LeafListen: s.cfg.NATSLeafListen,
			Users: &s.users, UserSubjects: userSubjects, MQTTListen: s.cfg.Events.MQTTListen,
			UserRefused: func(remote, reason string) {
				s.log.Warn("controlplane: bus connection refused", "remote", remote, "reason", reason)
			}}, 30*time.Second)
		if err != nil {
			return err
		}
		s.nc, err = s.nats.Connect("gantry-controlplane")
	} else {
		if s.cfg.NATSLeafListen != "" {
			return errors.New("controlplane: --nats-leaf-listen accepts leaf nodes on the embedded NATS; with --nats-url, configure leaf nodes on that server")
		}
		if s.cfg.Events.MQTTListen != "" {
			return errors.New("controlplane: --mqtt-listen serves MQTT on the embedded NATS; with --nats-url, enable MQTT on that server")
		}
		opts, terr := bus.ClientOptions(s.cfg.NATSTLS)
		if terr != nil {
			return terr
		}
		if s.cfg.NATSCredsFile != "" {
			opts = append(opts, nats.UserCredentials(s.cfg.NATSCredsFile))
		}
		s.nc, err = bus.Connect(s.cfg.NATSURL, "gantry-controlplane", opts...)
	}
	if err != nil {
		return err
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := bus.Setup(sctx, s.js, bus.Config{}); err != nil {
		return err
	}
	return events.Setup(sctx, s.js, events.StreamConfig{MaxAge: s.cfg.Events.MaxAge, MaxBytes: s.cfg.Events.MaxBytes})
}

// busTLS is the embedded NATS listeners' TLS, or nil for plaintext, which
// is refused when a listener (host, or the MQTT one) is reachable from
// other machines, unless NATSInsecure says so: agent credentials, desired
// state and secret values cross the bus.
func (s *Server) busTLS(host string) (*tls.Config, error) {
	if !s.cfg.NATSTLS.IsZero() {
		return bus.ServerTLS(s.cfg.NATSTLS)
	}
	var open []string
	if !bus.IsLoopback(host) {
		open = append(open, "NATS on "+s.cfg.NATSListen)
	}
	if m := s.cfg.Events.MQTTListen; m != "" {
		if h, _, err := net.SplitHostPort(m); err == nil && !bus.IsLoopback(h) {
			open = append(open, "MQTT on "+m)
		}
	}
	if l := s.cfg.NATSLeafListen; l != "" {
		if h, _, err := net.SplitHostPort(l); err == nil && !bus.IsLoopback(h) {
			open = append(open, "leaf nodes on "+l)
		}
	}
	if len(open) == 0 {
		return nil, nil
	}
	if !s.cfg.NATSInsecure {
		return nil, fmt.Errorf("controlplane: %s would listen beyond loopback without TLS, so agent credentials and secret values would cross the network in cleartext: give --nats-tls-cert and --nats-tls-key (gantry bus gen-secrets makes them), listen on 127.0.0.1, or pass --nats-insecure on a network you trust", strings.Join(open, " and "))
	}
	s.log.Warn("controlplane: THE BUS IS PLAINTEXT beyond loopback (--nats-insecure): agent credentials and secret values cross the network in cleartext", "listeners", strings.Join(open, ", "))
	return nil, nil
}

func splitHostPort(addr string) (string, int, error) {
	if addr == "" {
		return "127.0.0.1", 0, nil
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("controlplane: NATS listen address %q: %w", addr, err)
	}
	var port int
	if _, err := fmt.Sscanf(p, "%d", &port); err != nil {
		return "", 0, fmt.Errorf("controlplane: NATS listen port %q is not a number", p)
	}
	return host, port, nil
}

// lead campaigns for leadership and runs the reconciler, the autoscaler and
// the other leader's tasks (the sweep of expired assets, the platform
// events) while leading, so that with N replicas exactly one of each runs.
func (s *Server) lead(ctx context.Context, ctrl *controller.Controller, scaler *autoscale.Scaler, tasks ...func(context.Context)) {
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(s.etcdCli, concurrency.WithTTL(10), concurrency.WithContext(ctx))
		if err != nil {
			s.log.Warn("controlplane: election session failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		el := concurrency.NewElection(sess, s.st.Prefix()+"leader")
		host, _ := os.Hostname()
		if err := el.Campaign(ctx, host); err == nil {
			s.log.Info("controlplane: leading the reconciler")
			lctx, cancel := context.WithCancel(ctx)
			go func() {
				select {
				case <-sess.Done():
				case <-lctx.Done():
				}
				cancel()
			}()
			var wg sync.WaitGroup
			wg.Go(func() { scaler.Run(lctx) })
			for _, task := range tasks {
				wg.Go(func() { task(lctx) })
			}
			ctrl.Run(lctx)
			cancel()
			wg.Wait()
			rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = el.Resign(rctx)
			rcancel()
		}
		sess.Close()
	}
}

// MQTTAddr is the MQTT listener's host:port, or "" when there is none.
func (s *Server) MQTTAddr() string {
	if s.nats != nil {
		return s.nats.MQTTAddr()
	}
	return ""
}

// Ready is closed once Start has finished.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// URL is the API's base URL.
func (s *Server) URL() string { return "http://" + s.listener.Addr().String() }

// AdminToken returns the admin credential (for in-process callers such as
// tests and gantry dev; never log it).
func (s *Server) AdminToken() string { return s.token }

// Store exposes the store to in-process wiring (gantry dev registering its
// local cluster) and tests.
func (s *Server) Store() *store.Store { return s.st }

// JetStream is the server's JetStream context, for tests and tools that
// inspect the queues.
func (s *Server) JetStream() jetstream.JetStream { return s.js }

// LeafURL is the URL leaf nodes dial, or "" without a leaf-node listener.
func (s *Server) LeafURL() string {
	if s.nats != nil {
		return s.nats.LeafURL()
	}
	return ""
}

// NATSURL is the client URL agents in other processes connect to.
func (s *Server) NATSURL() string {
	if s.nats != nil {
		return s.nats.URL()
	}
	return s.cfg.NATSURL
}

// ConnectAgent opens a NATS connection for an in-process agent, with the
// same restricted identity a remote agent of that cluster has.
func (s *Server) ConnectAgent(cred model.AgentCredential) (*nats.Conn, error) {
	if s.nats != nil {
		return s.nats.ConnectAgent(cred.ClusterID, cred.Credential)
	}
	opts, err := bus.ClientOptions(s.cfg.NATSTLS)
	if err != nil {
		return nil, err
	}
	return bus.Connect(s.cfg.NATSURL, "gantry-agent-"+cred.ClusterID, append(opts, bus.AgentOptions(cred.ClusterID, cred.Credential)...)...)
}

// EnsureCluster registers c unless a cluster with its id exists, and issues
// a credential for its agent directly. gantry dev registers its local
// cluster this way; remote agents go through `gantry cluster register` and
// exchange a bootstrap token over the API instead.
func (s *Server) EnsureCluster(ctx context.Context, c model.Cluster) (model.AgentCredential, error) {
	if c.NCAID == "" {
		c.NCAID = s.cfg.Account
	}
	if _, err := s.st.GetCluster(ctx, c.ID); errors.Is(err, store.ErrNotFound) {
		if _, _, _, err := s.reg.Register(ctx, c); err != nil {
			return model.AgentCredential{}, err
		}
	} else if err != nil {
		return model.AgentCredential{}, err
	}
	cred, err := s.reg.Issue(ctx, c.ID)
	cred.NATSURL = s.agentNATSURL()
	return cred, err
}

// Secrets exposes the encrypted secret store, for sealing internal keys
// (SealKey) and for tests.
func (s *Server) Secrets() *secrets.Service { return s.ess }

// Registry exposes cluster registration to in-process callers and tests.
func (s *Server) Registry() *registry.Registry { return s.reg }

func (s *Server) agentNATSURL() string {
	if s.cfg.NATSAdvertise != "" {
		return s.cfg.NATSAdvertise
	}
	return s.NATSURL()
}

// Close stops the server; calls after the first do nothing. Order: the
// gateway (its watcher, its call streams) and its asset fetches; stop accepting HTTP and gRPC and let
// in-flight requests finish; stop the reconciler and agent handlers; close
// the NATS connection, then embedded NATS; then etcd, which everything
// above depended on.
func (s *Server) Close() error {
	s.closeOnce.Do(s.close)
	return nil
}

func (s *Server) close() {
	// The gateway goes first: it ends the calls in flight cleanly (their
	// streams would otherwise hold the HTTP shutdown to its timeout).
	if s.gateway != nil {
		_ = s.gateway.Close()
	}
	if s.assets != nil {
		s.assets.Close() // asset fetches under way end too
	}
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	}
	s.grpc.close()
	s.closeMetrics()
	if s.cancel != nil {
		s.cancel()
	}
	if s.bg != nil {
		<-s.bg
	}
	for _, sub := range s.agentSub {
		_ = sub.Unsubscribe()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.nats != nil {
		_ = s.nats.Close()
	}
	if s.etcd != nil {
		_ = s.etcd.Close()
	} else if s.etcdCli != nil {
		_ = s.etcdCli.Close()
	}
}

// writeAdminToken mints a fresh admin token for the server's account and
// writes it to <DataDir>/admin-token (0600), replacing the previous one, so
// that gantry dev works out of the box and the file never holds an expired
// token after a restart.
func (s *Server) writeAdminToken(ctx context.Context) error {
	ttl := s.cfg.AdminTokenTTL
	if ttl <= 0 {
		ttl = s.issuer.MaxTTL()
	}
	tok, err := s.issuer.Mint(ctx, s.cfg.Account, "admin", ttl)
	if err != nil {
		return err
	}
	if err := writeSecretFile(filepath.Join(s.cfg.DataDir, "admin-token"), tok.Value); err != nil {
		return fmt.Errorf("controlplane: write admin token: %w", err)
	}
	s.token = tok.Value
	return nil
}

// installGate builds the gate of installation-level routes. In bootstrap
// mode without a configured secret it generates one into the data dir.
func (s *Server) installGate() (*auth.InstallGate, error) {
	mode, secret := s.cfg.AdminKeys, s.cfg.BootstrapSecret
	if mode == "" {
		mode = auth.InstallLoopback
	}
	if mode == auth.InstallBootstrap && secret == "" {
		path := filepath.Join(s.cfg.DataDir, "bootstrap-secret")
		b, err := os.ReadFile(path)
		switch {
		case err == nil && strings.TrimSpace(string(b)) != "":
			secret = strings.TrimSpace(string(b))
		default:
			raw, err := randomToken()
			if err != nil {
				return nil, err
			}
			secret = "gantry-bootstrap-secret-" + raw
			if err := writeSecretFile(path, secret); err != nil {
				return nil, fmt.Errorf("controlplane: write bootstrap secret: %w", err)
			}
		}
		s.log.Info("controlplane: admin tokens are minted with the bootstrap secret kept in the data dir", "file", path)
	}
	return auth.NewInstallGate(mode, secret, s.log)
}

// writeSecretFile replaces path with value, readable by its owner only.
func writeSecretFile(path, value string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(value+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// randomToken returns 32 random bytes, base64url-encoded.
func randomToken() (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("controlplane: random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(raw), nil
}
