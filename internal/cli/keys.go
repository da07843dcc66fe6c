package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/model"
)

// keysPollInterval spaces the progress polls during a rotation.
const keysPollInterval = 500 * time.Millisecond

func newKeysCmd(opts *rootOptions) *cobra.Command {
	var secretFile string
	connect := func(cmd *cobra.Command) (*client.Client, error) {
		c, _, err := installationClient(cmd, opts, secretFile)
		return c, err
	}
	cmd := groupCmd("keys", "Rotate the secret store's keys and show their status")
	cmd.Long = `Manage the keys of the encrypted secret store. Secrets are sealed with a key
per account (NEK); every NEK is wrapped by the installation's master key
(MEK), which lives with its provider (a key file, or OpenBao).

Rotations run online: invocations keep working throughout. An interrupted
rotation (Ctrl-C, a server restart) resumes with the same target version
when the same command runs again. These commands act on the whole
installation, so the server lets through the same callers it lets mint
admin tokens: its own machine (loopback mode, the gantry dev default), or
holders of its bootstrap secret (--bootstrap-secret-file or ` + EnvBootstrapSecret + `).`
	cmd.PersistentFlags().StringVar(&secretFile, "bootstrap-secret-file", "", "file holding the installation's bootstrap secret (env "+EnvBootstrapSecret+" holds the secret itself)")
	mek := groupCmd("mek", "The master key that wraps every account key")
	mek.AddCommand(newKeysRotateCmd(opts, connect, "mek"))
	nek := groupCmd("nek", "The per-account keys that seal secrets")
	nek.AddCommand(newKeysRotateCmd(opts, connect, "nek"))
	signing := groupCmd("signing", "The key that signs admin tokens")
	signing.AddCommand(newKeysSigningRotateCmd(opts, connect))
	cmd.AddCommand(mek, nek, signing, newKeysStatusCmd(opts, connect))
	return cmd
}

func newKeysRotateCmd(opts *rootOptions, connect func(*cobra.Command) (*client.Client, error), kind string) *cobra.Command {
	var account string
	cmd := &cobra.Command{
		Use:  "rotate",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kind == "nek" && strings.TrimSpace(account) == "" {
				return usageErrorf(cmd, "--account is required")
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			call := func(ctx context.Context) (model.KeyRotationResult, error) { return c.RotateMEK(ctx) }
			if kind == "nek" {
				call = func(ctx context.Context) (model.KeyRotationResult, error) { return c.RotateNEK(ctx, account) }
			}
			res, err := rotateWithProgress(cmd.Context(), c, call, cmd.ErrOrStderr(), kind, account)
			if errors.Is(err, context.Canceled) {
				return withHint(err, "the rotation stopped where it was; run the same command again to finish it with the same target version")
			}
			if err != nil {
				return err
			}
			return opts.printer(cmd).printMessage(res, "%s", rotationSummary(res))
		},
	}
	if kind == "mek" {
		cmd.Short = "Move every account key to a new master key version"
		cmd.Long = `Ask the MEK provider for a new master key version, make it active, and
re-wrap every account key (NEK) with it. No secret is rewritten. The old
version is retired once no NEK depends on it; the provider may then
archive or delete it.`
		cmd.Example = "  gantry keys mek rotate"
	} else {
		cmd.Short = "Give an account a new key and re-encrypt its secrets"
		cmd.Long = `Create a new key (NEK) version for an account, make it active, and
re-encrypt the account's secrets with it. A secret updated meanwhile keeps
its new value. The old version is retired, its key erased, once no secret
uses it.`
		cmd.Example = "  gantry keys nek rotate --account gantry-local"
		cmd.Flags().StringVar(&account, "account", "", "account (ncaId) whose key to rotate (required)")
	}
	return cmd
}

// rotateWithProgress runs call and, until it returns, polls the server for
// the rotation's progress and prints a line to w whenever it moved.
func rotateWithProgress(ctx context.Context, c *client.Client, call func(context.Context) (model.KeyRotationResult, error),
	w io.Writer, kind, account string) (model.KeyRotationResult, error) {
	type outcome struct {
		res model.KeyRotationResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := call(ctx)
		done <- outcome{res, err}
	}()
	tick := time.NewTicker(keysPollInterval)
	defer tick.Stop()
	last := ""
	for {
		select {
		case o := <-done:
			return o.res, o.err
		case <-tick.C:
			st, err := c.KeyProgress(ctx)
			if err != nil {
				continue // the rotation's own answer will say what went wrong
			}
			if line := progressLine(st, kind, account); line != "" && line != last {
				fmt.Fprintln(w, line)
				last = line
			}
		}
	}
}

// progressLine describes the matching rotation in st, or "" if none.
func progressLine(st model.KeyStatus, kind, account string) string {
	for _, r := range st.Rotations {
		if r.Kind != kind || (kind == "nek" && r.Account != account) {
			continue
		}
		if kind == "mek" {
			return fmt.Sprintf("re-wrapped %d/%d NEKs (MEK v%d -> v%d)", r.Done, r.Total, r.From, r.Target)
		}
		return fmt.Sprintf("checked %d/%d secrets, re-encrypted %d (account %s, NEK v%d -> v%d)", r.Done, r.Total, r.Changed, r.Account, r.From, r.Target)
	}
	return ""
}

// rotationSummary is the one-line table-format result of a rotation.
func rotationSummary(r model.KeyRotationResult) string {
	verb := "Rotated"
	if r.Resumed {
		verb = "Finished the interrupted rotation of"
	}
	retired := "nothing retired"
	if len(r.Retired) > 0 {
		vs := make([]string, len(r.Retired))
		for i, v := range r.Retired {
			vs[i] = "v" + strconv.Itoa(v)
		}
		retired = "retired " + strings.Join(vs, ", ")
	}
	if r.Kind == "mek" {
		return fmt.Sprintf("%s the master key: v%d -> v%d; re-wrapped %d NEKs, re-encrypted %d secrets; %s (%.1fs).",
			verb, r.From, r.Target, r.Rewrapped, r.Reencrypted, retired, r.Seconds)
	}
	return fmt.Sprintf("%s the key of account %s: v%d -> v%d; re-encrypted %d secrets; %s (%.1fs).",
		verb, r.Account, r.From, r.Target, r.Reencrypted, retired, r.Seconds)
}

func newKeysStatusCmd(opts *rootOptions, connect func(*cobra.Command) (*client.Client, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the master key versions, each account's key versions, and any unfinished rotation",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			st, err := c.KeyStatus(cmd.Context())
			if err != nil {
				return err
			}
			p := opts.printer(cmd)
			if p.format != formatTable {
				return p.printData(st)
			}
			return writeKeyStatus(p.w, st, p.now)
		},
	}
}

// writeKeyStatus prints the three tables of gantry keys status.
func writeKeyStatus(w io.Writer, st model.KeyStatus, now time.Time) error {
	meks := table{headers: []string{"MEK", "STATUS", "NEKS", "AGE"}}
	for i := len(st.MEKs) - 1; i >= 0; i-- {
		m := st.MEKs[i]
		meks.rows = append(meks.rows, []string{"v" + strconv.Itoa(m.Version), m.Status, strconv.Itoa(m.NEKs), age(m.CreatedAt, now)})
	}
	if err := writeTable(w, meks); err != nil {
		return err
	}
	neks := table{headers: []string{"ACCOUNT", "NEK", "STATUS", "MEK", "SECRETS", "AGE"}}
	for _, a := range st.Accounts {
		for i := len(a.NEKs) - 1; i >= 0; i-- {
			n := a.NEKs[i]
			mek := ""
			if n.MEK > 0 {
				mek = "v" + strconv.Itoa(n.MEK)
			}
			neks.rows = append(neks.rows, []string{a.Account, "v" + strconv.Itoa(n.Version), n.Status, mek, strconv.Itoa(n.Secrets), age(n.CreatedAt, now)})
		}
	}
	fmt.Fprintln(w)
	if err := writeTable(w, neks); err != nil {
		return err
	}
	if st.LegacySecrets > 0 {
		fmt.Fprintf(w, "\n%d secrets are still sealed with the key file of an earlier release; the server re-seals them when it starts.\n", st.LegacySecrets)
	}
	if len(st.Rotations) == 0 {
		fmt.Fprintln(w, "\nNo rotation is running or unfinished.")
		return nil
	}
	rots := table{headers: []string{"ROTATION", "ACCOUNT", "FROM", "TO", "PROGRESS", "STATE", "UPDATED"}}
	for _, r := range st.Rotations {
		progress := fmt.Sprintf("%d/%d NEKs", r.Done, r.Total)
		if r.Kind == "nek" {
			progress = fmt.Sprintf("%d/%d secrets checked, %d re-encrypted", r.Done, r.Total, r.Changed)
		}
		rots.rows = append(rots.rows, []string{r.Kind, r.Account, "v" + strconv.Itoa(r.From), "v" + strconv.Itoa(r.Target), progress, r.State, age(r.UpdatedAt, now)})
	}
	fmt.Fprintln(w)
	if err := writeTable(w, rots); err != nil {
		return err
	}
	for _, r := range st.Rotations {
		if r.State != model.RotationInterrupted {
			continue
		}
		again := "gantry keys mek rotate"
		if r.Kind == "nek" {
			again = "gantry keys nek rotate --account " + shellQuote(r.Account)
		}
		fmt.Fprintf(w, "\nThe %s rotation was interrupted; finish it with `%s`.\n", r.Kind, again)
	}
	return nil
}

func newKeysSigningRotateCmd(opts *rootOptions, connect func(*cobra.Command) (*client.Client, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Sign new admin tokens with a new key; tokens already issued work until they expire",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			keys, err := c.RotateSigningKey(cmd.Context())
			if err != nil {
				return err
			}
			return opts.printer(cmd).printMessage(keys,
				"Rotated the admin token signing key. %d keys are published at /v1/jwks; the old ones verify until the tokens they signed expire.", len(keys.Keys))
		},
	}
}
