package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/bench"
	"github.com/gantry-dev/gantry/internal/secrets"
)

func newBenchMEKCmd() *cobra.Command {
	var cfg bench.MEKConfig
	cmd := &cobra.Command{
		Use:   "mek",
		Short: "Measure how fast the secret store rotates its master key over 100,000 account keys",
		Long: `Start an embedded etcd in a temporary directory, give --neks accounts a key
(NEK) each through the secret store, wrapped by master key (MEK) version 1
from a key file, and seal --secrets secrets. Read every NEK record once, in
pages as the rotation does (the baseline), then time RotateMEK: a new MEK
version, every NEK re-wrapped in guarded transactions of --batch records,
--workers at a time, and the old version retired. Afterwards check that no
NEK is left on the old MEK, that no secret's etcd revision changed, and
that a fresh service opens every secret. Each of --runs repeats everything
on a fresh etcd; the medians are reported.

Target: at most 5s for 100,000 NEKs, and no secret rewritten.`,
		Example: `  gantry bench mek
  gantry bench mek --neks 10000 --runs 1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			res, err := bench.RunMEK(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := printBench(cmd, res, func(w io.Writer) error { return writeMEK(w, res) }); err != nil {
				return err
			}
			for _, t := range res.Targets[1:] {
				if !t.Pass {
					return fmt.Errorf("check failed: %s: got %s, want %s", t.Name, t.Got, t.Want)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.NEKs, "neks", 100000, "accounts, one NEK each")
	f.IntVar(&cfg.Secrets, "secrets", 1000, "secrets sealed before the rotation, to check none is rewritten")
	f.IntVar(&cfg.BatchSize, "batch", secrets.DefaultBatchSize, "NEK records per transaction (etcd's default limit is 128 operations)")
	f.IntVar(&cfg.Workers, "workers", secrets.DefaultWorkers, "transactions in flight at once")
	f.IntVar(&cfg.Runs, "runs", 3, "repetitions, each on a fresh etcd; medians are reported")
	return cmd
}

func writeMEK(w io.Writer, res *bench.MEKResult) error {
	fmt.Fprintf(w, "%d NEKs, %d secrets; batches of %d NEKs, %d in flight; medians of %d runs.\n\n",
		res.NEKs, res.Secrets, res.BatchSize, res.Workers, len(res.Runs))
	t := table{headers: []string{"RUN", "SETUP", "BASELINE (READ ALL)", "ROTATION", "NEKS/S", "REWRAPPED", "LEFT ON OLD MEK", "SECRETS REWRITTEN", "SECRETS OPENED"}}
	for i, r := range res.Runs {
		t.rows = append(t.rows, []string{strconv.Itoa(i + 1), seconds(r.Setup), seconds(r.Baseline), seconds(r.Rotation),
			fmt.Sprintf("%.0f", r.NEKsPerSecond), strconv.Itoa(r.Rewrapped), strconv.Itoa(r.LeftOnOldMEK),
			strconv.Itoa(r.SecretsRewritten), fmt.Sprintf("%d/%d", r.SecretsOpened, res.Secrets)})
	}
	t.rows = append(t.rows, []string{"median", "", seconds(res.Baseline), seconds(res.Rotation), fmt.Sprintf("%.0f", res.NEKsPerSecond)})
	if err := writeTable(w, t); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nRotation / baseline: %.1fx.\n\n", res.Rotation.Seconds()/res.Baseline.Seconds())
	return writeTargets(w, res.Targets)
}
