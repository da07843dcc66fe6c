package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/controlplane"
)

func newServerCmd() *cobra.Command {
	var (
		cfg      controlplane.Config
		logLevel string
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
			s, err := controlplane.New(cfg)
			if err != nil {
				return err
			}
			if err := s.Start(cmd.Context()); err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "Gantry server ready.\n  API:   %s\n  NATS:  %s\n", s.URL(), s.NATSURL())
			<-cmd.Context().Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/gantry", "state directory (embedded etcd/NATS data, admin token, secret key)")
	f.StringVar(&cfg.Listen, "listen", "0.0.0.0:8080", "API address (host:port)")
	f.StringSliceVar(&cfg.EtcdEndpoints, "etcd-endpoints", nil, "external etcd endpoints (comma-separated); empty embeds etcd")
	f.StringVar(&cfg.NATSURL, "nats-url", "", "external NATS URL; empty embeds nats-server")
	f.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "where embedded NATS listens for agents")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
