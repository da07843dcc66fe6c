package invoke

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/validate"
)

// status answers GET /v2/nvcf/pexec/status/{requestId}: the result if it is
// there, else it waits up to the poll window for it, else 202 again.
func (g *Gateway) status(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	reqID := r.PathValue("requestId")
	if err := validate.ID("request id", reqID); err != nil {
		return err
	}
	poll, err := validate.PollSeconds(r.Header.Get("NVCF-POLL-SECONDS"), g.cfg.DefaultPollSeconds)
	if err != nil {
		return err
	}
	notFound := problem.NotFound("request %s not found: it never existed, belongs to another account, or its result expired", reqID)
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(poll)*time.Second)
	defer cancel()
	// Watching delivers the current value first, then updates: one path
	// covers "already there" and "arrives while we wait".
	watch, err := g.cfg.Results.Watch(ctx, reqID)
	if err != nil {
		return err
	}
	defer watch.Stop()
	seen := false
	for {
		select {
		case e, ok := <-watch.Updates():
			if !ok {
				return ctx.Err()
			}
			if e == nil { // end of initial values
				if !seen {
					return notFound
				}
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				return notFound
			}
			seen = true
			res, err := bus.DecodeResult(e.Value())
			if err != nil || res.Account != p.Account {
				return notFound
			}
			if !res.Pending {
				return writeResult(w, reqID, res)
			}
		case <-ctx.Done():
			if errors.Is(r.Context().Err(), context.Canceled) {
				return r.Context().Err()
			}
			pending(w, reqID)
			return nil
		}
	}
}
