package cli

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/model"
)

// EnvBootstrapSecret holds an installation's bootstrap secret, which
// `gantry token admin` presents to a server in bootstrap mode.
const EnvBootstrapSecret = "GANTRY_BOOTSTRAP_SECRET"

func newTokenCmd(opts *rootOptions) *cobra.Command {
	cmd := groupCmd("token", "Mint admin tokens", "tokens")
	cmd.AddCommand(newTokenAdminCmd(opts))
	return cmd
}

// tokenAdminOptions are the flags of `gantry token admin`.
type tokenAdminOptions struct {
	account    string
	ttl        time.Duration
	secretFile string
}

func newTokenAdminCmd(opts *rootOptions) *cobra.Command {
	var o tokenAdminOptions
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Mint an admin token and print it",
		Long: `Mint an admin token (POST /v1/admin/keys) and print it on stdout, alone, so it
can go straight into a file or a variable. -o json or -o yaml print it with
its id and expiry.

The installation decides who may mint admin tokens. A server in loopback mode
(the default of ` + "`gantry dev`" + `) answers only requests from its own machine;
one in bootstrap mode (the default of ` + "`gantry server`" + `) answers holders of
its bootstrap secret: pass it with --bootstrap-secret-file or ` + EnvBootstrapSecret + `.
Admin tokens expire (--ttl); mint a new one when yours does.`,
		Example: `  gantry token admin > ~/.config/gantry/token && chmod 600 ~/.config/gantry/token
  gantry token admin --account team-a --ttl 12h --bootstrap-secret-file /etc/gantry/bootstrap-secret
  export GANTRY_TOKEN=$(gantry token admin --ttl 1h)`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("ttl") && o.ttl <= 0 {
				return usageErrorf(cmd, "--ttl must be positive, such as 12h")
			}
			c, secret, err := installationClient(cmd, opts, o.secretFile)
			if err != nil {
				return err
			}
			req := model.AdminKeyRequest{NCAID: o.account}
			if o.ttl > 0 {
				req.TTL = o.ttl.String()
			}
			tok, err := c.MintAdminToken(cmd.Context(), req)
			if err != nil {
				return redact(explainMint(err, secret != ""), secret)
			}
			p := opts.printer(cmd)
			if p.format != formatTable {
				return p.printData(tok)
			}
			_, err = fmt.Fprintln(p.w, tok.Value)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.account, "account", "", "account (ncaId) the token acts for (default: the server's own account)")
	f.DurationVar(&o.ttl, "ttl", 0, "how long the token lives, such as 12h (default: the server's, 24h unless configured)")
	f.StringVar(&o.secretFile, "bootstrap-secret-file", "", "file holding the installation's bootstrap secret (env "+EnvBootstrapSecret+" holds the secret itself)")
	return cmd
}

// installationClient is a client for the installation's own routes
// (minting admin tokens, rotating the secret store's keys). Its credential is
// the bootstrap secret, from secretFile, else from the environment, instead
// of an admin token; with neither it sends none, which a loopback or open
// server accepts. The secret is returned so errors can be redacted.
func installationClient(cmd *cobra.Command, opts *rootOptions, secretFile string) (*client.Client, string, error) {
	secret := os.Getenv(EnvBootstrapSecret)
	if secretFile != "" {
		s, err := readTokenFile(secretFile)
		if err != nil {
			return nil, "", fmt.Errorf("--bootstrap-secret-file: %w", err)
		}
		secret = s
	}
	cc, err := resolveConfig(opts.conn, false)
	if err != nil {
		return nil, "", err
	}
	var rt http.RoundTripper = http.DefaultTransport
	if opts.verbose {
		rt = &verboseTransport{next: rt, w: cmd.ErrOrStderr()}
	}
	return client.New(cc.Server, secret, client.WithHTTPClient(&http.Client{Transport: rt}), client.WithUserAgent("gantry-cli")), secret, nil
}

// explainMint adds what to do to the gate's refusals. They keep their text
// but not their *client.APIError type, whose generic 401 and 403 hints are
// about admin tokens, which this call does not use.
func explainMint(err error, sentSecret bool) error {
	var ae *client.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.StatusCode {
	case http.StatusForbidden:
		return withHint(errors.New(ae.Error()), "this server mints admin tokens only for its own machine: run the command there")
	case http.StatusUnauthorized:
		if sentSecret {
			return withHint(errors.New(ae.Error()), "the bootstrap secret was refused; check --bootstrap-secret-file / %s against the server's", EnvBootstrapSecret)
		}
		return withHint(errors.New(ae.Error()), "this server wants its bootstrap secret: pass --bootstrap-secret-file or set %s", EnvBootstrapSecret)
	}
	return err
}
