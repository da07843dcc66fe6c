package cli

import "github.com/spf13/cobra"

// newBenchCmd is replaced by the benchmark commands.
func newBenchCmd() *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "Measure Gantry's performance", Hidden: true}
}
