package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/policy"
)

func newPolicyCmd(opts *rootOptions) *cobra.Command {
	cmd := groupCmd("policy", "Create, list, inspect, update and delete schedule policies", "policies")
	cmd.Long = `Schedule policies decide where the instances of matching functions run: which
clusters (by label, region, zone or GPU model), in which order (fill-and-spill),
in what proportions across a topology key (spread), whether a spec's instances
stay together (group-by), and whether to bin-pack or spread within a choice.
A deployment's own clusters and regions further narrow what a policy allows.

Of the account's policies whose function selector matches a function's tags,
the one with the highest priority applies; ties go to the name that sorts
first. A policy change applies to instances placed afterwards; placed ones
stay where they are.`
	cmd.AddCommand(
		newPolicyCreateCmd(opts),
		newPolicyListCmd(opts),
		newPolicyGetCmd(opts),
		newPolicyUpdateCmd(opts),
		newPolicyDeleteCmd(opts),
	)
	return cmd
}

// policyOptions are the flags create and update share.
type policyOptions struct {
	file          string
	name          string
	priority      int
	matchTags     []string
	clusterLabels []string
	fillAndSpill  []string
	spreadKey     string
	splits        []string
	groupBy       string
	strategy      string
}

const selectorSyntax = `Selectors are comma-separated terms: key=value, key=v1|v2 (any of them),
key!=value, key (the label exists), !key (it does not). The short keys region,
zone, group, cluster and gpu stand for topology.kubernetes.io/region,
topology.kubernetes.io/zone, gantry.dev/cluster-group, gantry.dev/cluster and
nvidia.com/gpu.product (any GPU model in the cluster); other keys are cluster
labels, taken as written. In -f files keys are always taken as written.`

// policyFlagNames are the flags of policyOptions, for telling whether an
// update changes anything.
var policyFlagNames = []string{"file", "name", "priority", "match-tag", "cluster-label", "fill-and-spill",
	"spread-key", "split", "group-by", "strategy"}

func (o *policyOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&o.file, "file", "f", "", "policy body (JSON or YAML; - for stdin); flags override its fields")
	f.StringVar(&o.name, "name", "", "policy name (letters, digits, _ and -)")
	f.IntVar(&o.priority, "priority", 0, "precedence among policies that match the same function (highest wins)")
	f.StringArrayVar(&o.matchTags, "match-tag", nil, "govern only functions with this tag (repeatable; all must match)")
	f.StringArrayVar(&o.clusterLabels, "cluster-label", nil, "allow only clusters matching this selector, e.g. gpu=H100 (repeatable; all must match)")
	f.StringArrayVar(&o.fillAndSpill, "fill-and-spill", nil, "one tier of clusters, filled before the next tier is used, e.g. region=us-east (repeat in order; * for all clusters)")
	f.StringVar(&o.spreadKey, "spread-key", "", "topology key to split instances across, e.g. region or zone")
	f.StringArrayVar(&o.splits, "split", nil, "share of one --spread-key value, VALUE=PERCENT, e.g. us-east=50 (repeatable; sum 100)")
	f.StringVar(&o.groupBy, "group-by", "", "topology key whose single domain holds all instances of a spec, e.g. zone")
	f.StringVar(&o.strategy, "strategy", "", "binpack (fullest cluster that fits first; the default) or spread (emptiest first)")
}

// build returns base with the -f file and the flags that were set applied.
// A file replaces base entirely; a flag replaces its field. Because
// fill-and-spill and spread exclude each other, setting one through flags
// clears the other, so `update --split ...` turns a fill-and-spill policy
// into a spread one.
func (o *policyOptions) build(cmd *cobra.Command, base policy.Policy) (policy.Policy, error) {
	p := base
	if o.file != "" {
		data, err := readFileOrStdin(cmd, o.file)
		if err != nil {
			return p, fmt.Errorf("-f: %w", err)
		}
		p = policy.Policy{}
		if err := yaml.UnmarshalStrict(data, &p); err != nil {
			return p, withHint(fmt.Errorf("-f %s: %w", o.file, err),
				"the file must be a policy (name, priority, functionSelector, clusterSelector, fillAndSpill, spread, groupBy, strategy); `gantry policy get <name> -o yaml` shows one")
		}
	}
	changed := cmd.Flags().Changed
	if changed("name") {
		p.Name = o.name
	}
	if changed("priority") {
		p.Priority = o.priority
	}
	if changed("match-tag") {
		p.FunctionSelector.MatchTags = o.matchTags
	}
	if changed("cluster-label") {
		var sel policy.Selector
		for _, s := range o.clusterLabels {
			if err := parseSelector(s, &sel); err != nil {
				return p, usageErrorf(cmd, "--cluster-label %q: %v", s, err)
			}
		}
		p.ClusterSelector = &sel
	}
	spreadChanged := changed("spread-key") || changed("split")
	if changed("fill-and-spill") {
		p.FillAndSpill = nil
		for _, s := range o.fillAndSpill {
			var sel policy.Selector
			if s != "*" {
				if err := parseSelector(s, &sel); err != nil {
					return p, usageErrorf(cmd, "--fill-and-spill %q: %v", s, err)
				}
			}
			p.FillAndSpill = append(p.FillAndSpill, sel)
		}
		if !spreadChanged {
			p.Spread = nil
		}
	}
	if spreadChanged {
		sp := &policy.Spread{}
		if p.Spread != nil {
			*sp = *p.Spread
		}
		if changed("spread-key") {
			sp.TopologyKey = policy.ExpandKey(o.spreadKey)
		}
		if changed("split") {
			sp.Splits = nil
			for _, s := range o.splits {
				v, pct, ok := strings.Cut(s, "=")
				n, err := strconv.Atoi(strings.TrimSuffix(pct, "%"))
				if !ok || v == "" || err != nil {
					return p, usageErrorf(cmd, "--split %q: want VALUE=PERCENT, e.g. us-east=50", s)
				}
				sp.Splits = append(sp.Splits, policy.Split{Value: v, Percent: n})
			}
		}
		p.Spread = sp
		if !changed("fill-and-spill") {
			p.FillAndSpill = nil
		}
	}
	if changed("group-by") {
		p.GroupBy = policy.ExpandKey(o.groupBy)
	}
	if changed("strategy") {
		p.Strategy = o.strategy
	}
	return p, nil
}

// parseSelector adds the comma-separated terms of s to sel.
func parseSelector(s string, sel *policy.Selector) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("empty selector; want key=value terms separated by commas")
	}
	for _, term := range strings.Split(s, ",") {
		term = strings.TrimSpace(term)
		switch k, v, eq := strings.Cut(term, "="); {
		case term == "":
			return fmt.Errorf("empty term; want key=value terms separated by commas")
		case eq && (k == "" || k == "!"):
			return fmt.Errorf("term %q has no key", term)
		case strings.HasSuffix(k, "!") && eq:
			sel.MatchExpressions = append(sel.MatchExpressions, policy.Requirement{
				Key: policy.ExpandKey(strings.TrimSuffix(k, "!")), Operator: policy.OpNotIn, Values: strings.Split(v, "|")})
		case eq && strings.Contains(v, "|"):
			sel.MatchExpressions = append(sel.MatchExpressions, policy.Requirement{
				Key: policy.ExpandKey(k), Operator: policy.OpIn, Values: strings.Split(v, "|")})
		case eq:
			if sel.MatchLabels == nil {
				sel.MatchLabels = map[string]string{}
			}
			sel.MatchLabels[policy.ExpandKey(k)] = v
		case strings.HasPrefix(term, "!"):
			sel.MatchExpressions = append(sel.MatchExpressions, policy.Requirement{
				Key: policy.ExpandKey(term[1:]), Operator: policy.OpDoesNotExist})
		default:
			sel.MatchExpressions = append(sel.MatchExpressions, policy.Requirement{
				Key: policy.ExpandKey(term), Operator: policy.OpExists})
		}
	}
	return nil
}

func newPolicyCreateCmd(opts *rootOptions) *cobra.Command {
	var o policyOptions
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a schedule policy",
		Long: `Create a schedule policy from the flags, or from -f with a whole policy (JSON or
YAML; - reads stdin) whose fields the flags then override.

` + selectorSyntax,
		Example: `  gantry policy create --name east-first --match-tag llm --cluster-label gpu=H100 \
      --fill-and-spill region=us-east --fill-and-spill region=us-west
  gantry policy create --name half-half --spread-key region --split us-east=50 --split us-west=50
  gantry policy create --name one-zone --group-by zone --strategy spread
  gantry policy create -f policy.yaml`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := o.build(cmd, policy.Policy{})
			if err != nil {
				return err
			}
			if p.Name == "" {
				return usageErrorf(cmd, "--name is required (or name in the -f file)")
			}
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			created, err := c.CreatePolicy(cmd.Context(), p)
			if err != nil {
				return err
			}
			pr := opts.printer(cmd)
			return pr.print(created, func() table { return policyTable([]policy.Policy{created}, pr.now) })
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newPolicyUpdateCmd(opts *rootOptions) *cobra.Command {
	var o policyOptions
	cmd := &cobra.Command{
		Use:   "update <id|name>",
		Short: "Change a schedule policy",
		Long: `Change a schedule policy. With -f the file replaces the policy; the flags that
are given change their fields and keep the rest. Setting --fill-and-spill drops
a spread, and --spread-key or --split drop fill-and-spill tiers, since a policy
has one or the other.

` + selectorSyntax,
		Example: `  gantry policy update east-first --priority 10
  gantry policy update east-first --spread-key region --split us-east=70 --split us-west=30
  gantry policy get east-first -o yaml > p.yaml && $EDITOR p.yaml && gantry policy update east-first -f p.yaml`,
		Args: exactArgs("<id|name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.ContainsFunc(policyFlagNames, cmd.Flags().Changed) {
				return usageErrorf(cmd, "nothing to change: give -f or a flag such as --priority")
			}
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			cur, err := findPolicy(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			p, err := o.build(cmd, cur)
			if err != nil {
				return err
			}
			updated, err := c.UpdatePolicy(cmd.Context(), cur.ID, p)
			if err != nil {
				return err
			}
			pr := opts.printer(cmd)
			return pr.print(updated, func() table { return policyTable([]policy.Policy{updated}, pr.now) })
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newPolicyListCmd(opts *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the account's schedule policies, highest priority first",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			ps, err := c.ListPolicies(cmd.Context())
			if err != nil {
				return err
			}
			pr := opts.printer(cmd)
			return pr.print(nonNil(ps), func() table { return policyTable(ps, pr.now) })
		},
	}
}

func newPolicyGetCmd(opts *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "get <id|name>",
		Short: "Show one schedule policy",
		Args:  exactArgs("<id|name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			p, err := findPolicy(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			pr := opts.printer(cmd)
			return pr.print(p, func() table { return policyTable([]policy.Policy{p}, pr.now) })
		},
	}
}

// deletedPolicy is the -o json/yaml result of a delete.
type deletedPolicy struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Deleted bool   `json:"deleted"`
}

func newPolicyDeleteCmd(opts *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "delete <id|name>",
		Aliases: []string{"rm"},
		Short:   "Delete a schedule policy; instances it placed stay where they are",
		Args:    exactArgs("<id|name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			p, err := findPolicy(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if err := c.DeletePolicy(cmd.Context(), p.ID); err != nil {
				return err
			}
			return opts.printer(cmd).printMessage(deletedPolicy{p.ID, p.Name, true},
				"Deleted policy %s (%s)", p.Name, p.ID)
		},
	}
}

// findPolicy resolves an id or a name among the account's policies. Names
// need not be unique; an ambiguous one is an error that lists the ids.
func findPolicy(ctx context.Context, c *client.Client, idOrName string) (policy.Policy, error) {
	ps, err := c.ListPolicies(ctx)
	if err != nil {
		return policy.Policy{}, err
	}
	var named []policy.Policy
	for _, p := range ps {
		if p.ID == idOrName {
			return p, nil
		}
		if p.Name == idOrName {
			named = append(named, p)
		}
	}
	switch len(named) {
	case 0:
		return policy.Policy{}, withHint(fmt.Errorf("no policy has id or name %q", idOrName), "`gantry policy list` shows the policies")
	case 1:
		return named[0], nil
	}
	var ids []string
	for _, p := range named {
		ids = append(ids, p.ID)
	}
	return policy.Policy{}, withHint(fmt.Errorf("%d policies are named %q", len(named), idOrName),
		"name one by id: %s", strings.Join(ids, ", "))
}

// policyTable lists policies with their placement rules in short form.
func policyTable(ps []policy.Policy, now time.Time) table {
	t := table{headers: []string{"ID", "NAME", "PRIORITY", "FUNCTIONS", "CLUSTERS", "PLACEMENT", "STRATEGY", "AGE"}}
	for _, p := range ps {
		fns := "*"
		if tags := p.FunctionSelector.MatchTags; len(tags) > 0 {
			fns = "tags " + strings.Join(tags, ",")
		}
		t.rows = append(t.rows, []string{p.ID, p.Name, strconv.Itoa(p.Priority), fns, p.ClusterSelector.String(),
			placement(p), p.Strategy, age(p.CreatedAt, now)})
	}
	return t
}

// placement summarises fill-and-spill, spread and group-by.
func placement(p policy.Policy) string {
	var parts []string
	if len(p.FillAndSpill) > 0 {
		tiers := make([]string, len(p.FillAndSpill))
		for i := range p.FillAndSpill {
			tiers[i] = p.FillAndSpill[i].String()
		}
		parts = append(parts, "fill "+strings.Join(tiers, " > "))
	}
	if sp := p.Spread; sp != nil {
		splits := make([]string, len(sp.Splits))
		for i, s := range sp.Splits {
			splits[i] = fmt.Sprintf("%s=%d%%", s.Value, s.Percent)
		}
		parts = append(parts, "spread "+policy.ShortKey(sp.TopologyKey)+" "+strings.Join(splits, ","))
	}
	if p.GroupBy != "" {
		parts = append(parts, "group by "+policy.ShortKey(p.GroupBy))
	}
	return strings.Join(parts, "; ")
}
