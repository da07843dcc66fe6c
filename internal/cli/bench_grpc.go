package cli

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/bench"
)

func newBenchGRPCCmd() *cobra.Command {
	var (
		cfg      bench.GRPCConfig
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "grpc",
		Short: "Measure what the gateway adds to a gRPC call, and bidi stream throughput",
		Long: `Start a dev platform in this process with its gRPC listener, deploy the
grpc-echo example on it as a gRPC function (inferenceUrl /grpc), and start a
second grpc-echo as a plain process. Call both with the same grpc-go client:
directly, and through the gateway with function-id and authorization
metadata. Each round runs both paths in turn, --rounds times, and reports
the medians:

  unary       one call at a time for --duration (after --warmup): p50, p99
              and calls/s
  ping-pong   one bidi stream of --messages messages, each sent once the
              previous reply is in: round trips/s
  pipelined   the same stream, sending while receiving: messages/s

Target: the gateway's unary p50 within +0.2 ms of direct's.`,
		Example: `  gantry bench grpc
  gantry bench grpc --duration 2s --rounds 1 --messages 2000 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			cfg.Logger, cfg.Progress = log, cmd.ErrOrStderr()
			res, err := bench.RunGRPC(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := printBench(cmd, res, func(w io.Writer) error { return writeGRPC(w, res) }); err != nil {
				return err
			}
			for _, u := range res.Unary {
				if u.Errors > 0 {
					return fmt.Errorf("%d %s calls failed (first: %s); the numbers above are not trustworthy", u.Errors, u.Path, u.FirstError)
				}
			}
			for _, b := range res.Bidi {
				if b.Errors > 0 {
					return fmt.Errorf("%d %s streams failed (first: %s)", b.Errors, b.Path, b.FirstError)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of each timed unary run")
	f.DurationVar(&cfg.Warmup, "warmup", time.Second, "unmeasured calls before each timed unary run (0 for none)")
	f.IntVar(&cfg.Rounds, "rounds", 3, "times to repeat every run on both paths; the medians are reported")
	f.IntVar(&cfg.BodySize, "body-size", 1024, "message size in bytes")
	f.IntVar(&cfg.Messages, "messages", 10000, "messages per bidi stream")
	f.StringVar(&logLevel, "log-level", "warn", "platform log level: debug, info, warn or error")
	return cmd
}

func writeGRPC(w io.Writer, res *bench.GRPCResult) error {
	fmt.Fprintf(w, "Messages of %d bytes; unary %s per run at concurrency 1; bidi streams of %d messages; medians of %d rounds.\n\n",
		res.BodySize, res.Duration, res.Messages, res.Rounds)
	unary := table{headers: []string{"PATH", "CALLS", "ERRORS", "P50", "P99", "CALLS/S", "P50 VS DIRECT", "P99 VS DIRECT"}}
	for _, u := range res.Unary {
		d := res.Unary[0]
		unary.rows = append(unary.rows, []string{u.Path, strconv.Itoa(u.Calls), strconv.Itoa(u.Errors),
			bench.Millis(u.P50) + "ms", bench.Millis(u.P99) + "ms", fmt.Sprintf("%.0f", u.RPS),
			bench.SignedMillis(u.P50-d.P50) + "ms", bench.SignedMillis(u.P99-d.P99) + "ms"})
	}
	bidi := table{headers: []string{"PATH", "PING-PONG ROUND TRIPS/S", "PIPELINED MESSAGES/S", "PIPELINED VS DIRECT", "ERRORS"}}
	for _, b := range res.Bidi {
		ratio := "-"
		if d := res.Bidi[0].Pipelined; d > 0 {
			ratio = fmt.Sprintf("%.2f", b.Pipelined/d)
		}
		bidi.rows = append(bidi.rows, []string{b.Path, fmt.Sprintf("%.0f", b.PingPong), fmt.Sprintf("%.0f", b.Pipelined), ratio, strconv.Itoa(b.Errors)})
	}
	for _, t := range []table{unary, bidi} {
		if err := writeTable(w, t); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Unary p50, gateway over the httputil.ReverseProxy (h2c) baseline: %sms.\n\n", bench.SignedMillis(res.AddedOverProxyP50))
	return writeTargets(w, res.Targets)
}
