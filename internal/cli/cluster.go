package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
)

// EnvAccount names the account (ncaId) the cluster commands act in when
// --account is not given.
const EnvAccount = "GANTRY_ACCOUNT"

// agentStateDir is where the agent command that register prints keeps the
// credential it gets for the bootstrap token, so a restarted agent renews
// that credential instead of needing a new token.
const agentStateDir = "/var/lib/gantry-agent"

// clusterOptions are the root options plus the account the cluster routes
// live under (/v1/accounts/{ncaId}/clusters).
type clusterOptions struct {
	root    *rootOptions
	account string
}

func newClusterCmd(opts *rootOptions) *cobra.Command {
	o := &clusterOptions{root: opts}
	cmd := groupCmd("cluster", "Register GPU clusters, list them, cordon, drain and delete them", "clusters")
	cmd.Long = `Register the GPU clusters that run functions and manage them. Each cluster
runs one agent; ` + "`gantry cluster register`" + ` prints the command that starts it.

Clusters belong to an account (an NVCF ncaId): --account, else ` + EnvAccount + `,
else ` + controlplane.DefaultAccount + `, the account of the admin token ` + "`gantry dev`" + ` writes.`
	cmd.PersistentFlags().StringVar(&o.account, "account", "", "account (ncaId) the clusters belong to (env "+EnvAccount+"; default "+controlplane.DefaultAccount+")")
	cmd.AddCommand(
		newClusterRegisterCmd(o),
		newClusterListCmd(o),
		newClusterGetCmd(o),
		newClusterDeleteCmd(o),
		newClusterStateCmd(o, "cordon", "Stop placing new instances on a cluster; the ones it runs stay",
			(*client.Client).CordonCluster),
		newClusterStateCmd(o, "uncordon", "Let a cordoned or draining cluster take new instances again",
			(*client.Client).UncordonCluster),
		newClusterStateCmd(o, "drain", "Cordon a cluster and move its instances elsewhere, one at a time",
			(*client.Client).DrainCluster),
	)
	return cmd
}

// client returns an API client and the account to address, flag first,
// then the environment, then gantry dev's account.
func (o *clusterOptions) client(cmd *cobra.Command) (*client.Client, string, error) {
	account := o.account
	switch {
	case cmd.Flags().Changed("account"):
		if strings.TrimSpace(account) == "" {
			return nil, "", usageErrorf(cmd, "--account is empty")
		}
	case os.Getenv(EnvAccount) != "":
		account = os.Getenv(EnvAccount)
	default:
		account = controlplane.DefaultAccount
	}
	c, err := o.root.client(cmd, true)
	return c, account, err
}

// explain adds a hint to the 404s a wrong account or cluster id cause.
func explain(err error, account string) error {
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound {
		return err
	}
	if strings.HasPrefix(ae.Problem.Detail, "account ") {
		return withHint(err, "clusters live in the account of your token; pass --account or set %s (default %s, gantry dev's account)",
			EnvAccount, controlplane.DefaultAccount)
	}
	return withHint(err, "list the clusters of account %s with `%s`", account, clusterListCommand(account))
}

// clusterListCommand is the command that lists account's clusters.
func clusterListCommand(account string) string {
	if account == controlplane.DefaultAccount {
		return "gantry cluster list"
	}
	return "gantry cluster list --account " + shellQuote(account)
}

// clusterRegisterOptions are the flags of `gantry cluster register`.
type clusterRegisterOptions struct {
	name, group, region, zone string
	cloudProvider, oidcIssuer string
	jwksFile                  string
	labels                    []string
}

func newClusterRegisterCmd(o *clusterOptions) *cobra.Command {
	var r clusterRegisterOptions
	cmd := &cobra.Command{
		Use:   "register --name <name> --group <group>",
		Short: "Register a cluster and print the command that starts its agent",
		Long: `Register a GPU cluster and print the command that starts its agent, with a
one-time bootstrap token. The agent exchanges the token for its own
credential on first start and keeps that in its state directory; the token
then stops working, and it expires unused after a while. It is shown only
here: if it is lost, delete the cluster and register it again.

With --oidc-issuer and --jwks-file the agent may instead authenticate with
tokens its cluster's own issuer signs, such as Kubernetes service-account
tokens.`,
		Example: `  gantry cluster register --name us-east --group prod --region us-east-1 --zone a --label rack=r12
  gantry cluster register --name k8s-1 --group prod --oidc-issuer https://k8s.example.com --jwks-file jwks.json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := r.request(cmd)
			if err != nil {
				return err
			}
			c, account, err := o.client(cmd)
			if err != nil {
				return err
			}
			reg, err := c.RegisterCluster(cmd.Context(), account, req)
			if err != nil {
				return explain(err, account)
			}
			p := o.root.printer(cmd)
			err = p.printMessage(reg, "Registered cluster %s (id %s) in group %s.\n%s (the bootstrap token works once):\n\n  %s\n\nor, on Kubernetes, install the agent chart:\n\n  %s",
				reg.Cluster.Name, reg.ClusterID, reg.Cluster.GroupName,
				startWithin(reg.BootstrapExpiresAt, p.now), agentCommand(c.BaseURL(), reg.BootstrapToken),
				helmCommands(c.BaseURL()))
			return redact(err, reg.BootstrapToken)
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.name, "name", "", "cluster name, unique in the account (required)")
	f.StringVar(&r.group, "group", "", "cluster group, the backend deployments name (required)")
	f.StringVar(&r.region, "region", "", "region, for deployments that restrict to regions")
	f.StringVar(&r.zone, "zone", "", "zone within the region, for spreading instances")
	f.StringArrayVar(&r.labels, "label", nil, "label KEY=VALUE (repeatable)")
	f.StringVar(&r.cloudProvider, "cloud-provider", "", "cloud provider, e.g. on-prem or aws")
	f.StringVar(&r.oidcIssuer, "oidc-issuer", "", "https:// issuer of tokens the agent may authenticate with")
	f.StringVar(&r.jwksFile, "jwks-file", "", "JSON Web Key Set that verifies the issuer's tokens (- for stdin)")
	return cmd
}

// request builds the registration body from the flags.
func (r *clusterRegisterOptions) request(cmd *cobra.Command) (model.ClusterRequest, error) {
	req := model.ClusterRequest{
		ClusterName:      r.name,
		ClusterGroupName: r.group,
		Region:           r.region,
		Zone:             r.zone,
		CloudProvider:    r.cloudProvider,
		OIDCIssuer:       r.oidcIssuer,
	}
	if req.ClusterName == "" {
		return req, usageErrorf(cmd, "--name is required")
	}
	if req.ClusterGroupName == "" {
		return req, usageErrorf(cmd, "--group is required")
	}
	for _, kv := range r.labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return req, usageErrorf(cmd, "--label %q: want KEY=VALUE", kv)
		}
		if req.Labels == nil {
			req.Labels = map[string]string{}
		}
		req.Labels[k] = v
	}
	if r.jwksFile != "" {
		data, err := readFileOrStdin(cmd, r.jwksFile)
		if err != nil {
			return req, fmt.Errorf("--jwks-file: %w", err)
		}
		if !json.Valid(data) {
			return req, withHint(fmt.Errorf("--jwks-file %s is not JSON", r.jwksFile),
				`a JSON Web Key Set looks like {"keys":[{"kty":"RSA",...}]}; a Kubernetes API server serves its own at /openid/v1/jwks`)
		}
		req.JWKS = json.RawMessage(data)
	}
	return req, nil
}

// startWithin says how soon the agent must start, from when the token
// expires.
func startWithin(expires, now time.Time) string {
	if expires.IsZero() {
		return "Start its agent"
	}
	d := expires.Sub(now).Round(time.Minute)
	if d < time.Minute {
		return "Start its agent within a minute"
	}
	s := ""
	if h := d / time.Hour; h > 0 {
		s = strconv.Itoa(int(h)) + "h"
	}
	if m := d % time.Hour / time.Minute; m > 0 {
		s += strconv.Itoa(int(m)) + "m"
	}
	return "Start its agent within " + s
}

// agentCommand is the shell command that starts a cluster's agent.
func agentCommand(server, bootstrapToken string) string {
	return "gantry agent --server " + shellQuote(server) +
		" --bootstrap-token '" + strings.ReplaceAll(bootstrapToken, "'", `'\''`) + "'" +
		" --state-dir " + agentStateDir
}

// helmCommands install the agent chart for a cluster. The token is shown
// once only (in the agent command above them), so they read it from a
// Secret the operator creates; Helm then never holds it in its release.
func helmCommands(server string) string {
	return "kubectl create namespace gantry-agent\n" +
		"  kubectl -n gantry-agent create secret generic gantry-bootstrap --from-literal=token=<the bootstrap token above>\n" +
		"  helm install gantry-agent deploy/helm/gantry-agent -n gantry-agent --set controlPlane.url=" + shellQuote(server) +
		" --set bootstrapToken.existingSecret=gantry-bootstrap"
}

// shellQuote single-quotes s for a POSIX shell unless it is plainly safe.
func shellQuote(s string) string {
	safe := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@%+=,", r))
	}) < 0
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// redact replaces secret in err's text. The result deliberately drops the
// chain: printError formats wrapped errors (a *url.Error's cause, say) on
// its own, and the secret must not come back that way.
func redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "[redacted]"))
}

func newClusterListCmd(o *clusterOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the account's clusters with their GPUs and health",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, account, err := o.client(cmd)
			if err != nil {
				return err
			}
			cs, err := c.ListClusters(cmd.Context(), account)
			if err != nil {
				return explain(err, account)
			}
			slices.SortStableFunc(cs, func(a, b model.Cluster) int { return strings.Compare(a.Name, b.Name) })
			p := o.root.printer(cmd)
			return p.print(nonNil(cs), func() table { return clusterTable(cs, p.now) })
		},
	}
}

func newClusterGetCmd(o *clusterOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "get <clusterId>",
		Short: "Show one cluster (-o yaml for its nodes, labels and issuer)",
		Args:  exactArgs("<clusterId>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, account, err := o.client(cmd)
			if err != nil {
				return err
			}
			cl, err := c.GetCluster(cmd.Context(), account, args[0])
			if err != nil {
				return explain(err, account)
			}
			p := o.root.printer(cmd)
			return p.print(cl, func() table { return clusterTable([]model.Cluster{cl}, p.now) })
		},
	}
}

// deletedCluster is the -o json/yaml result of cluster delete.
type deletedCluster struct {
	ClusterID string `json:"clusterId"`
	Deleted   bool   `json:"deleted"`
}

func newClusterDeleteCmd(o *clusterOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "delete <clusterId>",
		Aliases: []string{"rm"},
		Short:   "Deregister a cluster: revoke its agent's credentials and move its instances elsewhere",
		Long: `Deregister a cluster. Its agent's credentials are revoked at once, and the
instances it ran are placed on other clusters of their deployments. To move
them first, one at a time, run ` + "`gantry cluster drain`" + ` and wait.`,
		Args: exactArgs("<clusterId>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, account, err := o.client(cmd)
			if err != nil {
				return err
			}
			if err := c.DeleteCluster(cmd.Context(), account, args[0]); err != nil {
				return explain(err, account)
			}
			return o.root.printer(cmd).printMessage(deletedCluster{args[0], true},
				"Deleted cluster %s. Its agent's credentials are revoked, and its instances move to other clusters.", args[0])
		},
	}
}

// clusterCall is a client method that changes one cluster's scheduling state.
type clusterCall func(c *client.Client, ctx context.Context, account, id string) (model.Cluster, error)

// newClusterStateCmd builds cordon, uncordon and drain, which differ only in
// the call and in what their result means.
func newClusterStateCmd(o *clusterOptions, verb, short string, call clusterCall) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " <clusterId>",
		Short: short,
		Args:  exactArgs("<clusterId>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, account, err := o.client(cmd)
			if err != nil {
				return err
			}
			cl, err := call(c, cmd.Context(), account, args[0])
			if err != nil {
				return explain(err, account)
			}
			var meaning string
			switch verb {
			case "cordon":
				meaning = "it takes no new instances; the ones it runs stay."
			case "uncordon":
				meaning = "it takes new instances again."
				if cl.Status != model.ClusterReady {
					meaning = "it takes new instances again once its agent reports in."
				}
			case "drain":
				meaning = "it takes no new instances, and the ones it runs move to other clusters one at a time.\n" +
					"Watch progress with `" + clusterListCommand(account) + "`."
			}
			return o.root.printer(cmd).printMessage(cl, "Cluster %s (id %s) is %s: %s", cl.Name, cl.ID, clusterStatus(cl), meaning)
		},
	}
}

// clusterTable lists clusters with their GPUs and health.
func clusterTable(cs []model.Cluster, now time.Time) table {
	t := table{headers: []string{"ID", "NAME", "GROUP", "REGION", "ZONE", "GPUS", "READY", "IDLE", "STANDBY", "HEARTBEAT", "AGE"}}
	for _, c := range cs {
		t.rows = append(t.rows, []string{c.ID, c.Name, c.GroupName, c.Region, c.Zone, clusterGPUs(c), clusterStatus(c),
			strconv.Itoa(c.IdleInstances), strconv.Itoa(c.StandbyInstances), age(c.LastHeartbeat, now), age(c.CreatedAt, now)})
	}
	return t
}

// usedGPUs returns the GPUs promised to instances per model, which the API
// reports as usedGpus; with it the GPUS column shows free/total.
func usedGPUs(c model.Cluster) map[string]int { return c.UsedGPUs }

// clusterGPUs renders a cluster's GPUs per model, sorted by model.
func clusterGPUs(c model.Cluster) string {
	return formatGPUs(c.Inventory.GPUTotals(), usedGPUs(c))
}

// formatGPUs renders GPU counts per model as "8xH100,2xL40S", or, when used
// counts are known, as free/total: "6/8xH100,2/2xL40S".
func formatGPUs(totals, used map[string]int) string {
	var parts []string
	for _, m := range slices.Sorted(maps.Keys(totals)) {
		total := totals[m]
		if m == "" || total == 0 {
			continue
		}
		n := strconv.Itoa(total)
		if used != nil {
			n = strconv.Itoa(total-used[m]) + "/" + n
		}
		parts = append(parts, n+"x"+m)
	}
	return strings.Join(parts, ",")
}

// clusterStatus is READY or NOT_READY, with ",draining", ",cordoned" or
// ",maintenance" when the cluster takes no new instances (draining implies
// cordoned).
func clusterStatus(c model.Cluster) string {
	s := string(c.Status)
	if s == "" {
		s = string(model.ClusterNotReady)
	}
	switch {
	case c.Draining:
		s += ",draining"
	case c.Cordoned:
		s += ",cordoned"
	case c.Inventory.Maintenance:
		s += ",maintenance"
	}
	return s
}
