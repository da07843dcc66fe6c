package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/model"
)

func newAPIKeyCmd(opts *rootOptions) *cobra.Command {
	cmd := groupCmd("apikey", "Create, list and revoke API keys", "apikeys", "api-key")
	cmd.Long = `Create, list and revoke the API keys of your account: credentials for
applications, limited to the scopes (and optionally the functions) they need.
Managing keys takes an admin token (see ` + "`gantry token admin`" + `); a key cannot
manage keys.`
	cmd.AddCommand(newAPIKeyCreateCmd(opts), newAPIKeyListCmd(opts), newAPIKeyRevokeCmd(opts))
	return cmd
}

// apiKeyCreateOptions are the flags of `gantry apikey create`.
type apiKeyCreateOptions struct {
	description string
	scopes      []string
	functions   []string
	expiresIn   string
}

func newAPIKeyCreateCmd(opts *rootOptions) *cobra.Command {
	var o apiKeyCreateOptions
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an API key and print its value, once",
		Long: `Create an API key. Its value is printed this once and cannot be shown again:
store it where the application reads it. Without --scopes the key may invoke
functions and read about them (` + strings.Join(auth.DefaultAPIKeyScopes, ", ") + `);
without --function it reaches every function of the account.`,
		Example: `  gantry apikey create --description "web frontend" --expires-in 90d
  gantry apikey create --scopes invoke_function --function 0b1c2d3e-... --expires-in 24h
  gantry apikey create -o json | jq -r .value > app.key`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := o.request(cmd, time.Now())
			if err != nil {
				return err
			}
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			k, err := c.CreateAPIKey(cmd.Context(), req, client.KeyIssuer{Service: "gantry-cli"})
			if err != nil {
				return err
			}
			p := opts.printer(cmd)
			err = p.printMessage(k, "Created API key %s (%s; %s; %s).\nIts value is shown only now; store it safely:\n\n  %s",
				k.ID, keyScopes(k), keyFunctions(k), keyExpiry(k), k.Value)
			return redact(err, k.Value)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.description, "description", "", "what the key is for")
	f.StringSliceVar(&o.scopes, "scopes", nil, "comma-separated scopes (default "+strings.Join(auth.DefaultAPIKeyScopes, ",")+")")
	f.StringArrayVar(&o.functions, "function", nil, "function id the key is limited to (repeatable; default every function)")
	f.StringVar(&o.expiresIn, "expires-in", "", "lifetime, such as 24h or 90d (default: the key does not expire)")
	return cmd
}

// request builds the POST /v1/keys body from the flags.
func (o *apiKeyCreateOptions) request(cmd *cobra.Command, now time.Time) (model.APIKeyRequest, error) {
	req := model.APIKeyRequest{Description: o.description}
	if o.expiresIn != "" {
		d, err := parseLifetime(o.expiresIn)
		if err != nil {
			return req, usageErrorf(cmd, "--expires-in %q: %v", o.expiresIn, err)
		}
		req.ExpiresAt = now.Add(d).UTC().Format(time.RFC3339)
	}
	if len(o.scopes) == 0 && len(o.functions) == 0 {
		return req, nil // the server's defaults
	}
	scopes := o.scopes
	if len(scopes) == 0 {
		scopes = auth.DefaultAPIKeyScopes
	}
	pol := model.APIKeyPolicy{Scopes: scopes}
	for _, id := range o.functions {
		pol.Resources = append(pol.Resources, model.APIKeyResource{ID: id, Type: model.ResourceFunction})
	}
	req.Authorizations = &model.APIKeyAuthorizations{Policies: []model.APIKeyPolicy{pol}}
	return req, nil
}

// parseLifetime reads a positive Go duration, or a whole number of days
// written like 90d.
func parseLifetime(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n > 100*365 {
			return 0, fmt.Errorf("want a duration such as 24h or 90d")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("want a duration such as 24h or 90d")
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("must be positive")
	}
	return d, nil
}

func newAPIKeyListCmd(opts *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the account's API keys (never their values)",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			keys, err := c.ListAPIKeys(cmd.Context())
			if err != nil {
				return err
			}
			p := opts.printer(cmd)
			return p.print(nonNil(keys), func() table { return apiKeyTable(keys, p.now) })
		},
	}
}

func newAPIKeyRevokeCmd(opts *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "revoke <keyId>",
		Aliases: []string{"rm", "delete"},
		Short:   "Revoke an API key at once",
		Args:    exactArgs("<keyId>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			k, err := c.RevokeAPIKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return opts.printer(cmd).printMessage(k, "Revoked API key %s. Every Gantry server refuses it within a second.", k.ID)
		},
	}
}

// apiKeyTable lists keys with what they may do.
func apiKeyTable(keys []model.APIKey, now time.Time) table {
	t := table{headers: []string{"ID", "DESCRIPTION", "STATUS", "SCOPES", "FUNCTIONS", "EXPIRES", "AGE"}}
	for _, k := range keys {
		exp := ""
		if k.ExpiresAt != nil {
			exp = k.ExpiresAt.UTC().Format(time.RFC3339)
		}
		t.rows = append(t.rows, []string{k.ID, k.Description, k.Status, strings.Join(policyScopes(k), ","),
			strings.Join(policyFunctions(k), ","), exp, age(k.CreatedAt, now)})
	}
	return t
}

// policyScopes and policyFunctions flatten a key's policies as Gantry
// applies them: the union of scopes, and the function ids, or "all".
func policyScopes(k model.APIKey) []string {
	var out []string
	if k.Authorizations == nil {
		return nil
	}
	for _, p := range k.Authorizations.Policies {
		for _, s := range p.Scopes {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

func policyFunctions(k model.APIKey) []string {
	if k.Authorizations == nil || len(k.Authorizations.Policies) == 0 {
		return []string{"all"}
	}
	var out []string
	for _, r := range k.Authorizations.Policies[0].Resources {
		if r.Type != model.ResourceFunction {
			return []string{"all"}
		}
		out = append(out, r.ID)
	}
	if len(out) == 0 {
		return []string{"all"}
	}
	return out
}

// keyScopes, keyFunctions and keyExpiry describe a created key in words.
func keyScopes(k model.APIKey) string {
	s := policyScopes(k)
	if len(s) == 0 {
		s = auth.DefaultAPIKeyScopes
	}
	return "scopes " + strings.Join(s, ", ")
}

func keyFunctions(k model.APIKey) string {
	f := policyFunctions(k)
	if len(f) == 1 && f[0] == "all" {
		return "every function of the account"
	}
	return "functions " + strings.Join(f, ", ")
}

func keyExpiry(k model.APIKey) string {
	if k.ExpiresAt == nil {
		return "does not expire"
	}
	return "expires " + k.ExpiresAt.UTC().Format(time.RFC3339)
}
