package cli

import "github.com/spf13/pflag"

// addMetricsFlag adds --metrics-listen to gantry server and gantry dev.
func addMetricsFlag(f *pflag.FlagSet, listen *string) {
	f.StringVar(listen, "metrics-listen", "", "also serve GET /metrics here (host:port) without authentication, for a Prometheus scraper; the API listener's /metrics needs an admin token")
}
