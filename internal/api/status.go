package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/web"
)

// StatusStore is what the platform status reads from the store.
type StatusStore interface {
	ListClusters(ctx context.Context) ([]model.Cluster, error)
	ListHeartbeats(ctx context.Context) (map[string]store.Heartbeat, error)
	ListDeployments(ctx context.Context) ([]model.Deployment, error)
	ListInstances(ctx context.Context) ([]model.Instance, error)
	ListInstanceStates(ctx context.Context) (map[string]model.InstanceState, error)
}

// MEKChecker asks the master key provider for the active key.
type MEKChecker interface {
	CheckMEK(ctx context.Context) (int, error)
}

// StatusConfig wires GET /v1/gantry/status to the server's own components.
type StatusConfig struct {
	Store        StatusStore
	Etcd         *clientv3.Client
	LeaderPrefix string // the election's key prefix
	NATS         *nats.Conn
	JS           jetstream.JetStream
	MEK          MEKChecker
	MEKProvider  string
	// Gate guards the route: the status covers the whole installation.
	Gate   func(http.Handler) http.Handler
	Logger *slog.Logger
	Now    func() time.Time
}

// Status serves the installation's health summary, every component
// checked from this server's own state.
type Status struct{ cfg StatusConfig }

// statusCheckTimeout bounds each check so that one hung component shows as
// failed rather than hanging the whole answer.
const statusCheckTimeout = 5 * time.Second

// missedHeartbeats matches the controller: three missed periods and an
// agent counts as gone.
const missedHeartbeats = 3

// NewStatus builds the route.
func NewStatus(cfg StatusConfig) *Status {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Status{cfg: cfg}
}

// Register adds GET /v1/gantry/status to mux.
func (s *Status) Register(mux *http.ServeMux) {
	mux.Handle("GET /v1/gantry/status", s.cfg.Gate(web.Unguarded(s.cfg.Logger, s.serve)))
}

func (s *Status) serve(w http.ResponseWriter, r *http.Request) error {
	return web.JSON(w, http.StatusOK, s.Check(r.Context()))
}

// Check runs every check. A failing check is a result, never an error.
func (s *Status) Check(ctx context.Context) model.PlatformStatus {
	out := model.PlatformStatus{Status: model.CheckOK, CheckedAt: s.cfg.Now().UTC()}
	run := func(name string, f func(context.Context) model.StatusCheck) {
		cctx, cancel := context.WithTimeout(ctx, statusCheckTimeout)
		defer cancel()
		c := f(cctx)
		c.Name = name
		out.Checks = append(out.Checks, c)
		if c.Status.Worse(out.Status) {
			out.Status = c.Status
		}
	}
	run("etcd", s.etcd)
	run("nats", s.nats)
	run("jetstream", s.jetstream)
	run("mek", s.mek)
	run("leader", s.leader)
	clusters, hbs, err := s.clusterState(ctx)
	run("agents", func(context.Context) model.StatusCheck { return s.agents(clusters, hbs, err) })
	run("clusters", func(context.Context) model.StatusCheck { return s.clusters(clusters, hbs, err) })
	run("deployments", s.deployments)
	run("instances", s.instances)
	out.Healthy = out.Status != model.CheckFail
	return out
}

func ok(msg string, args ...any) model.StatusCheck {
	return model.StatusCheck{Status: model.CheckOK, Message: fmt.Sprintf(msg, args...)}
}

func warn(msg string, args ...any) model.StatusCheck {
	return model.StatusCheck{Status: model.CheckWarn, Message: fmt.Sprintf(msg, args...)}
}

func fail(msg string, args ...any) model.StatusCheck {
	return model.StatusCheck{Status: model.CheckFail, Message: fmt.Sprintf(msg, args...)}
}

func (s *Status) etcd(ctx context.Context) model.StatusCheck {
	members, err := s.cfg.Etcd.MemberList(ctx)
	if err != nil {
		return fail("etcd does not answer: %v; check the etcd endpoints (--etcd-endpoints) or the embedded etcd's data dir and the server log", err)
	}
	var details []string
	down := 0
	for _, m := range members.Members {
		if len(m.ClientURLs) == 0 {
			details = append(details, fmt.Sprintf("%s: no client URL (not started yet?)", m.Name))
			down++
			continue
		}
		st, err := s.cfg.Etcd.Status(ctx, m.ClientURLs[0])
		if err != nil {
			details = append(details, fmt.Sprintf("%s (%s): unreachable: %v", m.Name, m.ClientURLs[0], err))
			down++
			continue
		}
		details = append(details, fmt.Sprintf("%s (%s): up, db %d KiB, raft term %d", m.Name, m.ClientURLs[0], st.DbSize>>10, st.RaftTerm))
	}
	alarms, err := s.cfg.Etcd.AlarmList(ctx)
	if err == nil && len(alarms.Alarms) > 0 {
		c := fail("etcd has %d alarm(s) (%v): writes are refused; for NOSPACE compact, defragment and `etcdctl alarm disarm`", len(alarms.Alarms), alarms.Alarms[0].Alarm)
		c.Details = details
		return c
	}
	c := ok("%d member(s), all up", len(members.Members))
	switch {
	case down == len(members.Members):
		c = fail("no etcd member answers; check the etcd endpoints and their logs")
	case down > 0 && 2*down >= len(members.Members):
		c = fail("%d of %d etcd members are down: etcd has lost its quorum; bring them back", down, len(members.Members))
	case down > 0:
		c = warn("%d of %d etcd members are down; bring them back before another fails", down, len(members.Members))
	}
	c.Details = details
	return c
}

func (s *Status) nats(context.Context) model.StatusCheck {
	if st := s.cfg.NATS.Status(); st != nats.CONNECTED {
		return fail("the control plane's NATS connection is %s; check the NATS server (--nats-url) and the server log", st)
	}
	return ok("connected to %s (server %s)", s.cfg.NATS.ConnectedUrlRedacted(), s.cfg.NATS.ConnectedServerVersion())
}

func (s *Status) jetstream(ctx context.Context) model.StatusCheck {
	info, err := s.cfg.JS.AccountInfo(ctx)
	if err != nil {
		return fail("JetStream does not answer: %v; the NATS server needs JetStream enabled (-js) and its store dir writable", err)
	}
	c := ok("%d streams, %d consumers, %d MiB stored", info.Streams, info.Consumers, info.Store>>20)
	if lim := uint64(max(info.Limits.MaxStore, 0)); lim > 0 && info.Store*10 >= lim*9 {
		c = warn("JetStream storage is %d%% full (%d of %d MiB): raise the account's max_store or trim the streams", info.Store*100/lim, info.Store>>20, lim>>20)
	}
	return c
}

func (s *Status) mek(ctx context.Context) model.StatusCheck {
	v, err := s.cfg.MEK.CheckMEK(ctx)
	if err != nil {
		return fail("the %s master key provider failed: %v; secrets cannot be sealed or opened until it answers (check its configuration and reachability)", s.cfg.MEKProvider, err)
	}
	return ok("%s provider holds the active master key v%d", s.cfg.MEKProvider, v)
}

func (s *Status) leader(ctx context.Context) model.StatusCheck {
	resp, err := s.cfg.Etcd.Get(ctx, s.cfg.LeaderPrefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return fail("cannot read the leader election: %v; check etcd", err)
	}
	if len(resp.Kvs) == 0 {
		return fail("no control plane leads: the reconciler and autoscaler are not running; check the server log and etcd")
	}
	return ok("%s leads the reconciler and autoscaler", resp.Kvs[0].Value)
}

func (s *Status) clusterState(ctx context.Context) ([]model.Cluster, map[string]store.Heartbeat, error) {
	cs, err := s.cfg.Store.ListClusters(ctx)
	if err != nil {
		return nil, nil, err
	}
	hbs, err := s.cfg.Store.ListHeartbeats(ctx)
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(cs, func(a, b model.Cluster) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return cs, hbs, nil
}

// connected reports whether the cluster's agent heartbeated within three
// of its periods, and how long ago it last did.
func (s *Status) connected(c model.Cluster, hbs map[string]store.Heartbeat) (bool, time.Duration) {
	last, period := c.LastHeartbeat, time.Duration(c.HeartbeatMillis)*time.Millisecond
	if hb, ok := hbs[c.ID]; ok && hb.At.After(last) {
		last = hb.At
		if hb.PeriodMillis > 0 {
			period = time.Duration(hb.PeriodMillis) * time.Millisecond
		}
	}
	if period <= 0 {
		period = 5 * time.Second
	}
	if last.IsZero() {
		return false, -1
	}
	age := s.cfg.Now().Sub(last)
	return age <= missedHeartbeats*period, age
}

func heartbeatAge(age time.Duration) string {
	if age < 0 {
		return "never heartbeated"
	}
	return "last heartbeat " + age.Round(time.Second).String() + " ago"
}

func (s *Status) agents(cs []model.Cluster, hbs map[string]store.Heartbeat, err error) model.StatusCheck {
	if err != nil {
		return fail("cannot read the clusters: %v; check etcd", err)
	}
	if len(cs) == 0 {
		return warn("no clusters registered, so nothing can run: register one with `gantry cluster register` and start `gantry agent` on it")
	}
	var gone []string
	for _, c := range cs {
		if up, age := s.connected(c, hbs); !up {
			gone = append(gone, fmt.Sprintf("%s (%s): %s", c.Name, c.ID, heartbeatAge(age)))
		}
	}
	var c model.StatusCheck
	switch {
	case len(gone) == 0:
		c = ok("%d of %d agents connected", len(cs), len(cs))
	case len(gone) == len(cs):
		c = fail("no agents connected (0 of %d): start `gantry agent` for each cluster (or check its log and its NATS connection)", len(cs))
	default:
		c = warn("%d of %d agents connected: start `gantry agent` for the clusters below (or check their logs)", len(cs)-len(gone), len(cs))
	}
	c.Details = gone
	return c
}

func (s *Status) clusters(cs []model.Cluster, hbs map[string]store.Heartbeat, err error) model.StatusCheck {
	if err != nil {
		return fail("cannot read the clusters: %v; check etcd", err)
	}
	if len(cs) == 0 {
		return warn("no clusters connected: register one with `gantry cluster register` and start `gantry agent` on it")
	}
	ready := 0
	var details []string
	for _, c := range cs {
		_, age := s.connected(c, hbs)
		line := fmt.Sprintf("%s (%s): %s, %s", c.Name, c.ID, c.Status, heartbeatAge(age))
		if c.Cordoned {
			line += ", cordoned"
		}
		if c.Draining {
			line += ", draining"
		}
		details = append(details, line)
		if c.Status == model.ClusterReady {
			ready++
		}
	}
	var c model.StatusCheck
	switch {
	case ready == len(cs):
		c = ok("%d of %d clusters READY", ready, len(cs))
	case ready == 0:
		c = fail("no cluster is READY (0 of %d): their agents stopped heartbeating; start `gantry agent` on them", len(cs))
	default:
		c = warn("%d of %d clusters READY: the NOT_READY ones' instances move elsewhere after the grace period; restart their agents", ready, len(cs))
	}
	c.Details = details
	return c
}

func (s *Status) deployments(ctx context.Context) model.StatusCheck {
	deps, err := s.cfg.Store.ListDeployments(ctx)
	if err != nil {
		return fail("cannot read the deployments: %v; check etcd", err)
	}
	worst, n := model.CheckOK, 0
	var details []string
	for _, d := range deps {
		if d.FunctionStatus == model.StatusActive {
			continue
		}
		n++
		line := fmt.Sprintf("%s/%s (%s): %s", d.FunctionID, d.FunctionVersionID, d.ID, d.FunctionStatus)
		for _, h := range d.HealthInfo {
			if h.Error != "" {
				line += "; " + h.GPU + ": " + h.Error
			}
		}
		details = append(details, line)
		st := model.CheckWarn
		if d.FunctionStatus == model.StatusError || d.FunctionStatus == model.StatusDegraded {
			st = model.CheckFail
		}
		if st.Worse(worst) {
			worst = st
		}
	}
	slices.Sort(details)
	if n == 0 {
		return ok("%d deployments, all ACTIVE", len(deps))
	}
	c := model.StatusCheck{Status: worst, Details: details,
		Message: fmt.Sprintf("%d of %d deployments not ACTIVE: see `gantry deploy get` and `gantry events` for each", n, len(deps))}
	return c
}

func (s *Status) instances(ctx context.Context) model.StatusCheck {
	insts, err := s.cfg.Store.ListInstances(ctx)
	if err != nil {
		return fail("cannot read the instances: %v; check etcd", err)
	}
	states, err := s.cfg.Store.ListInstanceStates(ctx)
	if err != nil {
		return fail("cannot read the instance states: %v; check etcd", err)
	}
	var details []string
	pending, errored := 0, 0
	for _, in := range insts {
		switch st, reported := states[in.ID]; {
		case in.ClusterID == "":
			pending++
			why := in.PendingReason
			if why == "" {
				why = "waiting for placement"
			}
			details = append(details, fmt.Sprintf("%s of %s/%s: pending: %s", in.ID, in.FunctionID, in.FunctionVersionID, why))
		case reported && st.Status == model.InstanceErrored:
			errored++
			details = append(details, fmt.Sprintf("%s of %s/%s on %s: ERRORED: %s", in.ID, in.FunctionID, in.FunctionVersionID, in.ClusterID, st.Reason))
		}
	}
	slices.Sort(details)
	if pending+errored == 0 {
		return ok("%d instances, none pending or errored", len(insts))
	}
	c := warn("%d pending and %d errored of %d instances: add capacity or fix the reasons below", pending, errored, len(insts))
	c.Details = details
	return c
}
