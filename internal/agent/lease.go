package agent

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/bus"
)

// Slot leases (docs/architecture.md, "Direct calls"). When the gateways can
// reach an instance's endpoint, a worker lends its free slots to them: a
// gateway holding a lease calls the instance itself, over HTTP, for as
// many calls in a row as it likes, one at a time, with no message on the
// bus per call. The worker counts a leased slot as taken until the
// gateway gives it back or stops renewing it (leaseTTL), so the instance
// never sees more calls at once than its slots, except for the one case
// documented there: a worker that restarted while its gateways kept their
// leases.
const (
	// leaseTTL is how long a lease lasts without a renewal; gateways renew
	// every invoke.leaseRenew (250 ms).
	leaseTTL = 2 * time.Second
	// leaseSweep is how often expired leases are reclaimed.
	leaseSweep = 500 * time.Millisecond
)

// slotLease is a slot lent to a gateway.
type slotLease struct {
	renewed time.Time
	revoked bool
	holder  string // the gateway's LeaseRevokeSubject
}

// lender lends a worker's free slots; its state is guarded by the worker's
// mu, as the slot count it shares.
type lender struct {
	w     *worker
	grant bus.LeaseGrant // the answer to an ask, but for its id
	asks  *nats.Subscription
	ctl   *nats.Subscription
	// leases and changed are guarded by w.mu; changed is closed and
	// replaced whenever a lease ends, for stop to wait on.
	leases  map[string]*slotLease
	changed chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

// startLender subscribes the worker's control subject; it listens for asks
// only while a slot is free (listen/deafen).
func startLender(w *worker) (*lender, error) {
	l := &lender{w: w, leases: map[string]*slotLease{}, changed: make(chan struct{}), done: make(chan struct{})}
	control := w.nc.NewInbox()
	l.grant = bus.LeaseGrant{Control: control, Endpoint: w.endpoint,
		Header: map[string]string{"NVCF-BACKEND": w.inst.Backend, "NVCF-INSTANCETYPE": w.inst.InstanceType,
			"NVCF-REGION": w.inst.Region, "NVCF-ENV": runtime.NVCFEnvironment},
		AssetDir: w.assetDir, LargeOutputDir: w.largeOutputDir, GRPC: w.inst.ServesGRPC()}
	sub, err := w.nc.Subscribe(control, l.onControl)
	if err != nil {
		return nil, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	l.ctl = sub
	l.wg.Add(1)
	go l.sweep()
	return l, nil
}

// listen subscribes to the version's lease asks; w.mu is held.
func (l *lender) listen() error {
	if l.asks != nil {
		return nil
	}
	sub, err := l.w.nc.QueueSubscribe(bus.LeaseSubject(l.w.inst.FunctionID, l.w.inst.FunctionVersionID), "workers", l.onAsk)
	if err != nil {
		return err
	}
	_ = sub.SetPendingLimits(-1, -1)
	l.asks = sub
	return nil
}

// deafen stops answering asks; w.mu is held.
func (l *lender) deafen() {
	if l.asks != nil {
		_ = l.asks.Unsubscribe()
		l.asks = nil
	}
}

// onAsk lends a free slot, or answers busy (an empty message) so that the
// gateway offers or queues the call without waiting.
func (l *lender) onAsk(msg *nats.Msg) {
	if msg.Reply == "" {
		return
	}
	if !l.w.take(true) {
		_ = l.w.nc.Publish(msg.Reply, nil)
		return
	}
	id := nuid.Next()
	l.w.mu.Lock()
	l.leases[id] = &slotLease{renewed: time.Now(), holder: bus.LeaseRevokeSubject(msg.Reply)}
	l.w.mu.Unlock()
	l.w.inFlight.Add(1)
	g := l.grant
	g.ID = id
	b, _ := json.Marshal(g) // plain strings always encode
	if err := l.w.nc.Publish(msg.Reply, b); err != nil {
		l.end(id)
	}
}

// onControl renews and takes back leases.
func (l *lender) onControl(msg *nats.Msg) {
	var c bus.LeaseControl
	if err := json.Unmarshal(msg.Data, &c); err != nil {
		return
	}
	for _, id := range c.Release {
		l.end(id)
	}
	if msg.Reply == "" || len(c.Renew) == 0 {
		return
	}
	var drop bus.LeaseDrop
	now := time.Now()
	l.w.mu.Lock()
	for _, id := range c.Renew {
		switch s, ok := l.leases[id]; {
		case !ok:
			drop.Unknown = append(drop.Unknown, id)
		case s.revoked:
			s.renewed = now
			drop.Revoked = append(drop.Revoked, id)
		default:
			s.renewed = now
		}
	}
	l.w.mu.Unlock()
	b, _ := json.Marshal(drop)
	_ = l.w.nc.Publish(msg.Reply, b)
}

// end returns a lease's slot, once.
func (l *lender) end(id string) {
	l.w.mu.Lock()
	_, ok := l.leases[id]
	if ok {
		delete(l.leases, id)
		close(l.changed)
		l.changed = make(chan struct{})
	}
	l.w.mu.Unlock()
	if ok {
		l.w.inFlight.Add(-1)
		l.w.release()
	}
}

// sweep reclaims leases their gateway stopped renewing (it died, or lost
// the worker).
func (l *lender) sweep() {
	defer l.wg.Done()
	t := time.NewTicker(leaseSweep)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case now := <-t.C:
			var expired []string
			l.w.mu.Lock()
			for id, s := range l.leases {
				if now.Sub(s.renewed) > leaseTTL {
					expired = append(expired, id)
				}
			}
			l.w.mu.Unlock()
			for _, id := range expired {
				l.end(id)
			}
		}
	}
}

// reclaim asks for one lease back, when queued calls wait and every slot
// is lent; its gateway returns it once its call ends.
func (l *lender) reclaim() {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	if l.w.free > 0 {
		return
	}
	for id, s := range l.leases {
		if !s.revoked {
			s.revoked = true
			l.tell(s.holder, []string{id})
			return
		}
	}
}

// tell asks a gateway for leases back; w.mu may be held (a publish does
// not wait for the server).
func (l *lender) tell(holder string, ids []string) {
	b, _ := json.Marshal(bus.LeaseDrop{Revoked: ids, Control: l.grant.Control})
	_ = l.w.nc.Publish(holder, b)
}

// close revokes every lease and waits until their gateways gave them back
// or they expired, so the instance is stopped only once no gateway calls
// it.
func (l *lender) close() {
	l.w.mu.Lock()
	l.deafen()
	byHolder := map[string][]string{}
	for id, s := range l.leases {
		s.revoked = true
		byHolder[s.holder] = append(byHolder[s.holder], id)
	}
	for holder, ids := range byHolder {
		l.tell(holder, ids)
	}
	l.w.mu.Unlock()
	for {
		l.w.mu.Lock()
		n, changed := len(l.leases), l.changed
		l.w.mu.Unlock()
		if n == 0 {
			break
		}
		<-changed // an end: a release, or the sweep
	}
	close(l.done)
	l.wg.Wait()
	_ = l.ctl.Unsubscribe()
}
