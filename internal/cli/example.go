package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/example/echo"
	"github.com/gantry-dev/gantry/internal/example/grpcecho"
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
	var grpcListen string
	grpcCmd := &cobra.Command{
		Use:   "grpc-echo",
		Short: "A gRPC function that answers each message with itself",
		Long: `grpc-echo is a grpc-go server, as NVCF's gRPC functions are: grpc.health.v1, and
` + grpcecho.Service + ` with Unary (answers the request) and Bidi (answers each
message of a bidirectional stream as it comes), of raw bytes (content subtype
"raw"). It listens on $PORT. Create it as a gRPC function with inferenceUrl
/grpc and call it through gantry's gRPC listener (--grpc-listen) with
function-id and authorization metadata.`,
		Example: `  gantry function create --name grpc-echo --image process://gantry --args "example grpc-echo" --inference-url /grpc`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return grpcecho.Run(cmd.Context(), grpcListen)
		},
	}
	grpcCmd.Flags().StringVar(&grpcListen, "listen", "", "address to serve on (default :$PORT, else "+grpcecho.DefaultAddr+")")
	cmd.AddCommand(grpcCmd)
	return cmd
}
