package invoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
)

// Lease timing (docs/architecture.md, "Direct calls"). A gateway renews the
// leases it holds every leaseRenew (the worker reclaims one not renewed
// for 2 s), gives back a lease nobody used for leaseIdle, and after a
// version's workers had no slot to lend waits noLenders before it asks
// again, so that a version with none costs one ask per period, not per
// call.
const (
	leaseRenew = 250 * time.Millisecond
	leaseIdle  = time.Second
	leaseAsk   = time.Second
	noLenders  = 100 * time.Millisecond
)

// lease is a worker slot this gateway holds: while it does, it may call the
// instance directly, one call at a time.
type lease struct {
	bus.LeaseGrant
	version string
	// where is the grant's Header, ready to add to a request.
	where http.Header
	// Guarded by leases.mu.
	used    time.Time // when its last call ended
	inUse   bool
	revoked bool // the worker wants it back once its call ends
	lost    bool // the worker forgot it, or is gone: never give it back
}

// leases holds this gateway's leases, per function version.
type leases struct {
	nc  *nats.Conn
	log *slog.Logger
	// Asks and renewals are answered on replies under prefix, the one
	// reply space agents may publish to (bus.ReplyPrefix).
	prefix  string
	sub     *nats.Subscription
	seq     atomic.Uint64
	waitMu  sync.Mutex
	waiting map[string]chan *nats.Msg

	mu     sync.Mutex
	idle   map[string][]*lease          // version -> leases no call uses, last used last
	held   map[string]map[string]*lease // worker control subject -> id -> lease
	none   map[string]time.Time         // version -> no ask before then
	closed bool

	done chan struct{}
	wg   sync.WaitGroup
}

func newLeases(nc *nats.Conn, gatewayID string, log *slog.Logger) (*leases, error) {
	ls := &leases{nc: nc, log: log, prefix: bus.ReplyPrefix(gatewayID + "-leases"), waiting: map[string]chan *nats.Msg{},
		idle: map[string][]*lease{}, held: map[string]map[string]*lease{}, none: map[string]time.Time{}, done: make(chan struct{})}
	sub, err := nc.Subscribe(ls.prefix+"*", ls.answer)
	if err != nil {
		return nil, fmt.Errorf("invoke: lease replies: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	ls.sub = sub
	ls.wg.Add(1)
	go ls.renewLoop()
	return ls, nil
}

// request sends data to subject and waits for one answer, as nc.Request
// does, but on a reply subject agents may answer on.
func (ls *leases) request(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	reply := ls.prefix + strconv.FormatUint(ls.seq.Add(1), 36)
	ch := make(chan *nats.Msg, 1)
	ls.waitMu.Lock()
	ls.waiting[reply] = ch
	ls.waitMu.Unlock()
	defer func() {
		ls.waitMu.Lock()
		delete(ls.waiting, reply)
		ls.waitMu.Unlock()
	}()
	if err := ls.nc.PublishRequest(subject, reply, data); err != nil {
		return nil, err
	}
	select {
	case msg := <-ch:
		if len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		return msg, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// answer routes a reply to its request, and takes a worker's revocation.
func (ls *leases) answer(msg *nats.Msg) {
	if msg.Subject == ls.prefix+"revoke" {
		var drop bus.LeaseDrop
		if json.Unmarshal(msg.Data, &drop) == nil && drop.Control != "" {
			ls.mu.Lock()
			ls.dropped(drop.Control, drop)
			ls.mu.Unlock()
		}
		return
	}
	ls.waitMu.Lock()
	ch := ls.waiting[msg.Subject]
	ls.waitMu.Unlock()
	if ch != nil {
		select {
		case ch <- msg:
		default:
		}
	}
}

// take returns a lease for a call to version f, or nil when no worker lends
// one: an idle lease of this gateway's, else a fresh one asked for.
func (ls *leases) take(ctx context.Context, f model.Function) *lease {
	v := f.VersionID
	ls.mu.Lock()
	if q := ls.idle[v]; len(q) > 0 {
		l := q[len(q)-1]
		ls.idle[v] = q[:len(q)-1]
		l.inUse = true
		ls.mu.Unlock()
		return l
	}
	if ls.closed || time.Now().Before(ls.none[v]) {
		ls.mu.Unlock()
		return nil
	}
	ls.mu.Unlock()

	actx, cancel := context.WithTimeout(ctx, leaseAsk)
	msg, err := ls.request(actx, bus.LeaseSubject(f.ID, v), nil)
	cancel()
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			// No worker with a free slot listens: ask again a little
			// later, not on every call.
			ls.mu.Lock()
			ls.none[v] = time.Now().Add(noLenders)
			ls.mu.Unlock()
		}
		return nil
	}
	if len(msg.Data) == 0 {
		return nil // that worker's slots went meanwhile
	}
	l := &lease{version: v, inUse: true}
	if err := json.Unmarshal(msg.Data, &l.LeaseGrant); err != nil || l.ID == "" || l.Control == "" || !httpURL(l.Endpoint) {
		ls.log.Warn("invoke: a worker answered a lease ask with a grant that cannot be used", "function", f.ID, "version", v)
		return nil
	}
	l.where = make(http.Header, len(l.Header))
	for k, v := range l.Header {
		l.where.Set(k, v)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closed {
		ls.send(l.Control, bus.LeaseControl{Release: []string{l.ID}})
		return nil
	}
	m := ls.held[l.Control]
	if m == nil {
		m = map[string]*lease{}
		ls.held[l.Control] = m
	}
	m[l.ID] = l
	delete(ls.none, v)
	return l
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "http" && u.Host != ""
}

// put ends a call on l. A lease whose call went wrong (reuse false), or that
// the worker wants back, is given back; else it waits idle for the next
// call.
func (ls *leases) put(l *lease, reuse bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l.inUse = false
	if !reuse || l.revoked || l.lost || ls.closed {
		ls.forget(l)
		if !l.lost {
			ls.send(l.Control, bus.LeaseControl{Release: []string{l.ID}})
		}
		return
	}
	l.used = time.Now()
	ls.idle[l.version] = append(ls.idle[l.version], l)
}

// forget drops l from the books; ls.mu is held.
func (ls *leases) forget(l *lease) {
	if m := ls.held[l.Control]; m != nil {
		delete(m, l.ID)
		if len(m) == 0 {
			delete(ls.held, l.Control)
		}
	}
	q := ls.idle[l.version]
	for i, x := range q {
		if x == l {
			ls.idle[l.version] = append(q[:i], q[i+1:]...)
			break
		}
	}
	if len(ls.idle[l.version]) == 0 {
		delete(ls.idle, l.version)
	}
}

// send publishes a control message to a worker; ls.mu may be held (a
// publish does not block on the server).
func (ls *leases) send(control string, c bus.LeaseControl) {
	b, _ := json.Marshal(c) // strings always encode
	_ = ls.nc.Publish(control, b)
}

func (ls *leases) renewLoop() {
	defer ls.wg.Done()
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		select {
		case <-ls.done:
			return
		case <-t.C:
			ls.renew()
		}
	}
}

// renew gives back leases idle for leaseIdle and renews the others, one
// request per worker; what a worker answers, or its silence, tells which
// leases are lost or wanted back.
func (ls *leases) renew() {
	now := time.Now()
	renew := map[string][]string{}
	ls.mu.Lock()
	for control, m := range ls.held {
		var back []string
		for id, l := range m {
			if !l.inUse && now.Sub(l.used) > leaseIdle {
				ls.forget(l)
				back = append(back, id)
				continue
			}
			renew[control] = append(renew[control], id)
		}
		if len(back) > 0 {
			ls.send(control, bus.LeaseControl{Release: back})
		}
	}
	ls.mu.Unlock()
	var wg sync.WaitGroup
	for control, ids := range renew {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ls.renewAt(control, ids)
		}()
	}
	wg.Wait()
}

func (ls *leases) renewAt(control string, ids []string) {
	b, _ := json.Marshal(bus.LeaseControl{Renew: ids})
	var drop bus.LeaseDrop
	ctx, cancel := context.WithTimeout(context.Background(), leaseAsk)
	msg, err := ls.request(ctx, control, b)
	cancel()
	if err == nil {
		err = json.Unmarshal(msg.Data, &drop)
	}
	if err != nil {
		// The worker is gone (its instance stopped, or its agent
		// restarted): none of its leases holds.
		drop.Unknown = ids
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.dropped(control, drop)
}

// dropped applies what a worker said of its leases; ls.mu is held.
func (ls *leases) dropped(control string, drop bus.LeaseDrop) {
	m := ls.held[control]
	for _, id := range drop.Unknown {
		if l := m[id]; l != nil {
			l.lost = true
			ls.forget(l)
		}
	}
	for _, id := range drop.Revoked {
		l := m[id]
		if l == nil {
			continue
		}
		l.revoked = true
		if !l.inUse {
			ls.forget(l)
			ls.send(control, bus.LeaseControl{Release: []string{id}})
		}
	}
}

// close gives back every idle lease; those in use go back as their calls
// end.
func (ls *leases) close() {
	ls.mu.Lock()
	if ls.closed {
		ls.mu.Unlock()
		return
	}
	ls.closed = true
	for control, m := range ls.held {
		var back []string
		for id, l := range m {
			if !l.inUse {
				ls.forget(l)
				back = append(back, id)
			}
		}
		if len(back) > 0 {
			ls.send(control, bus.LeaseControl{Release: back})
		}
	}
	ls.mu.Unlock()
	close(ls.done)
	ls.wg.Wait()
	_ = ls.sub.Unsubscribe()
}
