package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/process"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/model"
)

// agentOptions are the flags of `gantry agent`.
type agentOptions struct {
	bootstrap     string
	bootstrapFile string
	idTokenFile   string
	clusterID     string
	stateDir      string
	artifactDir   string
	natsURL       string
	natsTLS       bus.TLSFiles
	runtime       string
	kube          kubeAgentOptions
	gpus          int
	gpuModel      string
	maintenance   bool
	gpuMemoryGB   int
	heartbeat     time.Duration
	directCalls   bool
	logLevel      string
}

func newAgentCmd() *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the cluster agent: runs this cluster's function instances",
		Long: `Run the agent of one GPU cluster. On first start it exchanges the one-time
bootstrap token printed by 'gantry cluster register' for a cluster credential
and saves its identity in --state-dir; later starts reuse that identity, so the
cluster is never registered twice. It then runs the instances the control plane
places on this cluster, and reports inventory and instance states as its
heartbeat. If the cluster is deleted, the agent stops its instances and exits.

With --runtime kubernetes the agent runs in (or against) a Kubernetes cluster
with the NVIDIA GPU Operator: instances are Deployments in --namespace, the
inventory comes from the GPU nodes, and the identity lives in the Secret
--identity-secret of --agent-namespace. Instances keep running while the agent
restarts; the next agent adopts them. 'gantry agent uninstall' removes them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runAgent(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.bootstrap, "bootstrap-token", "", "one-time bootstrap token from 'gantry cluster register' (env GANTRY_BOOTSTRAP_TOKEN)")
	f.StringVar(&o.bootstrapFile, "bootstrap-token-file", "", "file holding the bootstrap token")
	f.StringVar(&o.idTokenFile, "identity-token-file", "", "instead of a bootstrap token: a JWT of the cluster's own issuer (e.g. a projected Kubernetes service-account token with audience \"gantry\"), re-read whenever a credential is needed; needs --cluster-id")
	f.StringVar(&o.clusterID, "cluster-id", "", "the cluster's id, with --identity-token-file")
	f.StringVar(&o.stateDir, "state-dir", "/var/lib/gantry-agent", "where the agent keeps its identity and instance logs")
	f.StringVar(&o.artifactDir, "artifact-cache-dir", "", "where the agent caches function models and resources, shared by its instances (default <state-dir>/artifacts)")
	f.StringVar(&o.natsURL, "nats-url", "", "NATS URL (default: the one the control plane gives)")
	addNATSTLSFlags(f, &o.natsTLS, false)
	f.StringVar(&o.runtime, "runtime", "process", "how instances run: process (local processes on simulated GPUs) or kubernetes")
	f.IntVar(&o.gpus, "gpus", 8, "GPUs of this machine (simulated for the process runtime)")
	f.StringVar(&o.gpuModel, "gpu-model", "H100", "model of those GPUs")
	f.IntVar(&o.gpuMemoryGB, "gpu-memory", 80, "memory of each GPU, in GB")
	f.BoolVar(&o.maintenance, "maintenance", false, "maintenance mode: keep running instances but take no new ones")
	f.DurationVar(&o.heartbeat, "heartbeat", 5*time.Second, "how often to report to the control plane")
	f.BoolVar(&o.directCalls, "direct-calls", false, "lend free slots to the gateways so they call instances over HTTP themselves; only when every gateway can reach the instances' endpoints (same host or network)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	o.kube.addFlags(f)
	cmd.AddCommand(newAgentUninstallCmd())
	return cmd
}

func runAgent(cmd *cobra.Command, o *agentOptions) error {
	log, err := newLogger(cmd.ErrOrStderr(), o.logLevel)
	if err != nil {
		return err
	}
	var kc *kubeAgent
	switch o.runtime {
	case "process":
	case "kubernetes":
		if kc, err = o.kube.connect(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--runtime %q: use process or kubernetes", o.runtime)
	}
	// The control plane's URL comes from --server / GANTRY_SERVER like the
	// client commands'; the agent needs no admin token.
	server := firstNonEmpty(cmd.Flag("server").Value.String(), os.Getenv(EnvServer), DefaultServer)
	bootstrap, err := readBootstrap(o)
	if err != nil {
		return err
	}
	if (o.idTokenFile == "") != (o.clusterID == "") {
		return errors.New("--identity-token-file and --cluster-id go together")
	}
	ctx := cmd.Context()
	src := func(ctx context.Context, tok string) (model.AgentCredential, error) {
		var cred model.AgentCredential
		var err error
		if o.idTokenFile != "" {
			// The issuer's token is the proof every time; projected tokens
			// rotate, so it is read afresh.
			jwt, rerr := os.ReadFile(o.idTokenFile)
			if rerr != nil {
				return cred, fmt.Errorf("reading --identity-token-file: %w", rerr)
			}
			cred, err = client.New(server, strings.TrimSpace(string(jwt))).AgentCredentialWithJWT(ctx, o.clusterID)
		} else {
			cred, err = client.New(server, tok).AgentCredential(ctx)
		}
		if client.StatusCode(err) == http.StatusUnauthorized {
			return cred, fmt.Errorf("%w: %v", agent.ErrRefused, err)
		}
		return cred, err
	}
	var store agent.IdentityStore = agent.FileIdentity(o.stateDir)
	if kc != nil {
		store = kc.identity()
	}
	id, err := agent.Enroll(ctx, store, func(ctx context.Context) (model.AgentCredential, error) {
		if bootstrap == "" && o.idTokenFile == "" {
			return model.AgentCredential{}, errors.New("pass the bootstrap token printed by `gantry cluster register` (--bootstrap-token-file), or --identity-token-file with --cluster-id")
		}
		return src(ctx, bootstrap)
	})
	if err != nil {
		return err
	}
	natsURL := firstNonEmpty(o.natsURL, id.NATSURL)
	tlsOpts, err := bus.ClientOptions(o.natsTLS)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	current := id.Credential
	// The credential is read at every (re)connect, so renewals take effect
	// without a restart; the inbox prefix is the only one NATS lets this
	// agent subscribe to.
	nc, err := bus.Connect(natsURL, "gantry-agent-"+id.ClusterID, append(tlsOpts, nats.TokenHandler(func() string {
		mu.Lock()
		defer mu.Unlock()
		return current
	}), nats.CustomInboxPrefix(bus.AgentInboxPrefix(id.ClusterID)))...)
	if err != nil {
		return err
	}
	defer nc.Close()

	inv := model.Inventory{Nodes: []model.Node{agent.HostNode(hostname(), o.gpuModel, o.gpuMemoryGB, o.gpus)},
		Maintenance: o.maintenance}
	newRuntime := func(notify func()) (runtime.Runtime, error) {
		return process.New(process.Config{Dir: filepath.Join(o.stateDir, "runtime"), Notify: notify, Logger: log})
	}
	where := fmt.Sprintf("%d x %s", o.gpus, o.gpuModel)
	if kc != nil {
		// The inventory comes from the cluster's nodes.
		inv = model.Inventory{Maintenance: o.maintenance}
		newRuntime = func(notify func()) (runtime.Runtime, error) {
			return kc.runtime(ctx, id.ClusterID, notify, log)
		}
		where = fmt.Sprintf("Kubernetes, namespace %s", kc.opts.namespace)
	}
	a, err := agent.New(agent.Config{ClusterID: id.ClusterID, Conn: nc, Inventory: inv, Heartbeat: o.heartbeat, Logger: log,
		NewRuntime: newRuntime, DirectCalls: o.directCalls, ArtifactCacheDir: firstNonEmpty(o.artifactDir, filepath.Join(o.stateDir, "artifacts"))})
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Gantry agent of cluster %s is running (%s, heartbeat %v).\n", id.ClusterID, where, o.heartbeat)

	renewCtx, stopRenew := context.WithCancel(ctx)
	defer stopRenew()
	renewErr := make(chan error, 1)
	go func() {
		renewErr <- agent.KeepRenewed(renewCtx, store, id, src, func(next agent.Identity) {
			mu.Lock()
			current = next.Credential
			mu.Unlock()
		})
	}()
	select {
	case <-ctx.Done():
		return a.Close()
	case <-a.Done():
		return a.Err()
	case err := <-renewErr:
		a.Close()
		return err
	}
}

func readBootstrap(o *agentOptions) (string, error) {
	switch {
	case o.bootstrap != "" && o.bootstrapFile != "":
		return "", errors.New("give --bootstrap-token or --bootstrap-token-file, not both")
	case o.bootstrapFile != "":
		b, err := os.ReadFile(o.bootstrapFile)
		if err != nil {
			return "", fmt.Errorf("reading --bootstrap-token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case o.bootstrap != "":
		return o.bootstrap, nil
	}
	return strings.TrimSpace(os.Getenv("GANTRY_BOOTSTRAP_TOKEN")), nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "node"
	}
	return h
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
