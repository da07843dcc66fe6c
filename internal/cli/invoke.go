package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/client"
)

// minStatusPoll spaces status polls when the server answers 202 at once
// instead of holding the call, so the CLI never spins.
const minStatusPoll = 500 * time.Millisecond

// invokeOptions are the flags of `gantry invoke`.
type invokeOptions struct {
	version     string
	data        string
	headers     []string
	pollSeconds int
	timeout     time.Duration
}

func newInvokeCmd(opts *rootOptions) *cobra.Command {
	var o invokeOptions
	cmd := &cobra.Command{
		Use:   "invoke <functionId>",
		Short: "Call a function and print its answer",
		Long: `Call a function through the pexec API and print its response body to stdout
as is. When the platform answers 202 (the result is not ready within the poll
window) it keeps polling the status endpoint until the result arrives or
--timeout passes. A non-2xx answer exits non-zero with the detail on stderr.

With -o json or -o yaml it prints {status, requestId, headers, body}, where
body is the parsed JSON when the function answered JSON, else a string.

An -H 'Authorization: Bearer <key>' header replaces the configured token, to
call with a function API key.`,
		Example: `  gantry invoke <functionId> -d '{"message":"hi"}'
  gantry invoke <functionId> -d @request.json --poll-seconds 5
  echo '{"x":1}' | gantry invoke <functionId> -d @- -H 'X-Trace: 1'`,
		Args: exactArgs("<functionId>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, opts, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.version, "version", "", "function version id (default: any deployed version)")
	f.StringVarP(&o.data, "data", "d", "", "request body: a string, @file, or @- for stdin")
	f.StringArrayVarP(&o.headers, "header", "H", nil, "request header 'Name: value' (repeatable; Content-Type defaults to application/json)")
	f.IntVar(&o.pollSeconds, "poll-seconds", 0, "how long the server may hold each call before answering 202 (NVCF-POLL-SECONDS, 1-3600; default: the server's)")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long to wait for the result in total")
	return cmd
}

func (o *invokeOptions) run(cmd *cobra.Command, opts *rootOptions, functionID string) error {
	header, err := parseHeaders(cmd, o.headers)
	if err != nil {
		return err
	}
	var body io.Reader
	switch {
	case o.data == "@-":
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return fmt.Errorf("read request body from stdin: %w", err)
		}
		body = bytes.NewReader(b)
	case strings.HasPrefix(o.data, "@"):
		b, err := os.ReadFile(o.data[1:])
		if err != nil {
			return fmt.Errorf("read request body: %w", err)
		}
		body = bytes.NewReader(b)
	case o.data != "":
		body = strings.NewReader(o.data)
	}
	if o.pollSeconds < 0 || o.pollSeconds > 3600 {
		return usageErrorf(cmd, "--poll-seconds must be between 1 and 3600")
	}

	c, err := opts.client(cmd, header.Get("Authorization") == "")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	start := time.Now()
	stderr := cmd.ErrOrStderr()

	resp, err := c.Invoke(ctx, client.InvokeRequest{
		FunctionID:  functionID,
		VersionID:   o.version,
		Body:        body,
		Header:      header,
		PollSeconds: o.pollSeconds,
	})
	for err == nil && resp.Pending() {
		id := resp.RequestID
		if id == "" {
			return errors.New("the server answered 202 without an NVCF-REQID to poll")
		}
		fmt.Fprintf(stderr, "request %s pending… (%s)\n", id, elapsed(time.Since(start)))
		polled := time.Now()
		resp, err = c.InvocationStatus(ctx, id, o.pollSeconds)
		if err == nil && resp.Pending() && time.Since(polled) < minStatusPoll {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-time.After(minStatusPoll):
			}
		}
		if err == nil && resp.RequestID == "" {
			resp.RequestID = id
		}
		if err != nil && ctx.Err() == context.DeadlineExceeded && cmd.Context().Err() == nil {
			return withHint(fmt.Errorf("timed out after %s waiting for the result of request %s", o.timeout, id),
				"the request may still complete; wait longer with --timeout")
		}
	}
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded && cmd.Context().Err() == nil {
			return withHint(fmt.Errorf("timed out after %s waiting for function %s to answer", o.timeout, functionID),
				"wait longer with --timeout")
		}
		return err
	}
	return printInvokeResponse(opts.printer(cmd), resp)
}

// parseHeaders turns -H 'Name: value' flags into a header.
func parseHeaders(cmd *cobra.Command, hs []string) (http.Header, error) {
	h := http.Header{}
	for _, s := range hs {
		name, value, ok := strings.Cut(s, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, usageErrorf(cmd, "-H %q: want 'Name: value'", s)
		}
		h.Add(name, strings.TrimSpace(value))
	}
	return h, nil
}

// invokeOutput is the -o json/yaml form of a function's answer.
type invokeOutput struct {
	Status    int               `json:"status"`
	RequestID string            `json:"requestId,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Body      any               `json:"body"`
}

// printInvokeResponse writes the body as is for -o table, else an
// invokeOutput.
func printInvokeResponse(p printer, resp *client.InvokeResponse) error {
	if p.format != formatJSON && p.format != formatYAML {
		_, err := p.w.Write(resp.Body)
		return err
	}
	out := invokeOutput{Status: resp.StatusCode, RequestID: resp.RequestID, Headers: map[string]string{}}
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out.Headers[k] = strings.Join(resp.Header[k], ", ")
	}
	switch {
	case len(bytes.TrimSpace(resp.Body)) > 0 && json.Valid(resp.Body):
		out.Body = json.RawMessage(resp.Body)
	default:
		out.Body = string(resp.Body)
	}
	return p.printData(out)
}
