package invoke

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// scriptedLender speaks the worker's side of the lease protocol over a real
// nats-server, answering renewals as the test says, so that the gateway's
// side can be put through the failures a real worker (agent/lease.go,
// tested there) produces only with a crash: forgetting leases, going
// silent. It grants every ask.
type scriptedLender struct {
	t       *testing.T
	nc      *nats.Conn
	control string

	mu       sync.Mutex
	asks     int
	granted  []string
	released map[string]bool
	holder   string                            // the revoke subject of the last asker
	answer   func(ids []string) *bus.LeaseDrop // nil answer: stay silent
}

func newScriptedLender(t *testing.T, nc *nats.Conn, f model.Function) *scriptedLender {
	s := &scriptedLender{t: t, nc: nc, control: nc.NewInbox(), released: map[string]bool{},
		answer: func([]string) *bus.LeaseDrop { return &bus.LeaseDrop{} }}
	ask, err := nc.Subscribe(bus.LeaseSubject(f.ID, f.VersionID), func(m *nats.Msg) {
		s.mu.Lock()
		s.asks++
		id := fmt.Sprintf("lease-%d", s.asks)
		s.granted = append(s.granted, id)
		s.holder = bus.LeaseRevokeSubject(m.Reply)
		s.mu.Unlock()
		b, _ := json.Marshal(bus.LeaseGrant{ID: id, Control: s.control, Endpoint: "http://127.0.0.1:9",
			Header: map[string]string{"NVCF-BACKEND": "local"}})
		_ = nc.Publish(m.Reply, b)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := nc.Subscribe(s.control, func(m *nats.Msg) {
		var c bus.LeaseControl
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Errorf("control message %q: %v", m.Data, err)
			return
		}
		s.mu.Lock()
		for _, id := range c.Release {
			s.released[id] = true
		}
		answer := s.answer
		s.mu.Unlock()
		if len(c.Renew) > 0 {
			if d := answer(c.Renew); d != nil {
				b, _ := json.Marshal(d)
				_ = nc.Publish(m.Reply, b)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ask.Unsubscribe(); _ = ctl.Unsubscribe() })
	return s
}

func (s *scriptedLender) askCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asks
}

func (s *scriptedLender) waitReleased(t *testing.T, id string) {
	t.Helper()
	testutil.WaitFor(t, 5*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.released[id] {
			return testutil.Errorf("lease %s not given back", id)
		}
		return nil
	})
}

func (s *scriptedLender) revoke(id string) {
	s.mu.Lock()
	holder := s.holder
	s.mu.Unlock()
	b, _ := json.Marshal(bus.LeaseDrop{Revoked: []string{id}, Control: s.control})
	_ = s.nc.Publish(holder, b)
}

func TestLeases(t *testing.T) {
	url := testutil.StartNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := testutil.Context(t)
	n := 0
	setup := func(t *testing.T) (*leases, *scriptedLender, model.Function) {
		n++
		f := model.Function{ID: "fn", VersionID: fmt.Sprintf("v%d", n)}
		ls, err := newLeases(nc, fmt.Sprintf("gw%d", n), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ls.close)
		return ls, newScriptedLender(t, nc, f), f
	}

	t.Run("a lease serves call after call with one ask", func(t *testing.T) {
		ls, s, f := setup(t)
		for range 5 {
			l := ls.take(ctx, f)
			if l == nil || l.Endpoint != "http://127.0.0.1:9" || l.Header["NVCF-BACKEND"] != "local" {
				t.Fatalf("lease %+v", l)
			}
			ls.put(l, true)
		}
		if s.askCount() != 1 {
			t.Fatalf("%d asks for 5 calls in a row, want 1", s.askCount())
		}
	})

	t.Run("calls at once hold a lease each", func(t *testing.T) {
		ls, s, f := setup(t)
		a, b := ls.take(ctx, f), ls.take(ctx, f)
		if a == nil || b == nil || a.ID == b.ID {
			t.Fatalf("leases %+v %+v", a, b)
		}
		ls.put(a, true)
		ls.put(b, true)
		if s.askCount() != 2 {
			t.Fatalf("%d asks, want 2", s.askCount())
		}
	})

	t.Run("a failed call gives its lease back", func(t *testing.T) {
		ls, s, f := setup(t)
		l := ls.take(ctx, f)
		ls.put(l, false)
		s.waitReleased(t, l.ID)
		if m := ls.take(ctx, f); m == nil || m.ID == l.ID {
			t.Fatalf("took %+v after a failed call, want a fresh lease", m)
		}
	})

	t.Run("a revoked idle lease goes back at once", func(t *testing.T) {
		ls, s, f := setup(t)
		l := ls.take(ctx, f)
		ls.put(l, true)
		s.revoke(l.ID)
		s.waitReleased(t, l.ID)
		if m := ls.take(ctx, f); m == nil || m.ID == l.ID {
			t.Fatalf("took %+v after its revocation", m)
		}
	})

	t.Run("a revoked lease in use goes back when its call ends", func(t *testing.T) {
		ls, s, f := setup(t)
		l := ls.take(ctx, f)
		s.revoke(l.ID)
		testutil.WaitFor(t, 5*time.Second, func() error {
			ls.mu.Lock()
			defer ls.mu.Unlock()
			if !l.revoked {
				return testutil.Errorf("revocation not seen")
			}
			return nil
		})
		s.mu.Lock()
		early := s.released[l.ID]
		s.mu.Unlock()
		if early {
			t.Fatal("given back while its call ran")
		}
		ls.put(l, true)
		s.waitReleased(t, l.ID)
	})

	t.Run("leases the worker forgot are dropped, not given back", func(t *testing.T) {
		ls, s, f := setup(t)
		l := ls.take(ctx, f)
		ls.put(l, true)
		s.mu.Lock()
		s.answer = func(ids []string) *bus.LeaseDrop { return &bus.LeaseDrop{Unknown: ids} }
		s.mu.Unlock()
		testutil.WaitFor(t, 5*time.Second, func() error {
			if m := ls.take(ctx, f); m == nil || m.ID == l.ID {
				if m != nil {
					ls.put(m, true)
				}
				return testutil.Errorf("the forgotten lease is still used")
			}
			return nil
		})
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.released[l.ID] {
			t.Error("a lease the worker forgot was given back")
		}
	})

	t.Run("a silent worker's leases are dropped", func(t *testing.T) {
		ls, s, f := setup(t)
		l := ls.take(ctx, f)
		ls.put(l, true)
		s.mu.Lock()
		s.answer = func([]string) *bus.LeaseDrop { return nil }
		s.mu.Unlock()
		testutil.WaitFor(t, 10*time.Second, func() error {
			ls.mu.Lock()
			defer ls.mu.Unlock()
			if len(ls.held) != 0 {
				return testutil.Errorf("still holding %d workers' leases", len(ls.held))
			}
			return nil
		})
	})

	t.Run("an idle lease goes back", func(t *testing.T) {
		ls, s, f := setup(t)
		l := ls.take(ctx, f)
		ls.put(l, true)
		s.waitReleased(t, l.ID) // within leaseIdle plus a renewal
	})

	t.Run("closing gives back every idle lease", func(t *testing.T) {
		ls, s, f := setup(t)
		a, b := ls.take(ctx, f), ls.take(ctx, f)
		ls.put(a, true)
		ls.close()
		s.waitReleased(t, a.ID)
		ls.put(b, true) // a call that ends after the close
		s.waitReleased(t, b.ID)
		if m := ls.take(ctx, f); m != nil {
			t.Fatalf("a closed gateway took lease %+v", m)
		}
	})

	t.Run("no lender: no ask again for a while", func(t *testing.T) {
		ls, err := newLeases(nc, "gw-none", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer ls.close()
		f := model.Function{ID: "fn", VersionID: "nobody"}
		if l := ls.take(ctx, f); l != nil {
			t.Fatalf("lease %+v with no lender", l)
		}
		s := newScriptedLender(t, nc, f)
		l := ls.take(ctx, f)
		ls.mu.Lock()
		within := time.Now().Before(ls.none[f.VersionID])
		ls.mu.Unlock()
		if within && (l != nil || s.askCount() != 0) {
			t.Fatalf("asked again at once after no responders (lease %+v, %d asks)", l, s.askCount())
		}
		if l != nil {
			ls.put(l, true)
		}
		testutil.WaitFor(t, 5*time.Second, func() error {
			l := ls.take(ctx, f)
			if l == nil {
				return testutil.Errorf("no lease yet")
			}
			ls.put(l, true)
			return nil
		})
	})
}
