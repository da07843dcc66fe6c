package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/process"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// fleet is one control plane with several clusters, each with its own agent,
// simulated inventory and NATS connection (through a proxy the test can cut).
type fleet struct {
	t  testing.TB
	cp *controlplane.Server
	c  *client.Client
}

// Loop timings for fleet tests: heartbeats every 500ms make a silent cluster
// NOT_READY after 1.5s; its instances move after a 1.5s grace. Shorter
// heartbeats let a CPU stall of the race detector on two cores look like a
// lost cluster.
const (
	fleetHeartbeat = 500 * time.Millisecond
	fleetGrace     = 1500 * time.Millisecond
)

func startFleet(t testing.TB) *fleet {
	t.Helper()
	return startFleetWith(t, nil)
}

// startFleetWith is startFleet with the control plane's config changed by
// edit first.
func startFleetWith(t testing.TB, edit func(*controlplane.Config)) *fleet {
	t.Helper()
	cfg := controlplane.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		Resync: 200 * time.Millisecond, Grace: fleetGrace,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if edit != nil {
		edit(&cfg)
	}
	cp, err := controlplane.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cp.Close() })
	return &fleet{t: t, cp: cp, c: client.New(cp.URL(), cp.AdminToken())}
}

// member is one cluster's agent.
type member struct {
	f         *fleet
	name      string
	clusterID string
	stateDir  string
	inv       model.Inventory
	proxy     *testutil.Proxy
	nc        *nats.Conn
	agent     *agent.Agent
	rt        runtime.Runtime
}

// join registers a cluster and starts its agent, which enrolls with the
// bootstrap token exactly as `gantry agent` does.
func (f *fleet) join(name, group, region string, gpus int, gpuModel string) *member {
	f.t.Helper()
	ctx := testutil.Context(f.t)
	cl, boot, _, err := f.cp.Registry().Register(ctx, model.Cluster{Name: name, GroupName: group, Region: region,
		Zone: region + "-a", NCAID: controlplane.DefaultAccount})
	if err != nil {
		f.t.Fatal(err)
	}
	m := &member{f: f, name: name, clusterID: cl.ID, stateDir: f.t.TempDir(),
		inv: model.Inventory{Nodes: []model.Node{{Name: name + "-node", GPUModel: gpuModel, GPUMemoryGB: 80, GPUs: gpus,
			CPUCores: 8 * gpus, MemoryGiB: 64 * gpus}}}}
	id, err := agent.Enroll(ctx, agent.FileIdentity(m.stateDir), func(ctx context.Context) (model.AgentCredential, error) {
		return m.credentials(ctx, boot)
	})
	if err != nil || id.ClusterID != cl.ID {
		f.t.Fatalf("enroll %s: %+v %v", name, id, err)
	}
	m.start()
	return m
}

// credentials backs agent enrollment with the registry, as the HTTP
// endpoint does.
func (m *member) credentials(ctx context.Context, tok string) (model.AgentCredential, error) {
	if len(tok) > 16 && tok[:16] == "gantry-bootstrap" {
		return m.f.cp.Registry().Exchange(ctx, tok)
	}
	return m.f.cp.Registry().Renew(ctx, tok)
}

// start runs the agent from its saved identity.
func (m *member) start() {
	t := m.f.t
	t.Helper()
	id, ok, err := agent.LoadIdentity(m.stateDir)
	if err != nil || !ok {
		t.Fatalf("identity of %s: %v %v", m.name, ok, err)
	}
	m.clusterID = id.ClusterID
	m.proxy = testutil.StartProxy(t, m.f.cp.NATSURL())
	m.nc, err = nats.Connect(m.proxy.URL(), append(bus.AgentOptions(id.ClusterID, id.Credential), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.Name("agent-"+m.name))...)
	if err != nil {
		t.Fatal(err)
	}
	m.agent, err = agent.New(agent.Config{ClusterID: id.ClusterID, Conn: m.nc, Inventory: m.inv, Heartbeat: fleetHeartbeat,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("agent", m.name),
		NewRuntime: func(notify func()) (runtime.Runtime, error) {
			rt, err := process.New(process.Config{Dir: filepath.Join(m.stateDir, "runtime"), Notify: notify,
				BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, StopGrace: testStopGrace})
			m.rt = rt
			return rt, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.agent.Start(testutil.Context(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
}

// stop stops the agent and its instances.
func (m *member) stop() {
	if m.agent != nil {
		m.agent.Close()
		m.nc.Close()
		m.agent = nil
	}
}

// running counts the instances this agent's runtime runs.
func (m *member) running() int {
	n := 0
	for _, st := range m.rt.List() {
		if st.State == runtime.StateRunning {
			n++
		}
	}
	return n
}

// placements returns, per cluster id, the instances of a version placed there.
func (f *fleet) placements(f0 model.Function) map[string]int {
	f.t.Helper()
	insts, err := f.cp.Store().ListInstances(testutil.Context(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]int{}
	for _, in := range insts {
		if in.FunctionVersionID == f0.VersionID {
			out[in.ClusterID]++
		}
	}
	return out
}

// deployEcho creates an echo function and deploys spec, without waiting.
func (f *fleet) deployEcho(name string, spec model.GPUSpec) model.Function {
	f.t.Helper()
	ctx := testutil.Context(f.t)
	fn, err := f.c.CreateFunction(ctx, selfFunction(f.t, name, "echo"))
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.c.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{spec}}); err != nil {
		f.t.Fatal(err)
	}
	return fn
}

func (f *fleet) waitStatus(fn model.Function, want model.FunctionStatus) model.Deployment {
	f.t.Helper()
	return (&platform{c: f.c}).waitStatus(f.t, fn, want)
}

// invokeOK calls fn once and reports any failure.
func (f *fleet) invokeOK(fn model.Function) error {
	resp, err := f.c.Invoke(context.Background(), client.InvokeRequest{FunctionID: fn.ID, PollSeconds: 60})
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

type agentIdentity = agent.Identity

var loadIdentity = agent.LoadIdentity
