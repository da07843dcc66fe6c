package invoke

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/problem"
)

// Direct calls (docs/architecture.md, "Direct calls"): a sync call that can
// take a slot leased from a worker whose instance this gateway reaches goes
// to the instance over HTTP, as a reverse proxy would: no message on the
// bus, the caller's hang-up is the function's, and the answer streams with
// nothing between the two connections but a buffer. The slot lease keeps
// maxRequestConcurrency, and a pexec call whose answer has not started in
// its poll window is detached as on the fast path: recorded for the
// watcher, answered 202, and its answer stored by this gateway.

// directBufSize is the copy buffer of a direct answer, as large as the
// HTTP/1 server writes through without buffering.
const directBufSize = 64 << 10

var directBufs = sync.Pool{New: func() any { b := make([]byte, directBufSize); return &b }}

// directTransport calls instances: many connections to few hosts, kept
// alive between calls, bodies as they are.
func directTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ReadBufferSize:      directBufSize,
		WriteBufferSize:     directBufSize,
	}
}

// h2cTransport calls instances that serve gRPC: HTTP/2 with prior
// knowledge and no TLS, one connection carrying every call, each a stream
// whose request and response flow at the same time.
func h2cTransport() *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Protocols:          &p,
		DialContext:        (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		IdleConnTimeout:    90 * time.Second,
		DisableCompression: true,
	}
}

// directBody is the caller's body on its way to the instance: it counts
// what was read (none read means the call can still go another way),
// notes a body over the limit, and copies a pollable call's body for its
// watch record. The transport reads it from its own goroutine.
type directBody struct {
	r      io.Reader
	length int64 // as the caller declared it, or -1
	keep   *bodyCopy
	read   atomic.Int64
	over   atomic.Bool
}

func (b *directBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.keep.add(p[:n])
	}
	read := b.read.Add(int64(n))
	var tooBig *http.MaxBytesError
	switch {
	case err == io.EOF, read == b.length:
		// The transport stops reading at the declared length.
		b.keep.complete()
	case errors.As(err, &tooBig):
		b.over.Store(true)
	}
	return n, err
}

// Close leaves the caller's body to the server, which closes it; the
// transport closes its request's body even when it fails before reading
// it, and the call may then still go over the bus.
func (b *directBody) Close() error { return nil }

type roundTrip struct {
	resp *http.Response
	err  error
}

// direct runs a call on lease l. It returns handled false, having read
// nothing of the body, when the instance could not be reached at all (it
// stopped, or restarted on another port): the call can then go over the
// bus as if no lease had been found.
func (g *Gateway) direct(w http.ResponseWriter, r *http.Request, l *lease, c directCall) (handled bool, err error) {
	reuse := false
	defer func() {
		if l != nil { // nil: a detached call took it over
			g.leases.put(l, reuse)
		}
	}()

	// The function's request ends when the caller goes, unless the call
	// was detached (answered 202); and with the gateway.
	ctx, cancel := context.WithCancel(g.ctx)
	var detached atomic.Bool
	defer func() {
		if !detached.Load() { // a detached call ends in the background
			cancel()
		}
	}()
	stop := context.AfterFunc(r.Context(), func() {
		if !detached.Load() {
			cancel()
		}
	})
	defer stop()

	db := &directBody{r: c.body, length: r.ContentLength, keep: c.fc.keeper()}
	req, err := http.NewRequestWithContext(ctx, c.method, l.Endpoint+c.path, db)
	if err != nil {
		return true, problem.BadRequest("the request cannot be forwarded: %v", err)
	}
	req.Header = make(http.Header, len(c.hdr)+len(l.where)+2)
	for k, vs := range c.hdr {
		if !strings.HasPrefix(k, "Gantry-") && !strings.HasPrefix(k, "Nats-") {
			req.Header[k] = vs
		}
	}
	for k, vs := range l.where {
		req.Header[k] = vs
	}
	if l.AssetDir != "" {
		req.Header.Set("NVCF-ASSET-DIR", filepath.Join(l.AssetDir, c.reqID))
	}
	if l.LargeOutputDir != "" {
		req.Header.Set("NVCF-LARGE-OUTPUT-DIR", filepath.Join(l.LargeOutputDir, c.reqID))
	}
	req.ContentLength = r.ContentLength
	if r.ContentLength == 0 {
		req.Body = http.NoBody
		c.fc.keeper().complete()
	}
	tr := g.instances
	if c.grpc {
		if !l.GRPC {
			return false, nil // not served here; the bus finds out why
		}
		// HTTP/2 without TLS, as gRPC servers speak it, and the te header
		// they require (dropped from the caller's as hop-by-hop); the
		// caller's messages stream for as long as it sends them.
		tr = g.h2c
		req.Header.Set("Te", "trailers")
		req.ContentLength = -1
	}

	done := make(chan roundTrip, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		done <- roundTrip{resp, err}
	}()
	wait := time.NewTimer(time.Until(c.deadline))
	defer wait.Stop()
	var rt roundTrip
	select {
	case rt = <-done:
	case <-wait.C:
		if !c.pollable {
			cancel()
			if rt = <-done; rt.resp != nil {
				rt.resp.Body.Close()
			}
			return true, &problem.Error{Status: http.StatusGatewayTimeout,
				Detail:  "the function did not start answering in time (NVCF-POLL-SECONDS, or the gateway's --host-call-limit); the call was cancelled",
				Headers: map[string]string{"NVCF-REQID": c.reqID, "NVCF-STATUS": statusErrored}}
		}
		// The poll window is over: the caller gets a 202, and the
		// answer is kept for its polls.
		select {
		case rt = <-done: // it came meanwhile: serve it after all
		default:
			detached.Store(true)
			g.detach(l, c, done, cancel)
			// The lease is the detached call's now; it puts it back.
			l = nil
			return true, g.deferResult(w, r.Context(), c.reqID, c.mark)
		}
	}
	if rt.err != nil {
		var op *net.OpError
		switch {
		case r.Context().Err() != nil:
			return true, r.Context().Err()
		case db.over.Load():
			return true, tooLarge(g.cfg.MaxRequestBody)
		case errors.As(rt.err, &op) && op.Op == "dial" && db.read.Load() == 0:
			return false, nil // nothing reached the function: try the bus
		}
		return true, &problem.Error{Status: http.StatusBadGateway,
			Detail:  "the function instance failed while handling the request: " + rt.err.Error(),
			Headers: map[string]string{"NVCF-REQID": c.reqID, "NVCF-STATUS": statusErrored}}
	}
	resp := rt.resp
	defer resp.Body.Close()
	if db.over.Load() {
		// The function answered a body that was cut: the caller hears why.
		return true, tooLarge(g.cfg.MaxRequestBody)
	}
	if c.grpc {
		// Once the function has answered, its stream is over, even while
		// the caller's messages still come (a unary caller's end can
		// trail the answer): the deferred cancel ends it.
		return true, g.relayDirectGRPC(w, r, resp, c.reqID)
	}
	ok, err := g.relayDirect(w, r, resp, c)
	reuse = ok
	return true, err
}

// directCall is what a direct call carries from invoke.
type directCall struct {
	method, path, reqID string
	hdr                 nats.Header
	body                io.Reader
	mark                bus.Result
	deadline            time.Time
	pollable            bool
	fc                  *fastCall
	grpc                bool
}

// relayDirect streams the instance's answer to the caller, flushing each
// read of a body of unknown length (server-sent events, chunked streams)
// so that it reaches the caller as written. It reports whether the answer
// came whole, so that the lease can serve the next call.
func (g *Gateway) relayDirect(w http.ResponseWriter, r *http.Request, resp *http.Response, c directCall) (bool, error) {
	h := w.Header()
	status := answerHeader(h, resp.Header, resp.StatusCode, c.reqID)
	g.traceStatus(r.Context(), status)
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(status)
	rc := http.NewResponseController(w)
	pb := directBufs.Get().(*[]byte)
	defer directBufs.Put(pb)
	// A body of known length is complete as it comes: the server flushes
	// it at the end. Any other (SSE, chunked) is flushed read by read.
	flushNow := func() bool { return resp.ContentLength < 0 }
	gone, err := copyBody(w, rc, resp.Body, *pb, flushNow)
	switch {
	case gone || (err != nil && r.Context().Err() != nil):
		return false, nil // the caller is gone; nothing left to tell it
	case err != nil:
		reason := "the gateway is shutting down; the answer is incomplete"
		if g.ctx.Err() == nil {
			reason = "the function's response broke off: " + err.Error()
			g.log.Warn("invoke: answer broke off mid-stream", "requestId", c.reqID, "err", err)
			g.storeFailure(c.reqID, c.mark.Account, http.StatusBadGateway, reason)
		}
		breakOff(w, rc, reason)
		return false, nil
	}
	for k, vs := range resp.Trailer {
		h[http.TrailerPrefix+k] = vs
	}
	return true, nil
}

// relayDirectGRPC streams a gRPC answer: its headers at once (a server may
// send them and wait for the caller, who may wait for them), each read of
// messages flushed, and its trailers; an answer that breaks off ends with
// status Unavailable. A trailers-only answer's status is in its headers.
func (g *Gateway) relayDirectGRPC(w http.ResponseWriter, r *http.Request, resp *http.Response, reqID string) error {
	h := w.Header()
	status := answerHeader(h, resp.Header, resp.StatusCode, reqID)
	w.WriteHeader(status)
	if resp.Header.Get("Grpc-Status") != "" {
		// Trailers-only (an error status, no message): it stays one
		// HEADERS frame, ending the stream, as it came.
		return nil
	}
	// The headers go with the first message, or alone once grpcHeadWait
	// passes without one: a server may send its headers and then wait for
	// the caller, who may wait for them.
	rc := http.NewResponseController(w)
	hw := &headWriter{ResponseWriter: w}
	t := time.AfterFunc(grpcHeadWait, func() { hw.flushAlone(rc) })
	defer func() {
		t.Stop()
		hw.flushAlone(nil) // a late timer must not touch w
	}()
	pb := directBufs.Get().(*[]byte)
	defer directBufs.Put(pb)
	gone, err := copyBody(hw, rc, resp.Body, *pb, nil)
	switch {
	case gone || (err != nil && r.Context().Err() != nil):
	case err != nil:
		g.log.Warn("invoke: gRPC answer broke off mid-stream", "requestId", reqID, "err", err)
		h[http.TrailerPrefix+"Grpc-Status"] = []string{strconv.Itoa(int(codes.Unavailable))}
		h[http.TrailerPrefix+"Grpc-Message"] = []string{grpcMessage("the function's answer broke off: " + err.Error())}
	default:
		for k, vs := range resp.Trailer {
			h[http.TrailerPrefix+k] = vs
		}
	}
	return nil
}

// grpcHeadWait is how long a gRPC answer's headers wait for its first
// message, to go out in one write with it.
const grpcHeadWait = time.Millisecond

// headWriter is a ResponseWriter whose headers a timer may flush alone
// until its first write.
type headWriter struct {
	http.ResponseWriter
	mu    sync.Mutex
	wrote bool // written to, or flushed: the timer has nothing to do
}

func (hw *headWriter) Write(p []byte) (int, error) {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	hw.wrote = true
	return hw.ResponseWriter.Write(p)
}

// flushAlone flushes the headers if nothing was written yet (rc nil: only
// marks the writer done).
func (hw *headWriter) flushAlone(rc *http.ResponseController) {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	if !hw.wrote && rc != nil {
		_ = rc.Flush()
	}
	hw.wrote = true
}

// detach hands a direct call whose poll window ended to the background: it
// is recorded for the watcher under an endpoint of this gateway that stays
// open while the call runs (so the watcher re-queues it if this gateway
// dies first), and its answer is stored for the caller's polls.
func (g *Gateway) detach(l *lease, c directCall, done <-chan roundTrip, cancel context.CancelFunc) {
	ep, err := g.mux.Open("d" + c.reqID)
	var watched uint64
	if err == nil && c.fc != nil {
		watched = g.watch(c.fc, ep.Addr())
	}
	g.detached.Add(1)
	go func() {
		defer g.detached.Done()
		defer cancel()
		reuse := false
		defer func() { g.leases.put(l, reuse) }()
		if ep != nil {
			defer ep.Close()
		}
		rt := <-done
		switch {
		case rt.err != nil && (watched != 0 || g.ctx.Err() != nil):
			// The instance failed (or this gateway is shutting down)
			// before answering: with the endpoint closed, the watcher
			// finds the call ended unanswered and runs it again from its
			// record, as it does for a worker that went away. Without a
			// record, only this gateway could have, and it is stopping.
			return
		case rt.err != nil:
			g.storeFailure(c.reqID, c.mark.Account, http.StatusBadGateway, "the function instance failed while handling the request: "+rt.err.Error())
		default:
			defer rt.resp.Body.Close()
			out := rt.resp.Header.Clone()
			out.Set(bus.HeaderStatus, strconv.Itoa(rt.resp.StatusCode))
			sctx, scancel := context.WithTimeout(g.ctx, time.Hour)
			err := bus.StoreAnswer(sctx, g.cfg.JS, c.reqID, c.mark.Account, out, rt.resp.Body)
			scancel()
			if err != nil {
				if g.ctx.Err() != nil {
					return
				}
				g.log.Error("invoke: could not store a detached call's answer", "requestId", c.reqID, "err", err)
				g.storeFailure(c.reqID, c.mark.Account, http.StatusBadGateway, "storing the function's response failed: "+err.Error())
			} else {
				reuse = true
			}
		}
		if watched != 0 {
			g.unwatch(watched)
		}
	}()
}

// storeFailure records why a call failed, for its status polls.
func (g *Gateway) storeFailure(reqID, account string, status int, detail string) {
	b, _ := json.Marshal(problem.Body{Type: problem.TypeURI(status), Title: http.StatusText(status), Status: status, Detail: detail})
	h := http.Header{}
	h.Set("Content-Type", problem.ContentType)
	h.Set(bus.HeaderError, "1")
	res := bus.Result{Account: account, Status: status, Header: h, Body: b}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.cfg.JS.Publish(ctx, bus.ResultSubject(reqID), res.Encode()); err != nil {
		g.log.Error("invoke: could not store a call's failure", "requestId", reqID, "err", err)
	}
}
