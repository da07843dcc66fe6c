package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/bench"
)

func newBenchModelsCmd() *cobra.Command {
	var (
		cfg  bench.ModelsConfig
		size string
	)
	cmd := &cobra.Command{
		Use:   "models",
		Short: "Measure an instance's start with a cached model against the first, which downloads it",
		Long: `Write a model of --size bytes to a temporary directory, serve it over HTTP on
loopback, and start a dev platform beside it. Each of --runs times three
instance starts, from POST deployment to ACTIVE: a function without a model
(the baseline), the first instance of a function with the model under a uri
the agent's cache has not seen (it downloads it), and an instance of a second
function with the same model, which the cache holds. Medians are reported.

Target: a cached model adds at most 0.5s to an instance's start, and the
model is downloaded once per run. The issue asks for 5GiB; that needs the
disk space three times over (the file served, the cache, the temp part).`,
		Example: `  gantry bench models
  gantry bench models --size 5GiB --runs 1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := bench.ParseSize(size)
			if err != nil {
				return err
			}
			cfg.Size = n
			cfg.Progress = cmd.ErrOrStderr()
			res, err := bench.RunModels(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := printBench(cmd, res, func(w io.Writer) error { return writeModels(w, res) }); err != nil {
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
	f.StringVar(&size, "size", "1GiB", "model size, e.g. 512MiB, 1GiB, 5GiB")
	f.IntVar(&cfg.Runs, "runs", 3, "repetitions; medians are reported")
	return cmd
}

func writeModels(w io.Writer, res *bench.ModelsResult) error {
	fmt.Fprintf(w, "Model of %d bytes; medians of %d runs; each start from POST deployment to ACTIVE.\n\n", res.Size, len(res.Runs))
	t := table{headers: []string{"RUN", "NO MODEL (BASELINE)", "FIRST (DOWNLOADS)", "SECOND (CACHED)"}}
	for i, r := range res.Runs {
		t.rows = append(t.rows, []string{strconv.Itoa(i + 1), seconds(r.Baseline), seconds(r.Cold), seconds(r.Warm)})
	}
	t.rows = append(t.rows, []string{"median", seconds(res.Baseline), seconds(res.Cold), seconds(res.Warm)})
	if err := writeTable(w, t); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nFirst / cached: %.1fx; cached - baseline: %s; model served %d times.\n\n",
		res.Cold.Seconds()/res.Warm.Seconds(), seconds(res.Warm-res.Baseline), res.Downloads)
	return writeTargets(w, res.Targets)
}
