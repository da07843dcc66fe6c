package cli

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
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
	cmd.AddCommand(newBenchScheduleCmd())
	cmd.AddCommand(newBenchAgentsCmd())
	cmd.AddCommand(newBenchAuthCmd())
	cmd.AddCommand(newBenchMEKCmd())
	cmd.AddCommand(newBenchAutoscaleCmd())
	cmd.AddCommand(newBenchGRPCCmd())
	cmd.AddCommand(newBenchModelsCmd())
	return cmd
}

func newBenchInvokeCmd() *cobra.Command {
	var (
		cfg      bench.InvokeConfig
		logLevel string
		stream   bool
	)
	cmd := &cobra.Command{
		Use:   "invoke",
		Short: "Measure the latency and throughput the invocation gateway adds",
		Long: `Start a dev platform in this process, deploy the echo example on it, and
start a second echo as a plain process. In front of that echo, start two
baselines: Go's httputil.ReverseProxy on a loopback listener in this process,
and nginx (` + bench.DefaultNginx + ` or on $PATH; upstream keepalive, proxy_buffering
off) as a subprocess with a generated config in a temporary directory. When
nginx is not installed, its baseline is skipped with a note.

Send the same POSTs along every path: directly to the echo, through each
baseline, and through the gateway (POST /v2/nvcf/pexec/functions/<id>). Each
concurrency level runs every path in turn --rounds times, each after a
warmup, and reports the medians of the rounds: p50, p99 and requests/s.
Comparisons between paths (VS DIRECT, GATEWAY AGAINST, the targets) are
paired by round: the median of each round's own difference and ratio, so
that load drifting between rounds moves both sides of a pair alike.

Then, unless --stream=false, on every path:
  SSE         --sse-calls streams of Echo-Events 5, Echo-Interval 50ms; the
              time from sending to the first "data:" line (median)
  large       a --stream-bytes response (Echo-Bytes), once per round: GB/s,
              and how far this process's RSS peaks above its start (VmHWM; the
              baselines' proxy and the gateway run in this process)
and through the gateway only:
  async       --async-concurrency polled calls in flight for --async-duration:
              NVCF-POLL-SECONDS 1 on an echo that answers after
              --async-delay, so each is answered 202 and then polled with
              GET /v2/nvcf/pexec/status/<requestId> until 200; completed
              calls/s
A path that fails a stream is reported as failed; the rest still run.

Targets: at concurrency 32 the gateway keeps >= 0.9x the httputil proxy's
requests/s (stretch: >= nginx's); at concurrency 1 its p50 is within
+0.15 ms of the httputil proxy's; SSE first event within +1 ms of direct; a
1 GiB response streams through the gateway at >= 1 GB/s, growing this
process's RSS by <= 64 MiB.`,
		Example: `  gantry bench invoke
  gantry bench invoke --duration 3s --rounds 1
  gantry bench invoke --concurrency 1,8,32 --stream=false --nginx off
  gantry bench invoke --cpuprofile /tmp/gateway.pprof && go tool pprof -top /tmp/gateway-c32.pprof`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			cfg.Logger, cfg.Progress = log, cmd.ErrOrStderr()
			cfg.SkipStreaming = !stream
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
	f.IntVar(&cfg.Rounds, "rounds", 3, "times to repeat each level's runs of every path, and the large response; the medians are reported")
	f.IntVar(&cfg.BodySize, "body-size", 1024, "request body size in bytes")
	f.StringVar(&cfg.Nginx, "nginx", "", "nginx executable for the nginx baseline (default "+bench.DefaultNginx+", else nginx on $PATH); "+bench.NginxOff+" skips it")
	f.BoolVar(&stream, "stream", true, "also measure SSE time to first event, a large streamed response, and async (202) calls")
	f.IntVar(&cfg.SSECalls, "sse-calls", 20, "event streams timed per path")
	f.Int64Var(&cfg.StreamBytes, "stream-bytes", 1<<30, "size of the large streamed response")
	f.IntVar(&cfg.AsyncConcurrency, "async-concurrency", bench.TargetThroughputLevel, "polled calls in flight in the async run")
	f.DurationVar(&cfg.AsyncDuration, "async-duration", 10*time.Second, "how long the async run starts calls")
	f.DurationVar(&cfg.AsyncDelay, "async-delay", 1200*time.Millisecond, "how long the echo takes to answer an async call (more than the 1s poll window)")
	f.BoolVar(&cfg.CompareMetrics, "metrics", false, "also measure the gateway on a second dev platform with its metrics disabled (path gateway-nometrics), to see what the metrics cost")
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
	fmt.Fprintf(w, "Body %d bytes, %s per timed run; medians of %d rounds (REQUESTS and ERRORS are totals), comparisons paired by round.\n", res.BodySize, per, res.Rounds)
	for _, s := range res.Skipped {
		fmt.Fprintf(w, "Note: the %s baseline was skipped: %s\n", s.Path, s.Reason)
	}
	fmt.Fprintln(w)
	runs := table{headers: []string{"CONCURRENCY", "PATH", "REQUESTS", "ERRORS", "P50", "P99", "REQ/S", "P50 VS DIRECT", "REQ/S VS DIRECT"}}
	gw := table{headers: []string{"CONCURRENCY", "GATEWAY AGAINST", "ADDED P50", "THROUGHPUT GATEWAY/BASELINE"}}
	for _, l := range res.Levels {
		for _, p := range l.Paths {
			runs.rows = append(runs.rows, []string{strconv.Itoa(l.Concurrency), p.Path, strconv.Itoa(p.Requests), strconv.Itoa(p.Errors),
				bench.Millis(p.P50) + "ms", bench.Millis(p.P99) + "ms", fmt.Sprintf("%.0f", p.RPS),
				bench.SignedMillis(p.AddedP50) + "ms", fmt.Sprintf("%.2f", p.ThroughputRatio)})
			if p.Path == bench.PathGateway {
				continue
			}
			if a, ok := l.Compare(bench.PathGateway, p.Path); ok {
				gw.rows = append(gw.rows, []string{strconv.Itoa(l.Concurrency), p.Path, bench.SignedMillis(a.AddedP50) + "ms", fmt.Sprintf("%.2f", a.ThroughputRatio)})
			}
		}
	}
	for _, t := range []table{runs, gw} {
		if err := writeTable(w, t); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	if s := res.Stream; s != nil {
		if err := writeInvokeStream(w, s); err != nil {
			return err
		}
	}
	if err := writeTargets(w, res.Targets); err != nil {
		return err
	}
	for _, l := range res.Levels {
		if r := l.ProfiledRun; r != nil {
			fmt.Fprintf(w, "CPU profile, concurrency %d: %s (%d gateway requests in %.1fs, %.0f req/s)\n",
				l.Concurrency, l.CPUProfile, r.Requests, r.Elapsed.Seconds(), r.Latency.RPS)
		}
	}
	if s := res.Stream; s != nil {
		for _, p := range s.SSE {
			if p.Errors > 0 {
				fmt.Fprintf(w, "\n!!! SSE on %s: %d of %d streams failed, e.g. %s\n", p.Path, p.Errors, p.Calls, p.FirstError)
			}
		}
		for _, p := range s.Large {
			if p.Failed > 0 {
				fmt.Fprintf(w, "\n!!! %s response on %s: %d of %d transfers failed, e.g. %s\n", bench.ByteSize(s.LargeBytes), p.Path, p.Failed, p.Transfers, p.FirstError)
			}
		}
	}
	if res.Errors > 0 {
		fmt.Fprintf(w, "\n!!! %d REQUESTS FAILED. The numbers above are not trustworthy.\n", res.Errors)
		for _, l := range res.Levels {
			for _, p := range l.Paths {
				if p.Errors > 0 {
					fmt.Fprintf(w, "!!! concurrency %d, %s: %d errors, e.g. %s\n", l.Concurrency, p.Path, p.Errors, p.FirstError)
				}
			}
		}
		if a := res.Stream; a != nil && a.Async.Errors > 0 {
			fmt.Fprintf(w, "!!! async: %d errors, e.g. %s\n", a.Async.Errors, a.Async.FirstError)
		}
	}
	return nil
}

// writeInvokeStream writes the tables of the streaming measurements.
func writeInvokeStream(w io.Writer, s *bench.StreamResult) error {
	fmt.Fprintf(w, "Server-sent events: %d events %s apart per stream; times from sending the request.\n\n", s.SSEEvents, s.SSEInterval)
	sse := table{headers: []string{"PATH", "STREAMS", "ERRORS", "FIRST EVENT P50", "P90", "VS DIRECT", "LAST EVENT P50", "BUFFERED"}}
	for _, p := range s.SSE {
		sse.rows = append(sse.rows, []string{p.Path, strconv.Itoa(p.Calls), strconv.Itoa(p.Errors),
			bench.Millis(p.FirstEvent.P50) + "ms", bench.Millis(p.FirstEvent.P90) + "ms", bench.SignedMillis(p.AddedFirstEvent) + "ms",
			bench.Millis(p.LastEvent.P50) + "ms", strconv.Itoa(p.Buffered)})
	}
	if err := writeTable(w, sse); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s response (Echo-Bytes); rate and time are medians, RSS GROWTH the most this process grew in one transfer.\n\n", bench.ByteSize(s.LargeBytes))
	large := table{headers: []string{"PATH", "TRANSFERS", "FAILED", "TIME", "GB/S", "RSS GROWTH", "RESULT"}}
	for _, p := range s.Large {
		result, elapsed, rate := "OK", seconds(p.Elapsed), fmt.Sprintf("%.2f", p.Rate/1e9)
		if p.Failed > 0 {
			result = "FAILED: " + shorten(p.FirstError, 80)
		}
		if p.Failed == p.Transfers {
			elapsed, rate = "-", "-"
		}
		large.rows = append(large.rows, []string{p.Path, strconv.Itoa(p.Transfers), strconv.Itoa(p.Failed), elapsed, rate,
			fmt.Sprintf("%.1f MiB", bench.MiB(p.RSSGrowth)), result})
	}
	if err := writeTable(w, large); err != nil {
		return err
	}
	a := s.Async
	fmt.Fprintf(w, "\nAsync through the gateway: pexec with NVCF-POLL-SECONDS %d on an echo that answers after %s, then status GETs until 200.\n\n", a.PollSeconds, a.Delay)
	async := table{headers: []string{"CONCURRENCY", "CALLS", "202 FIRST", "STATUS GETS", "ERRORS", "CALLS/S", "IDEAL", "P50", "P99", "P50 OVER DELAY"}}
	async.rows = append(async.rows, []string{strconv.Itoa(a.Concurrency), strconv.Itoa(a.Calls), strconv.Itoa(a.Accepted), strconv.Itoa(a.StatusPolls),
		strconv.Itoa(a.Errors), fmt.Sprintf("%.1f", a.CallsPerSecond), fmt.Sprintf("%.1f", a.Ideal),
		bench.Millis(a.Latency.P50) + "ms", bench.Millis(a.Latency.P99) + "ms", bench.SignedMillis(a.Latency.P50-a.Delay) + "ms"})
	if err := writeTable(w, async); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}

// shorten cuts s to n characters for a table cell.
func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "..."
	}
	return s
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

func newBenchScheduleCmd() *cobra.Command {
	var cfg bench.ScheduleConfig
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Measure how fast the scheduler places instances on many clusters",
		Long: `Start an embedded etcd in a temporary directory, write --clusters READY
clusters of one --gpus-per-cluster node each (four GPU models, three regions,
three zones each), --deployments deployments of 1 to 10 instances that add
up to --instances (15% at 2 GPUs and 5% at 4 GPUs per instance; 15% limited
to a region or zone), and their pending instances, as the controller
creates them. Then place them with the real scheduler, one etcd transaction
per placement, in phases that each start from a fresh etcd:

  bulk            one Place call for every pending instance, as one
                  controller pass does after the deployments arrive at once
  per deployment  one Place call per deployment, on each --workers number of
                  schedulers racing through etcd as replicas would

Afterwards the store is checked: no cluster is overbooked, every allocation
record equals its instances, and no pending instance would fit anywhere.

Target: at least 5,000 placements/s.`,
		Example: `  gantry bench schedule
  gantry bench schedule --gpus-per-cluster 16 --workers 1,2,4
  gantry bench schedule --cpuprofile /tmp/sched.pprof && go tool pprof -top /tmp/sched-bulk.pprof`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			res, err := bench.RunSchedule(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			var failed []string
			for _, p := range res.Phases {
				if !p.Checks.OK() {
					failed = append(failed, bench.PhaseLabel(p.Name, p.Schedulers))
				}
			}
			if err := printBench(cmd, res, func(w io.Writer) error {
				models := make([]string, len(res.Models))
				for i, m := range res.Models {
					models[i] = fmt.Sprintf("%s %d/%d", m.GPU, m.DemandGPUs, m.CapacityGPUs)
				}
				shapes := make([]string, 0, len(res.Shapes))
				for _, n := range slices.Sorted(maps.Keys(res.Shapes)) {
					shapes = append(shapes, fmt.Sprintf("%dx %d", n, res.Shapes[n]))
				}
				fmt.Fprintf(w, "%d clusters x %d GPUs = %d GPUs; %d deployments, %d instances (%s) needing %d GPUs, %.0f%% of capacity.\n",
					res.Clusters, res.GPUsPerCluster, res.CapacityGPUs, res.Deployments, res.Instances, strings.Join(shapes, ", "),
					res.DemandGPUs, 100*float64(res.DemandGPUs)/float64(res.CapacityGPUs))
				fmt.Fprintf(w, "GPUs demanded/available by model: %s.\n", strings.Join(models, ", "))
				if res.DemandGPUs > res.CapacityGPUs {
					fmt.Fprintf(w, "Demand exceeds capacity by %d GPUs, so instances stay pending; the deployment latencies cover fully placed deployments only.\n", res.DemandGPUs-res.CapacityGPUs)
				}
				fmt.Fprintln(w)
				runs := table{headers: []string{"PHASE", "PLACED", "PENDING", "TIME", "PLACEMENTS/S", "CONFLICTS", "DEPLOYMENTS PLACED", "DEPLOY P50", "DEPLOY P99", "DEPLOY MAX"}}
				costs := table{headers: []string{"PHASE", "PLACE CALLS", "STORE READS", "COMMITS", "READ/PLACEMENT", "COMMIT/PLACEMENT", "OTHER/PLACEMENT"}}
				checks := table{headers: []string{"PHASE", "INSTANCES", "PLACED", "PENDING", "PENDING THAT FIT", "OVERBOOKED CLUSTERS", "ALLOCATION MISMATCHES", "RESULT"}}
				for _, p := range res.Phases {
					label := bench.PhaseLabel(p.Name, p.Schedulers)
					l := p.DeploymentLatency
					runs.rows = append(runs.rows, []string{label, strconv.Itoa(p.Placed), strconv.Itoa(p.Pending), seconds(p.Elapsed),
						fmt.Sprintf("%.0f", p.PlacementsPerSecond), strconv.Itoa(p.Conflicts), strconv.Itoa(p.DeploymentsPlaced),
						bench.Millis(l.P50) + "ms", bench.Millis(l.P99) + "ms", bench.Millis(l.Max) + "ms"})
					per := func(d time.Duration) string {
						if p.Placed == 0 {
							return ""
						}
						return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)/float64(p.Placed))
					}
					costs.rows = append(costs.rows, []string{label, strconv.Itoa(p.PlaceCalls), strconv.Itoa(p.Reads), strconv.Itoa(p.Commits),
						per(p.ReadTime), per(p.CommitTime), per(p.Busy - p.ReadTime - p.CommitTime)})
					c, result := p.Checks, "OK"
					if !c.OK() {
						result = "FAILED"
					}
					checks.rows = append(checks.rows, []string{label, strconv.Itoa(c.Instances), strconv.Itoa(c.Placed), strconv.Itoa(c.Pending),
						strconv.Itoa(c.PendingThatFit), strconv.Itoa(c.OverbookedClusters), strconv.Itoa(c.AllocationMismatches), result})
				}
				for _, t := range []table{runs, costs, checks} {
					if err := writeTable(w, t); err != nil {
						return err
					}
					fmt.Fprintln(w)
				}
				fmt.Fprintln(w, "Times per placement are summed over schedulers; OTHER is time inside Place but outside the store (mostly Choose).")
				fmt.Fprintln(w)
				if err := writeTargets(w, res.Targets); err != nil {
					return err
				}
				for _, p := range res.Phases {
					if p.PlaceErrors > 0 {
						fmt.Fprintf(w, "%s: %d Place calls gave up on conflicts and were retried, e.g. %s\n", bench.PhaseLabel(p.Name, p.Schedulers), p.PlaceErrors, p.FirstError)
					}
					if p.CPUProfile != "" {
						fmt.Fprintf(w, "CPU profile, %s: %s\n", bench.PhaseLabel(p.Name, p.Schedulers), p.CPUProfile)
					}
					for _, pr := range p.Checks.Problems {
						fmt.Fprintf(w, "!!! %s: %s\n", bench.PhaseLabel(p.Name, p.Schedulers), pr)
					}
				}
				return nil
			}); err != nil {
				return err
			}
			if len(failed) > 0 {
				return fmt.Errorf("placement checks failed in: %s", strings.Join(failed, "; "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Clusters, "clusters", 1000, "simulated READY clusters")
	f.IntVar(&cfg.GPUsPerCluster, "gpus-per-cluster", 8, "GPUs on each cluster's one node")
	f.IntVar(&cfg.Deployments, "deployments", 2000, "deployments, of 1 to 10 instances each")
	f.IntVar(&cfg.Instances, "instances", 10000, "instances over all deployments")
	f.IntSliceVar(&cfg.Workers, "workers", []int{1, 4}, "numbers of concurrent schedulers for the per-deployment phases")
	f.StringVar(&cfg.CPUProfile, "cpuprofile", "", "profile each phase's timed part into this file, with -bulk or -w<workers> inserted before the extension")
	return cmd
}

func newBenchAgentsCmd() *cobra.Command {
	var cfg bench.AgentsConfig
	cmd := &cobra.Command{
		Use:   "agents",
		Short: "Measure what many heartbeating agents cost one server",
		Long: `Run this binary as ` + "`gantry server`" + ` (embedded etcd and NATS) in a temporary
directory, register --agents clusters through the API and exchange each
bootstrap token for a credential, as ` + "`gantry agent`" + ` does. Measure the server
idle for --idle with the clusters registered and no agent connected. Then run
--agents simulated agents in this process, each with its own NATS connection
(its credential as the token, its cluster's inbox prefix), sending a full
report (one node of 8 H100s, --instances instance states) every --interval as
a request to gantry.report.<cluster> and checking the answer. The agents'
first reports are spread evenly over one interval. Once every agent has
reported, the server's CPU time (/proc/<pid>/stat, user+system) is measured
over --duration, and its VmRSS read at the end. The CPU of this process and
of the rest of the machine is shown beside it, so a busy machine shows.

One NATS connection per agent needs about --agents open files; the soft
limit is raised in this process up to the hard limit if needed.

Target: 1,000 agents reporting every 5s cost the server under 0.25 cores.`,
		Example: `  gantry bench agents
  gantry bench agents --agents 200 --duration 20s --idle 5s
  gantry bench agents -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			res, err := bench.RunAgents(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := printBench(cmd, res, func(w io.Writer) error {
				fmt.Fprintf(w, "%d agents, one %d-byte report every %s each (%d instance states), measured for %s after a %.1fs warmup.\n",
					res.Agents, res.ReportBytes, res.Interval, res.InstancesPerReport, res.Duration, res.Warmup.Seconds())
				fmt.Fprintf(w, "Setup: %d clusters registered and enrolled in %.1fs, NATS connections opened in %.1fs; open-files limit %d.\n\n",
					res.Agents, res.Register.Seconds(), res.Connect.Seconds(), res.FDLimit)
				usage := table{headers: []string{"PHASE", "AGENTS", "WALL", "SERVER CPU", "SERVER CORES", "SERVER RSS", "AGENTS' PROCESS", "OTHER LOAD"}}
				for _, p := range res.Phases {
					usage.rows = append(usage.rows, []string{p.Name, strconv.Itoa(p.Agents), fmt.Sprintf("%.1fs", p.Wall.Seconds()),
						fmt.Sprintf("%.2fs", p.ServerCPU.Seconds()), fmt.Sprintf("%.3f", p.ServerCores), fmt.Sprintf("%.1f MiB", bench.MiB(p.ServerRSS)),
						fmt.Sprintf("%.3f cores", p.BenchCores), fmt.Sprintf("%.3f cores", p.OtherCores)})
				}
				if err := writeTable(w, usage); err != nil {
					return err
				}
				fmt.Fprintln(w)
				l := res.Latency
				reports := table{headers: []string{"REPORTS", "REPORTS/S", "ERRORS", "P50", "P99", "MAX", "ADDED SERVER CORES", "SERVER CPU/REPORT"}}
				reports.rows = append(reports.rows, []string{strconv.Itoa(res.Reports), fmt.Sprintf("%.1f", res.ReportsPerSecond), strconv.Itoa(res.Errors),
					bench.Millis(l.P50) + "ms", bench.Millis(l.P99) + "ms", bench.Millis(l.Max) + "ms",
					fmt.Sprintf("%.3f", res.AddedCores), fmt.Sprintf("%.0fµs", float64(res.CPUPerReport)/float64(time.Microsecond))})
				if err := writeTable(w, reports); err != nil {
					return err
				}
				fmt.Fprintf(w, "\nServer peak RSS (VmHWM, registration included): %.1f MiB.\n\n", bench.MiB(res.ServerPeakRSS))
				if err := writeTargets(w, res.Targets); err != nil {
					return err
				}
				if res.Errors > 0 {
					fmt.Fprintf(w, "\n!!! %d REPORTS FAILED, e.g. %s\n", res.Errors, res.FirstError)
				}
				return nil
			}); err != nil {
				return err
			}
			if res.Errors > 0 {
				return fmt.Errorf("%d reports failed; the numbers above are not trustworthy", res.Errors)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Agents, "agents", bench.TargetAgentsCount, "simulated agents, one registered cluster each")
	f.DurationVar(&cfg.Interval, "interval", bench.TargetAgentsInterval, "each agent's heartbeat period")
	f.DurationVar(&cfg.Duration, "duration", time.Minute, "measured window, after every agent has reported once")
	f.DurationVar(&cfg.Idle, "idle", 10*time.Second, "idle baseline: the server with the clusters registered and no agent connected")
	f.IntVar(&cfg.Instances, "instances", 0, "instance states per report; they do not exist, so each costs the server an etcd read per report")
	return cmd
}

func newBenchAutoscaleCmd() *cobra.Command {
	var cfg bench.AutoscaleConfig
	var logLevel string
	cmd := &cobra.Command{
		Use:   "autoscale",
		Short: "Measure cold starts, bursts, steady load and scale to zero",
		Long: `Run a dev platform in a temporary directory with the echo example as a
function that takes --start-delay to start and --call-time per call, deployed
with minInstances 0, maxInstances --max-instances and maxRequestConcurrency 1,
and the platform's scale-down delay set to --scale-down-delay. It measures:

  direct start   the same function started by hand, exec to first 200 (the
                 function's own start: the baseline)
  cold start     a call at zero instances, request to 200, per round (each
                 round then waits for the version to go back to zero); the
                 platform's part is cold start minus direct start
  burst          2 x --max-instances callers at zero instances, until
                 --max-instances instances run
  steady         --max-instances - 1 callers for --steady after settling:
                 how often the desired count changes (flapping)
  idle to zero   after the load stops, until the decision to go to zero and
                 until no instance runs

Targets: cold start <= 1s for a function that starts in 100ms; burst <= 5s;
no change under steady load; the decision to go to zero within one
autoscaler period (1s) of the delay.`,
		Example: `  gantry bench autoscale
  gantry bench autoscale --steady 30s --cold-rounds 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			cfg.Logger, cfg.Progress = log, cmd.ErrOrStderr()
			res, err := bench.RunAutoscale(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := printBench(cmd, res, func(w io.Writer) error { return writeAutoscale(w, res) }); err != nil {
				return err
			}
			if res.Errors > 0 {
				return fmt.Errorf("%d calls failed; the numbers above are not trustworthy", res.Errors)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.StartDelay, "start-delay", 100*time.Millisecond, "how long the function takes to start")
	f.DurationVar(&cfg.CallTime, "call-time", 200*time.Millisecond, "how long each call takes in the function")
	f.IntVar(&cfg.MaxInstances, "max-instances", 4, "maxInstances of the function's spec")
	f.IntVar(&cfg.ColdRounds, "cold-rounds", 3, "cold starts (and direct starts) to time; the medians are reported")
	f.DurationVar(&cfg.Steady, "steady", 2*time.Minute, "how long to watch a constant load")
	f.DurationVar(&cfg.ScaleDownDelay, "scale-down-delay", 10*time.Second, "the platform's scale-down delay (short, to keep the run short)")
	f.StringVar(&logLevel, "log-level", "warn", "platform log level: debug, info, warn or error")
	return cmd
}

func writeAutoscale(w io.Writer, res *bench.AutoscaleResult) error {
	t := table{headers: []string{"MEASURE", "GOT", "BASELINE / NOTE"}}
	t.rows = append(t.rows,
		[]string{"cold start (zero instances -> 200)", seconds(res.ColdStart), fmt.Sprintf("direct start %s; platform part %s", seconds(res.DirectStart), seconds(res.PlatformPart))},
		[]string{fmt.Sprintf("burst (%d callers, 0 -> %d running)", res.BurstCallers, res.MaxInstances), seconds(res.Burst), ""},
		[]string{fmt.Sprintf("steady (%d callers, %v)", res.SteadyCallers, res.Steady), fmt.Sprintf("%d instances, %d changes", res.SteadyCount, res.SteadyChanges), ""},
		[]string{"idle -> zero decision", seconds(res.ToZeroDecision), fmt.Sprintf("scale-down delay %v, period %v", res.ScaleDownDelay, res.Period)},
		[]string{"idle -> no instance running", seconds(res.ToZero), "includes stopping the process"},
	)
	if err := writeTable(w, t); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return writeTargets(w, res.Targets)
}
