package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/bussecrets"
)

func newBusGenSecretsCmd() *cobra.Command {
	var (
		out       string
		cpcs      []string
		hostnames []string
		format    string
		ns        bussecrets.Namespaces
	)
	cmd := &cobra.Command{
		Use:   "gen-secrets --out DIR [--hostname HOST...] [--cpc ID...] [-o files|kubernetes]",
		Short: "Generate the bus's CA, certificates and NKeys, idempotently",
		Long: `Generate every secret of the bus between the control plane (the central site,
CSC) and the GPU clusters (CPCs): a CA (ECDSA P-256), the server certificate of
the control plane's NATS (its SANs are the --hostname values: the host agents
put in their NATS URL, and the route in front of it), one client certificate
per --cpc id, and NKeys (an operator, an account and a user per CPC), each a
directory with seed and pubkey.

Running it again changes nothing that exists; a new --cpc id adds only that
site's outputs, signed by the same CA. Layout under --out:

  ca/ca.crt, ca/ca.key                   the CA (keep ca.key offline; it issues new sites)
  csc/tls/{ca.crt,tls.crt,tls.key}       gantry server --nats-tls-cert/--nats-tls-key/--nats-tls-ca
  csc/nkeys/{operator,account}/{seed,pubkey}
  cpc/<id>/tls/{ca.crt,tls.crt,tls.key}  gantry agent --nats-tls-ca/--nats-tls-cert/--nats-tls-key
  cpc/<id>/nkeys/user/{seed,pubkey}

With -o kubernetes the same bytes go into Secret manifests instead: csc.yaml
(Secrets ` + bussecrets.SecretHubTLS + ` and ` + bussecrets.SecretHubNKeys + ` in --namespace), cpc-<id>.yaml
(` + bussecrets.SecretAgentTLS + ` and ` + bussecrets.SecretAgentNKey + ` in --agent-namespace), and ca.yaml (the CA
and its key: keep it, do not apply it).

Private files are written 0600 in 0700 directories; no key or seed is ever
printed. A certificate is reissued by removing its directory (or manifest)
and running again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErrorf(cmd, "--out is required: the directory to write the secrets into")
			}
			if format != "files" && format != "kubernetes" {
				return usageErrorf(cmd, "-o %q: use files or kubernetes", format)
			}
			cfg := bussecrets.Config{Hostnames: hostnames, CPCs: cpcs}
			read := func() (map[string][]byte, error) { return bussecrets.ReadFiles(out) }
			if format == "kubernetes" {
				read = func() (map[string][]byte, error) { return bussecrets.ReadManifests(out, ns) }
			}
			have, err := read()
			if err != nil {
				return err
			}
			outs, err := bussecrets.Plan(cfg, have)
			if errors.Is(err, bussecrets.ErrUsage) {
				return usageError(cmd, err)
			} else if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if format == "kubernetes" {
				files, err := bussecrets.WriteManifests(out, ns, cpcs, have, outs)
				if err != nil {
					return err
				}
				for _, f := range files {
					fmt.Fprintf(w, "wrote %s (0600)\n", f)
				}
			} else {
				if err := bussecrets.WriteFiles(out, outs); err != nil {
					return err
				}
				for _, o := range outs {
					mode := "0644"
					if o.Private {
						mode = "0600"
					}
					fmt.Fprintf(w, "wrote %s (%s)\n", o.Path, mode)
				}
			}
			if len(outs) == 0 {
				fmt.Fprintf(w, "%s is complete: nothing to write\n", out)
			} else if len(have) > 0 {
				fmt.Fprintf(w, "kept %d existing outputs unchanged\n", len(have))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "directory of the outputs (created 0700)")
	f.StringSliceVar(&cpcs, "cpc", nil, "id of a GPU site (CPC) to give a client certificate and user NKey; repeat or comma-separate")
	f.StringSliceVar(&hostnames, "hostname", nil, "DNS name or IP of the control plane's NATS, a SAN of its certificate; repeat for each (needed when that certificate is first issued)")
	f.StringVarP(&format, "output", "o", "files", "files, or kubernetes (Secret manifests)")
	f.StringVar(&ns.Hub, "namespace", "gantry", "with -o kubernetes: the control plane's namespace")
	f.StringVar(&ns.Agent, "agent-namespace", "gantry-agent", "with -o kubernetes: the agents' namespace")
	return cmd
}
