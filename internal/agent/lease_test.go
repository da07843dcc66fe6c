package agent

import (
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// lendingWorker is a worker of slots slots with only its lender running (no
// work queue, no runtime): enough to hold the lease protocol to its word
// over a real nats-server.
func lendingWorker(t *testing.T, nc *nats.Conn, version string, slots int) *worker {
	t.Helper()
	w := &worker{
		inst: model.DesiredInstance{InstanceID: "i-1", FunctionID: "fn", FunctionVersionID: version, Backend: "local",
			InstanceType: "ON-PREM.GPU.H100_1x", Region: "us-1"},
		endpoint: "http://127.0.0.1:9", nc: nc, free: slots, log: slog.New(slog.DiscardHandler),
		rang: make(chan struct{}, 1), handoff: make(chan struct{}, slots),
	}
	var err error
	if w.lender, err = startLender(w); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	err = w.listen()
	w.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	// The gateway side asks on another connection: without a round trip
	// here its ask can reach the server before the worker's subscriptions
	// and find no responders.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// gatewaySide asks and renews as a gateway does, on a reply subject of
// bus.ReplyPrefix, and records the revocations it is sent.
type gatewaySide struct {
	t       *testing.T
	version string
	nc      *nats.Conn
	prefix  string
	revoked chan bus.LeaseDrop
}

func newGatewaySide(t *testing.T, nc *nats.Conn, version string) *gatewaySide {
	g := &gatewaySide{t: t, version: version, nc: nc, prefix: bus.ReplyPrefix("gw-" + version + "-leases"), revoked: make(chan bus.LeaseDrop, 16)}
	sub, err := nc.Subscribe(g.prefix+"revoke", func(m *nats.Msg) {
		var d bus.LeaseDrop
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Errorf("revocation %q: %v", m.Data, err)
		}
		g.revoked <- d
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return g
}

// request sends data and waits for the answer on a reply of the gateway's
// prefix (nats.go's own requests use _INBOX, which agents cannot answer).
func (g *gatewaySide) request(subject string, data []byte) (*nats.Msg, error) {
	reply := g.prefix + nats.NewInbox()[len("_INBOX."):]
	sub, err := g.nc.SubscribeSync(reply)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := g.nc.PublishRequest(subject, reply, data); err != nil {
		return nil, err
	}
	m, err := sub.NextMsg(2 * time.Second)
	if err == nil && len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return nil, nats.ErrNoResponders
	}
	return m, err
}

// ask asks for a lease: the grant, or nil for busy.
func (g *gatewaySide) ask() (*bus.LeaseGrant, error) {
	m, err := g.request(bus.LeaseSubject("fn", g.version), nil)
	if err != nil || len(m.Data) == 0 {
		return nil, err
	}
	var lg bus.LeaseGrant
	if err := json.Unmarshal(m.Data, &lg); err != nil {
		return nil, err
	}
	return &lg, nil
}

// granted asks for a lease and fails the test unless one is granted.
func (g *gatewaySide) granted() *bus.LeaseGrant {
	g.t.Helper()
	a, err := g.ask()
	if err != nil || a == nil {
		g.t.Fatalf("ask: %v, %v; want a lease", a, err)
	}
	return a
}

func (g *gatewaySide) renew(control string, ids ...string) bus.LeaseDrop {
	g.t.Helper()
	b, _ := json.Marshal(bus.LeaseControl{Renew: ids})
	m, err := g.request(control, b)
	if err != nil {
		g.t.Fatal(err)
	}
	var d bus.LeaseDrop
	if err := json.Unmarshal(m.Data, &d); err != nil {
		g.t.Fatal(err)
	}
	return d
}

func (g *gatewaySide) release(control string, ids ...string) {
	b, _ := json.Marshal(bus.LeaseControl{Release: ids})
	if err := g.nc.Publish(control, b); err != nil {
		g.t.Fatal(err)
	}
}

// stopLending stops w's lender as worker.stop does.
func stopLending(w *worker) {
	w.mu.Lock()
	w.stopped = true
	w.deafen()
	w.mu.Unlock()
	w.lender.close()
}

func freeSlots(w *worker) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.free
}

func TestLender(t *testing.T) {
	url := testutil.StartNATS(t)
	connect := func() *nats.Conn {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}

	t.Run("lends each free slot once, then nobody listens", func(t *testing.T) {
		w := lendingWorker(t, connect(), "v1", 2)
		defer stopLending(w)
		g := newGatewaySide(t, connect(), "v1")
		a, err := g.ask()
		if err != nil || a == nil {
			t.Fatalf("first ask: %+v %v", a, err)
		}
		b, err := g.ask()
		if err != nil || b == nil || b.ID == a.ID {
			t.Fatalf("second ask: %+v %v", b, err)
		}
		if a.Endpoint != w.endpoint || a.Header["NVCF-INSTANCETYPE"] != w.inst.InstanceType || a.Control == "" {
			t.Errorf("grant %+v: want the instance's endpoint, its NVCF headers and a control subject", a)
		}
		if n := w.inFlight.Load(); n != 2 {
			t.Errorf("in flight %d with two leases, want 2 (a leased slot counts as busy)", n)
		}
		if _, err := g.ask(); !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("ask with every slot lent: %v, want no responders (the worker stops listening)", err)
		}
		g.release(a.Control, a.ID)
		testutil.WaitFor(t, 5*time.Second, func() error {
			if freeSlots(w) != 1 {
				return testutil.Errorf("free %d after a release, want 1", freeSlots(w))
			}
			return nil
		})
		if err := w.nc.Flush(); err != nil { // its new subscription, before the ask on another connection
			t.Fatal(err)
		}
		c, err := g.ask()
		if err != nil || c == nil {
			t.Fatalf("ask after a release: %+v %v", c, err)
		}
		g.release(c.Control, b.ID, c.ID)
	})

	t.Run("renewals name the leases it does not hold", func(t *testing.T) {
		w := lendingWorker(t, connect(), "v2", 2)
		defer stopLending(w)
		g := newGatewaySide(t, connect(), "v2")
		a := g.granted()
		d := g.renew(a.Control, a.ID, "never-granted")
		if len(d.Unknown) != 1 || d.Unknown[0] != "never-granted" || len(d.Revoked) != 0 {
			t.Fatalf("renewal answered %+v, want only never-granted unknown", d)
		}
		g.release(a.Control, a.ID)
	})

	t.Run("a lease not renewed comes back", func(t *testing.T) {
		w := lendingWorker(t, connect(), "v3", 1)
		defer stopLending(w)
		g := newGatewaySide(t, connect(), "v3")
		a := g.granted()
		if a == nil || freeSlots(w) != 0 {
			t.Fatalf("grant %+v, free %d", a, freeSlots(w))
		}
		testutil.WaitFor(t, 3*leaseTTL, func() error {
			if freeSlots(w) != 1 {
				return testutil.Errorf("slot still lent")
			}
			return nil
		})
		if d := g.renew(a.Control, a.ID); len(d.Unknown) != 1 {
			t.Fatalf("renewal of an expired lease answered %+v, want it unknown", d)
		}
		if n := w.inFlight.Load(); n != 0 {
			t.Errorf("in flight %d after expiry, want 0", n)
		}
	})

	t.Run("queued calls take a lent slot back", func(t *testing.T) {
		w := lendingWorker(t, connect(), "v4", 1)
		defer stopLending(w)
		g := newGatewaySide(t, connect(), "v4")
		a := g.granted()
		w.lender.reclaim() // what the doorbell does
		select {
		case d := <-g.revoked:
			if len(d.Revoked) != 1 || d.Revoked[0] != a.ID || d.Control != a.Control {
				t.Fatalf("revocation %+v, want lease %s of %s", d, a.ID, a.Control)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no revocation sent to the holder")
		}
		if d := g.renew(a.Control, a.ID); len(d.Revoked) != 1 {
			t.Fatalf("renewal answered %+v, want the lease revoked until given back", d)
		}
		g.release(a.Control, a.ID)
		testutil.WaitFor(t, 5*time.Second, func() error {
			if freeSlots(w) != 1 {
				return testutil.Errorf("slot not back")
			}
			return nil
		})
	})

	t.Run("stopping waits for every lease to be given back", func(t *testing.T) {
		w := lendingWorker(t, connect(), "v5", 2)
		g := newGatewaySide(t, connect(), "v5")
		a := g.granted()
		closed := make(chan struct{})
		go func() {
			stopLending(w)
			close(closed)
		}()
		select {
		case d := <-g.revoked:
			if len(d.Revoked) != 1 || d.Revoked[0] != a.ID {
				t.Fatalf("revocation %+v, want %s", d, a.ID)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("stopping sent no revocation")
		}
		if _, err := g.ask(); !errors.Is(err, nats.ErrNoResponders) {
			t.Errorf("ask while stopping: %v, want no responders", err)
		}
		select {
		case <-closed:
			t.Fatal("the lender stopped while a lease was still out")
		default:
		}
		g.release(a.Control, a.ID)
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the lender did not stop once its lease came back")
		}
	})
}
