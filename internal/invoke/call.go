package invoke

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/catalog"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/stream"
	"github.com/gantry-dev/gantry/internal/tracing"
)

// Offer timing: how long the gateway waits for a worker to accept an offer
// before it queues the call instead, and for a worker to confirm a detach.
const (
	offerTimeout  = time.Second
	detachTimeout = 5 * time.Second
)

// Request ids are random (version 4) UUIDs, one per call: drawn from a pool
// filled by one crypto/rand read per 16 ids rather than one read each. It
// must be enabled before any id is made, hence init.
func init() { uuid.EnableRandPool() }

// invoke runs one call: straight to a free worker slot when one accepts the
// offer, else through the durable work queue; the answer streams back to
// the caller as the function writes it. A pexec call whose answer has not
// started within the poll window is detached and answered 202. Callers
// validate the request (ids, poll window) before resolving the function, so
// a malformed request is a 400 whatever the function's state. A gRPC call
// (grpc.go) streams both ways for as long as its caller keeps it, with no
// limit on what it sends, as NVCF's: nothing reads ahead of the function.
func (g *Gateway) invoke(w http.ResponseWriter, r *http.Request, p auth.Principal, e catalog.Entry, method, path string, wait time.Duration, pollable bool) (err error) {
	if g.tracer != nil {
		var span trace.Span
		r, span = g.startSpan(r, e, method)
		defer func() { endSpan(span, err) }()
	}
	grpc := isGRPC(r)
	limit := g.cfg.MaxRequestBody
	if r.ContentLength > limit && !grpc {
		return tooLarge(limit)
	}
	f := e.Function
	if err := g.limits.allow(r.Context(), f, p.Account); err != nil {
		return err
	}
	assets, err := g.cfg.Assets.references(r.Context(), r.Header, p.Account)
	if err != nil {
		return err
	}
	reqID := uuid.NewString()
	// Sized for the caller's headers and ours, so that it does not grow.
	hdr := make(nats.Header, len(r.Header)+16)
	for k, vs := range r.Header {
		if !stripped(k) {
			hdr[k] = vs
		}
	}
	hdr.Set(bus.HeaderReqID, reqID)
	hdr.Set(bus.HeaderMethod, method)
	hdr.Set(bus.HeaderPath, path)
	hdr.Set(bus.HeaderAccount, p.Account)
	if r.ContentLength >= 0 {
		hdr.Set(bus.HeaderLength, strconv.FormatInt(r.ContentLength, 10))
	}
	if pollable {
		hdr.Set(bus.HeaderMode, bus.ModePollable)
	}
	setNVCFHeaders(hdr, p, e, reqID)
	assets.set(hdr)
	if g.tracer != nil {
		// The call's span is the parent of what runs it downstream.
		tracing.Inject(r.Context(), hdr)
	}
	var body io.Reader = r.Body
	if !grpc {
		body = http.MaxBytesReader(w, r.Body, limit)
	}
	ctx := r.Context()
	deadline := time.Now().Add(wait)
	// The pending marker a 202 leaves: who may read the result, and where
	// the call waits (queue position, position.go).
	mark := bus.Result{Account: p.Account, Pending: true, Function: f.ID, Version: f.VersionID}

	var fc *fastCall
	if pollable {
		// Kept so that, should the call be answered 202 while it runs on
		// a slot, it can be recorded for the watcher (watch.go).
		fc = &fastCall{subject: bus.WatchSubject(f.ID, f.VersionID), hdr: hdr}
	}

	// Direct: a slot leased from a worker whose instance this gateway
	// reaches (direct.go). Calls naming assets, which the worker fetches
	// first, go over the bus.
	if len(assets.ids) == 0 {
		if l := g.leases.take(ctx, f); l != nil {
			release := g.load.hold(f.VersionID)
			handled, err := g.direct(w, r, l, directCall{method: method, path: path, reqID: reqID, hdr: hdr,
				body: body, mark: mark, deadline: deadline, pollable: pollable, fc: fc, grpc: grpc})
			release()
			if handled {
				g.traceCall(ctx, reqID, pathDirect)
				return err
			}
		}
	}

	// The fast path: offer the call to a free slot.
	if ep, ok := g.offer(ctx, f, hdr); ok {
		g.traceCall(ctx, reqID, pathOffer)
		defer g.load.hold(f.VersionID)()
		defer ep.Close()
		var over atomic.Bool
		if grpc {
			// A gRPC call starts before its first message: the function
			// may send its headers first, and the caller wait for them.
			_ = ep.Send(stream.KindGo, nil)
		}
		go func() { over.Store(g.sendBody(ep, body, r.ContentLength, limit, fc.keeper())) }()
		return g.answer(w, r, ep, reqID, mark, deadline, pollable, nil, fc, over.Load)
	}

	// No free slot. A version that may be at zero instances and can never
	// get one fails now rather than wait for nothing.
	if err := g.fits.check(ctx, e); err != nil {
		return err
	}

	// The queue. The body goes in the message when it fits; a larger one,
	// or a gRPC call's, follows from here once a worker takes the call.
	var buf []byte
	if !grpc {
		buf, err = io.ReadAll(io.LimitReader(body, bus.MaxRequestBody+1))
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return tooLarge(limit)
		}
		if err != nil {
			return problem.BadRequest("could not read the request body: %v", err)
		}
	}
	var rest io.Reader
	msg := nats.NewMsg(bus.InvokeSubject(f.ID, f.VersionID))
	msg.Header = hdr
	if grpc || len(buf) > bus.MaxRequestBody {
		hdr.Set(bus.HeaderBody, bus.BodyStreamed)
		rest = io.MultiReader(bytes.NewReader(buf), body)
	} else {
		msg.Data = buf
	}
	ep, err := g.mux.Open(reqID)
	if err != nil {
		return problem.Unavailable(1, "the gateway is shutting down; retry the call")
	}
	defer ep.Close()
	hdr.Set(bus.HeaderReply, ep.Addr())
	ack, err := g.cfg.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(reqID))
	if err != nil {
		g.log.Error("invoke: enqueue failed", "function", f.ID, "requestId", reqID, "err", err)
		return &problem.Error{Status: http.StatusServiceUnavailable, RetryAfter: 5,
			Detail:  "the work queue did not accept the request; retry shortly",
			Headers: map[string]string{"NVCF-REQID": reqID, "NVCF-STATUS": statusErrored}}
	}
	_ = g.cfg.Conn.Publish(bus.QueuedSubject(f.ID, f.VersionID), nil)
	g.load.waiting(f.ID, f.VersionID) // no free slot: more instances may be due
	g.traceCall(ctx, reqID, pathQueue)
	q := &queued{seq: ack.Sequence, body: rest, limit: limit}
	mark.Seq = ack.Sequence
	return g.answer(w, r, ep, reqID, mark, deadline, pollable && rest == nil, q, nil, q.over.Load)
}

// queued is what answer needs to know of a call in the work queue.
type queued struct {
	seq   uint64
	body  io.Reader // the body still to send, when it did not fit the message
	limit int64
	over  atomic.Bool // the body turned out larger than the limit
}

func tooLarge(limit int64) error {
	return problem.Errorf(http.StatusRequestEntityTooLarge,
		"request body exceeds the %s inline limit; send a smaller body or pass large inputs as assets (NVCF-INPUT-ASSET-REFERENCES)", byteSize(limit))
}

func byteSize(n int64) string {
	if n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// offer offers the call to the version's free slots. It returns the call's
// endpoint, with the accepting worker as its peer, or false when no slot
// took it — and then no worker will run it: a worker runs an offered call
// only after the first body frame, which only an accepted offer gets.
func (g *Gateway) offer(ctx context.Context, f model.Function, hdr nats.Header) (*stream.Endpoint, bool) {
	ep, err := g.mux.Open("o" + hdr.Get(bus.HeaderReqID))
	if err != nil {
		return nil, false
	}
	if err := ep.Offer(bus.FastSubject(f.ID, f.VersionID), hdr); err == nil {
		octx, cancel := context.WithTimeout(ctx, offerTimeout)
		fr, err := ep.Next(octx)
		cancel()
		if err == nil && fr.Kind == stream.KindAccept {
			ep.SetPeer(string(fr.Data))
			return ep, true
		}
	}
	// Busy, nobody free, or no answer in time: a late accept is told to
	// stand down.
	ep.Abandon()
	return nil, false
}

// sendBody streams the request body to the worker; the first frame is the
// worker's go, unless a go went before it (a gRPC call's). It reports whether the body was over the limit, which it
// tells the worker before it returns.
func (g *Gateway) sendBody(ep *stream.Endpoint, body io.Reader, length, limit int64, keep *bodyCopy) (over bool) {
	pb := g.mux.Buffer()
	defer g.mux.Recycle(pb)
	buf := *pb
	var sent int64
	for {
		n, err := body.Read(buf)
		if n > 0 {
			keep.add(buf[:n])
			sent += int64(n)
			if sent == length {
				// The declared length is in: end with these bytes, so a
				// small body is one frame.
				keep.complete()
				_ = ep.WriteLast(buf[:n])
				return false
			}
			if _, werr := ep.Write(buf[:n]); werr != nil {
				return false
			}
		}
		if err == io.EOF {
			keep.complete()
			_ = ep.CloseWrite()
			return false
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				_ = ep.Fail(fmt.Sprintf("the request body exceeds the %s inline limit", byteSize(limit)))
				return true
			}
			_ = ep.Fail("the caller's request body broke off: " + err.Error())
			return false
		}
	}
}

// answer waits for the call's answer and streams it to the caller. q is
// non-nil for a queued call, which first waits for a worker to take it;
// mark is the pending marker a 202 leaves.
func (g *Gateway) answer(w http.ResponseWriter, r *http.Request, ep *stream.Endpoint, reqID string, mark bus.Result, deadline time.Time, pollable bool, q *queued, fc *fastCall, over func() bool) error {
	ctx := r.Context()
	// A caller that hangs up cancels the call wherever it is.
	drop := func() {
		if q != nil && ep.Peer() == "" {
			ep.Abandon()
			// Dropped from the queue: a caller who left gets nothing.
			if st, err := g.cfg.JS.Stream(context.Background(), bus.InvokeStream); err == nil {
				_ = st.DeleteMsg(context.Background(), q.seq)
			}
			return
		}
		ep.Cancel()
	}
	stop := context.AfterFunc(ctx, drop)
	defer stop()
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	detaching := false
	// watched is the sequence of this call's watch record, kept only when
	// the call ends up answered 202.
	var watched uint64
	defer func() {
		if watched != 0 {
			g.unwatch(watched)
		}
	}()
	for {
		fr, err := ep.Next(wctx)
		switch {
		case err == nil && fr.Kind == stream.KindAccept && q != nil:
			ep.SetPeer(string(fr.Data))
			if q.body != nil {
				if isGRPC(r) {
					_ = ep.Send(stream.KindGo, nil) // as on the fast path
				}
				go func(body io.Reader) { q.over.Store(g.sendBody(ep, body, -1, q.limit, nil)) }(q.body)
				q.body = nil
			} else if err := ep.Send(stream.KindGo, nil); err != nil {
				return err
			}
			continue
		case err == nil && fr.Kind == stream.KindBusy && q != nil:
			// The worker could not reach its instance and put the call
			// back: wait for the next taker.
			ep.SetPeer("")
			continue
		case err == nil && fr.Kind == stream.KindDetached:
			watched = 0 // the watcher takes over
			return g.deferResult(w, ctx, reqID, mark)
		case err == nil && (fr.Kind == stream.KindHead || fr.Kind == stream.KindHeadEnd):
			if over() {
				// The worker answers the body it was told was cut; the
				// caller hears why.
				ep.Cancel()
				return tooLarge(g.cfg.MaxRequestBody)
			}
			if watched != 0 {
				// Asked to detach, the worker had already answered: the
				// answer streams here, nothing to watch.
				g.unwatch(watched)
				watched = 0
			}
			if isGRPC(r) {
				return g.relayGRPC(w, r, ep, reqID, fr)
			}
			return g.relay(w, r, ep, reqID, fr)
		case err == nil:
			continue // control with no meaning here
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && pollable && !detaching:
			if ep.Peer() == "" {
				// Still queued: the message is durable, and the worker
				// that takes it will find no one and store the answer.
				ep.Close()
				return g.deferResult(w, ctx, reqID, mark)
			}
			// Running: ask the worker to keep the answer. It answers
			// "detached", or the head it had already sent. A call that
			// runs straight on its slot is in no durable queue: record it
			// first, so that it outlives its worker (watch.go).
			if fc != nil {
				watched = g.watch(fc, ep.Peer())
			}
			detaching = true
			_ = ep.Send(stream.KindDetach, nil)
			dctx, dcancel := context.WithTimeout(ctx, detachTimeout)
			defer dcancel() // once: detaching is asked at most once
			wctx = dctx
			continue
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && !pollable:
			// A call that cannot turn into a 202 waited as long as it may
			// for its answer to start: it is called off wherever it is.
			drop()
			return &problem.Error{Status: http.StatusGatewayTimeout,
				Detail:  "the function did not start answering in time (NVCF-POLL-SECONDS, or the gateway's --host-call-limit); the call was cancelled",
				Headers: map[string]string{"NVCF-REQID": reqID, "NVCF-STATUS": statusErrored}}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, stream.ErrClosed):
			return problem.Unavailable(1, "the gateway is shutting down; retry the call")
		default:
			g.log.Warn("invoke: call failed before its answer", "requestId", reqID, "err", err)
			return &problem.Error{Status: http.StatusBadGateway,
				Detail:  "the worker running the call stopped answering (" + err.Error() + "); the call did not complete, retry it",
				Headers: map[string]string{"NVCF-REQID": reqID, "NVCF-STATUS": statusErrored}}
		}
	}
}

// relay writes the worker's answer to the caller as it arrives, flushing
// whenever no further frame is at hand, so a server-sent event reaches the
// caller when written.
func (g *Gateway) relay(w http.ResponseWriter, r *http.Request, ep *stream.Endpoint, reqID string, head stream.Frame) error {
	status, _ := strconv.Atoi(head.Header.Get(bus.HeaderStatus))
	h := w.Header()
	status = answerHeader(h, http.Header(head.Header), status, reqID)
	g.traceStatus(r.Context(), status)
	if head.Kind == stream.KindHeadEnd {
		b, _ := io.ReadAll(ep.Body())
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		_, err := w.Write(b)
		return err
	}
	if cl := head.Header.Get("Content-Length"); cl != "" {
		h.Set("Content-Length", cl)
	}
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	pb := g.mux.Buffer()
	defer g.mux.Recycle(pb)
	gone, err := copyBody(w, rc, ep.Body(), *pb, func() bool { return !ep.Ready() })
	switch {
	case gone:
		ep.Cancel() // the caller is gone; nothing left to tell it
	case err != nil && r.Context().Err() == nil:
		g.log.Warn("invoke: answer broke off mid-stream", "requestId", reqID, "err", err)
		breakOff(w, rc, streamReason(err))
	}
	return nil
}

// streamReason is what the caller of a broken stream is told.
func streamReason(err error) string {
	var remote *stream.RemoteError
	switch {
	case errors.As(err, &remote):
		return remote.Reason
	case errors.Is(err, stream.ErrClosed):
		return "the gateway is shutting down; the answer is incomplete"
	default:
		return "the worker stopped answering mid-stream; the answer is incomplete"
	}
}

// deferResult leaves a pending marker so the worker's late answer is kept,
// and answers 202. If the answer is already stored, it is served instead.
func (g *Gateway) deferResult(w http.ResponseWriter, ctx context.Context, reqID string, mark bus.Result) error {
	g.traceStatus(ctx, http.StatusAccepted)
	ctx = context.WithoutCancel(ctx)
	_, err := g.cfg.Results.Create(ctx, reqID, mark.Encode())
	if errors.Is(err, jetstream.ErrKeyExists) {
		if entry, gerr := g.cfg.Results.Get(ctx, reqID); gerr == nil {
			if res, derr := bus.DecodeResult(entry.Value()); derr == nil && !res.Pending {
				return writeResult(w, reqID, res)
			}
		}
	} else if err != nil {
		g.log.Error("invoke: could not record pending request", "requestId", reqID, "err", err)
	}
	pending(w, reqID)
	return nil
}

func pending(w http.ResponseWriter, reqID string) {
	h := w.Header()
	h.Set("NVCF-REQID", reqID)
	h.Set("NVCF-STATUS", statusPending)
	h.Set("Access-Control-Expose-Headers", "NVCF-REQID, NVCF-STATUS")
	w.WriteHeader(http.StatusAccepted)
}

func writeResult(w http.ResponseWriter, reqID string, res bus.Result) error {
	if res.Large != "" {
		// As NVCF answers a large result: a redirect to where it can be
		// fetched, with the same credential.
		h := w.Header()
		h.Set("NVCF-REQID", reqID)
		h.Set("NVCF-STATUS", statusFulfilled)
		h.Set("Location", LargeResultPath+reqID)
		h.Set("Access-Control-Expose-Headers", "NVCF-REQID, NVCF-STATUS, Location")
		w.WriteHeader(http.StatusFound)
		return nil
	}
	h := w.Header()
	status := answerHeader(h, res.Header, res.Status, reqID)
	h.Set("Content-Length", strconv.Itoa(len(res.Body)))
	w.WriteHeader(status)
	_, err := w.Write(res.Body)
	return err
}

// fastCall is what a pollable call on the fast path keeps for its watch
// record: its head and, while it fits a message, a copy of its body.
type fastCall struct {
	subject string
	hdr     nats.Header
	body    bodyCopy
}

func (fc *fastCall) keeper() *bodyCopy {
	if fc == nil {
		return nil
	}
	return &fc.body
}

// bodyCopy is a copy of a request body as it is sent, up to the size a
// message can carry; a nil *bodyCopy keeps nothing.
type bodyCopy struct {
	mu       sync.Mutex
	buf      []byte
	done     bool // the whole body is in buf
	overflow bool // it was larger than a message can carry
}

func (b *bodyCopy) add(p []byte) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.overflow {
		return
	}
	if len(b.buf)+len(p) > bus.MaxRequestBody {
		b.overflow, b.buf = true, nil
		return
	}
	b.buf = append(b.buf, p...)
}

func (b *bodyCopy) complete() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
}

// whole returns the body if all of it was kept.
func (b *bodyCopy) whole() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf, b.done && !b.overflow
}

// watch records a fast-path call about to be detached, for the watcher; it
// returns the record's sequence, or 0 when the call cannot be recorded (its
// body is still being sent, or too large for a message): such a call is
// then only as durable as its worker.
func (g *Gateway) watch(fc *fastCall, worker string) uint64 {
	body, ok := fc.body.whole()
	reqID := fc.hdr.Get(bus.HeaderReqID)
	if !ok {
		g.log.Warn("invoke: a call answered 202 while its body was still being sent, or with a body too large to record, depends on its worker alone", "requestId", reqID)
		return 0
	}
	msg := nats.NewMsg(fc.subject)
	for k, vs := range fc.hdr {
		msg.Header[k] = vs
	}
	msg.Header.Set(bus.HeaderWorker, worker)
	msg.Data = body
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := g.cfg.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(reqID))
	if err != nil {
		g.log.Error("invoke: could not record a detached call; it depends on its worker alone", "requestId", reqID, "err", err)
		return 0
	}
	return ack.Sequence
}

// unwatch removes a watch record that is not needed: the call answered
// after all, or failed before its 202.
func (g *Gateway) unwatch(seq uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := g.cfg.JS.Stream(ctx, bus.WatchStream)
	if err == nil {
		err = st.DeleteMsg(ctx, seq)
	}
	if err != nil {
		g.log.Warn("invoke: could not remove a watch record; the watcher will find the call ended", "seq", seq, "err", err)
	}
}
