package stream

import (
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// goneTTL is how long a mux remembers an abandoned call, answering a late
// accept for it with cancel rather than unknown. It outlasts the work
// queue's ack wait, after which a late accept cannot come.
const goneTTL = 2 * time.Minute

// Mux routes the frames sent to prefix.<id> to the endpoint of call id.
type Mux struct {
	nc     *nats.Conn
	prefix string
	opts   Options
	sub    *nats.Subscription

	mu     sync.RWMutex
	ends   map[string]*Endpoint
	gone   map[string]time.Time // abandoned call -> when to forget it
	sweep  time.Time            // next time gone is swept
	closed bool

	// bufs recycles the ChunkSize buffers bodies are copied through: a
	// call allocating its own would cost the GC 100s of KiB per call.
	bufs sync.Pool
}

// NewMux subscribes to prefix.* on nc. Every id a caller opens must be a
// single subject token.
func NewMux(nc *nats.Conn, prefix string, opts Options) (*Mux, error) {
	opts.defaults()
	m := &Mux{nc: nc, prefix: prefix, opts: opts, ends: map[string]*Endpoint{}, gone: map[string]time.Time{}}
	m.bufs.New = func() any {
		b := make([]byte, opts.ChunkSize)
		return &b
	}
	sub, err := nc.Subscribe(prefix+".*", m.dispatch)
	if err != nil {
		return nil, fmt.Errorf("stream: subscribe %s.*: %w", prefix, err)
	}
	// Flow control bounds what each call can have in flight; the mux itself
	// must never drop a frame, or a stream breaks.
	_ = sub.SetPendingLimits(-1, -1)
	m.sub = sub
	return m, nil
}

// Buffer lends a ChunkSize buffer for copying a body into frames (frames
// copy what they send, so it can be reused at once); give it back with
// Recycle.
func (m *Mux) Buffer() *[]byte { return m.bufs.Get().(*[]byte) }

// Recycle takes back a buffer from Buffer.
func (m *Mux) Recycle(b *[]byte) { m.bufs.Put(b) }

// Options returns the mux's effective options.
func (m *Mux) Options() Options { return m.opts }

// Addr is the subject frames for call id are sent to.
func (m *Mux) Addr(id string) string { return m.prefix + "." + id }

// Open starts this side of call id.
func (m *Mux) Open(id string) (*Endpoint, error) {
	e := newEndpoint(m, id)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if _, ok := m.ends[id]; ok {
		return nil, fmt.Errorf("stream: call %s is already open", id)
	}
	m.ends[id] = e
	return e, nil
}

// Len is the number of open endpoints.
func (m *Mux) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.ends)
}

// Each calls fn for every open endpoint.
func (m *Mux) Each(fn func(*Endpoint)) {
	m.mu.RLock()
	ends := make([]*Endpoint, 0, len(m.ends))
	for _, e := range m.ends {
		ends = append(ends, e)
	}
	m.mu.RUnlock()
	for _, e := range ends {
		fn(e)
	}
}

// Close unsubscribes and ends every open endpoint with ErrClosed, telling
// each one's peer to stop (cancel), so that the other side of a call under
// way ends it at once rather than when its keepalives run out.
func (m *Mux) Close() error {
	m.mu.Lock()
	m.closed = true
	ends := m.ends
	m.ends = map[string]*Endpoint{}
	m.mu.Unlock()
	for _, e := range ends {
		if peer := e.Peer(); peer != "" && e.Err() == nil {
			_ = m.nc.Publish(peer, encode(KindCancel, 0, nil))
		}
		e.shut(ErrClosed)
	}
	return m.sub.Unsubscribe()
}

func (m *Mux) remove(e *Endpoint, abandoned bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ends[e.id] == e {
		delete(m.ends, e.id)
	}
	if !abandoned {
		return
	}
	now := time.Now()
	m.gone[e.id] = now.Add(goneTTL)
	if now.After(m.sweep) {
		for id, until := range m.gone {
			if now.After(until) {
				delete(m.gone, id)
			}
		}
		m.sweep = now.Add(goneTTL / 4)
	}
}

// dispatch runs on the subscription's goroutine for every frame; it never
// blocks, so one slow call cannot stall the others.
func (m *Mux) dispatch(msg *nats.Msg) {
	id := msg.Subject[len(m.prefix)+1:]
	m.mu.RLock()
	e := m.ends[id]
	_, abandoned := m.gone[id]
	m.mu.RUnlock()
	if e != nil {
		e.deliver(msg)
		return
	}
	// A frame for a call this side does not have. Only an accept or a probe
	// waits for an answer: tell its sender to stop (the caller left) or
	// that the call is unknown here (it was answered 202, it ended, or this
	// process restarted).
	if msg.Reply == "" || len(msg.Data) < frameHeader {
		return
	}
	k := Kind(msg.Data[0])
	if k != KindAccept && k != KindProbe {
		return
	}
	answer := KindUnknown
	if abandoned && k == KindAccept {
		answer = KindCancel
	}
	_ = m.nc.Publish(msg.Reply, encode(answer, 0, nil))
}
