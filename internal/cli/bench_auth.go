package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/bench"
)

func newBenchAuthCmd() *cobra.Command {
	var cfg bench.AuthConfig
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Measure what checking an API key adds to a request",
		Long: `Start an embedded etcd in a temporary directory, create an API key there, and
serve one trivial handler on loopback twice: as is (/plain), and behind the
guard every API route uses, with the API key service as its authenticator
(/guarded). One client sends --requests requests to each path over one
keep-alive connection, one at a time, alternating the paths so drift on the
machine hits both alike; every request carries the key, so the difference
is the guard: request id, key check (a SHA-256 and a cache lookup; one etcd
read per key per second), scope check. Then Authenticate is called --calls
times directly. Each round does both after a warmup; the medians of
--rounds rounds are reported.

Target: authentication adds under 20 µs to the p50.`,
		Example: `  gantry bench auth
  gantry bench auth --requests 50000 --rounds 5 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			res, err := bench.RunAuth(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := printBench(cmd, res, func(w io.Writer) error { return writeAuth(w, res) }); err != nil {
				return err
			}
			if res.Errors > 0 {
				return fmt.Errorf("%d requests failed (e.g. %s); the numbers above are not trustworthy", res.Errors, res.FirstError)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Requests, "requests", 20000, "timed requests per path per round")
	f.IntVar(&cfg.Warmup, "warmup", 2000, "unmeasured requests per path before each round")
	f.IntVar(&cfg.Rounds, "rounds", 3, "rounds; the medians are reported")
	f.IntVar(&cfg.Calls, "calls", 200000, "direct Authenticate calls timed per round")
	return cmd
}

func writeAuth(w io.Writer, res *bench.AuthResult) error {
	fmt.Fprintf(w, "%d sequential requests per path per round over one keep-alive connection; medians of %d rounds.\n\n", res.Requests, len(res.Rounds))
	us := func(ns float64) string { return fmt.Sprintf("%.1fµs", ns/1000) }
	t := table{headers: []string{"ROUND", "PLAIN P50", "GUARDED P50", "ADDED P50", "PLAIN P99", "GUARDED P99", "AUTHENTICATE"}}
	for i, r := range res.Rounds {
		t.rows = append(t.rows, []string{strconv.Itoa(i + 1), us(float64(r.Plain.P50)), us(float64(r.Guarded.P50)), us(float64(r.AddedP50)),
			us(float64(r.Plain.P99)), us(float64(r.Guarded.P99)), fmt.Sprintf("%.0f ns/op", r.AuthenticateNs)})
	}
	t.rows = append(t.rows, []string{"median", us(float64(res.PlainP50)), us(float64(res.GuardedP50)), us(float64(res.AddedP50)),
		"", "", fmt.Sprintf("%.0f ns/op", res.AuthenticateNs)})
	if err := writeTable(w, t); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return writeTargets(w, res.Targets)
}
