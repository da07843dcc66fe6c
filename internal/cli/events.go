package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/events"
)

func newEventsCmd(opts *rootOptions) *cobra.Command {
	var (
		q      client.EventsQuery
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the account's platform events, or follow them as they happen",
		Long: `Show what happened in the account: functions created and deleted, deployment
status changes and scaling decisions, instances started, stopped and failed,
clusters READY and NOT_READY, keys rotated. Events are CloudEvents
(-o json shows them whole); the server keeps a week of them by default
(--events-max-age on gantry server and gantry dev).

--since takes an RFC 3339 time or a duration back from now (10m, 1h30m,
7d). Without --follow the newest --limit events since then are listed,
oldest first; with --follow the command prints each new event as it happens
(after those since --since, if given) until interrupted, reconnecting where
it left off if the connection drops. -o json then prints one event per line.`,
		Example: `  gantry events --since 1h
  gantry events --follow
  gantry events --since 2026-12-07T09:00:00Z -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			pr := opts.printer(cmd)
			if follow {
				return followEvents(cmd.Context(), c, q, pr, cmd.ErrOrStderr())
			}
			list, err := c.ListEvents(cmd.Context(), q)
			if err != nil {
				return err
			}
			if list.Truncated && pr.format == formatTable {
				fmt.Fprintf(cmd.ErrOrStderr(), "Showing the newest %d events; narrow --since or raise --limit for more.\n", len(list.Events))
			}
			return pr.print(nonNil(list.Events), func() table { return eventTable(list.Events, pr.now) })
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "keep printing events as they happen")
	f.StringVar(&q.Since, "since", "", "start at this RFC 3339 time or this long ago (10m, 1h30m, 7d)")
	f.IntVar(&q.Limit, "limit", 0, "list at most this many of the newest events (default 1000, at most 10000)")
	return cmd
}

// followEvents prints each event as it comes, resuming after the last one
// printed when the stream drops; an answer of the API (a bad --since, a
// refused credential) ends it.
func followEvents(ctx context.Context, c *client.Client, q client.EventsQuery, pr printer, stderr io.Writer) error {
	var lastID string
	if pr.format == formatTable {
		fmt.Fprintf(pr.w, "%-20s  %-27s  %-44s  %s\n", "TIME", "TYPE", "SUBJECT", "DETAIL")
	}
	for first := true; ; first = false {
		err := c.FollowEvents(ctx, q, lastID, func(id string, e events.Event) error {
			lastID = id
			return printEvent(pr, e)
		})
		var apiErr *client.APIError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &apiErr):
			return err
		case err != nil && first && lastID == "":
			return err
		}
		msg := "the event stream ended"
		if err != nil {
			msg = err.Error()
		}
		fmt.Fprintf(stderr, "%s; reconnecting...\n", msg)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func printEvent(pr printer, e events.Event) error {
	switch pr.format {
	case formatJSON:
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(pr.w, "%s\n", b)
		return err
	case formatYAML:
		if _, err := fmt.Fprintln(pr.w, "---"); err != nil {
			return err
		}
		return pr.printData(e)
	}
	_, err := fmt.Fprintf(pr.w, "%-20s  %-27s  %-44s  %s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Kind(), e.Subject, eventDetail(e))
	return err
}

func eventTable(es []events.Event, now time.Time) table {
	t := table{headers: []string{"AGE", "TYPE", "SUBJECT", "DETAIL"}}
	for _, e := range es {
		t.rows = append(t.rows, []string{age(e.Time, now), e.Kind(), e.Subject, eventDetail(e)})
	}
	return t
}

// eventDetail is one line about what an event says, for tables.
func eventDetail(e events.Event) string {
	switch e.Kind() {
	case events.KindFunctionCreated, events.KindFunctionDeleted:
		var d events.FunctionData
		if json.Unmarshal(e.Data, &d) == nil {
			return d.Name
		}
	case events.KindDeploymentStatus:
		var d events.DeploymentData
		if json.Unmarshal(e.Data, &d) == nil {
			s := fmt.Sprintf("%s -> %s", orDash(string(d.From)), d.To)
			if len(d.HealthInfo) > 0 {
				s += ": " + d.HealthInfo[0].Error
			}
			return s
		}
	case events.KindDeploymentScaled:
		var d events.ScaleData
		if json.Unmarshal(e.Data, &d) == nil {
			return fmt.Sprintf("spec %d (%s): %d -> %d: %s", d.SpecIndex, d.GPU, d.From, d.To, d.Reason)
		}
	case events.KindInstanceStarted, events.KindInstanceStopped, events.KindInstanceFailed:
		var d events.InstanceData
		if json.Unmarshal(e.Data, &d) == nil {
			s := fmt.Sprintf("on %s: %s", d.ClusterID, d.Status)
			if d.Reason != "" {
				s += ": " + d.Reason
			}
			return s
		}
	case events.KindClusterReady, events.KindClusterNotReady:
		var d events.ClusterData
		if json.Unmarshal(e.Data, &d) == nil {
			return fmt.Sprintf("%s: %s -> %s", d.Name, orDash(string(d.From)), d.To)
		}
	case events.KindKeyRotated:
		var d events.KeyData
		if json.Unmarshal(e.Data, &d) == nil {
			return fmt.Sprintf("%s v%d -> v%d", strings.ToUpper(d.Key), d.From, d.To)
		}
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// addEventsFlags adds the event stream's retention and MQTT flags of
// gantry server and gantry dev.
func addEventsFlags(f *pflag.FlagSet, e *controlplane.Events) {
	e.MaxBytes = events.DefaultMaxBytes
	f.DurationVar(&e.MaxAge, "events-max-age", events.DefaultMaxAge, "how long platform events are kept")
	f.Var((*byteSizeFlag)(&e.MaxBytes), "events-max-bytes", "most the platform event stream may hold, e.g. 1GiB (the oldest go first)")
	f.StringVar(&e.MQTTListen, "mqtt-listen", "", "serve MQTT on the embedded NATS at host:port: password = an API key or admin token, topics gantry/events/<account>/#; TLS with --nats-tls-cert, else loopback only unless --nats-insecure")
}
