package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/model"
)

// deployPollInterval is how often --wait reads the deployment.
const deployPollInterval = 500 * time.Millisecond

func newDeployCmd(opts *rootOptions) *cobra.Command {
	cmd := groupCmd("deploy", "Deploy function versions onto GPUs, inspect and remove deployments", "deployment", "deployments")
	cmd.AddCommand(
		newDeployCreateCmd(opts),
		newDeployGetCmd(opts),
		newDeployUpdateCmd(opts),
		newDeployDeleteCmd(opts),
	)
	return cmd
}

// deploySpecOptions are the flags create and update share.
type deploySpecOptions struct {
	version      string
	gpu          string
	instanceType string
	min, max     int
	concurrency  int
	backend      string
	clusters     []string
	regions      []string
	wait         bool
	timeout      time.Duration
}

func (o *deploySpecOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.version, "version", "", "function version id (default: the newest version)")
	f.StringVar(&o.gpu, "gpu", "", "GPU model, e.g. L40S or H100 (required for create)")
	f.StringVar(&o.instanceType, "instance-type", "", "instance type, e.g. ON-PREM.GPU.H100_1x (default: the backend's default for the GPU)")
	f.IntVar(&o.min, "min", 1, "minimum instances")
	f.IntVar(&o.max, "max", 0, "maximum instances (default: max(--min, 1))")
	f.IntVar(&o.concurrency, "concurrency", 0, "requests one instance handles at once (maxRequestConcurrency)")
	f.StringVar(&o.backend, "backend", "", "cluster group to deploy to")
	f.StringSliceVar(&o.clusters, "cluster", nil, "restrict to this cluster (repeatable)")
	f.StringSliceVar(&o.regions, "region", nil, "restrict to this region (repeatable)")
	f.BoolVar(&o.wait, "wait", false, "wait until the deployment is ACTIVE, showing progress on stderr")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long --wait waits")
}

// spec builds a GPU specification from the flags alone.
func (o *deploySpecOptions) spec(cmd *cobra.Command) model.GPUSpec {
	s := model.GPUSpec{
		GPU:          o.gpu,
		InstanceType: o.instanceType,
		MinInstances: o.min,
		MaxInstances: max(o.min, 1),
		Backend:      o.backend,
		Clusters:     o.clusters,
		Regions:      o.regions,
	}
	if cmd.Flags().Changed("max") {
		s.MaxInstances = o.max
	}
	if cmd.Flags().Changed("concurrency") {
		s.MaxRequestConcurrency = model.Int(o.concurrency)
	}
	return s
}

// apply changes the fields of s whose flags were set, for update.
func (o *deploySpecOptions) apply(cmd *cobra.Command, s model.GPUSpec) model.GPUSpec {
	changed := cmd.Flags().Changed
	if changed("gpu") && o.gpu != s.GPU {
		s.GPU = o.gpu
		s.InstanceType = "" // instance type names embed the GPU model
	}
	if changed("instance-type") {
		s.InstanceType = o.instanceType
	}
	if changed("min") {
		s.MinInstances = o.min
	}
	if changed("max") {
		s.MaxInstances = o.max
	} else if s.MaxInstances < s.MinInstances {
		s.MaxInstances = s.MinInstances
	}
	if changed("concurrency") {
		s.MaxRequestConcurrency = model.Int(o.concurrency)
	}
	if changed("backend") {
		s.Backend = o.backend
	}
	if changed("cluster") {
		s.Clusters = o.clusters
	}
	if changed("region") {
		s.Regions = o.regions
	}
	return s
}

func newDeployCreateCmd(opts *rootOptions) *cobra.Command {
	var o deploySpecOptions
	cmd := &cobra.Command{
		Use:   "create <functionId>",
		Short: "Deploy a function version",
		Example: `  gantry deploy create <functionId> --gpu L40S --wait
  gantry deploy create <functionId> --version <versionId> --gpu H100 --instance-type ON-PREM.GPU.H100_2x --min 1 --max 4`,
		Args: exactArgs("<functionId>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if o.gpu == "" {
				return missingGPU(ctx, cmd, c)
			}
			vid, err := resolveVersion(ctx, cmd, c, args[0], o.version)
			if err != nil {
				return err
			}
			d, err := c.CreateDeployment(ctx, args[0], vid, model.DeploymentRequest{Specs: []model.GPUSpec{o.spec(cmd)}})
			if err != nil {
				return err
			}
			return finishDeploy(ctx, cmd, opts, c, &o, args[0], vid, d)
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newDeployUpdateCmd(opts *rootOptions) *cobra.Command {
	var o deploySpecOptions
	cmd := &cobra.Command{
		Use:   "update <functionId>",
		Short: "Change a deployment's GPU specification",
		Long: `Change a deployment. The flags that are given change one GPU specification of
the current deployment and keep the rest: with one specification that one is
changed, with several --gpu picks it. The result replaces the deployment (PUT).`,
		Example: `  gantry deploy update <functionId> --max 4
  gantry deploy update <functionId> --version <versionId> --gpu L40S --min 2 --wait`,
		Args: exactArgs("<functionId>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			vid, err := resolveVersion(ctx, cmd, c, args[0], o.version)
			if err != nil {
				return err
			}
			cur, err := c.GetDeployment(ctx, args[0], vid)
			if err != nil {
				return err
			}
			specs, err := o.updatedSpecs(ctx, cmd, c, cur.Specs)
			if err != nil {
				return err
			}
			d, err := c.UpdateDeployment(ctx, args[0], vid, model.DeploymentRequest{Specs: specs})
			if err != nil {
				return err
			}
			return finishDeploy(ctx, cmd, opts, c, &o, args[0], vid, d)
		},
	}
	o.addFlags(cmd)
	return cmd
}

// updatedSpecs applies the flags to the one specification they address.
func (o *deploySpecOptions) updatedSpecs(ctx context.Context, cmd *cobra.Command, c *client.Client, cur []model.GPUSpec) ([]model.GPUSpec, error) {
	specs := slices.Clone(cur)
	switch {
	case len(specs) == 0:
		if o.gpu == "" {
			return nil, missingGPU(ctx, cmd, c)
		}
		return []model.GPUSpec{o.spec(cmd)}, nil
	case len(specs) == 1:
		specs[0] = o.apply(cmd, specs[0])
		return specs, nil
	}
	var gpus []string
	match := -1
	for i, s := range specs {
		gpus = append(gpus, s.GPU)
		if s.GPU == o.gpu && (o.instanceType == "" || s.InstanceType == o.instanceType) {
			if match >= 0 {
				return nil, usageErrorf(cmd, "several specifications use GPU %s; add --instance-type to pick one", o.gpu)
			}
			match = i
		}
	}
	if match < 0 {
		return nil, usageErrorf(cmd, "the deployment has %d GPU specifications (%s); pass --gpu with one of them", len(specs), strings.Join(gpus, ", "))
	}
	specs[match] = o.apply(cmd, specs[match])
	return specs, nil
}

// finishDeploy waits if asked and prints the deployment.
func finishDeploy(ctx context.Context, cmd *cobra.Command, opts *rootOptions, c *client.Client, o *deploySpecOptions, fid, vid string, d model.Deployment) error {
	if o.wait {
		var err error
		d, err = waitActive(ctx, cmd.ErrOrStderr(), c, fid, vid, o.timeout)
		if err != nil {
			return err
		}
	}
	p := opts.printer(cmd)
	return p.print(d, func() table { return deploymentTable([]model.Deployment{d}, p.now) })
}

// missingGPU explains that --gpu is required and, when the server says,
// which GPUs it offers.
func missingGPU(ctx context.Context, cmd *cobra.Command, c *client.Client) error {
	err := fmt.Errorf("--gpu is required")
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	groups, lerr := c.ClusterGroups(ctx)
	var gpus []string
	if lerr == nil {
		for _, g := range groups {
			for _, gpu := range g.GPUs {
				if !slices.Contains(gpus, gpu.Name) {
					gpus = append(gpus, gpu.Name)
				}
			}
		}
	}
	if len(gpus) == 0 {
		return usageError(cmd, err)
	}
	sort.Strings(gpus)
	return withHint(err, "this platform offers: %s", strings.Join(gpus, ", "))
}

// resolveVersion returns version if set, else the function's newest version
// by createdAt, saying so on stderr when there was a choice.
func resolveVersion(ctx context.Context, cmd *cobra.Command, c *client.Client, functionID, version string) (string, error) {
	if version != "" {
		return version, nil
	}
	vs, err := c.ListVersions(ctx, functionID)
	if err != nil {
		return "", err
	}
	if len(vs) == 0 {
		return "", fmt.Errorf("function %s has no versions", functionID)
	}
	newest := vs[0]
	for _, v := range vs[1:] {
		if v.CreatedAt.After(newest.CreatedAt) {
			newest = v
		}
	}
	if len(vs) > 1 {
		fmt.Fprintf(cmd.ErrOrStderr(), "Using version %s, the newest of %d (pass --version to choose)\n", newest.VersionID, len(vs))
	}
	return newest.VersionID, nil
}

// waitActive polls the deployment until it is ACTIVE, fails, or the timeout
// passes, printing a line on w whenever the status, the ready count, the
// health errors or a polling error change.
func waitActive(ctx context.Context, w io.Writer, c *client.Client, fid, vid string, timeout time.Duration) (model.Deployment, error) {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fmt.Fprintf(w, "Waiting up to %s for function %s version %s to become ACTIVE\n", timeout, fid, vid)

	getHint := fmt.Sprintf("check `gantry deploy get %s --version %s`", fid, vid)
	ticker := time.NewTicker(deployPollInterval)
	defer ticker.Stop()
	var last, lastState string
	var d model.Deployment
	var err error
	for {
		d, err = c.GetDeployment(wctx, fid, vid)
		switch {
		case err != nil && wctx.Err() != nil:
			// The deadline or an interrupt cut the call short; handled below.
		case err != nil:
			if sc := client.StatusCode(err); sc >= 400 && sc < 500 && sc != 429 {
				return d, err
			}
			// Anything else may pass (a restarting server): keep polling.
			if key := "err\x00" + err.Error(); key != last {
				last = key
				fmt.Fprintf(w, "%8s  (retrying: %v)\n", elapsed(time.Since(start)), err)
			}
		default:
			ready := readiness(wctx, c, d)
			errs := healthErrors(d)
			lastState = string(d.FunctionStatus) + ready
			if key := lastState + "\x00" + strings.Join(errs, "\x00"); key != last {
				last = key
				fmt.Fprintf(w, "%8s  %s%s\n", elapsed(time.Since(start)), d.FunctionStatus, ready)
				for _, e := range errs {
					fmt.Fprintf(w, "          ! %s\n", e)
				}
			}
			switch d.FunctionStatus {
			case model.StatusActive:
				return d, nil
			case model.StatusError:
				msg := "is in ERROR state"
				if len(errs) > 0 {
					msg = "failed: " + strings.Join(errs, "; ")
				}
				return d, withHint(fmt.Errorf("deployment of function %s version %s %s", fid, vid, msg), "%s", getHint)
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return d, ctx.Err()
			}
			what := "last status " + lastState
			if lastState == "" {
				what = "no status read yet"
			}
			return d, withHint(fmt.Errorf("timed out after %s waiting for function %s version %s to become ACTIVE (%s)", timeout, fid, vid, what),
				"the deployment goes on in the background; %s, or wait longer with --timeout", getHint)
		case <-ticker.C:
		}
	}
}

// readiness returns "  (r/n instances ready)" from the version's active
// instances against the minimum the deployment asks for, or "" when the
// function cannot be read.
func readiness(ctx context.Context, c *client.Client, d model.Deployment) string {
	want := 0
	for _, s := range d.Specs {
		want += s.MinInstances
	}
	if want == 0 {
		return ""
	}
	fn, err := c.GetFunction(ctx, d.FunctionID, d.FunctionVersionID)
	if err != nil {
		return ""
	}
	ready := 0
	for _, in := range fn.ActiveInstances {
		if in.InstanceStatus == model.InstanceRunning {
			ready++
		}
	}
	return fmt.Sprintf("  (%d/%d instances ready)", ready, want)
}

// healthErrors lists a deployment's health errors, sorted so that only a
// real change prints a new progress line.
func healthErrors(d model.Deployment) []string {
	var out []string
	for _, h := range d.HealthInfo {
		where := h.GPU
		if h.Backend != "" {
			where += "@" + h.Backend
		}
		if where != "" {
			where += ": "
		}
		out = append(out, where+h.Error)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// elapsed renders a duration as 3.1s under a minute and 2m5s above.
func elapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func newDeployGetCmd(opts *rootOptions) *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:   "get <functionId>",
		Short: "Show the deployment of a function version",
		Args:  exactArgs("<functionId>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			vid, err := resolveVersion(ctx, cmd, c, args[0], version)
			if err != nil {
				return err
			}
			d, err := c.GetDeployment(ctx, args[0], vid)
			if err != nil {
				if client.IsNotFound(err) && version == "" {
					return withHint(err, "showing version %s; pass --version for another one", vid)
				}
				return err
			}
			p := opts.printer(cmd)
			return p.print(d, func() table { return deploymentTable([]model.Deployment{d}, p.now) })
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "function version id (default: the newest version)")
	return cmd
}

// undeployed is the -o json/yaml result of deploy delete.
type undeployed struct {
	FunctionID string `json:"functionId"`
	VersionID  string `json:"versionId"`
	Undeployed bool   `json:"undeployed"`
}

func newDeployDeleteCmd(opts *rootOptions) *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:     "delete <functionId>",
		Aliases: []string{"rm"},
		Short:   "Remove the deployment of a function version",
		Long: `Remove the deployment of a function version, stopping its instances.
Without --version the function must have exactly one version, so that a
multi-version function is never undeployed by guess.`,
		Args: exactArgs("<functionId>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			vid := version
			if vid == "" {
				vs, err := c.ListVersions(ctx, args[0])
				if err != nil {
					return err
				}
				switch len(vs) {
				case 0:
					return fmt.Errorf("function %s has no versions", args[0])
				case 1:
					vid = vs[0].VersionID
				default:
					return withHint(fmt.Errorf("function %s has %d versions; pass --version", args[0], len(vs)),
						"list them with `gantry function get %s`", args[0])
				}
			}
			if err := c.DeleteDeployment(ctx, args[0], vid); err != nil {
				return err
			}
			return opts.printer(cmd).printMessage(undeployed{args[0], vid, true},
				"Deleted deployment of function %s version %s", args[0], vid)
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "function version id (default: the only version)")
	return cmd
}
