package invoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// maxPosition caps the reported queue position, as NVCF estimates it "up
// to 1000".
const maxPosition = 1000

// queueRoutes answers GET /v2/nvcf/queues/{a}/{b}: the queue details of
// /functions/{functionId}, or the position of /{requestId}/position. The
// two share a shape the router cannot tell apart ("functions/position"
// matches both), so one handler splits them.
func (g *Gateway) queueRoutes(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	a, b := r.PathValue("a"), r.PathValue("b")
	switch {
	case a == "functions":
		r.SetPathValue("functionId", b)
		return g.queues(w, r, p)
	case b == "position":
		return g.position(w, r, p, a)
	}
	return problem.NotFound("no such route: %s; see /v2/nvcf/queues/functions/{functionId} or /v2/nvcf/queues/{requestId}/position", r.URL.Path)
}

// position answers GET /v2/nvcf/queues/{requestId}/position for a call
// answered 202: how many calls of its function version are ahead of it in
// the work queue, itself included, capped at 1000. A call a worker has
// taken, or that has its result, is at position 0. Calls of other accounts
// are not found, as are sync calls still held by their caller.
func (g *Gateway) position(w http.ResponseWriter, r *http.Request, p auth.Principal, reqID string) error {
	if err := validate.ID("request id", reqID); err != nil {
		return err
	}
	notFound := problem.NotFound("request %s not found: it never existed, was not answered 202, belongs to another account, or its result expired", reqID)
	entry, err := g.cfg.Results.Get(r.Context(), reqID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	res, err := bus.DecodeResult(entry.Value())
	if err != nil || res.Account != p.Account || !g.reaches(p, res.Function, res.Version) {
		return notFound
	}
	out := model.QueuePosition{FunctionID: res.Function, FunctionVersionID: res.Version}
	if res.Pending && res.Seq != 0 {
		n, err := g.queuedAhead(r.Context(), res)
		if err != nil {
			return err
		}
		out.PositionInQueue = min(n, maxPosition)
		out.Position = out.PositionInQueue
	}
	return web.JSON(w, http.StatusOK, out)
}

// queuedAhead counts the calls of res's version waiting for a worker up to
// and including the one at res.Seq, or 0 when that one no longer waits.
// What waits is what the version's consumer has not delivered (its
// NumPending, or the whole subject before any worker subscribed); the calls
// behind ours are what the stream counts after it on the same subject.
func (g *Gateway) queuedAhead(ctx context.Context, res bus.Result) (int, error) {
	subject := bus.InvokeSubject(res.Function, res.Version)
	seq, behind, err := g.firstFrom(ctx, subject, res.Seq)
	if err != nil || seq != res.Seq {
		return 0, err // gone: taken and done, or its caller left
	}
	var waiting int
	c, err := g.cfg.JS.Consumer(ctx, bus.InvokeStream, bus.ConsumerName(res.Version))
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		_, after, err := g.firstFrom(ctx, subject, 1)
		if err != nil {
			return 0, err
		}
		waiting = after + 1
	case err != nil:
		return 0, err
	default:
		info, err := c.Info(ctx)
		if err != nil {
			return 0, err
		}
		if res.Seq <= info.Delivered.Stream {
			return 0, nil // a worker has it
		}
		waiting = int(info.NumPending)
	}
	return max(waiting-behind, 1), nil
}

// firstFrom asks the stream, by a batched direct get of one message, for
// the first message of subject at or after seq: its sequence (0 when there
// is none) and how many more of the subject follow it.
func (g *Gateway) firstFrom(ctx context.Context, subject string, from uint64) (seq uint64, after int, err error) {
	req, _ := json.Marshal(struct {
		Seq   uint64 `json:"seq"`
		Next  string `json:"next_by_subj"`
		Batch int    `json:"batch"`
	}{from, subject, 1})
	msg, err := g.cfg.Conn.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+bus.InvokeStream, req)
	if err != nil {
		return 0, 0, fmt.Errorf("invoke: queue position: %w", err)
	}
	switch st := msg.Header.Get("Status"); st {
	case "":
	case "404":
		return 0, 0, nil
	default:
		return 0, 0, fmt.Errorf("invoke: queue position: the stream answered %s %s", st, msg.Header.Get("Description"))
	}
	seq, serr := strconv.ParseUint(msg.Header.Get("Nats-Sequence"), 10, 64)
	after, aerr := strconv.Atoi(msg.Header.Get("Nats-Num-Pending"))
	if serr != nil || aerr != nil {
		return 0, 0, errors.New("invoke: queue position: the stream's answer has no sequence or pending count")
	}
	return seq, after, nil
}
