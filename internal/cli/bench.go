package cli

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/bench"
)

func newBenchCmd() *cobra.Command {
	cmd := groupCmd("bench", "Measure Gantry's performance against its targets")
	cmd.Long = `Measure Gantry against its performance targets on this machine. Each
benchmark starts what it measures itself (an in-process dev platform, or this
binary as a subprocess) in a temporary directory; no running Gantry is needed.
docs/benchmarks.md records the results and how to read them.`
	cmd.AddCommand(newBenchInvokeCmd(), newBenchStartupCmd())
	return cmd
}

func newBenchInvokeCmd() *cobra.Command {
	var (
		cfg      bench.InvokeConfig
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "invoke",
		Short: "Measure the latency and throughput the invocation gateway adds",
		Long: `Start a dev platform in this process, deploy the echo example on it, start a
second echo as a plain process, and send the same POSTs to both: directly to
the echo, and through the gateway (POST /v2/nvcf/pexec/functions/<id>). Each
concurrency level runs the pair (direct, then gateway) --rounds times, each
after a warmup, and reports the medians of the rounds.

Targets: the gateway adds at most 0.25 ms to the p50 of an unloaded call
(the lowest concurrency level), and at concurrency 32 keeps at least half
the direct path's requests per second.`,
		Example: `  gantry bench invoke
  gantry bench invoke --concurrency 1,8,32 --duration 5s --rounds 1
  gantry bench invoke --cpuprofile /tmp/gateway.pprof && go tool pprof -top /tmp/gateway-c32.pprof`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			cfg.Logger, cfg.Progress = log, cmd.ErrOrStderr()
			res, err := bench.RunInvoke(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := printBench(cmd, res, func(w io.Writer) error { return writeInvoke(w, res) }); err != nil {
				return err
			}
			if res.Errors > 0 {
				return fmt.Errorf("%d requests failed; the numbers above are not trustworthy", res.Errors)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&cfg.Levels, "concurrency", []int{1, 32}, "concurrency levels to measure (requests in flight per path)")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of each timed run")
	f.IntVar(&cfg.Requests, "requests", 0, "run exactly this many requests per timed run instead of --duration")
	f.DurationVar(&cfg.Warmup, "warmup", time.Second, "unmeasured load before each timed run (0 for none)")
	f.IntVar(&cfg.Rounds, "rounds", 3, "times to repeat each level's (direct, gateway) pair; the medians are reported")
	f.IntVar(&cfg.BodySize, "body-size", 1024, "request body size in bytes")
	f.StringVar(&cfg.CPUProfile, "cpuprofile", "", "after the measured rounds, profile one more gateway run per level into this file (-c<level> is added when there are several levels)")
	f.StringVar(&logLevel, "log-level", "warn", "platform log level: debug, info, warn or error")
	return cmd
}

func newBenchStartupCmd() *cobra.Command {
	var cfg bench.StartupConfig
	cmd := &cobra.Command{
		Use:   "startup",
		Short: "Measure how fast `gantry dev` starts and how much memory it holds idle",
		Long: `Run this binary as ` + "`gantry dev`" + ` --runs times, each on a fresh data dir, and once
more on the data dir the last run left behind. Each start is timed from exec
to the first 200 from GET /healthz (polled every 10ms) and to the ready
banner; after --idle its VmRSS is read from /proc, and it is stopped with
SIGINT.

Targets: start in at most 3s; idle RSS at most 150 MiB.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			res, err := bench.RunStartup(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return printBench(cmd, res, func(w io.Writer) error { return writeStartup(w, res) })
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Runs, "runs", 5, "starts on a fresh data dir (one restart on an existing data dir follows)")
	f.DurationVar(&cfg.Idle, "idle", 10*time.Second, "how long each start idles before its memory is read")
	f.DurationVar(&cfg.Timeout, "timeout", time.Minute, "how long one start may take before the benchmark fails")
	return cmd
}

// printBench writes res as JSON or YAML when -o asks, else the tables.
func printBench(cmd *cobra.Command, res any, tables func(io.Writer) error) error {
	format := formatTable
	if f := cmd.Flags().Lookup("output"); f != nil {
		format = outputFormat(f.Value.String())
	}
	if format == formatTable {
		return tables(cmd.OutOrStdout())
	}
	return printer{w: cmd.OutOrStdout(), format: format}.printData(res)
}

func writeInvoke(w io.Writer, res *bench.InvokeResult) error {
	per := res.Duration.String()
	if res.Requests > 0 {
		per = strconv.Itoa(res.Requests) + " requests"
	}
	fmt.Fprintf(w, "Body %d bytes, %s per timed run; medians of %d rounds (REQUESTS and ERRORS are totals).\n\n", res.BodySize, per, res.Rounds)
	runs := table{headers: []string{"CONCURRENCY", "PATH", "REQUESTS", "ERRORS", "P50", "P99", "REQ/S"}}
	added := table{headers: []string{"CONCURRENCY", "ADDED P50", "THROUGHPUT GATEWAY/DIRECT"}}
	for _, l := range res.Levels {
		for _, p := range []struct {
			name string
			r    bench.PathResult
		}{{bench.PathDirect, l.Direct}, {bench.PathGateway, l.Gateway}} {
			runs.rows = append(runs.rows, []string{strconv.Itoa(l.Concurrency), p.name, strconv.Itoa(p.r.Requests), strconv.Itoa(p.r.Errors),
				bench.Millis(p.r.P50) + "ms", bench.Millis(p.r.P99) + "ms", fmt.Sprintf("%.0f", p.r.RPS)})
		}
		added.rows = append(added.rows, []string{strconv.Itoa(l.Concurrency), bench.Millis(l.AddedP50) + "ms", fmt.Sprintf("%.2f", l.ThroughputRatio)})
	}
	if err := writeTable(w, runs); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := writeTable(w, added); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := writeTargets(w, res.Targets); err != nil {
		return err
	}
	for _, l := range res.Levels {
		if r := l.ProfiledRun; r != nil {
			fmt.Fprintf(w, "CPU profile, concurrency %d: %s (%d gateway requests in %.1fs, %.0f req/s)\n",
				l.Concurrency, l.CPUProfile, r.Requests, r.Elapsed.Seconds(), r.Latency.RPS)
		}
	}
	if res.Errors > 0 {
		fmt.Fprintf(w, "\n!!! %d REQUESTS FAILED. The numbers above are not trustworthy.\n", res.Errors)
		for _, l := range res.Levels {
			for _, p := range []bench.PathResult{l.Direct, l.Gateway} {
				if p.Errors > 0 {
					fmt.Fprintf(w, "!!! concurrency %d: %d errors, e.g. %s\n", l.Concurrency, p.Errors, p.FirstError)
				}
			}
		}
	}
	return nil
}

func writeStartup(w io.Writer, res *bench.StartupResult) error {
	t := table{headers: []string{"RUN", "DATA DIR", "START (/healthz)", "READY (banner)", "IDLE RSS", "STOP"}}
	row := func(name string, r bench.StartRun) {
		data := "fresh"
		if !r.FreshDataDir {
			data = "existing"
		}
		t.rows = append(t.rows, []string{name, data, seconds(r.Start), seconds(r.Ready), fmt.Sprintf("%.1f MiB", bench.MiB(r.IdleRSS)), seconds(r.Stop)})
	}
	for i, r := range res.Runs {
		row(strconv.Itoa(i+1), r)
	}
	row("restart", res.Restart)
	if err := writeTable(w, t); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nFresh starts: start median %s (min %s, max %s), ready median %s, idle RSS median %.1f MiB after %s idle.\n\n",
		seconds(res.StartMedian), seconds(res.StartMin), seconds(res.StartMax), seconds(res.ReadyMedian), bench.MiB(res.RSSMedian), res.Idle)
	return writeTargets(w, res.Targets)
}

func writeTargets(w io.Writer, targets []bench.Target) error {
	t := table{headers: []string{"TARGET", "WANT", "GOT", "RESULT"}}
	for _, tg := range targets {
		result := "PASS"
		if !tg.Pass {
			result = "MISS"
		}
		t.rows = append(t.rows, []string{tg.Name, tg.Want, tg.Got, result})
	}
	return writeTable(w, t)
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }
