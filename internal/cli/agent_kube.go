package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/kube"
)

// kubeAgentOptions are the flags of an agent that runs functions on
// Kubernetes (and of `gantry agent uninstall`).
type kubeAgentOptions struct {
	kubeconfig     string
	namespace      string
	agentNamespace string
	identitySecret string
	schedulerName  string
	pullSecrets    []string
}

func (o *kubeAgentOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "with --runtime kubernetes: kubeconfig file (default: the in-cluster config, else $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&o.namespace, "namespace", kube.DefaultNamespace, "with --runtime kubernetes: namespace the function instances run in (created if missing)")
	f.StringVar(&o.agentNamespace, "agent-namespace", "", "with --runtime kubernetes: the agent's own namespace, which holds its identity Secret (default $POD_NAMESPACE, else gantry-agent)")
	f.StringVar(&o.identitySecret, "identity-secret", "gantry-agent-identity", "with --runtime kubernetes: Secret that keeps the agent's cluster id and credential across restarts")
	f.StringVar(&o.schedulerName, "scheduler-name", "", "with --runtime kubernetes: scheduler of the function pods, e.g. kai-scheduler (default: the cluster's default scheduler)")
	f.StringSliceVar(&o.pullSecrets, "image-pull-secret", nil, "with --runtime kubernetes: image pull Secret in the functions namespace (repeatable)")
}

// kubeAgent is a connection to the cluster the agent runs functions on.
type kubeAgent struct {
	opts   *kubeAgentOptions
	config *rest.Config
	client kubernetes.Interface
}

// connect loads the Kubernetes client configuration.
func (o *kubeAgentOptions) connect() (*kubeAgent, error) {
	cfg, err := kubeRESTConfig(o.kubeconfig)
	if err != nil {
		return nil, err
	}
	// client-go's default of 5 requests/s would make a burst of
	// placements wait on the client, not on the API server.
	cfg.QPS, cfg.Burst = 100, 200
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if o.agentNamespace == "" {
		o.agentNamespace = firstNonEmpty(os.Getenv("POD_NAMESPACE"), "gantry-agent")
	}
	return &kubeAgent{opts: o, config: cfg, client: client}, nil
}

// identity is the agent's identity Secret.
func (k *kubeAgent) identity() agent.SecretIdentity {
	return agent.SecretIdentity{Secrets: k.client.CoreV1().Secrets(k.opts.agentNamespace),
		Namespace: k.opts.agentNamespace, Name: k.opts.identitySecret}
}

// runtime starts the Kubernetes runtime for the cluster.
func (k *kubeAgent) runtime(ctx context.Context, clusterID string, notify func(), log *slog.Logger) (runtime.Runtime, error) {
	return kube.New(ctx, kube.Config{Client: k.client, Namespace: k.opts.namespace, ClusterID: clusterID,
		SchedulerName: k.opts.schedulerName, ImagePullSecrets: k.opts.pullSecrets, Notify: notify, Logger: log})
}

// kubeRESTConfig loads a kubeconfig file if one is named, else the
// in-cluster configuration, else the usual $KUBECONFIG / ~/.kube/config.
func kubeRESTConfig(path string) (*rest.Config, error) {
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err == nil {
		return cfg, nil
	}
	cfg, lerr := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(),
		&clientcmd.ConfigOverrides{}).ClientConfig()
	if lerr != nil {
		return nil, errors.New("not running inside a Kubernetes cluster and no kubeconfig found: pass --kubeconfig")
	}
	return cfg, nil
}
