package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/internal/agent/runtime/kube"
)

func newAgentUninstallCmd() *cobra.Command {
	o := &kubeAgentOptions{}
	var force, keepIdentity bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove every function workload a Kubernetes agent created, and its identity",
		Long: `Remove what a Kubernetes agent left in its cluster: every function Deployment
with its pods and Secrets, the functions namespace if Gantry created it, and
the agent's identity Secret. It waits until everything is really gone. Stop
the agent first (helm uninstall the agent chart); with the agent stopped this
command does the agent's finalizer work itself.

If something stays stuck (a node that is gone, a finalizer whose controller
is not coming back), --force removes it anyway after --timeout and lists
everything it removed. The cluster stays registered with the control plane:
delete it there with 'gantry cluster delete'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			kc, err := o.connect()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			ctx := cmd.Context()
			idStore := kc.identity()
			id, hasID, _ := idStore.Load(ctx)
			if err := kube.Uninstall(ctx, kc.config, kube.UninstallOptions{Namespace: o.namespace, Force: force,
				Timeout: timeout, Out: out}); err != nil {
				return err
			}
			if !keepIdentity {
				err := kc.client.CoreV1().Secrets(o.agentNamespace).Delete(ctx, o.identitySecret, metav1.DeleteOptions{})
				switch {
				case err == nil:
					fmt.Fprintf(out, "deleted the agent identity %s\n", idStore)
				case !apierrors.IsNotFound(err):
					return fmt.Errorf("delete the agent identity %s: %w", idStore, err)
				}
			}
			if hasID {
				fmt.Fprintf(out, "Cluster %s is still registered with the control plane; remove it with: gantry cluster delete %s\n", id.ClusterID, id.ClusterID)
			}
			return nil
		},
	}
	o.addFlags(cmd.Flags())
	f := cmd.Flags()
	f.BoolVar(&force, "force", false, "after --timeout, strip finalizers, delete pods without waiting for their nodes and finalize the namespace; lists what it removed")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for an orderly removal")
	f.BoolVar(&keepIdentity, "keep-identity", false, "keep the agent's identity Secret (to reinstall the agent as the same cluster)")
	return cmd
}
