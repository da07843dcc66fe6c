package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
)

// Defaults of Config.
const (
	DefaultPeriod         = time.Second
	DefaultScaleDownDelay = 10 * time.Minute
	// loadTTL is how long a gateway's report counts: a gateway that
	// stopped reporting holds nothing.
	loadTTL = 2 * time.Second
	// minGap spaces passes out when pokes come in a stream.
	minGap = 50 * time.Millisecond
)

// Store is what the Scaler reads and writes.
type Store interface {
	ListDeployments(ctx context.Context) ([]model.Deployment, error)
	ListScales(ctx context.Context) (map[string]model.Scale, error)
	PutScales(ctx context.Context, scales []model.Scale) error
	DeleteScale(ctx context.Context, versionID string) error
}

// Config wires a Scaler.
type Config struct {
	Store Store
	Conn  *nats.Conn
	JS    jetstream.JetStream
	// Period is how often every spec is looked at (default 1s); a call
	// that finds no free slot makes a look happen at once.
	Period time.Duration
	// ScaleDownDelay is how long a spec must need fewer instances before
	// any are removed, and how long an idle spec with minInstances 0 keeps
	// its last instance (default 10m).
	ScaleDownDelay time.Duration
	Logger         *slog.Logger
	Now            func() time.Time
}

// Scaler decides every spec's desired instance count. Run it only while
// leading; a new leader starts from the counts in the store.
type Scaler struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	loads map[string]gatewayLoad // gateway subject -> its latest report
	specs map[key]*spec
}

type gatewayLoad struct {
	at   time.Time
	held bus.Load
}

type key struct {
	deployment string
	index      int
}

// New builds a Scaler.
func New(cfg Config) *Scaler {
	if cfg.Period <= 0 {
		cfg.Period = DefaultPeriod
	}
	if cfg.ScaleDownDelay <= 0 {
		cfg.ScaleDownDelay = DefaultScaleDownDelay
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scaler{cfg: cfg, log: log}
}

// Run decides until ctx ends.
func (s *Scaler) Run(ctx context.Context) {
	s.mu.Lock()
	s.loads, s.specs = map[string]gatewayLoad{}, map[key]*spec{}
	s.mu.Unlock()
	loadSub, err := s.cfg.Conn.Subscribe(bus.LoadSubjects, s.onLoad)
	if err != nil {
		s.log.Error("autoscale: cannot hear gateway loads; scaling on queue depth only", "err", err)
	} else {
		defer func() { _ = loadSub.Unsubscribe() }()
	}
	poke := make(chan struct{}, 1)
	demandSub, err := s.cfg.Conn.Subscribe(bus.DemandSubjects, func(*nats.Msg) {
		select {
		case poke <- struct{}{}:
		default:
		}
	})
	if err == nil {
		defer func() { _ = demandSub.Unsubscribe() }()
	}
	tick := time.NewTicker(s.cfg.Period)
	defer tick.Stop()
	poked := false
	for {
		if err := s.pass(ctx, poked); err != nil && ctx.Err() == nil {
			s.log.Warn("autoscale: pass failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(minGap):
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			poked = false
		case <-poke:
			poked = true
		}
	}
}

func (s *Scaler) onLoad(m *nats.Msg) {
	var l bus.Load
	if json.Unmarshal(m.Data, &l) != nil {
		return
	}
	s.mu.Lock()
	s.loads[m.Subject] = gatewayLoad{at: s.cfg.Now(), held: l}
	s.mu.Unlock()
}

// Pass looks at every spec once and stores the decisions.
func (s *Scaler) Pass(ctx context.Context) error { return s.pass(ctx, false) }

// pass is Pass; poked passes, run because a call found no free slot, only
// look at specs at zero instances: elsewhere pokes come at the moments a
// call waits for a slot to free, and looking then would see more load than
// there is.
func (s *Scaler) pass(ctx context.Context, poked bool) error {
	deps, err := s.cfg.Store.ListDeployments(ctx)
	if err != nil {
		return err
	}
	records, err := s.cfg.Store.ListScales(ctx)
	if err != nil {
		return err
	}
	demand, err := s.demand(ctx)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var changed []model.Scale
	live := map[string]bool{}
	seen := map[key]bool{}
	for _, d := range deps {
		live[d.FunctionVersionID] = true
		// A new deployment starts at its minimums; a changed one keeps the
		// counts of the specs it still has.
		rec, ok := records[d.FunctionVersionID]
		dirty := !ok || rec.DeploymentID != d.ID || len(rec.Specs) != len(d.Specs)
		if !ok || rec.DeploymentID != d.ID {
			rec = model.Scale{FunctionVersionID: d.FunctionVersionID, DeploymentID: d.ID}
		}
		specs := make([]model.SpecScale, len(d.Specs))
		for si, sp := range d.Specs {
			if si < len(rec.Specs) {
				specs[si] = rec.Specs[si]
			} else {
				specs[si].Desired = min(sp.MinInstances, sp.MaxInstances)
			}
		}
		rec.Specs = specs
		for si, share := range split(d.Specs, float64(demand[d.FunctionVersionID])) {
			sp := d.Specs[si]
			k := key{d.ID, si}
			seen[k] = true
			st := s.specs[k]
			if st == nil {
				st = newSpec(rec.Specs[si].Desired, now)
				s.specs[k] = st
			}
			if poked && st.current > 0 {
				continue
			}
			p := Policy{Min: sp.MinInstances, Max: sp.MaxInstances, Concurrency: sp.Concurrency(), ScaleDownDelay: s.cfg.ScaleDownDelay}
			if sp.AutoscalingPolicy == model.AutoscalingCustom {
				p.Custom = sp.Autoscaling
			}
			from := st.current
			to, why := st.decide(p, now, share)
			if why == "" {
				continue
			}
			s.log.Info("autoscale: decision", "function", d.FunctionID, "version", d.FunctionVersionID, "spec", si, "from", from, "to", to, "reason", why)
			ss := &rec.Specs[si]
			ss.Desired = to
			ss.Decisions = append(slices.Clone(ss.Decisions), model.ScalingDecision{At: now.UTC(), From: from, To: to, Reason: why})
			if n := len(ss.Decisions); n > model.MaxDecisions {
				ss.Decisions = ss.Decisions[n-model.MaxDecisions:]
			}
			dirty = true
		}
		if dirty {
			changed = append(changed, rec)
		}
	}
	for k := range s.specs {
		if !seen[k] {
			delete(s.specs, k)
		}
	}
	var errs []error
	if len(changed) > 0 {
		if err := s.cfg.Store.PutScales(ctx, changed); err != nil {
			// What was decided is not stored: start those specs again
			// from the store next pass, so the decision is made again.
			for _, rec := range changed {
				for k := range s.specs {
					if k.deployment == rec.DeploymentID {
						delete(s.specs, k)
					}
				}
			}
			errs = append(errs, err)
		}
	}
	for v := range records {
		if !live[v] {
			errs = append(errs, s.cfg.Store.DeleteScale(ctx, v))
		}
	}
	return errors.Join(errs...)
}

// split shares a version's demand among its specs in order: each takes
// what its maxInstances can serve at the target utilization, the last
// takes the rest.
func split(specs []model.GPUSpec, demand float64) []float64 {
	out := make([]float64, len(specs))
	for i, sp := range specs {
		if i == len(specs)-1 {
			out[i] = demand
			break
		}
		room := float64(sp.MaxInstances) * max(float64(sp.Concurrency())*TargetUtilization, 1)
		out[i] = min(demand, room)
		demand -= out[i]
	}
	return out
}

// demand is, per function version, the calls queued or running from the
// queue (the work-queue stream keeps a message until it is answered), the
// detached calls still running (the watch stream), and the fast-path calls
// gateways hold.
func (s *Scaler) demand(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	for _, st := range []struct{ stream, subjects string }{{bus.InvokeStream, bus.InvokeSubjects}, {bus.WatchStream, bus.WatchSubjects}} {
		str, err := s.cfg.JS.Stream(ctx, st.stream)
		if err != nil {
			return nil, fmt.Errorf("autoscale: stream %s: %w", st.stream, err)
		}
		info, err := str.Info(ctx, jetstream.WithSubjectFilter(st.subjects))
		if err != nil {
			return nil, fmt.Errorf("autoscale: stream %s: %w", st.stream, err)
		}
		for subj, n := range info.State.Subjects {
			if _, v, ok := bus.ParseInvokeSubject(subj); ok {
				out[v] += int(n)
			} else if _, v, ok := bus.ParseWatchSubject(subj); ok {
				out[v] += int(n)
			}
		}
	}
	now := s.cfg.Now()
	s.mu.Lock()
	for g, l := range s.loads {
		if now.Sub(l.at) > loadTTL {
			delete(s.loads, g)
			continue
		}
		for v, n := range l.held {
			out[v] += n
		}
	}
	s.mu.Unlock()
	return out, nil
}
