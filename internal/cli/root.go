// Package cli is the gantry command line: the platform roles (dev, server,
// agent, ...) and the client verbs (function, deploy, invoke) that talk to a
// running platform through its NVCF-compatible REST API.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/client"
)

// Main runs gantry with os.Args and returns the process exit code. The first
// SIGINT or SIGTERM cancels the commands' context so they can shut down in
// order; a second one kills the process.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	return run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// run executes one command line and prints any error to stderr as
// "Error: <message>" with hint lines. It returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	opts := &rootOptions{}
	root := newRoot(opts)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		printError(stderr, err, opts)
		return 1
	}
	return 0
}

// NewRoot returns the gantry root command with every subcommand. Tests and
// embedders run it with SetArgs, SetOut and SetErr.
func NewRoot() *cobra.Command { return newRoot(&rootOptions{}) }

// rootOptions holds the persistent flags and what the client verbs resolve
// from them.
type rootOptions struct {
	conn    connFlags
	output  outputFormat
	verbose bool

	// resolved is the last resolved connection, kept so printError knows
	// which token to redact and which server it could not reach.
	resolved *connConfig
}

func newRoot(opts *rootOptions) *cobra.Command {
	opts.output = formatTable
	root := &cobra.Command{
		Use:   "gantry",
		Short: "Gantry: self-hosted GPU serverless with the NVIDIA Cloud Functions API",
		Long: `Gantry runs GPU functions on your own machines and serves the public NVIDIA
Cloud Functions (NVCF) REST API, so NVCF clients work against it unchanged.

Client commands (function, deploy, invoke) talk to a running Gantry. They find
it, in order, from flags, then GANTRY_SERVER / GANTRY_TOKEN / GANTRY_TOKEN_FILE,
then the config file (--config, GANTRY_CONFIG, or ~/.config/gantry/config.yaml
with keys server, token, tokenFile), then the defaults: ` + DefaultServer + ` and
the admin token that ` + "`gantry dev`" + ` writes to its data directory.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&opts.conn.server, "server", "", "API base URL (env "+EnvServer+"; default "+DefaultServer+")")
	pf.StringVar(&opts.conn.token, "token", "", "API token; prefer --token-file or "+EnvToken+", since a flag value shows in the process list and shell history")
	pf.StringVar(&opts.conn.tokenFile, "token-file", "", "file holding the API token (env "+EnvTokenFile+"; default <data dir>/"+AdminTokenFileName+")")
	pf.StringVar(&opts.conn.config, "config", "", "config file (env "+EnvConfig+"; default $XDG_CONFIG_HOME/gantry/config.yaml)")
	pf.VarP(&opts.output, "output", "o", "output format: table, json or yaml")
	pf.BoolVar(&opts.verbose, "verbose", false, "log each API request (method, URL, status, time) to stderr; never headers or tokens")

	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError(cmd, err)
	})

	root.AddCommand(newFunctionCmd(opts), newDeployCmd(opts), newInvokeCmd(opts))
	root.AddCommand(newClusterCmd(opts), newPolicyCmd(opts))
	root.AddCommand(newEventsCmd(opts))
	root.AddCommand(newTokenCmd(opts))
	root.AddCommand(newAPIKeyCmd(opts))
	root.AddCommand(newKeysCmd(opts))
	root.AddCommand(newStatusCmd(opts))
	root.AddCommand(newDashboardCmd(opts))
	addPlatformCommands(root)
	return root
}

// client resolves the connection settings and returns an API client. With
// needToken false a missing token is no error: the caller sends its own
// Authorization header.
func (o *rootOptions) client(cmd *cobra.Command, needToken bool) (*client.Client, error) {
	cc, err := resolveConfig(o.conn, needToken)
	if err != nil {
		return nil, err
	}
	o.resolved = &cc
	var rt http.RoundTripper = http.DefaultTransport
	if o.verbose {
		rt = &verboseTransport{next: rt, w: cmd.ErrOrStderr()}
	}
	return client.New(cc.Server, cc.Token,
		client.WithHTTPClient(&http.Client{Transport: rt}),
		client.WithUserAgent("gantry-cli"),
	), nil
}

// printer returns the output printer for cmd.
func (o *rootOptions) printer(cmd *cobra.Command) printer {
	return printer{w: cmd.OutOrStdout(), format: o.output, now: time.Now()}
}

// verboseTransport logs one line per request and per response. It never
// logs headers, so the Authorization header cannot leak.
type verboseTransport struct {
	next http.RoundTripper
	w    io.Writer
}

var _ http.RoundTripper = (*verboseTransport)(nil)

func (t *verboseTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	u := *req.URL
	u.User = nil
	fmt.Fprintf(t.w, "> %s %s\n", req.Method, u.String())
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		fmt.Fprintf(t.w, "< error after %s\n", time.Since(start).Round(time.Millisecond))
		return nil, err
	}
	reqID := ""
	if id := resp.Header.Get(client.HeaderRequestID); id != "" {
		reqID = " " + client.HeaderRequestID + "=" + id
	}
	fmt.Fprintf(t.w, "< %s (%s)%s\n", resp.Status, time.Since(start).Round(time.Millisecond), reqID)
	return resp, nil
}

// hintError adds a line of advice that Main prints under the error.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

// withHint attaches a hint to err.
func withHint(err error, format string, args ...any) error {
	return &hintError{err: err, hint: fmt.Sprintf(format, args...)}
}

// usageError points at the command's help.
func usageError(cmd *cobra.Command, err error) error {
	return withHint(err, "run '%s --help' for usage", cmd.CommandPath())
}

// usageErrorf is usageError with a formatted message.
func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return usageError(cmd, fmt.Errorf(format, args...))
}

// exactArgs requires one positional argument per name, with an error that
// names what is missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		if len(args) < len(names) {
			return usageErrorf(cmd, "missing %s", strings.Join(names[len(args):], " "))
		}
		return usageErrorf(cmd, "unexpected argument %q", args[len(names)])
	}
}

// groupCmd is a command that only holds subcommands. Cobra would print help
// and succeed on an unknown subcommand; this fails instead.
func groupCmd(use, short string, aliases ...string) *cobra.Command {
	return &cobra.Command{
		Use:                        use,
		Short:                      short,
		Aliases:                    aliases,
		Args:                       cobra.ArbitraryArgs,
		SuggestionsMinimumDistance: 2,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			err := fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				err = fmt.Errorf("%w; did you mean %q?", err, s[0])
			}
			return usageError(cmd, err)
		},
	}
}

// printError writes "Error: <message>" and any hints. Every candidate token
// value is redacted from the text, in case a server echoes one back.
func printError(w io.Writer, err error, opts *rootOptions) {
	msg, hints := describeError(err, opts)
	secrets := []string{opts.conn.token, os.Getenv(EnvToken)}
	if opts.resolved != nil {
		secrets = append(secrets, opts.resolved.Token)
	}
	redact := func(s string) string {
		for _, sec := range secrets {
			if len(sec) >= 6 {
				s = strings.ReplaceAll(s, sec, "[redacted]")
			}
		}
		return s
	}
	fmt.Fprintf(w, "Error: %s\n", redact(msg))
	for _, h := range hints {
		fmt.Fprintf(w, "Hint: %s\n", redact(h))
	}
}

// describeError turns err into a message and hints a user can act on.
func describeError(err error, opts *rootOptions) (string, []string) {
	msg := err.Error()
	// Cobra puts its suggestions on separate lines; keep the error one line.
	if before, after, ok := strings.Cut(msg, "\n\nDid you mean this?\n"); ok {
		var s []string
		for _, l := range strings.Fields(after) {
			s = append(s, fmt.Sprintf("%q", l))
		}
		msg = before + "; did you mean " + strings.Join(s, " or ") + "?"
	}
	var hints []string
	var he *hintError
	if errors.As(err, &he) {
		hints = append(hints, he.hint)
	}
	server, serverSrc := DefaultServer, "default"
	if opts.resolved != nil {
		server, serverSrc = opts.resolved.Server, opts.resolved.ServerSource
	}

	var ae *client.APIError
	var ue *url.Error
	switch {
	case errors.As(err, &ae):
		switch ae.StatusCode {
		case http.StatusUnauthorized:
			src := "it"
			if opts.resolved != nil {
				src = "the token from " + opts.resolved.TokenSource
			}
			hints = append(hints, fmt.Sprintf("the server rejected %s; a dev server's admin token is in %s/%s (it changes when the data dir is reset)", src, DefaultDataDir(), AdminTokenFileName))
		case http.StatusForbidden:
			hints = append(hints, "the token is valid but lacks the scope for this call; use an admin token")
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			if ra := ae.Header.Get("Retry-After"); ra != "" {
				hints = append(hints, "the server asks to retry after "+ra+"s")
			}
		}
		if ae.RequestID != "" {
			hints = append(hints, "request id "+ae.RequestID+" (quote it when reading server logs)")
		}
	case errors.Is(err, context.Canceled):
		msg = "interrupted"
	case errors.As(err, &ue) && ue.Op != "parse":
		if u, perr := url.Parse(server); perr == nil {
			server = u.Redacted()
		}
		msg = fmt.Sprintf("cannot reach the Gantry API at %s: %v", server, ue.Err)
		hints = append(hints, fmt.Sprintf("is Gantry running there (server from %s)? start `gantry dev`, or point --server / %s at it", serverSrc, EnvServer))
	case he == nil && (strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "required flag")):
		hints = append(hints, "run 'gantry --help' for usage")
	}
	return msg, hints
}
