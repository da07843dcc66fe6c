package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/model"
)

// errUnhealthy makes gantry status exit non-zero after printing the checks.
var errUnhealthy = errors.New("the platform is unhealthy")

func newStatusCmd(opts *rootOptions) *cobra.Command {
	var secretFile string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Check every component of the platform; exit non-zero when one fails",
		Long: `Ask the server to check every component from its own state: etcd members,
NATS and JetStream, the master key provider, the control-plane leader, the
agents and clusters (READY/NOT_READY and heartbeat age), deployments that
are not ACTIVE, and pending or errored instances with their reasons.

Each check is ok, warn or fail with a message saying what to do. The
command exits 0 when no check failed (warnings included) and 1 otherwise.
It acts on the whole installation, so the server lets through the callers
it lets mint admin tokens: its own machine (loopback mode, the gantry dev
default), or holders of its bootstrap secret (--bootstrap-secret-file or ` + EnvBootstrapSecret + `).`,
		Example: "  gantry status\n  gantry status -o json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := installationClient(cmd, opts, secretFile)
			if err != nil {
				return err
			}
			st, err := c.PlatformStatus(cmd.Context())
			if err != nil {
				return err
			}
			return renderStatus(opts.printer(cmd), st)
		},
	}
	cmd.Flags().StringVar(&secretFile, "bootstrap-secret-file", "", "file holding the installation's bootstrap secret (env "+EnvBootstrapSecret+" holds the secret itself)")
	return cmd
}

// renderStatus prints st in p's format and returns errUnhealthy when a
// check failed.
func renderStatus(p printer, st model.PlatformStatus) error {
	var err error
	if p.format != formatTable {
		err = p.printData(st)
	} else {
		err = writeStatus(p.w, st)
	}
	if err != nil {
		return err
	}
	if !st.Healthy {
		var failed []string
		for _, c := range st.Checks {
			if c.Status == model.CheckFail {
				failed = append(failed, c.Name)
			}
		}
		return fmt.Errorf("%w: failed: %s", errUnhealthy, strings.Join(failed, ", "))
	}
	return nil
}

// writeStatus is the table form: one row a check, its detail lines
// indented below it.
func writeStatus(w io.Writer, st model.PlatformStatus) error {
	t := table{headers: []string{"CHECK", "STATUS", "MESSAGE"}}
	for _, c := range st.Checks {
		t.rows = append(t.rows, []string{c.Name, strings.ToUpper(string(c.Status)), c.Message})
		for _, d := range c.Details {
			t.rows = append(t.rows, []string{"", "", "  " + d})
		}
	}
	if err := writeTable(w, t); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nOverall: %s\n", strings.ToUpper(string(st.Status)))
	return err
}
