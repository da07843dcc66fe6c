package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/secrets"
)

func newServerCmd() *cobra.Command {
	var (
		cfg        controlplane.Config
		logLevel   string
		adminKeys  string
		secretFile string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane (embedded etcd/NATS, or external clusters)",
		Long: `Run the Gantry control plane: the NVCF-compatible API, the invocation gateway
and the reconciler. Without --etcd-endpoints and --nats-url it embeds a
single-node etcd and nats-server in --data-dir. With them it is stateless and
can run as N replicas behind a load balancer; one replica at a time leads the
reconciler (etcd election).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = log
			mode, err := auth.ParseInstallMode(adminKeys)
			if err != nil {
				return usageErrorf(cmd, "--admin-keys: %v", err)
			}
			cfg.AdminKeys = mode
			if cfg.BootstrapSecret = os.Getenv(EnvBootstrapSecret); secretFile != "" {
				if cfg.BootstrapSecret, err = readTokenFile(secretFile); err != nil {
					return fmt.Errorf("--bootstrap-secret-file: %w", err)
				}
			}
			s, err := controlplane.New(cfg)
			if err != nil {
				return err
			}
			if err := s.Start(cmd.Context()); err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "Gantry server ready.\n  API:   %s\n  gRPC:  %s\n  NATS:  %s\n", s.URL(), grpcEndpoint(s.GRPCAddr(), s.GRPCTLS()), s.NATSURL())
			if u := s.LeafURL(); u != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "  Leaf:  %s (gantry agent --leaf --leaf-url)\n", u)
			}
			if u := s.MetricsURL(); u != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "  Metrics: %s (unauthenticated)\n", u)
			}
			if addr := s.MQTTAddr(); addr != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "  MQTT:  %s://%s (password: an API key or admin token; topics gantry/events/<account>/#)\n", mqttScheme(cfg.NATSTLS), addr)
			}
			<-cmd.Context().Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/gantry", "state directory (embedded etcd/NATS data, admin token, master key files)")
	f.StringVar(&cfg.Listen, "listen", "0.0.0.0:8080", "API address (host:port)")
	f.StringSliceVar(&cfg.EtcdEndpoints, "etcd-endpoints", nil, "external etcd endpoints (comma-separated); empty embeds etcd")
	f.StringVar(&cfg.NATSURL, "nats-url", "", "external NATS URL; empty embeds nats-server")
	f.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "where embedded NATS listens for agents")
	f.StringVar(&cfg.NATSAdvertise, "nats-advertise", "", "NATS URL agents are told to use (default: the embedded server's URL, or --nats-url)")
	f.StringVar(&cfg.NATSCredsFile, "nats-creds-file", "", "NATS credentials file (user JWT and NKey seed) for --nats-url")
	addNATSTLSFlags(f, &cfg.NATSTLS, true)
	addNATSInsecureFlag(f, &cfg.NATSInsecure)
	addNATSLeafFlags(f, &cfg.NATSLeafListen, &cfg.NATSLeafKeys)
	addMetricsFlag(f, &cfg.MetricsListen)
	f.StringVar(&cfg.EtcdTLS.CAFile, "etcd-ca-file", "", "CA bundle that signed the external etcd's certificate")
	f.StringVar(&cfg.EtcdTLS.CertFile, "etcd-cert-file", "", "client certificate for external etcd")
	f.StringVar(&cfg.EtcdTLS.KeyFile, "etcd-key-file", "", "client key for external etcd")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	addInvocationFlags(f, &cfg.Invocation)
	addGRPCFlags(f, &cfg.GRPC, "0.0.0.0")
	addAutoscaleFlags(f, &cfg.Autoscale)
	addEventsFlags(f, &cfg.Events)
	f.StringVar(&adminKeys, "admin-keys", string(auth.InstallBootstrap),
		"who may mint admin tokens and rotate keys: bootstrap (holders of the bootstrap secret), loopback (this machine only) or open (anyone; only for isolated tests)")
	f.StringVar(&secretFile, "bootstrap-secret-file", "",
		"file holding the bootstrap secret (env "+EnvBootstrapSecret+" holds the secret itself); default: generated into <data-dir>/bootstrap-secret")
	f.StringVar(&cfg.MEKProvider, "mek-provider", controlplane.MEKProviderFile,
		"where the secret store's master key lives: file (<data-dir>/keys/mek/v<N>.key) or openbao")
	f.StringVar(&cfg.OpenBao.Address, "openbao-addr", "", "OpenBao (or Vault) URL, with --mek-provider openbao")
	f.StringVar(&cfg.OpenBao.Mount, "openbao-kv-mount", secrets.DefaultOpenBaoMount, "KV version 2 mount holding the master key")
	f.StringVar(&cfg.OpenBao.Path, "openbao-kv-path", secrets.DefaultOpenBaoPath, "secret under the mount whose versions are the master key versions")
	f.StringVar(&cfg.OpenBao.TokenFile, "openbao-token-file", "", "file holding an OpenBao token (token auth; re-read before each call)")
	f.StringVar(&cfg.OpenBao.KubernetesRole, "openbao-k8s-role", "", "OpenBao Kubernetes auth role (Kubernetes auth instead of a token)")
	f.StringVar(&cfg.OpenBao.KubernetesJWTFile, "openbao-k8s-jwt-file", secrets.DefaultKubernetesJWTFile, "service-account token exchanged at auth/<mount>/login")
	f.StringVar(&cfg.OpenBao.KubernetesMount, "openbao-k8s-mount", secrets.DefaultOpenBaoKubernetesMount, "mount of the Kubernetes auth method")
	return cmd
}
