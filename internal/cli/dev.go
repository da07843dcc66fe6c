package cli

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/dev"
)

func newDevCmd() *cobra.Command {
	var (
		cfg      dev.Config
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole platform on this machine (embedded etcd and NATS, one local agent)",
		Long: `Run the whole Gantry platform in one process: embedded etcd, embedded NATS with
JetStream, the control plane, and a local agent that runs functions as
processes on a simulated GPU inventory. State lives in --data-dir, so stopping
and starting again brings back functions, deployments and their instances.

The admin token is written to <data-dir>/admin-token (mode 0600); the client
commands find it there by default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = log
			putSelfOnPath()
			began := time.Now()
			p, err := dev.New(cfg)
			if err != nil {
				return err
			}
			if err := p.Start(cmd.Context()); err != nil {
				return err
			}
			defer p.Close()
			printDevBanner(cmd, p, cfg, time.Since(began))
			if u, err := p.ControlPlane().DashboardLoginURL(cmd.Context()); err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "Dashboard: %s (logs a browser in once, within 5 minutes; gantry dashboard prints a fresh one)\n", u)
			} else {
				log.Warn("dev: no dashboard login URL", "err", err)
			}
			if u := p.ControlPlane().LeafURL(); u != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "Leaf: %s (gantry agent --leaf --leaf-url)\n", u)
			}
			if u := p.ControlPlane().MetricsURL(); u != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "Metrics: %s (unauthenticated)\n", u)
			}
			if addr := p.ControlPlane().MQTTAddr(); addr != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "MQTT: %s://%s (password: the admin token or an API key; topics gantry/events/%s/#)\n", mqttScheme(cfg.NATSTLS), addr, controlplane.DefaultAccount)
			}
			<-cmd.Context().Done()
			fmt.Fprintln(cmd.ErrOrStderr(), "Stopping: instances first, then the control plane...")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", DefaultDataDir(), "where etcd, NATS, the admin token and instance logs live")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "API address (host:port)")
	f.IntVar(&cfg.GPUs, "gpus", 8, "number of simulated GPUs")
	f.StringVar(&cfg.GPUModel, "gpu-model", "H100", "model of the simulated GPUs")
	f.IntVar(&cfg.GPUMemoryGB, "gpu-memory", 80, "memory of each simulated GPU, in GB")
	f.BoolVar(&cfg.BusCalls, "bus-calls", false, "send every call over NATS to the agent instead of letting the gateway call the local instances on slots the agent lends it")
	f.StringVar(&cfg.ClusterGroup, "cluster-group", dev.LocalCluster, "group of the local cluster: the backend deployments name (NVCF's examples use nvcf-default)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	addNATSTLSFlags(f, &cfg.NATSTLS, true)
	addNATSInsecureFlag(f, &cfg.NATSInsecure)
	addNATSLeafFlags(f, &cfg.NATSLeafListen, &cfg.NATSLeafKeys)
	addMetricsFlag(f, &cfg.MetricsListen)
	addInvocationFlags(f, &cfg.Invocation)
	addGRPCFlags(f, &cfg.GRPC, "127.0.0.1")
	addAutoscaleFlags(f, &cfg.Autoscale)
	addEventsFlags(f, &cfg.Events)
	return cmd
}

func printDevBanner(cmd *cobra.Command, p *dev.Platform, cfg dev.Config, took time.Duration) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, `Gantry dev is ready (started in %.1fs).

  API:          %s
  gRPC:         %s
  Admin token:  %s  (mode 0600; the gantry CLI reads it from there)
  GPUs:         %d x %s %dGB, simulated, in cluster %q
  Data:         %s

Try it, in another shell:

  gantry function create --name echo --image process://gantry --args "example echo" \
      --inference-url /echo --health-uri /health
  gantry deploy create <function-id> --gpu %s --wait
  gantry invoke <function-id> -d '{"hello":"gpu"}'

  curl -X POST %s/v2/nvcf/pexec/functions/<function-id> \
      -H "Authorization: Bearer $(cat %s)" -d '{"hello":"gpu"}'

Press Ctrl-C to stop.
`, took.Seconds(), p.URL(), grpcEndpoint(p.GRPCAddr(), cfg.GRPC.CertFile != ""), p.TokenPath(), cfg.GPUs, cfg.GPUModel, cfg.GPUMemoryGB, dev.LocalCluster,
		filepath.Clean(cfg.DataDir), cfg.GPUModel, p.URL(), p.TokenPath())
}
