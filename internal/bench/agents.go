package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
)

// Agents target, from the issue: 1,000 agents heartbeating every 5 s cost
// one server less than a quarter of one core.
const (
	TargetAgentsCores    = 0.25
	TargetAgentsCount    = 1000
	TargetAgentsInterval = 5 * time.Second
)

// Phase names of RunAgents.
const (
	PhaseIdle   = "idle"
	PhaseAgents = "agents"
)

// agentReportTimeout is how long a simulated agent waits for the answer to
// one report: the real agent's timeout.
const agentReportTimeout = 5 * time.Second

// userHZ is the unit of the CPU times in /proc/<pid>/stat and /proc/stat
// (`getconf CLK_TCK`). The kernel exports USER_HZ, which is 100 on every
// architecture Gantry builds for, whatever the kernel's own tick rate.
const userHZ = 100

// AgentsConfig configures RunAgents. Zero values take the defaults named.
type AgentsConfig struct {
	// Executable is the gantry binary run as `server` (default: this
	// process's executable).
	Executable string
	// Agents is how many simulated agents, one cluster each (default 1000).
	Agents int
	// Interval is each agent's heartbeat period (default 5s). The agents'
	// first reports are spread uniformly over one interval, so the load is
	// steady rather than a burst every Interval.
	Interval time.Duration
	// Duration is the measured window, which starts once every agent has
	// reported at least once (default 60s).
	Duration time.Duration
	// Idle is the baseline window: the same server with the clusters
	// registered but no agent connected (default 10s, two controller
	// resync periods).
	Idle time.Duration
	// Instances is how many instance states each report carries (default
	// 0). The instances do not exist, so each one costs the server an etcd
	// read on every report, more than a real, unchanged instance does.
	Instances int
	// Progress receives a line per step (nil discards them).
	Progress io.Writer
}

func (c *AgentsConfig) defaults() error {
	if c.Agents <= 0 {
		c.Agents = TargetAgentsCount
	}
	if c.Interval <= 0 {
		c.Interval = TargetAgentsInterval
	}
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.Idle <= 0 {
		c.Idle = 10 * time.Second
	}
	if c.Instances < 0 {
		return fmt.Errorf("bench: --instances %d is negative", c.Instances)
	}
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: find the gantry executable: %w", err)
		}
		c.Executable = exe
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

// AgentsPhase is what one measured window cost: the server process alone,
// this process (which runs the simulated agents), and the rest of the
// machine, so a busy neighbour shows instead of hiding in the numbers.
type AgentsPhase struct {
	Name   string        `json:"name"`
	Agents int           `json:"agents"`
	Wall   time.Duration `json:"wallNs"`
	// ServerCPU is the server's user+system CPU time in the window, from
	// /proc/<pid>/stat (10 ms resolution); ServerCores is it over Wall.
	ServerCPU   time.Duration `json:"serverCpuNs"`
	ServerCores float64       `json:"serverCores"`
	// ServerRSS is the server's VmRSS at the end of the window.
	ServerRSS int64 `json:"serverRssBytes"`
	// BenchCores is this process: the simulated agents and their NATS
	// connections.
	BenchCores float64 `json:"benchCores"`
	// OtherCores is the machine's busy time (/proc/stat) minus the two
	// above: other people's work, or the kernel's on nobody's behalf.
	OtherCores float64 `json:"otherCores"`
}

// AgentsResult is what RunAgents measured.
type AgentsResult struct {
	Agents             int           `json:"agents"`
	Interval           time.Duration `json:"intervalNs"`
	Duration           time.Duration `json:"durationNs"`
	InstancesPerReport int           `json:"instancesPerReport"`
	// ReportBytes is the size of one report's JSON.
	ReportBytes int `json:"reportBytes"`
	// FDLimit is this process's soft RLIMIT_NOFILE during the run.
	FDLimit uint64 `json:"fdLimit"`
	// Register is the time to register every cluster and exchange its
	// bootstrap token; Connect the time to open every agent's NATS
	// connection; Warmup from the agents' start until each had its first
	// report answered.
	Register time.Duration `json:"registerNs"`
	Connect  time.Duration `json:"connectNs"`
	Warmup   time.Duration `json:"warmupNs"`
	// Phases are the idle baseline and the agents' window, in that order.
	Phases []AgentsPhase `json:"phases"`
	// ServerPeakRSS is the server's VmHWM at the end: the most it ever held,
	// registration included.
	ServerPeakRSS int64 `json:"serverPeakRssBytes"`
	// Reports counts the reports sent in the agents' window, answered or
	// failed; Errors those without an ok answer (no answer within 5 s, or
	// an answer carrying "error").
	Reports          int     `json:"reports"`
	ReportsPerSecond float64 `json:"reportsPerSecond"`
	Errors           int     `json:"errors"`
	FirstError       string  `json:"firstError,omitempty"`
	// Latency covers the answered reports, from sending to the answer; its
	// RPS counts those only.
	Latency Summary `json:"latency"`
	// AddedCores is the agents' window's server cores minus the idle
	// baseline's; CPUPerReport is the added CPU time divided by the reports.
	AddedCores   float64       `json:"addedCores"`
	CPUPerReport time.Duration `json:"cpuPerReportNs"`
	Targets      []Target      `json:"targets"`
}

// RunAgents measures what heartbeating agents cost one control plane. It
// runs `gantry server` (embedded etcd and NATS) as a subprocess, so its
// CPU time and memory can be read from /proc alone; registers one cluster
// per agent through the REST API and exchanges each bootstrap token for a
// credential, as `gantry agent` does; measures the server idle; then runs
// the agents in this process, each with its own authenticated NATS
// connection, sending a complete report every Interval as a request to its
// cluster's report subject, as the real agent does.
func RunAgents(ctx context.Context, cfg AgentsConfig) (*AgentsResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	res := &AgentsResult{Agents: cfg.Agents, Interval: cfg.Interval, Duration: cfg.Duration, InstancesPerReport: cfg.Instances}
	var err error
	// One connection per agent, plus the server's HTTP clients, files and
	// a margin.
	if res.FDLimit, err = ensureFDLimit(uint64(cfg.Agents) + 256); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gantry-bench-agents-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)

	srv, err := startServer(ctx, cfg.Executable, dir, cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	pid := srv.c.cmd.Process.Pid

	began := time.Now()
	fmt.Fprintf(cfg.Progress, "Registering %d clusters and exchanging their bootstrap tokens\n", cfg.Agents)
	creds, err := enrollClusters(ctx, srv.url, srv.token, cfg.Agents)
	if err != nil {
		return nil, srv.explain(err)
	}
	res.Register = time.Since(began)
	fmt.Fprintf(cfg.Progress, "  done in %.1fs\n", res.Register.Seconds())

	// Let the controller passes the registrations set off finish, so the
	// baseline is the server at rest.
	if err := pause(ctx, srv.c, 2*time.Second); err != nil {
		return nil, srv.explain(err)
	}
	fmt.Fprintf(cfg.Progress, "Idle baseline: %s with %d clusters registered and no agent connected\n", cfg.Idle, cfg.Agents)
	idleFrom, err := markCPU(pid)
	if err != nil {
		return nil, err
	}
	if err := pause(ctx, srv.c, cfg.Idle); err != nil {
		return nil, srv.explain(err)
	}
	idle, err := measurePhase(PhaseIdle, 0, pid, idleFrom)
	if err != nil {
		return nil, err
	}
	res.Phases = append(res.Phases, idle)
	fmt.Fprintf(cfg.Progress, "  server %.3f cores, RSS %.1f MiB (other load %.2f cores)\n", idle.ServerCores, MiB(idle.ServerRSS), idle.OtherCores)

	fleet := newFleet(creds, cfg)
	res.ReportBytes = len(fleet.agents[0].report)
	defer fleet.close()
	began = time.Now()
	fmt.Fprintf(cfg.Progress, "Connecting %d agents to NATS at %s\n", cfg.Agents, creds[0].NATSURL)
	if err := fleet.connect(ctx); err != nil {
		return nil, srv.explain(err)
	}
	res.Connect = time.Since(began)
	fmt.Fprintf(cfg.Progress, "  done in %.1fs\n", res.Connect.Seconds())

	fmt.Fprintf(cfg.Progress, "Starting the agents (one %d-byte report every %s each, spread over the interval); warming up until each has reported\n",
		res.ReportBytes, cfg.Interval)
	began = time.Now()
	fleet.start(ctx)
	select {
	case <-fleet.warm:
	case <-srv.c.exited:
		return nil, srv.explain(errors.New("bench: the server exited during the warmup"))
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(cfg.Interval + 2*agentReportTimeout + 30*time.Second):
		return nil, srv.explain(fmt.Errorf("bench: after %s, %d agents still had no answer to their first report", time.Since(began).Round(time.Second), fleet.waiting.Load()))
	}
	res.Warmup = time.Since(began)
	fmt.Fprintf(cfg.Progress, "  warm after %.1fs; measuring for %s\n", res.Warmup.Seconds(), cfg.Duration)

	from, err := markCPU(pid)
	if err != nil {
		return nil, err
	}
	if err := fleet.watch(ctx, srv.c, pid, from, cfg.Duration, cfg.Progress); err != nil {
		return nil, srv.explain(err)
	}
	load, err := measurePhase(PhaseAgents, cfg.Agents, pid, from)
	if err != nil {
		return nil, err
	}
	res.Phases = append(res.Phases, load)
	if res.ServerPeakRSS, err = procStatusBytes(pid, "VmHWM"); err != nil {
		return nil, err
	}
	fleet.stop()

	var samples []time.Duration
	res.Reports, res.Errors, res.FirstError, samples = fleet.tally(from.at, from.at.Add(load.Wall))
	res.Latency = Summarize(samples, load.Wall)
	res.ReportsPerSecond = float64(res.Reports) / load.Wall.Seconds()
	res.AddedCores = load.ServerCores - idle.ServerCores
	if res.Reports > 0 {
		added := time.Duration(res.AddedCores * float64(load.Wall))
		res.CPUPerReport = added / time.Duration(res.Reports)
	}
	res.Targets = agentsTargets(res)
	return res, nil
}

func agentsTargets(res *AgentsResult) []Target {
	load := res.Phases[len(res.Phases)-1]
	return []Target{{
		Name: fmt.Sprintf("server CPU, %d agents reporting every %s", res.Agents, res.Interval),
		Want: fmt.Sprintf("< %.2f cores", TargetAgentsCores),
		Got:  fmt.Sprintf("%.3f cores", load.ServerCores),
		Pass: load.ServerCores < TargetAgentsCores,
	}}
}

// ensureFDLimit raises this process's soft limit on open files to need, as
// far as the hard limit allows, and returns the soft limit in force. Go
// already raises the soft limit to the hard one at start-up, so this only
// acts where that did not happen, and fails with advice when even the hard
// limit is too low. Nothing system-wide changes.
func ensureFDLimit(need uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("bench: read the open-files limit: %w", err)
	}
	if lim.Cur >= need {
		return lim.Cur, nil
	}
	if lim.Max < need {
		return lim.Cur, fmt.Errorf("bench: %d agents need about %d open files, but the hard limit (ulimit -Hn) is %d; raise it or run fewer agents", need-256, need, lim.Max)
	}
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("bench: raise the open-files soft limit to %d: %w", need, err)
	}
	return lim.Cur, nil
}

// pause waits d, failing early if the server exits or ctx ends.
func pause(ctx context.Context, c *child, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-c.exited:
		return fmt.Errorf("bench: the server exited: %v", c.err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// benchServer is `gantry server` running as a subprocess.
type benchServer struct {
	c       *child
	url     string
	token   string
	logPath string
}

// startServer runs `gantry server` on a fresh data dir under dir, with the
// API and NATS on free loopback ports, and returns once it answers
// /healthz and its admin token is readable.
func startServer(ctx context.Context, exe, dir string, progress io.Writer) (_ *benchServer, err error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	natsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "server")
	s := &benchServer{url: "http://" + httpAddr, logPath: filepath.Join(dir, "server.log")}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(exe, "server", "--data-dir", dataDir, "--listen", httpAddr, "--grpc-listen", "127.0.0.1:0", "--nats-listen", natsAddr, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	fmt.Fprintf(progress, "Starting %s\n", strings.Join(cmd.Args, " "))
	if s.c, err = startChild(cmd); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = s.explain(err)
			s.stop()
		}
	}()
	hctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := waitOK(hctx, s.c, s.url+"/healthz", 20*time.Millisecond); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		return nil, fmt.Errorf("bench: read the server's admin token: %w", err)
	}
	s.token = strings.TrimSpace(string(b))
	return s, nil
}

// explain adds the end of the server's log to err.
func (s *benchServer) explain(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w\n%s:\n%s", err, s.logPath, tail(s.logPath, 2000))
}

func (s *benchServer) stop() {
	if s.c != nil {
		_, _ = s.c.stop()
		s.c = nil
	}
}

// enrollClusters registers n clusters under the server's default account
// and exchanges each bootstrap token for a credential, eight at a time.
func enrollClusters(ctx context.Context, url, adminToken string, n int) ([]model.AgentCredential, error) {
	admin := client.New(url, adminToken, client.WithUserAgent("gantry-bench"))
	creds := make([]model.AgentCredential, n)
	err := forEachConcurrently(ctx, n, 8, func(ctx context.Context, i int) error {
		reg, err := admin.RegisterCluster(ctx, controlplane.DefaultAccount, model.ClusterRequest{
			ClusterName:      benchAgentName(i),
			ClusterGroupName: "bench-agents",
			CloudProvider:    "on-prem",
			Region:           "bench-region",
		})
		if err != nil {
			return fmt.Errorf("bench: register cluster %d: %w", i, err)
		}
		cred, err := client.New(url, reg.BootstrapToken, client.WithUserAgent("gantry-bench")).AgentCredential(ctx)
		if err != nil {
			return fmt.Errorf("bench: exchange the bootstrap token of cluster %s: %w", reg.ClusterID, err)
		}
		creds[i] = cred
		return nil
	})
	return creds, err
}

func benchAgentName(i int) string { return fmt.Sprintf("bench-agent-%04d", i) }

// benchReport is the report a simulated agent sends every time: one node of
// eight H100s, and instances instance states, as `gantry agent` would
// report them.
func benchReport(clusterID string, interval time.Duration, instances int) model.AgentReport {
	rep := model.AgentReport{
		ClusterID:       clusterID,
		AgentVersion:    agent.Version,
		HeartbeatMillis: interval.Milliseconds(),
		Inventory: model.Inventory{Nodes: []model.Node{{
			Name: clusterID + "-node-0", GPUModel: "H100", GPUMemoryGB: 80, GPUs: 8,
		}}},
	}
	for j := range instances {
		rep.Instances = append(rep.Instances, model.InstanceState{
			InstanceID: fmt.Sprintf("%s-instance-%d", clusterID, j),
			ClusterID:  clusterID,
			Status:     model.InstanceRunning,
			GPUs:       []int{j % 8},
		})
	}
	return rep
}

// staggerOffset is when, after the start, agent i of n sends its first
// report: uniformly spread over one interval, so reports arrive at an even
// rate rather than in bursts.
func staggerOffset(i, n int, interval time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(int64(interval) * int64(i) / int64(n))
}

// checkReportAnswer returns an error unless the control plane's answer to
// a report is a JSON object without an "error" (what the real agent checks).
func checkReportAnswer(data []byte) error {
	var ack map[string]string
	if err := json.Unmarshal(data, &ack); err != nil {
		return fmt.Errorf("undecodable answer %q", firstLine(data))
	}
	if e := ack["error"]; e != "" {
		return errors.New(e)
	}
	return nil
}

// reportSample is one report a simulated agent sent.
type reportSample struct {
	at   time.Time // when it was sent
	took time.Duration
	err  string // empty when answered ok
}

// simAgent is one simulated agent: its credential, connection and report,
// and the samples only its own goroutine appends to.
type simAgent struct {
	cred    model.AgentCredential
	nc      *nats.Conn
	subject string
	report  []byte
	samples []reportSample
}

// fleet is the simulated agents.
type fleet struct {
	cfg    AgentsConfig
	agents []*simAgent
	// waiting counts agents whose first report is unanswered; warm closes
	// when it reaches zero.
	waiting atomic.Int64
	warm    chan struct{}
	// sent and failed count reports as they complete, for progress lines.
	sent, failed atomic.Int64
	halt         chan struct{}
	wg           sync.WaitGroup
}

func newFleet(creds []model.AgentCredential, cfg AgentsConfig) *fleet {
	f := &fleet{cfg: cfg, warm: make(chan struct{}), halt: make(chan struct{})}
	for _, c := range creds {
		b, _ := json.Marshal(benchReport(c.ClusterID, cfg.Interval, cfg.Instances))
		f.agents = append(f.agents, &simAgent{cred: c, subject: bus.ReportSubject(c.ClusterID), report: b})
	}
	f.waiting.Store(int64(len(f.agents)))
	return f
}

// connect opens every agent's NATS connection, sixteen at a time, with the
// options `gantry agent` uses: its credential as the token and its
// cluster's inbox prefix.
func (f *fleet) connect(ctx context.Context) error {
	return forEachConcurrently(ctx, len(f.agents), 16, func(ctx context.Context, i int) error {
		a := f.agents[i]
		nc, err := bus.Connect(a.cred.NATSURL, "gantry-agent-"+a.cred.ClusterID, bus.AgentOptions(a.cred.ClusterID, a.cred.Credential)...)
		if err != nil {
			return fmt.Errorf("bench: agent %d: %w", i, err)
		}
		a.nc = nc
		return nil
	})
}

// start runs every agent on its own goroutine until stop.
func (f *fleet) start(ctx context.Context) {
	t0 := time.Now()
	for i, a := range f.agents {
		f.wg.Go(func() {
			f.run(ctx, a, t0.Add(staggerOffset(i, len(f.agents), f.cfg.Interval)))
		})
	}
}

// run sends a's reports at next, next+Interval, ... Like the real agent's
// ticker, it skips a beat rather than catch up when a report took longer
// than the interval, and it has at most one report in flight.
func (f *fleet) run(ctx context.Context, a *simAgent, next time.Time) {
	first := true
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-f.halt:
			return
		case <-ctx.Done():
			return
		}
		s, ok := a.send(ctx)
		if !ok {
			return
		}
		a.samples = append(a.samples, s)
		f.sent.Add(1)
		if s.err != "" {
			f.failed.Add(1)
		}
		if first {
			first = false
			if f.waiting.Add(-1) == 0 {
				close(f.warm)
			}
		}
		now := time.Now()
		next = next.Add(f.cfg.Interval)
		for !next.After(now) {
			next = next.Add(f.cfg.Interval)
		}
		t.Reset(next.Sub(now))
	}
}

// send sends one report and waits for its answer. ok is false when ctx
// ended, in which case nothing was measured.
func (a *simAgent) send(ctx context.Context) (reportSample, bool) {
	rctx, cancel := context.WithTimeout(ctx, agentReportTimeout)
	defer cancel()
	s := reportSample{at: time.Now()}
	msg, err := a.nc.RequestWithContext(rctx, a.subject, a.report)
	s.took = time.Since(s.at)
	if err == nil {
		err = checkReportAnswer(msg.Data)
	} else if ctx.Err() != nil {
		return s, false
	}
	if err != nil {
		s.err = err.Error()
	}
	return s, true
}

// watch waits out the measured window, printing a line every 10 seconds
// with the server's CPU over the last stretch, so a disturbed run shows
// while it happens.
func (f *fleet) watch(ctx context.Context, c *child, pid int, from cpuMark, d time.Duration, progress io.Writer) error {
	end := time.NewTimer(d)
	defer end.Stop()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	last, lastSent := from, f.sent.Load()
	for {
		select {
		case <-end.C:
			return nil
		case <-c.exited:
			return fmt.Errorf("bench: the server exited while measured: %v", c.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			m, err := markCPU(pid)
			if err != nil {
				return err
			}
			sent := f.sent.Load()
			wall := m.at.Sub(last.at)
			fmt.Fprintf(progress, "  %5.0fs  %6d reports (%4.0f/s), %d failed in all; last %.0fs: server %.3f cores, agents %.3f, other %.3f\n",
				m.at.Sub(from.at).Seconds(), sent, float64(sent-lastSent)/wall.Seconds(), f.failed.Load(), wall.Seconds(),
				cores(m.server-last.server, wall), cores(m.self-last.self, wall), otherCores(last, m))
			last, lastSent = m, sent
		}
	}
}

// stop ends the agents after the reports in flight are answered.
func (f *fleet) stop() {
	select {
	case <-f.halt:
	default:
		close(f.halt)
	}
	f.wg.Wait()
}

// close stops the agents and closes their connections.
func (f *fleet) close() {
	f.stop()
	for _, a := range f.agents {
		if a.nc != nil {
			a.nc.Close()
		}
	}
}

// tally counts the reports sent in [from, to) and returns the latencies of
// those answered ok. Call it after stop.
func (f *fleet) tally(from, to time.Time) (reports, errs int, firstErr string, ok []time.Duration) {
	for _, a := range f.agents {
		r, e, fe, l := tallySamples(a.samples, from, to)
		reports, errs = reports+r, errs+e
		if firstErr == "" {
			firstErr = fe
		}
		ok = append(ok, l...)
	}
	return reports, errs, firstErr, ok
}

func tallySamples(samples []reportSample, from, to time.Time) (reports, errs int, firstErr string, ok []time.Duration) {
	for _, s := range samples {
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		reports++
		if s.err != "" {
			errs++
			if firstErr == "" {
				firstErr = s.err
			}
			continue
		}
		ok = append(ok, s.took)
	}
	return reports, errs, firstErr, ok
}

// cpuMark is a reading of the CPU time used so far by the server, by this
// process and by the whole machine.
type cpuMark struct {
	at           time.Time
	server, self time.Duration
	machineBusy  time.Duration
}

func markCPU(pid int) (cpuMark, error) {
	m := cpuMark{at: time.Now()}
	var err error
	if m.server, err = procCPU(pid); err != nil {
		return m, err
	}
	if m.self, err = procCPU(os.Getpid()); err != nil {
		return m, err
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return m, fmt.Errorf("bench: read machine CPU: %w", err)
	}
	ticks, err := parseMachineBusy(b)
	if err != nil {
		return m, err
	}
	m.machineBusy = ticksToDuration(ticks)
	return m, nil
}

// measurePhase closes a window opened at from.
func measurePhase(name string, agents, pid int, from cpuMark) (AgentsPhase, error) {
	to, err := markCPU(pid)
	if err != nil {
		return AgentsPhase{}, err
	}
	p := AgentsPhase{Name: name, Agents: agents, Wall: to.at.Sub(from.at), ServerCPU: to.server - from.server}
	p.ServerCores = cores(p.ServerCPU, p.Wall)
	p.BenchCores = cores(to.self-from.self, p.Wall)
	p.OtherCores = otherCores(from, to)
	if p.ServerRSS, err = readRSS(pid); err != nil {
		return p, err
	}
	return p, nil
}

func cores(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return cpu.Seconds() / wall.Seconds()
}

// otherCores is the machine's busy time between two marks that neither the
// server nor this process used, in cores. It is never negative: the three
// counters tick separately, so small differences are rounding.
func otherCores(from, to cpuMark) float64 {
	other := (to.machineBusy - from.machineBusy) - (to.server - from.server) - (to.self - from.self)
	return max(0, cores(other, to.at.Sub(from.at)))
}

// procCPU returns the user+system CPU time process pid has used, all its
// threads included, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: read process CPU: %w", err)
	}
	ticks, err := parseProcStatTicks(b)
	if err != nil {
		return 0, err
	}
	return ticksToDuration(ticks), nil
}

func ticksToDuration(ticks int64) time.Duration { return time.Duration(ticks) * time.Second / userHZ }

// parseProcStatTicks returns utime+stime (fields 14 and 15) of a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may hold spaces and parentheses itself, so fields are counted from the
// last ')'.
func parseProcStatTicks(b []byte) (int64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: unexpected /proc/<pid>/stat %q", firstLine(b))
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so utime is f[11] and stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc/<pid>/stat has %d fields after the name, want at least 13", len(f))
	}
	var sum int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: /proc/<pid>/stat: %w", err)
		}
		sum += n
	}
	return sum, nil
}

// parseMachineBusy returns the busy time of all CPUs together from the
// "cpu" line of /proc/stat: everything but idle and iowait. guest time is
// already part of user time, so it is not added again.
func parseMachineBusy(b []byte) (int64, error) {
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		// user nice system idle iowait irq softirq steal ...
		if len(f) < 9 {
			return 0, fmt.Errorf("bench: /proc/stat cpu line has %d fields, want at least 9", len(f))
		}
		var busy int64
		for _, k := range []int{1, 2, 3, 6, 7, 8} {
			n, err := strconv.ParseInt(f[k], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: /proc/stat: %w", err)
			}
			busy += n
		}
		return busy, nil
	}
	return 0, errors.New("bench: no cpu line in /proc/stat")
}

// procStatusBytes returns a size field of /proc/<pid>/status (VmRSS,
// VmHWM, ...) in bytes.
func procStatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: read %s: %w", field, err)
	}
	return parseStatusBytes(b, field)
}

func parseStatusBytes(b []byte, field string) (int64, error) {
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		// The kernel writes "VmHWM:     123456 kB".
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: parse %s %q: %w", field, strings.TrimSpace(rest), err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("bench: no %s in /proc status", field)
}
