package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/example/echo"
)

func newExampleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "example",
		Short: "Built-in example functions",
	}
	var listen string
	var startDelay time.Duration
	echoCmd := &cobra.Command{
		Use:   "echo",
		Short: "An HTTP function that answers with the request's body and headers as JSON",
		Long: `echo answers any path (including /echo) with the request's method, path, query,
headers and body as JSON, and /health with 200. It listens on $PORT, which the
process runtime sets for each instance. Header Echo-Delay: <duration> delays
the answer and Echo-Status: <code> sets its status, for trying timeouts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// A function that loads a model first is not ready at once.
			select {
			case <-time.After(startDelay):
			case <-cmd.Context().Done():
				return nil
			}
			return echo.Run(cmd.Context(), listen)
		},
	}
	echoCmd.Flags().StringVar(&listen, "listen", "", "address to serve on (default :$PORT, else 127.0.0.1:8000)")
	echoCmd.Flags().DurationVar(&startDelay, "start-delay", 0, "wait this long before listening, like a function that loads a model first")
	cmd.AddCommand(echoCmd)
	return cmd
}
