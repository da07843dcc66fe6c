package invoke

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/validate"
)

// LargeResultPath (+ request id) serves the answer of a polled call too
// large for the status response itself, which redirects here (302), as
// NVCF does for large results.
const LargeResultPath = "/v2/nvcf/pexec/results/"

// largeResult streams a large result from the object store to the account
// that made the call.
func (g *Gateway) largeResult(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	reqID := r.PathValue("requestId")
	if err := validate.ID("request id", reqID); err != nil {
		return err
	}
	notFound := problem.NotFound("large result of request %s not found: the request never existed, belongs to another account, its result is not large, or it expired", reqID)
	e, err := g.cfg.Results.Get(r.Context(), reqID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	res, err := bus.DecodeResult(e.Value())
	if err != nil || res.Account != p.Account || res.Large == "" {
		return notFound
	}
	obj, err := g.cfg.Large.Get(r.Context(), res.Large)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	defer obj.Close()
	h := w.Header()
	status := answerHeader(h, res.Header, res.Status, reqID)
	h.Set("Content-Length", strconv.FormatInt(res.Size, 10))
	w.WriteHeader(status)
	if _, err := io.Copy(w, obj); err != nil {
		// Headers are out: the caller sees the body end short.
		g.log.Warn("invoke: large result broke off", "requestId", reqID, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}
