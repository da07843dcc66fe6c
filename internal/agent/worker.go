package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/stream"
	"github.com/gantry-dev/gantry/internal/tracing"
)

// worker feeds one running instance with calls, never more at once than its
// maxRequestConcurrency slots. Calls come two ways (docs/architecture.md,
// "Invocation path"):
//
//   - Offered: while a slot is free the worker listens on its version's
//     fast subject in a queue group; a gateway offers a sync call there,
//     the worker accepts it into a free slot, and the gateway streams the
//     body once it has the accept. Nothing touches disk.
//   - Queued: calls no slot could take wait in the version's JetStream work
//     queue. The gateway rings the version's doorbell after each enqueue;
//     a worker with a free slot then pulls one message (waiting at most
//     pullWait while it holds the slot, so no pull request outlives the
//     free slot it was made for) and asks the call's gateway whether the
//     caller still waits.
//
// Either way the response streams back to the gateway frame by frame,
// unless the gateway detached (it answered 202), in which case the result
// goes to the results bucket.
type worker struct {
	inst     model.DesiredInstance
	endpoint string
	nc       *nats.Conn
	js       jetstream.JetStream
	mux      *stream.Mux
	puller   *puller
	client   *http.Client
	log      *slog.Logger
	// assetDir and largeOutputDir hold the per-request directories the
	// function is told of (NVCF-ASSET-DIR, NVCF-LARGE-OUTPUT-DIR).
	assetDir, largeOutputDir string
	// lender lends free slots to gateways that call the instance directly
	// (lease.go); nil when the gateways cannot reach it.
	lender *lender
	// h2c calls an instance that serves gRPC (model.ServesGRPC) over
	// HTTP/2 without TLS, as gRPC servers speak; nil for other instances.
	h2c *http.Client
	// tracer starts a span per call it serves, the child of the gateway's
	// (the traceparent the call carries); nil when tracing is off.
	tracer trace.Tracer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// inFlight counts requests the instance is working on; a running
	// instance with none is idle in the agent's report.
	inFlight atomic.Int32

	// Slots. free counts the slots neither offered nor pulled into; the
	// fast subject is subscribed exactly while an offer could be taken.
	mu      sync.Mutex
	free    int
	offers  *nats.Subscription
	stopped bool
	bell    *nats.Subscription
	rang    chan struct{} // the doorbell rang (or a pull found work)
	handoff chan struct{} // a finished slot passed straight to the puller
	backlog atomic.Bool   // the queue may hold work
}

// Hand-off timing. holdAccept is how long a slot stays reserved for a
// gateway that has not answered an accept; pollEvery is how often a worker
// with a free slot looks at the queue without a doorbell (redeliveries ring
// none); maxAttempts is how often a call may be delivered before it is
// answered with an error instead of retried again.
const (
	holdAccept  = 5 * time.Second
	pollEvery   = time.Second
	maxAttempts = 5
)

// consumerConfig is the one durable consumer every worker of a version shares.
// All workers create it with identical settings, so creation is idempotent.
// Deliveries are unlimited at the server: a worker answers a call delivered
// maxAttempts times with an errored result, so that no 202'd call vanishes.
func consumerConfig(inst model.DesiredInstance) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       bus.ConsumerName(inst.FunctionVersionID),
		FilterSubject: bus.InvokeSubject(inst.FunctionID, inst.FunctionVersionID),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second, // extended with InProgress while a request runs
		MaxDeliver:    -1,
		MaxWaiting:    16384,
		MaxAckPending: -1,
	}
}

func startWorker(parent context.Context, js jetstream.JetStream, nc *nats.Conn,
	inst model.DesiredInstance, st runtime.Status, opts stream.Options, direct bool, log *slog.Logger, tracer trace.Tracer) (_ *worker, err error) {
	cctx, cancelCreate := context.WithTimeout(parent, 10*time.Second)
	defer cancelCreate()
	if _, err := js.CreateOrUpdateConsumer(cctx, bus.InvokeStream, consumerConfig(inst)); err != nil {
		return nil, fmt.Errorf("agent: work queue consumer for %s: %w", inst.FunctionVersionID, err)
	}
	slots := max(1, inst.MaxRequestConcurrency)
	ctx, cancel := context.WithCancel(parent)
	w := &worker{
		inst: inst, endpoint: st.Endpoint, assetDir: st.AssetDir, largeOutputDir: st.LargeOutputDir, nc: nc, js: js, ctx: ctx, cancel: cancel,
		tracer:  tracer,
		log:     log.With("instance", inst.InstanceID),
		free:    slots,
		rang:    make(chan struct{}, 1),
		handoff: make(chan struct{}, slots),
		client: &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        slots,
			MaxIdleConnsPerHost: slots,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ReadBufferSize:      64 << 10,
			WriteBufferSize:     64 << 10,
		}},
	}
	if inst.ServesGRPC() {
		w.h2c = h2cClient()
	}
	defer func() {
		if err != nil {
			w.stop()
		}
	}()
	if w.mux, err = stream.NewMux(nc, nc.NewInbox(), opts); err != nil {
		return nil, err
	}
	if w.puller, err = newPuller(nc, bus.InvokeStream, bus.ConsumerName(inst.FunctionVersionID)); err != nil {
		return nil, err
	}
	if direct && strings.HasPrefix(st.Endpoint, "http://") {
		// Calls naming assets still come over the bus.
		if w.lender, err = startLender(w); err != nil {
			return nil, fmt.Errorf("agent: lease control: %w", err)
		}
	}
	if w.bell, err = nc.Subscribe(bus.QueuedSubject(inst.FunctionID, inst.FunctionVersionID), func(*nats.Msg) {
		w.backlog.Store(true)
		signal(w.rang)
		if w.lender != nil {
			w.lender.reclaim() // a queued call must not wait for good
		}
	}); err != nil {
		return nil, fmt.Errorf("agent: doorbell: %w", err)
	}
	w.mu.Lock()
	err = w.listen()
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	w.backlog.Store(true) // look once: work may have queued before we came
	w.wg.Add(1)
	go w.pullLoop()
	return w, nil
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// listen subscribes to the fast subject; w.mu is held.
func (w *worker) listen() error {
	if w.offers != nil || w.stopped {
		return nil
	}
	sub, err := w.nc.QueueSubscribe(bus.FastSubject(w.inst.FunctionID, w.inst.FunctionVersionID), "workers", w.onOffer)
	if err != nil {
		return fmt.Errorf("agent: fast subject: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	w.offers = sub
	if w.lender != nil {
		if err := w.lender.listen(); err != nil {
			return fmt.Errorf("agent: lease subject: %w", err)
		}
	}
	return nil
}

// deafen unsubscribes from the fast subject; w.mu is held.
func (w *worker) deafen() {
	if w.offers != nil {
		_ = w.offers.Unsubscribe()
		w.offers = nil
	}
	if w.lender != nil {
		w.lender.deafen()
	}
}

// take reserves a free slot. Offers take the last one deaf, so the next
// offer finds another worker or the queue instead of a busy answer.
func (w *worker) take(offer bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.free == 0 || w.stopped {
		return false
	}
	w.free--
	if w.free == 0 && offer {
		w.deafen()
	}
	return true
}

// release frees a slot: to the puller first while the queue may hold work,
// so queued calls are not starved by a stream of offers; else back to
// offers.
func (w *worker) release() {
	if w.backlog.Load() {
		select {
		case w.handoff <- struct{}{}:
			return
		default:
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.free++
	if err := w.listen(); err != nil {
		w.log.Warn("agent: cannot listen for offers; calls will queue", "err", err)
	}
}

// stop stops taking calls and waits for those in flight to finish.
func (w *worker) stop() {
	w.mu.Lock()
	w.stopped = true
	w.deafen()
	w.mu.Unlock()
	if w.bell != nil {
		_ = w.bell.Unsubscribe()
	}
	if w.lender != nil {
		w.lender.close() // no gateway calls the instance any more
	}
	w.cancel()
	w.wg.Wait()
	if w.puller != nil {
		w.puller.close()
	}
	if w.mux != nil {
		_ = w.mux.Close()
	}
	w.client.CloseIdleConnections()
	if w.h2c != nil {
		w.h2c.CloseIdleConnections()
	}
}

// h2cClient calls an instance over HTTP/2 with prior knowledge and no TLS
// (h2c), as a gRPC server expects: one connection carries every call, each
// a stream whose request and response flow at the same time.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:          &p,
		DialContext:        (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		IdleConnTimeout:    90 * time.Second,
		DisableCompression: true,
	}}
}

// isGRPC reports whether a request's content type is gRPC's
// (application/grpc, or application/grpc+<codec>).
func isGRPC(contentType string) bool {
	rest, ok := strings.CutPrefix(contentType, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// pullLoop takes queued calls while a slot is free and the queue may hold
// work: on the doorbell, on a slot handed over, and every pollEvery.
func (w *worker) pullLoop() {
	defer w.wg.Done()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	look := true
	for w.ctx.Err() == nil {
		held := false
		if !look {
			select {
			case <-w.ctx.Done():
				return
			case <-w.handoff:
				held = true
			case <-w.rang:
			case <-tick.C:
			}
		}
		look = false
		if !held && !w.take(false) {
			continue // busy: a finishing slot hands itself over
		}
		msg, err := w.puller.next(w.ctx)
		if err != nil {
			w.backlog.Store(false)
			w.release()
			if !errors.Is(err, errNoMessage) && w.ctx.Err() == nil {
				w.log.Warn("agent: pulling work failed; retrying", "err", err)
			}
			continue
		}
		w.backlog.Store(true)
		look = true // drain: there may be more
		w.mu.Lock()
		if w.free == 0 {
			w.deafen()
		}
		w.mu.Unlock()
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer w.release()
			w.queued(msg)
		}()
	}
}

// onOffer answers a gateway's offer: accept into a free slot, or busy.
func (w *worker) onOffer(msg *nats.Msg) {
	if msg.Reply == "" {
		return
	}
	if !w.take(true) {
		_ = w.nc.Publish(msg.Reply, []byte{byte(stream.KindBusy), 0, 0, 0, 0, 0, 0, 0, 0})
		return
	}
	ep, err := w.mux.Open(w.callID(msg.Header.Get(bus.HeaderReqID)))
	if err != nil {
		w.release()
		_ = w.nc.Publish(msg.Reply, []byte{byte(stream.KindBusy), 0, 0, 0, 0, 0, 0, 0, 0})
		return
	}
	ep.SetPeer(msg.Reply)
	if err := ep.Send(stream.KindAccept, []byte(ep.Addr())); err != nil {
		ep.Close()
		w.release()
		return
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer w.release()
		defer ep.Close()
		// The call is ours only once the gateway says so, with the first
		// frame of the body (or, for a gRPC call, a go before it): until
		// then a gateway that gave up on us may have queued it, and
		// running it too would run it twice.
		f, err := next(ep, holdAccept)
		if err != nil || (f.Kind != stream.KindData && f.Kind != stream.KindEnd && f.Kind != stream.KindGo) {
			return
		}
		var body io.Reader = ep.Body()
		if b, whole := ep.Whole(); whole {
			body = bytes.NewReader(b)
		}
		w.serve(call{hdr: msg.Header, body: body, ep: ep})
	}()
}

var callSeq atomic.Uint64

// callID is the worker-side id of a call: unique even when the same request
// is delivered to this agent again.
func (w *worker) callID(reqID string) string {
	if reqID == "" || strings.ContainsAny(reqID, ".*> ") {
		reqID = "call"
	}
	return reqID + "-" + strconv.FormatUint(callSeq.Add(1), 36)
}

func next(ep *stream.Endpoint, within time.Duration) (stream.Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return ep.Next(ctx)
}

// queued runs a call taken from the work queue. It first asks the call's
// gateway whether its caller still waits: go (stream to it), cancel (the
// caller left: drop it), or nothing/unknown (the gateway answered 202 or is
// gone: run it and store the result, if the call can be polled for).
func (w *worker) queued(msg *nats.Msg) {
	hdr := msg.Header
	reqID := hdr.Get(bus.HeaderReqID)
	if meta, err := msg.Metadata(); err == nil && meta.NumDelivered > maxAttempts {
		w.log.Warn("agent: giving up on a call delivered too often", "requestId", reqID, "deliveries", meta.NumDelivered)
		w.store(hdr, errorAnswer(http.StatusBadGateway, fmt.Sprintf("the call was attempted %d times without an answer (the function instance kept failing or restarting); check the function's logs", meta.NumDelivered-1)))
		_ = ack(msg)
		return
	}
	stopKeep := keepInProgress(msg)
	defer stopKeep()

	c := call{hdr: hdr, msg: msg, body: bytes.NewReader(msg.Data), detached: true}
	if reply := hdr.Get(bus.HeaderReply); reply != "" {
		ep, err := w.mux.Open(w.callID(reqID))
		if err != nil {
			_ = nakAfter(msg, time.Second)
			return
		}
		defer ep.Close()
		ep.SetPeer(reply)
		f, err := stream.Frame{}, ep.Send(stream.KindAccept, []byte(ep.Addr()))
		if err == nil {
			f, err = next(ep, holdAccept)
		}
		switch {
		case errors.Is(err, stream.ErrCanceled):
			_ = ack(msg) // the caller left before the call started
			return
		case err == nil && f.Kind == stream.KindGo:
			c.ep, c.detached = ep, false
			if hdr.Get(bus.HeaderBody) == bus.BodyStreamed {
				c.body = ep.Body() // a gRPC call's: its messages follow
			}
		case err == nil && (f.Kind == stream.KindData || f.Kind == stream.KindEnd):
			c.ep, c.detached, c.body = ep, false, ep.Body()
		}
		if c.detached {
			ep.Close()
		}
	}
	if c.detached && (hdr.Get(bus.HeaderMode) != bus.ModePollable || hdr.Get(bus.HeaderBody) == bus.BodyStreamed) {
		// Nobody can receive the answer: the caller of a pass-through call
		// is gone, or the body was never stored.
		_ = ack(msg)
		return
	}
	w.serve(c)
}

// keepInProgress tells JetStream every 10s that msg is still being worked
// on; the returned func stops it. A timer costs the typical short call
// nothing.
func keepInProgress(msg *nats.Msg) func() {
	var (
		mu       sync.Mutex
		keep     *time.Timer
		finished bool
	)
	mu.Lock()
	keep = time.AfterFunc(10*time.Second, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			_ = inProgress(msg)
			keep.Reset(10 * time.Second)
		}
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		finished = true
		keep.Stop()
		mu.Unlock()
	}
}

// call is one invocation being served.
type call struct {
	hdr  nats.Header // the request's head: control and caller headers
	body io.Reader
	// ep streams the answer to the gateway; nil or detached means the
	// answer is stored instead.
	ep       *stream.Endpoint
	detached bool
	// msg is the work-queue message, acknowledged once the call is
	// answered; nil for an offered call.
	msg *nats.Msg
}

// serve forwards one call to the instance and delivers the answer.
func (w *worker) serve(c call) {
	w.inFlight.Add(1)
	defer w.inFlight.Add(-1)
	hdr := c.hdr

	// The function's request ends when the gateway cancels or goes away
	// (the function sees its connection close), but not when the gateway
	// detached: then the caller will poll for the result.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if c.ep != nil && !c.detached {
		stop := context.AfterFunc(epContext(c.ep), func() {
			if !c.ep.Detached() {
				cancel()
			}
		})
		defer stop()
	}
	var span trace.Span
	if w.tracer != nil {
		ctx, span = w.startSpan(ctx, hdr)
		defer span.End()
	}
	// The call's assets are on disk before the function sees the call,
	// and go once it is answered.
	cleanup, ok := w.prepareAssets(ctx, c)
	if !ok {
		return
	}
	defer cleanup()

	req, err := http.NewRequestWithContext(ctx, hdr.Get(bus.HeaderMethod), w.endpoint+hdr.Get(bus.HeaderPath), c.body)
	if err != nil {
		w.finish(c, errorAnswer(http.StatusBadRequest, "the request cannot be forwarded: "+err.Error()))
		return
	}
	for k, vs := range hdr {
		// Gantry-* are our control headers and Nats-* the bus's own.
		if !strings.HasPrefix(k, "Gantry-") && !strings.HasPrefix(k, "Nats-") {
			req.Header[k] = vs
		}
	}
	w.setNVCFHeaders(req.Header, hdr.Get(bus.HeaderReqID))
	if span != nil {
		// The function's own spans are children of the worker's.
		tracing.Inject(ctx, req.Header)
	}
	req.ContentLength = -1
	if n, err := strconv.ParseInt(hdr.Get(bus.HeaderLength), 10, 64); err == nil {
		req.ContentLength = n
		if n == 0 {
			req.Body = http.NoBody
		}
	}
	client, grpc := w.client, w.h2c != nil && isGRPC(hdr.Get("Content-Type"))
	if grpc {
		// A gRPC call to a gRPC server: h2c, and the te header gRPC
		// servers require (the gateway drops it as hop-by-hop).
		client = w.h2c
		req.Header.Set("Te", "trailers")
	}
	resp, err := client.Do(req)
	if span != nil {
		traceAnswer(span, resp, err)
	}
	if err != nil {
		var op *net.OpError
		if c.msg != nil && errors.As(err, &op) && op.Op == "dial" {
			// Nothing reached the function: another instance, or this one
			// after its restart, can take the call safely. Tell the gateway
			// to wait for the next taker.
			if c.ep != nil && !c.detached {
				_ = c.ep.Send(stream.KindBusy, nil)
			}
			_ = nakAfter(c.msg, time.Second)
			return
		}
		if ctx.Err() != nil {
			w.done(c) // the gateway canceled: nobody waits for an answer
			return
		}
		w.finish(c, errorAnswer(http.StatusBadGateway, "the function instance failed while handling the request: "+err.Error()))
		return
	}
	defer func() {
		if grpc {
			// Once the function has answered, its stream is over, even
			// while the caller's messages still come (a unary caller's
			// end can trail the answer): closing the response must not
			// wait for the request body, which ends only with this call.
			cancel()
		}
		resp.Body.Close()
	}()
	out := nats.Header{}
	for k, vs := range resp.Header {
		out[k] = vs
	}
	out.Set(bus.HeaderStatus, strconv.Itoa(resp.StatusCode))
	if c.ep == nil || c.detached {
		w.storeResponse(c, out, resp.Body)
		return
	}
	switch err := w.stream(c.ep, out, resp, grpc); {
	case errors.Is(err, stream.ErrDetached):
		w.storeResponse(c, out, resp.Body)
	case err != nil && ctx.Err() == nil:
		// The function broke off mid-answer (or the bus failed): the
		// caller's stream ends with the reason, and a status record keeps
		// it, stored first so that a caller told of the failure finds it.
		reason := "the function's response broke off: " + err.Error()
		w.store(hdr, errorAnswer(http.StatusBadGateway, reason))
		_ = c.ep.Fail(reason)
		w.done(c)
	default:
		w.done(c)
	}
}

// epContext is a context that ends with the endpoint.
func epContext(ep *stream.Endpoint) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-ep.Done()
		cancel()
	}()
	return ctx
}

// stream sends the function's answer to the gateway as it comes: the first
// read goes with the head (a small answer is one frame), then one frame per
// read, so a server-sent event reaches the caller when it is written; the
// response's trailers go with the end. A gRPC answer's head goes at once,
// before any message: a gRPC server may send its headers and wait for the
// client's next message, and the client may wait for those headers. Only
// a trailers-only gRPC answer (an error status and no message) is one
// frame.
func (w *worker) stream(ep *stream.Endpoint, out nats.Header, resp *http.Response, grpc bool) error {
	pb := w.mux.Buffer()
	defer w.mux.Recycle(pb)
	buf := *pb
	var n int
	var err error
	if grpc && resp.Header.Get("Grpc-Status") == "" {
		return w.streamGRPC(ep, out, buf, resp)
	}
	if cl := resp.ContentLength; cl >= 0 && cl <= int64(len(buf)) {
		n, err = io.ReadFull(resp.Body, buf[:cl])
		if err == nil {
			err = io.EOF
		}
	} else {
		n, err = resp.Body.Read(buf)
	}
	if err != nil && err != io.EOF {
		return err
	}
	if err == io.EOF && trailer(resp) != nil {
		// The end must carry the trailers.
		if herr := ep.SendHead(out, buf[:n], false); herr != nil {
			return herr
		}
		return ep.CloseWriteTrailer(trailer(resp))
	}
	if herr := ep.SendHead(out, buf[:n], err == io.EOF); herr != nil || err == io.EOF {
		if errors.Is(herr, stream.ErrDetached) {
			// Not sent: what was read must still be stored.
			resp.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(append([]byte(nil), buf[:n]...)), resp.Body), resp.Body}
		}
		return herr
	}
	return w.streamBody(ep, buf, resp)
}

// grpcHeadWait is how long a gRPC answer's head waits for its first
// message, to go in one frame with it.
const grpcHeadWait = time.Millisecond

// streamGRPC sends a gRPC answer: its head with the first message, as an
// answer's head usually comes, or alone once grpcHeadWait has passed
// without one, since a server may send its headers and then wait for the
// caller's next message while the caller waits for those headers.
func (w *worker) streamGRPC(ep *stream.Endpoint, out nats.Header, buf []byte, resp *http.Response) error {
	var (
		mu    sync.Mutex
		sent  bool // the head is sent, or being sent
		alone error
	)
	t := time.AfterFunc(grpcHeadWait, func() {
		mu.Lock()
		defer mu.Unlock()
		if !sent {
			sent, alone = true, ep.SendHead(out, nil, false)
		}
	})
	n, err := resp.Body.Read(buf)
	t.Stop()
	mu.Lock()
	early := !sent
	sent = true
	herr := alone
	mu.Unlock()
	switch {
	case herr != nil:
		return herr
	case err != nil && err != io.EOF:
		return err
	case early:
		// A gRPC call is never answered 202, so its head is never
		// refused as detached with this message left unstored.
		if herr := ep.SendHead(out, buf[:n], false); herr != nil {
			return herr
		}
	case n > 0:
		if _, werr := ep.Write(buf[:n]); werr != nil {
			return werr
		}
	}
	if err == io.EOF {
		if t := trailer(resp); t != nil {
			return ep.CloseWriteTrailer(t)
		}
		return ep.CloseWrite()
	}
	return w.streamBody(ep, buf, resp)
}

// streamBody sends the rest of the function's answer, one frame per read,
// and ends it with the response's trailers.
func (w *worker) streamBody(ep *stream.Endpoint, buf []byte, resp *http.Response) error {
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := ep.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			if t := trailer(resp); t != nil {
				return ep.CloseWriteTrailer(t)
			}
			return ep.CloseWrite()
		}
		if err != nil {
			return err
		}
	}
}

// trailer is the trailers a response sent, once its body is read (nil for
// none); declared trailers that never came are left out.
func trailer(resp *http.Response) nats.Header {
	var t nats.Header
	for k, vs := range resp.Trailer {
		if len(vs) > 0 {
			if t == nil {
				t = nats.Header{}
			}
			t[k] = vs
		}
	}
	return t
}

type answer struct {
	header nats.Header
	body   []byte
	// large names the object holding a body too large for body (size
	// bytes).
	large string
	size  int64
}

// errorAnswer is a problem body for failures on the worker's side.
func errorAnswer(status int, detail string) answer {
	b := problem.Body{Type: problem.TypeURI(status), Title: http.StatusText(status), Status: status, Detail: detail}
	h := nats.Header{}
	h.Set("Content-Type", problem.ContentType)
	h.Set(bus.HeaderStatus, strconv.Itoa(status))
	h.Set(bus.HeaderError, "1")
	body, _ := json.Marshal(b) // a problem.Body always encodes
	return answer{header: h, body: body}
}

// finish delivers an answer made here (an error): to the gateway if it
// listens, else to the results bucket.
func (w *worker) finish(c call, a answer) {
	if c.ep != nil && !c.detached {
		err := c.ep.SendHead(a.header, a.body, true)
		if err == nil {
			w.done(c)
			return
		}
		if !errors.Is(err, stream.ErrDetached) {
			w.done(c)
			return
		}
	}
	if w.store(c.hdr, a) {
		w.done(c)
	} else if c.msg != nil {
		_ = nakAfter(c.msg, 0)
	}
}

// storeResponse keeps a response for polling: in the result record up to
// the inline limit, else streamed into the object store.
func (w *worker) storeResponse(c call, out nats.Header, body io.Reader) {
	ctx, cancel := context.WithTimeout(w.ctx, time.Hour)
	defer cancel()
	reqID := c.hdr.Get(bus.HeaderReqID)
	if err := bus.StoreAnswer(ctx, w.js, reqID, c.hdr.Get(bus.HeaderAccount), http.Header(out), body); err != nil {
		w.log.Error("agent: could not store a result", "requestId", reqID, "err", err)
		w.finish(c, errorAnswer(http.StatusBadGateway, "storing the function's response failed: "+err.Error()))
		return
	}
	w.done(c)
}

// store puts an answer in the results bucket for polling.
func (w *worker) store(hdr nats.Header, a answer) bool {
	reqID := hdr.Get(bus.HeaderReqID)
	status, _ := strconv.Atoi(a.header.Get(bus.HeaderStatus))
	res := bus.Result{Account: hdr.Get(bus.HeaderAccount), Status: status, Header: http.Header(a.header), Body: a.body,
		Large: a.large, Size: a.size}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.js.Publish(ctx, bus.ResultSubject(reqID), res.Encode()); err != nil {
		w.log.Error("agent: could not store result; the request will be retried", "requestId", reqID, "err", err)
		return false
	}
	return true
}

// done acknowledges a queued call's message: it is answered.
func (w *worker) done(c call) {
	if c.msg != nil {
		_ = ack(c.msg)
	}
}

// setNVCFHeaders adds the NVCF-* request headers that describe where the
// call runs, which only the worker knows; the gateway sets those that
// describe the call and its caller.
func (w *worker) setNVCFHeaders(h http.Header, reqID string) {
	h.Set("NVCF-BACKEND", w.inst.Backend)
	h.Set("NVCF-INSTANCETYPE", w.inst.InstanceType)
	h.Set("NVCF-REGION", w.inst.Region)
	h.Set("NVCF-ENV", runtime.NVCFEnvironment)
	if w.assetDir != "" {
		h.Set("NVCF-ASSET-DIR", filepath.Join(w.assetDir, reqID))
	}
	if w.largeOutputDir != "" {
		h.Set("NVCF-LARGE-OUTPUT-DIR", filepath.Join(w.largeOutputDir, reqID))
	}
}

// startSpan starts the span of a call taken off the bus, the child of the
// gateway's span whose context the call's headers carry.
func (w *worker) startSpan(ctx context.Context, hdr nats.Header) (context.Context, trace.Span) {
	return w.tracer.Start(tracing.Extract(ctx, hdr), "worker "+w.inst.FunctionName,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("gantry.request.id", hdr.Get(bus.HeaderReqID)),
			attribute.String("gantry.function.id", w.inst.FunctionID),
			attribute.String("gantry.function.version.id", w.inst.FunctionVersionID),
			attribute.String("gantry.instance.id", w.inst.InstanceID),
		))
}

// traceAnswer notes how the instance answered on the call's span.
func traceAnswer(span trace.Span, resp *http.Response, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
}
