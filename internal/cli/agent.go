package cli

import (
	"context"
	"crypto/tls"
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
	leaf          string
	leafURL       string
	leafNKey      string
	natsInsecure  bool
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
restarts; the next agent adopts them. 'gantry agent uninstall' removes them.

With --leaf the agent runs a NATS leaf node of the hub (gantry server
--nats-leaf-listen) in its own process: the agent, and this cluster's clients
on the leaf's address, publish and subscribe there, and the leaf keeps one
outbound connection to the hub, signed with the site's NKey, which it resumes
after a cut. For example, with the files of 'gantry bus gen-secrets --out pki
--cpc <cluster-id>':

  gantry agent --server https://gantry.example.com --bootstrap-token-file token \
      --leaf --leaf-url tls://hub.example.com:7422 \
      --leaf-nkey-file pki/cpc/<cluster-id>/nkeys/user/seed \
      --nats-tls-ca pki/cpc/<cluster-id>/tls/ca.crt \
      --nats-tls-cert pki/cpc/<cluster-id>/tls/tls.crt --nats-tls-key pki/cpc/<cluster-id>/tls/tls.key`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && o.leaf == defaultLeafListen {
				// --leaf takes its address only after '='.
				return fmt.Errorf("unexpected argument %q: give the leaf's address as --leaf=%s", args[0], args[0])
			}
			return cobra.NoArgs(cmd, args)
		},
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
	f.StringVar(&o.leaf, "leaf", "", "run a NATS leaf node in this agent and connect through it; it serves this cluster's clients on 127.0.0.1:4222, or on the address of --leaf=host:port (with '='), and keeps one connection to the hub (--leaf-url)")
	f.Lookup("leaf").NoOptDefVal = defaultLeafListen
	f.StringVar(&o.leafURL, "leaf-url", "", "with --leaf: the hub's leaf-node URL, as the 'Leaf:' line of gantry server --nats-leaf-listen prints it (e.g. tls://hub.example.com:7422); tls:// or any --nats-tls-* flag turns TLS on, with --nats-tls-* as for --nats-url")
	f.StringVar(&o.leafNKey, "leaf-nkey-file", "", "with --leaf: file holding this site's NKey seed, gantry bus gen-secrets' <out>/cpc/<cluster-id>/nkeys/user/seed")
	f.BoolVar(&o.natsInsecure, "nats-insecure", false, "with --leaf: let the leaf serve this cluster's clients beyond loopback (e.g. --leaf=0.0.0.0:4222) without TLS; its clients' cluster credential then crosses that network in cleartext")
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
	// Leaf flags are checked, and the seed read, before the one-time
	// bootstrap token is spent.
	seed, err := leafSeed(o)
	if err != nil {
		return err
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
	credential := func() string {
		mu.Lock()
		defer mu.Unlock()
		return current
	}
	var nc *nats.Conn
	if o.leaf != "" {
		leaf, lerr := startAgentLeaf(o, seed, id.ClusterID, credential, log)
		if lerr != nil {
			return lerr
		}
		defer leaf.Close()
		// The agent's first step is the hub's JetStream (the desired
		// state), so it starts once the link is up; later cuts it rides out.
		if err := waitLeafLink(ctx, leaf, o.leafURL, log); err != nil {
			return err
		}
		nc, err = leaf.ConnectAgent(credential)
	} else {
		nc, err = bus.Connect(natsURL, "gantry-agent-"+id.ClusterID, append(tlsOpts, nats.TokenHandler(credential),
			nats.CustomInboxPrefix(bus.AgentInboxPrefix(id.ClusterID)))...)
	}
	if err != nil {
		return err
	}
	defer nc.Close()

	inv := model.Inventory{Nodes: []model.Node{agent.HostNode(hostname(), o.gpuModel, o.gpuMemoryGB, o.gpus)},
		Maintenance: o.maintenance}
	logs := agent.NewLogs(agent.LogsConfig{ClusterID: id.ClusterID, Conn: nc, Logger: log})
	if err := logs.Start(ctx); err != nil {
		return err
	}
	defer logs.Close() // runs after the agent's Close below: its instances' last lines are sent
	newRuntime := func(notify func()) (runtime.Runtime, error) {
		return process.New(process.Config{Dir: filepath.Join(o.stateDir, "runtime"), Notify: notify, Logger: log, Output: logs.Output})
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

// defaultLeafListen is where --leaf alone serves the cluster's clients.
const defaultLeafListen = "127.0.0.1:4222"

// leafSeed checks the --leaf flags and returns the site's NKey seed (nil
// without --leaf).
func leafSeed(o *agentOptions) ([]byte, error) {
	if o.leaf == "" {
		switch {
		case o.leafURL != "":
			return nil, errors.New("--leaf-url is for the leaf node: add --leaf")
		case o.leafNKey != "":
			return nil, errors.New("--leaf-nkey-file is for the leaf node: add --leaf")
		case o.natsInsecure:
			return nil, errors.New("--nats-insecure is for the leaf's listener: add --leaf, or drop it")
		}
		return nil, nil
	}
	if o.natsURL != "" {
		return nil, errors.New("--nats-url and --leaf exclude each other: with --leaf the agent reaches the hub through the leaf node's --leaf-url")
	}
	if o.leafURL == "" || o.leafNKey == "" {
		return nil, errors.New("--leaf needs --leaf-url (the hub's leaf-node URL, the 'Leaf:' line of gantry server) and --leaf-nkey-file (this site's gen-secrets file cpc/<cluster-id>/nkeys/user/seed)")
	}
	seed, err := os.ReadFile(o.leafNKey)
	if err != nil {
		return nil, fmt.Errorf("reading --leaf-nkey-file: %w", err)
	}
	return []byte(strings.TrimSpace(string(seed))), nil
}

// startAgentLeaf starts the leaf node of --leaf: it dials the hub's
// --leaf-url with the site's NKey and the --nats-tls-* files.
func startAgentLeaf(o *agentOptions, seed []byte, clusterID string, credential func() string, log *slog.Logger) (*bus.Leaf, error) {
	var tlsCfg *tls.Config
	if !o.natsTLS.IsZero() || strings.HasPrefix(o.leafURL, "tls://") {
		var err error
		if tlsCfg, err = bus.ClientTLS(o.natsTLS); err != nil {
			return nil, err
		}
	}
	// nats-server reports a port in use only in its log and then never
	// becomes ready; say it at once.
	if _, port, err := net.SplitHostPort(o.leaf); err == nil && port != "0" {
		ln, lerr := net.Listen("tcp", o.leaf)
		if lerr != nil {
			return nil, fmt.Errorf("--leaf: cannot listen on %s (%v): give a free address as --leaf=host:port", o.leaf, lerr)
		}
		ln.Close()
	}
	leaf, err := bus.StartLeaf(bus.LeafConfig{ClusterID: clusterID, Hub: []string{o.leafURL}, Seed: seed, TLS: tlsCfg,
		Listen: o.leaf, Insecure: o.natsInsecure, Credential: credential, Logger: log}, 30*time.Second)
	if err != nil {
		return nil, err
	}
	log.Info("agent: leaf node serving this cluster's clients", "url", leaf.URL(), "hub", o.leafURL)
	return leaf, nil
}

// waitLeafLink waits until the leaf has reached the hub, warning every 10 s
// while it has not.
func waitLeafLink(ctx context.Context, leaf *bus.Leaf, hub string, log *slog.Logger) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	began := time.Now()
	warned := began
	for !leaf.Connected() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			if now.Sub(warned) >= 10*time.Second {
				warned = now
				log.Warn("agent: the leaf node has not reached the hub yet: check --leaf-url, the site's --leaf-nkey-file and --nats-tls-* (the hub logs why it refused a leaf)", "hub", hub, "waiting", now.Sub(began).Round(time.Second))
			}
		}
	}
	return nil
}
