package invoke

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
)

// loadPeriod is how often a gateway reports the calls it holds on worker
// slots, for the autoscaler.
const loadPeriod = 500 * time.Millisecond

// demandGap spaces out a version's "no free slot" pokes: one per gap is
// enough to wake the autoscaler, whatever the call rate.
const demandGap = 100 * time.Millisecond

// load counts the sync calls this gateway holds on worker slots (the fast
// path) per function version, reports them on bus.LoadSubject, and pokes
// the autoscaler when a call finds no free slot. The streams count what is
// queued or detached; together they are the autoscaler's demand.
type load struct {
	nc      *nats.Conn
	subject string

	mu     sync.Mutex
	held   map[string]int       // version id -> fast-path calls held
	poked  map[string]time.Time // version id -> last demand poke
	shown  bool                 // the last report was not empty
	stop   chan struct{}
	closed sync.WaitGroup
}

func newLoad(nc *nats.Conn, gatewayID string) *load {
	l := &load{nc: nc, subject: bus.LoadSubject(gatewayID), held: map[string]int{}, poked: map[string]time.Time{}, stop: make(chan struct{})}
	l.closed.Add(1)
	go l.report()
	return l
}

// hold counts one fast-path call of version until the returned func runs.
func (l *load) hold(version string) (release func()) {
	l.mu.Lock()
	l.held[version]++
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		if l.held[version]--; l.held[version] <= 0 {
			delete(l.held, version)
		}
		l.mu.Unlock()
	}
}

// waiting tells the autoscaler, at most once per demandGap per version,
// that a call of the version found no free slot.
func (l *load) waiting(functionID, versionID string) {
	now := time.Now()
	l.mu.Lock()
	last := l.poked[versionID]
	if now.Sub(last) < demandGap {
		l.mu.Unlock()
		return
	}
	l.poked[versionID] = now
	if len(l.poked) > 4096 {
		for v, at := range l.poked {
			if now.Sub(at) > demandGap {
				delete(l.poked, v)
			}
		}
	}
	l.mu.Unlock()
	_ = l.nc.Publish(bus.DemandSubject(functionID, versionID), nil)
}

// report publishes the held counts every loadPeriod while there are any,
// and one empty report after the last call ends.
func (l *load) report() {
	defer l.closed.Done()
	t := time.NewTicker(loadPeriod)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		if len(l.held) == 0 && !l.shown {
			l.mu.Unlock()
			continue
		}
		b, _ := json.Marshal(bus.Load(l.held)) // a map of ints always encodes
		l.shown = len(l.held) > 0
		l.mu.Unlock()
		_ = l.nc.Publish(l.subject, b)
	}
}

func (l *load) close() {
	close(l.stop)
	l.closed.Wait()
}
