package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newDashboardCmd(opts *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "dashboard",
		Short: "Print a URL that logs a browser in to the server's dashboard once",
		Long: `Mint a one-time login code with the admin token and print the dashboard URL
that carries it (in the URL's fragment, which no server log sees). Opening it
exchanges the code for a read-only session cookie; the code then stops
working, and unused it expires after a few minutes.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			u, code, err := c.DashboardLogin(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), u)
			fmt.Fprintf(cmd.ErrOrStderr(), "Open it within %s; it works once.\n", time.Until(code.ExpiresAt).Round(time.Second))
			return nil
		},
	}
}
