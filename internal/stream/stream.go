// Package stream carries the bodies of one call between two NATS
// connections — the gateway and the worker — as ordered, flow-controlled
// sequences of frames, and carries the control that belongs to a call: the
// hand-off (accept, go, busy), cancellation, keepalives and detaching.
//
// Each side owns a Mux: one wildcard subscription under a prefix of its own
// (prefix.<call id>) that routes every frame to the Endpoint of its call, so
// a call costs no subscription of its own. An Endpoint is one side of one
// call: it reads the frames its peer sends (ReadHead, Body) and writes its
// own (SendHead, Writer). Frames sent from one connection to one subject
// arrive in order (NATS keeps per-publisher order), and every stream frame is
// numbered so that a frame lost to a slow consumer or a reconnect ends the
// stream with an error rather than corrupting it.
//
// Flow control is by credit: a sender has at most Window stream frames that
// its peer has not consumed; the reader returns credit as it consumes, so a
// slow reader slows its writer and nothing buffers without bound. Each side
// pings its peer every Keepalive while a call is open and declares the peer
// gone after three silent intervals, so a process that dies mid-call ends
// the call on the other side instead of hanging it.
//
// The wire format of a frame is its NATS payload: one kind byte, an 8-byte
// big-endian sequence number, then data. A head frame's HTTP-level fields
// travel as NATS headers, and so do an end frame's trailers (a gRPC
// answer's grpc-status, which exists only once its body is complete).
package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Kind is the first byte of a frame.
type Kind byte

// Frame kinds. Stream frames (head, data, end, fail) are numbered from 1 and
// count against the window; the rest are control and are not numbered.
const (
	KindHead    Kind = 'h' // headers (NATS headers), maybe the first data
	KindHeadEnd Kind = 'H' // headers and the whole body: a one-frame answer
	KindData    Kind = 'd' // body bytes
	KindEnd     Kind = 'e' // the body ends, maybe with its last bytes
	KindFail    Kind = 'x' // the stream ends in an error; data is the reason

	KindCredit   Kind = 'c' // seq is the last stream frame consumed
	KindCancel   Kind = 'k' // stop: the peer gave up on the call
	KindPing     Kind = 'p' // keepalive, nothing else
	KindAccept   Kind = 'a' // I take the call; data is my endpoint's address
	KindBusy     Kind = 'b' // I cannot take the call
	KindGo       Kind = 'g' // start: the call is yours
	KindUnknown  Kind = 'u' // no such call here (any more)
	KindDetach   Kind = 'D' // keep the result yourself; I stop listening
	KindDetached Kind = 'O' // detached: the result will be stored, not sent
	KindProbe    Kind = 'q' // is this call still here? (answered probe: yes, or unknown)

	// kindNoResponders is not sent by anyone: NATS answers a message with a
	// reply subject that has no subscriber with a 503 status message.
	kindNoResponders Kind = 0
)

// stream reports whether frames of kind k are numbered and flow-controlled.
func (k Kind) stream() bool {
	return k == KindHead || k == KindHeadEnd || k == KindData || k == KindEnd || k == KindFail
}

func (k Kind) String() string {
	switch k {
	case kindNoResponders:
		return "no-responders"
	case KindHead:
		return "head"
	case KindHeadEnd:
		return "head+end"
	case KindData:
		return "data"
	case KindEnd:
		return "end"
	case KindFail:
		return "fail"
	case KindCredit:
		return "credit"
	case KindCancel:
		return "cancel"
	case KindPing:
		return "ping"
	case KindAccept:
		return "accept"
	case KindBusy:
		return "busy"
	case KindGo:
		return "go"
	case KindUnknown:
		return "unknown"
	case KindDetach:
		return "detach"
	case KindDetached:
		return "detached"
	case KindProbe:
		return "probe"
	}
	return fmt.Sprintf("kind(%q)", byte(k))
}

// frameHeader is the size of a frame's kind and sequence number.
const frameHeader = 9

// Defaults for Options.
const (
	DefaultChunkSize = 128 << 10
	DefaultWindow    = 16
	DefaultKeepalive = 5 * time.Second
)

// Options tune a Mux. Zero values take the defaults.
type Options struct {
	// ChunkSize is the most body bytes one frame carries.
	ChunkSize int
	// Window is how many stream frames a sender may have unconsumed.
	Window int
	// Keepalive is how often an open endpoint pings its peer; a peer silent
	// for three intervals is gone.
	Keepalive time.Duration
}

func (o *Options) defaults() {
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Keepalive <= 0 {
		o.Keepalive = DefaultKeepalive
	}
}

// Errors an endpoint's reads and writes end with.
var (
	// ErrCanceled: the peer sent cancel.
	ErrCanceled = errors.New("stream: canceled by the peer")
	// ErrPeerGone: the peer was silent for three keepalive intervals.
	ErrPeerGone = errors.New("stream: the peer stopped answering")
	// ErrClosed: this side closed the endpoint or its mux.
	ErrClosed = errors.New("stream: closed")
	// ErrDetached: the peer detached (reads) or this side was asked to
	// (writes), so the result goes to storage instead of this stream.
	ErrDetached = errors.New("stream: detached")
	// ErrNoResponders: nobody is subscribed where a frame was sent.
	ErrNoResponders = errors.New("stream: no responders")
)

// RemoteError is a fail frame's reason, as the peer sent it.
type RemoteError struct{ Reason string }

func (e *RemoteError) Error() string { return "stream: the peer failed: " + e.Reason }

// ProtocolError is a frame that breaks the protocol: a gap in the sequence,
// a kind out of place, or more frames than the window allows.
type ProtocolError struct{ Detail string }

func (e *ProtocolError) Error() string { return "stream: protocol error: " + e.Detail }

// encode builds a frame payload with room for n data bytes after the header.
func encode(k Kind, seq uint64, data []byte) []byte {
	b := make([]byte, frameHeader+len(data))
	b[0] = byte(k)
	binary.BigEndian.PutUint64(b[1:frameHeader], seq)
	copy(b[frameHeader:], data)
	return b
}

// decode splits a frame payload. A payload too short to be a frame is an
// error; callers drop it.
func decode(b []byte) (Kind, uint64, []byte, error) {
	if len(b) < frameHeader {
		return 0, 0, nil, &ProtocolError{Detail: fmt.Sprintf("a frame of %d bytes is shorter than its %d-byte header", len(b), frameHeader)}
	}
	return Kind(b[0]), binary.BigEndian.Uint64(b[1:frameHeader]), b[frameHeader:], nil
}
