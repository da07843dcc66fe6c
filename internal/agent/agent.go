// Package agent is Gantry's cluster agent. It converges its cluster onto the
// desired state the control plane publishes (level-triggered: it always gets
// the whole state, never deltas), runs instances through a runtime, feeds
// running instances from their work queues, and reports inventory and
// instance states as its heartbeat. It talks to the control plane only over
// NATS; it never touches etcd.
package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/gantry-dev/gantry/internal/agent/artifacts"
	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/stream"
	"github.com/gantry-dev/gantry/internal/tracing"
	"github.com/gantry-dev/gantry/internal/validate"
)

// Version is reported in heartbeats.
const Version = "0.1.0"

// Config configures an agent.
type Config struct {
	ClusterID string
	Conn      *nats.Conn
	// NewRuntime builds the runtime; notify must be called on any instance
	// change so the agent reports promptly.
	NewRuntime func(notify func()) (runtime.Runtime, error)
	// Inventory is what the cluster offers. The process runtime's GPU pool is
	// the sum of its nodes' GPUs.
	Inventory model.Inventory
	// Heartbeat is how often the agent reports even when nothing changed.
	Heartbeat time.Duration
	// Stream tunes the call streams between workers and gateways.
	Stream stream.Options
	// DirectCalls lends instances' free slots to gateways, which then call
	// the instances over HTTP themselves (worker lease.go, invoke
	// direct.go). Only for gateways that can reach the instances'
	// endpoints: the same host (gantry dev) or network.
	DirectCalls bool
	// ArtifactCacheDir holds the agent's cache of function models and
	// resources (package artifacts), shared by all its instances. Empty:
	// instances of functions with models or resources cannot start, and
	// say so.
	ArtifactCacheDir string
	Logger           *slog.Logger
	// Tracing exports the workers' spans of the calls they serve and the
	// instances' start spans (package tracing); nil: tracing off.
	Tracing trace.TracerProvider
}

// clusterRuntime is a runtime on a cluster manager (Kubernetes). Its
// platform, not the agent, places instances on GPUs; it reads the cluster's
// inventory from its nodes, and the free GPUs of each node from what every
// pod holds, Gantry's or not; and its instances outlive the agent, so a
// restarted agent adopts them (they show in List) instead of starting them
// again, and an agent that stops does not report them gone.
type clusterRuntime interface {
	runtime.Runtime
	Inventory() model.Inventory
	// FreeGPUs maps each node of Inventory to its GPUs no pod holds.
	FreeGPUs() map[string]int
}

// Agent runs one cluster's instances.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	js      jetstream.JetStream
	desired jetstream.KeyValue
	rt      runtime.Runtime
	cluster clusterRuntime // rt, when it runs on a cluster manager; else nil

	poke   chan struct{}
	ready  chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	err    error // why the agent stopped on its own; read after done

	failed1 sync.Once

	// Owned by the run loop.
	want    map[string]model.DesiredInstance
	gpus    *gpuPool
	workers map[string]*worker
	failed  map[string]string // instance id -> why it could not start
	// helmApplied is, per Helm instance, the chart and values last handed
	// to the runtime; a change upgrades the release in place.
	helmApplied map[string]string
	stopping    map[string]bool
	stopped     chan string
	lastSent    []byte // last report the control plane accepted

	cache   *artifacts.Cache          // nil without Config.ArtifactCacheDir
	fetches map[string]*artifactFetch // owned by the run loop
	fetched chan fetchResult
}

// New builds an agent; Start runs it.
func New(cfg Config) (*Agent, error) {
	if err := validate.ID("cluster id", cfg.ClusterID); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	total := 0
	for _, n := range cfg.Inventory.Nodes {
		total += n.GPUs
	}
	a := &Agent{
		cfg: cfg, log: log.With("cluster", cfg.ClusterID),
		poke: make(chan struct{}, 1), ready: make(chan struct{}), done: make(chan struct{}),
		want: map[string]model.DesiredInstance{}, gpus: newGPUPool(total),
		workers: map[string]*worker{}, failed: map[string]string{}, stopping: map[string]bool{}, helmApplied: map[string]string{},
		stopped: make(chan string, 64),
		fetches: map[string]*artifactFetch{}, fetched: make(chan fetchResult),
	}
	if cfg.ArtifactCacheDir != "" {
		c, err := artifacts.New(artifacts.Config{Dir: cfg.ArtifactCacheDir, Logger: a.log})
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		// Views of instances of an earlier agent: its process instances
		// died with it, and those started again get theirs anew.
		if err := os.RemoveAll(filepath.Join(c.Dir(), instanceArtifactsDir)); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.cache = c
	}
	rt, err := cfg.NewRuntime(a.notify)
	if err != nil {
		return nil, err
	}
	a.rt = rt
	a.cluster, _ = rt.(clusterRuntime)
	return a, nil
}

func (a *Agent) notify() {
	select {
	case a.poke <- struct{}{}:
	default:
	}
}

// Done is closed when the agent has stopped, by Close or on its own.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err says why the agent stopped on its own (nil after Close). Read it after
// Done is closed.
func (a *Agent) Err() error { return a.err }

// fail stops the agent for good with err: every instance is stopped (the
// control plane no longer wants them) and Done closes.
func (a *Agent) fail(err error) {
	a.failed1.Do(func() {
		a.log.Error(err.Error())
		a.err = err
		a.want = map[string]model.DesiredInstance{}
		a.cancel()
	})
}

// Ready is closed once the agent has applied its first desired state.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Start connects to the desired-state bucket and runs until Close.
func (a *Agent) Start(ctx context.Context) error {
	js, err := jetstream.New(a.cfg.Conn)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.js = js
	if a.desired, err = js.KeyValue(ctx, bus.DesiredBucket); err != nil {
		return fmt.Errorf("agent: desired-state bucket: %w", err)
	}
	ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go a.run(ctx)
	return nil
}

// Close stops the agent. Shutdown order: stop taking new work (workers stop
// pulling and finish what they hold), then stop every instance, then send a
// last report so the control plane sees them gone.
func (a *Agent) Close() error {
	if a.cancel == nil {
		return a.rt.Close()
	}
	a.cancel()
	<-a.done
	return nil
}

func (a *Agent) run(ctx context.Context) {
	defer close(a.done)
	updates := a.watchDesired(ctx)
	tick := time.NewTicker(a.cfg.Heartbeat)
	defer tick.Stop()
	// Report at once so the cluster is READY for placement without waiting
	// a heartbeat period.
	a.report(ctx, true)
	for {
		select {
		case <-ctx.Done():
			a.shutdown()
			return
		case ds := <-updates:
			a.apply(ds)
			a.converge(ctx)
			select {
			case <-a.ready:
			default:
				close(a.ready)
			}
		case id := <-a.stopped:
			delete(a.stopping, id)
			delete(a.helmApplied, id)
			a.gpus.release(id)
			if _, wanted := a.want[id]; !wanted {
				a.dropArtifacts(id)
			}
			a.converge(ctx)
		case r := <-a.fetched:
			a.fetchDone(r)
			a.converge(ctx)
			a.report(ctx, false)
		case <-a.poke:
			a.syncWorkers(ctx)
			a.report(ctx, false)
		case <-tick.C:
			a.converge(ctx)
			a.report(ctx, true)
		}
	}
}

// watchDesired follows this cluster's key, re-watching if the watch ends. A
// missing key means "run nothing".
func (a *Agent) watchDesired(ctx context.Context) <-chan model.DesiredState {
	out := make(chan model.DesiredState)
	go func() {
		for ctx.Err() == nil {
			w, err := a.desired.Watch(ctx, a.cfg.ClusterID)
			if err != nil {
				a.log.Warn("agent: watching desired state failed; retrying", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			sawAny := false
			for e := range w.Updates() {
				var ds model.DesiredState
				switch {
				case e == nil:
					if sawAny {
						continue
					}
				case e.Operation() == jetstream.KeyValuePut:
					sawAny = true
					if err := json.Unmarshal(e.Value(), &ds); err != nil || ds.ClusterID != a.cfg.ClusterID {
						// Only the control plane writes this key, but NATS
						// does not authorise reply subjects, so anything
						// not addressed to this cluster is ignored.
						a.log.Error("agent: ignoring a desired state not addressed to this cluster", "err", err)
						continue
					}
				}
				select {
				case out <- ds:
				case <-ctx.Done():
					return
				}
			}
			_ = w.Stop()
		}
	}()
	return out
}

func (a *Agent) apply(ds model.DesiredState) {
	want := make(map[string]model.DesiredInstance, len(ds.Instances))
	for _, in := range ds.Instances {
		want[in.InstanceID] = in
	}
	a.want = want
}

// converge starts what is wanted and missing, stops what runs and is not
// wanted, and matches workers to running instances.
func (a *Agent) converge(ctx context.Context) {
	running := map[string]bool{}
	for _, st := range a.rt.List() {
		running[st.InstanceID] = true
		if _, ok := a.want[st.InstanceID]; !ok && !a.stopping[st.InstanceID] {
			a.stopInstance(st.InstanceID)
		}
	}
	for id := range a.failed {
		if _, ok := a.want[id]; !ok {
			delete(a.failed, id)
			a.gpus.release(id)
		}
	}
	for id := range a.fetches {
		if _, ok := a.want[id]; !ok && !running[id] {
			a.dropArtifacts(id)
		}
	}
	ids := make([]string, 0, len(a.want))
	for id := range a.want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if running[id] && !a.stopping[id] && a.want[id].HelmChart != "" && a.helmApplied[id] != helmKey(a.want[id]) {
			// The runtime upgrades the release when its values changed,
			// and does nothing when they did not (an adopted instance).
			if err := a.startInstance(ctx, a.want[id], "", ""); err != nil {
				a.log.Warn("agent: Helm instance cannot be upgraded", "instance", id, "err", err)
			} else {
				a.helmApplied[id] = helmKey(a.want[id])
			}
			continue
		}
		if running[id] || a.stopping[id] {
			continue
		}
		modelsDir, resourcesDir, ok := a.prepareArtifacts(ctx, a.want[id])
		if !ok {
			continue
		}
		if err := a.startInstance(ctx, a.want[id], modelsDir, resourcesDir); err != nil {
			if a.failed[id] != err.Error() {
				a.log.Warn("agent: instance cannot start", "instance", id, "err", err)
			}
			a.failed[id] = err.Error()
		} else {
			delete(a.failed, id)
		}
	}
	a.syncWorkers(ctx)
}

func (a *Agent) startInstance(ctx context.Context, in model.DesiredInstance, modelsDir, resourcesDir string) error {
	var gpus []int
	if a.cluster == nil {
		var err error
		if gpus, err = a.gpus.assign(in.InstanceID, in.GPUCount); err != nil {
			return err
		}
	}
	secrets, pull, err := a.fetchSecrets(ctx, in)
	if err != nil {
		return err
	}
	timeout, err := validate.ParseISODuration(in.Health.Timeout)
	if err != nil || in.Health.Timeout == "" {
		timeout = 10 * time.Second
	}
	spec := runtime.Spec{
		InstanceID: in.InstanceID, FunctionID: in.FunctionID, FunctionVersionID: in.FunctionVersionID,
		Image: in.ContainerImage, Args: in.ContainerArgs, Env: in.ContainerEnvironment, Secrets: secrets,
		InferencePort: in.InferencePort, GPUs: gpus, GPUModel: in.GPU, GPUCount: in.GPUCount,
		FunctionName: in.FunctionName, NCAID: in.NCAID, Backend: in.Backend, InstanceType: in.InstanceType,
		Region: in.Region, DockerConfigJSON: pull, ModelsDir: modelsDir, ResourcesDir: resourcesDir,
		Health: runtime.HealthCheck{Protocol: in.Health.Protocol, Path: in.Health.URI, Port: in.Health.Port,
			Timeout: timeout, ExpectedStatus: in.Health.ExpectedStatusCode},
	}
	if in.HelmChart != "" {
		spec.Helm = &runtime.HelmSpec{Chart: in.HelmChart, ServiceName: in.HelmChartServiceName, Values: in.Configuration}
	}
	if err := a.rt.Start(ctx, spec); err != nil {
		return err
	}
	a.log.Info("agent: instance starting", "instance", in.InstanceID, "function", in.FunctionID, "gpus", gpus)
	return nil
}

// helmKey is what of a Helm instance's desired state its release is made of.
func helmKey(in model.DesiredInstance) string {
	return in.HelmChart + "\x00" + in.HelmChartServiceName + "\x00" + string(in.Configuration)
}

// stopInstance stops an instance in the background; its worker stops first so
// no request is sent to a dying process.
func (a *Agent) stopInstance(id string) {
	a.stopping[id] = true
	w := a.workers[id]
	delete(a.workers, id)
	go func() {
		if w != nil {
			w.stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.rt.Stop(ctx, id); err != nil {
			a.log.Warn("agent: stopping instance failed", "instance", id, "err", err)
		}
		a.log.Info("agent: instance stopped", "instance", id)
		a.stopped <- id
	}()
}

// syncWorkers gives every RUNNING instance a worker on its current endpoint
// and stops workers of instances that are not RUNNING (restarting, failed).
func (a *Agent) syncWorkers(ctx context.Context) {
	live := map[string]runtime.Status{}
	for _, st := range a.rt.List() {
		if st.State == runtime.StateRunning && st.Endpoint != "" && !a.stopping[st.InstanceID] {
			live[st.InstanceID] = st
		}
	}
	for id, w := range a.workers {
		if st, ok := live[id]; !ok || st.Endpoint != w.endpoint {
			delete(a.workers, id)
			go w.stop()
		}
	}
	for id, st := range live {
		if _, ok := a.workers[id]; ok {
			continue
		}
		in, ok := a.want[id]
		if !ok {
			continue
		}
		w, err := startWorker(ctx, a.js, a.cfg.Conn, in, st, a.cfg.Stream, a.cfg.DirectCalls, a.log, tracing.Tracer(a.cfg.Tracing, "agent"))
		if err != nil {
			a.log.Warn("agent: cannot start worker; will retry", "instance", id, "err", err)
			continue
		}
		a.workers[id] = w
	}
}

// report sends the heartbeat. Unchanged reports are sent only on the
// heartbeat tick.
func (a *Agent) report(ctx context.Context, always bool) {
	rep := a.newReport()
	for _, st := range a.rt.List() {
		if _, wanted := a.want[st.InstanceID]; !wanted {
			continue
		}
		status, reason := instanceStatus(st.State), st.Reason
		if w := a.workers[st.InstanceID]; status == model.InstanceRunning && st.Endpoint != "" && (w == nil || w.endpoint != st.Endpoint) {
			// Running, but nothing takes calls for it yet: RUNNING would
			// let the deployment go ACTIVE with calls finding no worker.
			status, reason = model.InstanceStarting, "waiting for its worker to take calls"
		}
		rep.Instances = append(rep.Instances, model.InstanceState{
			InstanceID: st.InstanceID, ClusterID: a.cfg.ClusterID, Status: status,
			Reason: reason, GPUs: a.gpus.of(st.InstanceID), Restarts: st.Restarts,
		})
	}
	for id, why := range a.failed {
		rep.Instances = append(rep.Instances, model.InstanceState{InstanceID: id, ClusterID: a.cfg.ClusterID,
			Status: model.InstanceErrored, Reason: why})
	}
	rep.Instances = append(rep.Instances, a.fetchingStates()...)
	sort.Slice(rep.Instances, func(i, j int) bool { return rep.Instances[i].InstanceID < rep.Instances[j].InstanceID })
	a.addUsage(&rep)
	b, _ := json.Marshal(rep)
	if string(b) == string(a.lastSent) && !always {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := a.cfg.Conn.RequestWithContext(rctx, bus.ReportSubject(a.cfg.ClusterID), b)
	if err != nil {
		a.log.Warn("agent: heartbeat not delivered", "err", err)
		return
	}
	var ack map[string]string
	if json.Unmarshal(resp.Data, &ack) == nil && ack["error"] != "" {
		if strings.Contains(ack["error"], "is not registered") {
			a.fail(fmt.Errorf("agent: cluster %s is no longer registered (was it deleted?), so its instances were stopped; register it again with `gantry cluster register` and start the agent with the new token", a.cfg.ClusterID))
			return
		}
		a.log.Warn("agent: control plane rejected heartbeat", "err", ack["error"])
		return
	}
	a.lastSent = b
}

func (a *Agent) newReport() model.AgentReport {
	inv := a.cfg.Inventory
	if a.cluster != nil {
		inv = a.cluster.Inventory()
		inv.Maintenance = a.cfg.Inventory.Maintenance
	}
	return model.AgentReport{ClusterID: a.cfg.ClusterID, AgentVersion: Version, Inventory: inv,
		HeartbeatMillis: a.cfg.Heartbeat.Milliseconds()}
}

// addUsage fills in how the cluster is used: per instance type, what fits
// and what runs, and how many running instances are idle or not serving yet.
// What fits comes, on a cluster manager, from each node's free GPUs, which
// count every pod and keep an instance to one node; for the process runtime
// from the GPUs the agent itself handed out, which are all there is.
func (a *Agent) addUsage(rep *model.AgentReport) {
	used := map[string]int{}
	inUse := map[string]int{}
	for id, in := range a.want {
		used[in.GPU] += len(a.gpus.of(id))
		inUse[model.InstanceTypeName(in.GPU, in.GPUCount)]++
	}
	if a.cluster != nil {
		rep.InstanceTypes = rep.Inventory.UsageFree(a.cluster.FreeGPUs(), inUse)
	} else {
		rep.InstanceTypes = rep.Inventory.Usage(used, inUse)
	}
	for _, st := range rep.Instances {
		switch st.Status {
		case model.InstanceRunning:
			if w, ok := a.workers[st.InstanceID]; !ok || w.inFlight.Load() == 0 {
				rep.Idle++
			} else {
				rep.Busy = append(rep.Busy, st.InstanceID)
			}
		case model.InstanceStarting:
			rep.Standby++
		}
	}
}

func instanceStatus(s runtime.State) model.InstanceStatus {
	switch s {
	case runtime.StateRunning:
		return model.InstanceRunning
	case runtime.StateErrored:
		return model.InstanceErrored
	case runtime.StateTerminated:
		return model.InstanceTerminated
	default:
		return model.InstanceStarting
	}
}

func (a *Agent) shutdown() {
	var wg sync.WaitGroup
	for id, w := range a.workers {
		delete(a.workers, id)
		wg.Add(1)
		go func() { defer wg.Done(); w.stop() }()
	}
	wg.Wait()
	if a.cluster != nil {
		if a.err == nil {
			// The instances keep running; the next agent adopts them.
			if err := a.rt.Close(); err != nil {
				a.log.Warn("agent: closing runtime", "err", err)
			}
			return
		}
		// The cluster was deleted: nothing may outlive it.
		a.stopAll()
	}
	if err := a.rt.Close(); err != nil {
		a.log.Warn("agent: closing runtime", "err", err)
	}
	// Drain stop notifications of instances stopped in the background.
	for len(a.stopping) > 0 {
		select {
		case id := <-a.stopped:
			delete(a.stopping, id)
		case <-time.After(35 * time.Second):
			a.stopping = map[string]bool{}
		}
	}
	a.reportStopped()
}

// stopAll stops every instance the runtime knows, all at once.
func (a *Agent) stopAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, st := range a.rt.List() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.rt.Stop(ctx, st.InstanceID); err != nil {
				a.log.Warn("agent: stopping instance failed", "instance", st.InstanceID, "err", err)
			}
		}()
	}
	wg.Wait()
}

// reportStopped tells the control plane that every instance is gone, so that
// nobody sees a stale RUNNING until the agent is back.
func (a *Agent) reportStopped() {
	rep := a.newReport()
	for id := range a.want {
		rep.Instances = append(rep.Instances, model.InstanceState{InstanceID: id, ClusterID: a.cfg.ClusterID,
			Status: model.InstanceTerminated, Reason: "agent stopped"})
	}
	b, _ := json.Marshal(rep)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := a.cfg.Conn.RequestWithContext(ctx, bus.ReportSubject(a.cfg.ClusterID), b); err != nil {
		a.log.Warn("agent: final report not delivered", "err", err)
	}
}
