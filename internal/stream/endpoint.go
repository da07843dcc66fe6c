package stream

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Frame is one frame as Next returns it.
type Frame struct {
	Kind Kind
	// Header is a head frame's NATS headers.
	Header nats.Header
	// Data is a control frame's data (an accept's address, a fail's
	// reason). A stream frame's data is read through Body instead.
	Data []byte
}

// Endpoint is one side of one call. Reads (Next, Body) belong to one
// goroutine and writes (SendHead, Write, CloseWrite, Fail) to one goroutine;
// control (Send, Cancel, Close) may come from anywhere.
type Endpoint struct {
	m    *Mux
	id   string
	addr string

	lastHeard atomic.Int64 // unix nanoseconds of the last frame from the peer

	mu       sync.Mutex
	peer     string
	queue    []inbound
	err      error         // why reading and writing stopped
	done     chan struct{} // closed when err is set
	wake     chan struct{} // a frame was queued (or err set)
	credit   chan struct{} // the peer returned credit (or err set)
	recvSeq  uint64        // last stream frame received
	sendSeq  uint64        // last stream frame sent
	acked    uint64        // last of ours the peer consumed
	headSent bool
	detached bool
	ping     *time.Timer
	watch    *time.Timer

	// Reader state, owned by the reading goroutine.
	cur      []byte
	curSeq   uint64
	curEnd   bool
	credited uint64
	trailer  nats.Header // the end frame's headers, once it came
}

type inbound struct {
	kind Kind
	seq  uint64
	hdr  nats.Header
	data []byte
}

func newEndpoint(m *Mux, id string) *Endpoint {
	return &Endpoint{
		m: m, id: id, addr: m.Addr(id),
		done:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
		credit: make(chan struct{}, 1),
	}
}

// ID is the call's id on this side.
func (e *Endpoint) ID() string { return e.id }

// Addr is where the peer sends this endpoint's frames.
func (e *Endpoint) Addr() string { return e.addr }

// Done is closed when the endpoint stops: the peer canceled or went away, or
// this side closed it. Err says which.
func (e *Endpoint) Done() <-chan struct{} { return e.done }

// Err is why the endpoint stopped, or nil while it runs.
func (e *Endpoint) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// SetPeer names the peer's address and starts the keepalives: from now on
// both sides ping, and a peer silent for three intervals is gone.
func (e *Endpoint) SetPeer(addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.peer != "" || e.err != nil {
		e.peer = addr
		return
	}
	e.peer = addr
	e.lastHeard.Store(time.Now().UnixNano())
	k := e.m.opts.Keepalive
	e.ping = time.AfterFunc(k, e.sendPing)
	e.watch = time.AfterFunc(3*k, e.checkPeer)
}

// Peer is the peer's address, empty until SetPeer.
func (e *Endpoint) Peer() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.peer
}

func (e *Endpoint) sendPing() {
	e.mu.Lock()
	peer, stopped := e.peer, e.err != nil
	e.mu.Unlock()
	if stopped {
		return
	}
	_ = e.m.nc.Publish(peer, encode(KindPing, 0, nil))
	e.mu.Lock()
	if e.err == nil {
		e.ping.Reset(e.m.opts.Keepalive)
	}
	e.mu.Unlock()
}

func (e *Endpoint) checkPeer() {
	limit := 3 * e.m.opts.Keepalive
	silent := time.Since(time.Unix(0, e.lastHeard.Load()))
	if silent >= limit {
		e.shut(ErrPeerGone)
		return
	}
	e.mu.Lock()
	if e.err == nil {
		e.watch.Reset(limit - silent)
	}
	e.mu.Unlock()
}

// shut stops the endpoint with err (the first reason wins) and wakes every
// waiter.
func (e *Endpoint) shut(err error) {
	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		return
	}
	e.err = err
	if e.ping != nil {
		e.ping.Stop()
		e.watch.Stop()
	}
	close(e.done)
	e.mu.Unlock()
	signal(e.wake)
	signal(e.credit)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Close ends this side of the call and frees its id. Frames still coming
// are dropped.
func (e *Endpoint) Close() {
	e.shut(ErrClosed)
	e.m.remove(e, false)
}

// Abandon closes the endpoint and remembers the call as abandoned for a
// while: a late accept for it is answered with cancel, so a worker that
// takes it from the queue after its caller left drops it.
func (e *Endpoint) Abandon() {
	e.shut(ErrClosed)
	e.m.remove(e, true)
}

// Cancel tells the peer to stop and closes this side.
func (e *Endpoint) Cancel() {
	if peer := e.Peer(); peer != "" && e.Err() == nil {
		_ = e.m.nc.Publish(peer, encode(KindCancel, 0, nil))
	}
	e.Close()
}

// deliver takes one frame off the wire; it runs on the mux's goroutine and
// never blocks.
func (e *Endpoint) deliver(msg *nats.Msg) {
	if len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
		e.push(inbound{kind: kindNoResponders})
		return
	}
	k, seq, data, err := decode(msg.Data)
	if err != nil {
		e.shut(err)
		return
	}
	e.lastHeard.Store(time.Now().UnixNano())
	switch k {
	case KindPing:
		return
	case KindProbe:
		if msg.Reply != "" {
			// Asked: still here. (Without a reply subject it is the answer
			// to this endpoint's own probe, read by Next.)
			_ = e.m.nc.Publish(msg.Reply, encode(KindProbe, 0, nil))
			return
		}
	case KindCredit:
		e.mu.Lock()
		if seq > e.acked {
			e.acked = seq
		}
		e.mu.Unlock()
		signal(e.credit)
		return
	case KindCancel:
		e.shut(ErrCanceled)
		return
	case KindDetach:
		// Detaching is decided here, atomically with sending the head: the
		// peer sees either our head or our "detached", never both.
		e.mu.Lock()
		ok := !e.headSent && !e.detached && e.err == nil
		if ok {
			e.detached = true
		}
		peer := e.peer
		e.mu.Unlock()
		if ok && peer != "" {
			_ = e.m.nc.Publish(peer, encode(KindDetached, 0, nil))
		}
		return
	}
	if k.stream() {
		e.mu.Lock()
		want := e.recvSeq + 1
		if seq == want {
			e.recvSeq = seq
		}
		e.mu.Unlock()
		if seq != want {
			e.shut(&ProtocolError{Detail: fmt.Sprintf("frame %d arrived where %d was due; frames were lost", seq, want)})
			return
		}
	}
	e.push(inbound{kind: k, seq: seq, hdr: msg.Header, data: data})
}

func (e *Endpoint) push(f inbound) {
	e.mu.Lock()
	if e.err == nil {
		e.queue = append(e.queue, f)
	}
	e.mu.Unlock()
	signal(e.wake)
}

// next pops the next frame, waiting for one. Frames that arrived before the
// endpoint stopped are still returned; then its error is.
func (e *Endpoint) next(ctx context.Context) (inbound, error) {
	for {
		e.mu.Lock()
		if len(e.queue) > 0 {
			f := e.queue[0]
			e.queue[0] = inbound{}
			e.queue = e.queue[1:]
			e.mu.Unlock()
			return f, nil
		}
		err := e.err
		e.mu.Unlock()
		if err != nil {
			return inbound{}, err
		}
		select {
		case <-e.wake:
		case <-ctx.Done():
			return inbound{}, ctx.Err()
		}
	}
}

// Next returns the next frame from the peer: control frames, or the first
// stream frame, whose data Body then reads. A fail frame is returned as a
// RemoteError, the no-responders status as ErrNoResponders.
func (e *Endpoint) Next(ctx context.Context) (Frame, error) {
	f, err := e.next(ctx)
	if err != nil {
		return Frame{}, err
	}
	switch {
	case f.kind == kindNoResponders:
		return Frame{}, ErrNoResponders
	case f.kind == KindFail:
		return Frame{}, &RemoteError{Reason: string(f.data)}
	case f.kind.stream():
		e.cur, e.curSeq, e.curEnd = f.data, f.seq, f.kind == KindEnd || f.kind == KindHeadEnd
		if f.kind == KindEnd {
			e.trailer = f.hdr
		}
		return Frame{Kind: f.kind, Header: f.hdr}, nil
	}
	return Frame{Kind: f.kind, Header: f.hdr, Data: f.data}, nil
}

// Whole returns the peer's whole body when the frame Next returned holds
// all of it (a small body is one frame), taking it from the stream, so the
// caller can hand on a byte slice instead of a reader: net/http sends an
// in-memory body with its headers in one write, and any other body after
// them. ok is false when more frames follow; then read Body.
func (e *Endpoint) Whole() (b []byte, ok bool) {
	if !e.curEnd {
		return nil, false
	}
	b, e.cur = e.cur, nil
	return b, true
}

// Ready reports whether the next Body read returns without waiting: bytes
// of the current frame are left, the stream has ended, or the peer's next
// stream frame is already in. A relay that flushes what it wrote only when
// nothing is ready writes an answer that came in several frames at once in
// one go. Like Body, it belongs to the reading goroutine.
func (e *Endpoint) Ready() bool {
	if len(e.cur) > 0 || e.curEnd {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return true
	}
	for _, f := range e.queue {
		if f.kind.stream() || f.kind == KindDetached || f.kind == kindNoResponders {
			return true
		}
	}
	return false
}

// Body reads the peer's stream from where Next left it: the data of the
// frame Next returned, then every data frame up to the end. It returns
// io.EOF at a clean end and the reason otherwise.
func (e *Endpoint) Body() io.Reader { return bodyReader{e} }

type bodyReader struct{ e *Endpoint }

func (b bodyReader) Read(p []byte) (int, error) { return b.e.read(p) }

func (e *Endpoint) read(p []byte) (int, error) {
	for len(e.cur) == 0 {
		if e.curEnd {
			return 0, io.EOF
		}
		e.consumed()
		f, err := e.next(context.Background())
		if err != nil {
			return 0, err
		}
		switch f.kind {
		case KindData, KindEnd:
			e.cur, e.curSeq, e.curEnd = f.data, f.seq, f.kind == KindEnd
			if f.kind == KindEnd {
				e.trailer = f.hdr
			}
		case KindFail:
			return 0, &RemoteError{Reason: string(f.data)}
		case KindDetached:
			return 0, ErrDetached
		case kindNoResponders:
			return 0, ErrNoResponders
		case KindHead, KindHeadEnd:
			return 0, &ProtocolError{Detail: "a second head in one stream"}
		default:
			// Control that means nothing mid-stream (a late go or accept).
		}
	}
	n := copy(p, e.cur)
	e.cur = e.cur[n:]
	return n, nil
}

// consumed marks the current frame read and returns credit every half
// window, so the peer's sender never stalls on a reader that keeps up.
func (e *Endpoint) consumed() {
	if e.curSeq == 0 {
		return
	}
	seq := e.curSeq
	e.curSeq = 0
	if seq-e.credited < uint64(max(1, e.m.opts.Window/2)) {
		return
	}
	e.credited = seq
	if peer := e.Peer(); peer != "" {
		_ = e.m.nc.Publish(peer, encode(KindCredit, seq, nil))
	}
}

// Send sends a control frame to the peer.
func (e *Endpoint) Send(k Kind, data []byte) error {
	peer := e.Peer()
	if peer == "" {
		return fmt.Errorf("stream: call %s has no peer yet", e.id)
	}
	return e.SendTo(peer, k, data)
}

// SendTo sends a control frame to addr, with this endpoint as the reply
// subject so that a mux without the call can answer it.
func (e *Endpoint) SendTo(addr string, k Kind, data []byte) error {
	return e.m.nc.PublishMsg(&nats.Msg{Subject: addr, Reply: e.addr, Data: encode(k, 0, data)})
}

// Offer publishes the head of a call to subject (a work subject served by a
// queue group) with this endpoint as the reply: the one subscriber that gets
// it answers accept or busy, or NATS answers no-responders.
func (e *Endpoint) Offer(subject string, hdr nats.Header) error {
	return e.m.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: e.addr, Header: hdr, Data: encode(KindHead, 0, nil)})
}

// sendStream sends one numbered frame once the window has room.
func (e *Endpoint) sendStream(k Kind, hdr nats.Header, data []byte) error {
	window := uint64(e.m.opts.Window)
	e.mu.Lock()
	for e.err == nil && e.sendSeq-e.acked >= window {
		e.mu.Unlock()
		<-e.credit
		e.mu.Lock()
	}
	if e.err != nil {
		err := e.err
		e.mu.Unlock()
		return err
	}
	if k == KindHead || k == KindHeadEnd {
		if e.detached {
			e.mu.Unlock()
			return ErrDetached
		}
		e.headSent = true
	}
	if e.peer == "" {
		e.mu.Unlock()
		return fmt.Errorf("stream: call %s has no peer yet", e.id)
	}
	e.sendSeq++
	seq, peer := e.sendSeq, e.peer
	e.mu.Unlock()
	msg := &nats.Msg{Subject: peer, Header: hdr, Data: encode(k, seq, data)}
	if err := e.m.nc.PublishMsg(msg); err != nil {
		e.shut(err)
		return err
	}
	return nil
}

// Detached reports whether the peer asked this side to keep the result
// before any head was sent.
func (e *Endpoint) Detached() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.detached
}

// SendHead sends the head of this side's stream with its first data; end
// says the data is the whole body. It fails with ErrDetached when the peer
// detached first.
func (e *Endpoint) SendHead(hdr nats.Header, data []byte, end bool) error {
	k := KindHead
	if end {
		k = KindHeadEnd
	}
	return e.sendStream(k, hdr, data)
}

// Write sends p as data frames of at most the chunk size, each as soon as
// the window allows, so a reader sees every write as it happens.
func (e *Endpoint) Write(p []byte) (int, error) {
	size := e.m.opts.ChunkSize
	n := 0
	for n < len(p) {
		c := p[n:min(len(p), n+size)]
		if err := e.sendStream(KindData, nil, c); err != nil {
			return n, err
		}
		n += len(c)
	}
	return n, nil
}

// CloseWrite ends this side's stream cleanly.
func (e *Endpoint) CloseWrite() error { return e.sendStream(KindEnd, nil, nil) }

// CloseWriteTrailer ends this side's stream cleanly with trailers: headers
// that exist only once the body is complete, such as a gRPC answer's
// grpc-status. The peer reads them with Trailer.
func (e *Endpoint) CloseWriteTrailer(trailer nats.Header) error {
	return e.sendStream(KindEnd, trailer, nil)
}

// Trailer is what the peer's CloseWriteTrailer sent, once Body has returned
// io.EOF; nil before, and for a stream that ended without trailers. Like
// Body, it belongs to the reading goroutine.
func (e *Endpoint) Trailer() nats.Header {
	if !e.curEnd || len(e.cur) > 0 {
		return nil
	}
	return e.trailer
}

// WriteLast writes p and ends the stream: one frame when p fits a chunk,
// as a small body does.
func (e *Endpoint) WriteLast(p []byte) error {
	size := e.m.opts.ChunkSize
	for len(p) > size {
		if err := e.sendStream(KindData, nil, p[:size]); err != nil {
			return err
		}
		p = p[size:]
	}
	return e.sendStream(KindEnd, nil, p)
}

// Fail ends this side's stream with a reason the peer reads as a
// RemoteError.
func (e *Endpoint) Fail(reason string) error { return e.sendStream(KindFail, nil, []byte(reason)) }
