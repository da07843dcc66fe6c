// Package dev runs the whole platform in one process, as `gantry dev` does:
// the control plane on embedded etcd and NATS, plus one local agent whose
// process runtime runs functions on a simulated GPU inventory. It is the real
// thing in one process, not a mock: the agent talks to the control plane
// over NATS exactly as a remote agent would.
package dev

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/process"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
)

// LocalCluster is the id and name of the dev cluster, and its group unless
// Config.ClusterGroup names another.
const LocalCluster = "local"

// Config configures a dev platform.
type Config struct {
	DataDir     string
	Listen      string
	GPUs        int    // simulated GPU count (default 8)
	GPUModel    string // default H100
	GPUMemoryGB int    // default 80
	// ClusterGroup is the dev cluster's group, the deployments' backend
	// (default "local"); NVCF's self-hosted examples deploy to
	// "nvcf-default".
	ClusterGroup string
	// BusCalls sends every call over the bus, as to an agent whose
	// instances the gateway cannot reach; by default the gateway calls the
	// local instances directly on slots the agent lends it.
	BusCalls bool
	Logger   *slog.Logger
	// Process tunes the process runtime (tests shorten backoffs); Dir,
	// Notify and Logger are filled in.
	Process process.Config
	// Heartbeat, Resync and Grace shorten the loops for tests.
	Heartbeat time.Duration
	Resync    time.Duration
	Grace     time.Duration
	// Invocation bounds the calls the gateway takes.
	Invocation controlplane.Invocation
	// GRPC is the gRPC invocation listener (none when its Listen is empty).
	GRPC controlplane.GRPC
	// Autoscale tunes the autoscaler.
	Autoscale controlplane.Autoscale
	// Events is the retention of the platform event stream.
	Events controlplane.Events
	// NATSTLS and NATSInsecure are the embedded NATS's TLS
	// (controlplane.Config); the local agent connects in-process and
	// needs none.
	NATSTLS      bus.TLSFiles
	NATSInsecure bool
	// NATSLeafListen and NATSLeafKeys accept other clusters' leaf nodes
	// (controlplane.Config); the local agent needs none.
	NATSLeafListen string
	NATSLeafKeys   string
	// MetricsListen serves GET /metrics without authentication
	// (controlplane.Config).
	MetricsListen  string
	DisableMetrics bool
}

// Platform is a running dev platform.
type Platform struct {
	cfg   Config
	cp    *controlplane.Server
	nc    *nats.Conn
	agent *agent.Agent
	logs  *agent.Logs

	closeOnce sync.Once
}

// New applies defaults; Start runs it.
func New(cfg Config) (*Platform, error) {
	if cfg.GPUs == 0 {
		cfg.GPUs = 8
	}
	if cfg.GPUs < 0 || cfg.GPUs > 1024 {
		return nil, fmt.Errorf("dev: --gpus must be between 1 and 1024, got %d", cfg.GPUs)
	}
	if cfg.GPUModel == "" {
		cfg.GPUModel = "H100"
	}
	if cfg.GPUMemoryGB == 0 {
		cfg.GPUMemoryGB = 80
	}
	if cfg.ClusterGroup == "" {
		cfg.ClusterGroup = LocalCluster
	}
	cp, err := controlplane.New(controlplane.Config{DataDir: cfg.DataDir, Listen: cfg.Listen, Resync: cfg.Resync, Grace: cfg.Grace,
		Invocation: cfg.Invocation, GRPC: cfg.GRPC, Autoscale: cfg.Autoscale, Events: cfg.Events, Logger: cfg.Logger,
		NATSTLS: cfg.NATSTLS, NATSInsecure: cfg.NATSInsecure, NATSLeafListen: cfg.NATSLeafListen, NATSLeafKeys: cfg.NATSLeafKeys,
		MetricsListen: cfg.MetricsListen, DisableMetrics: cfg.DisableMetrics})
	if err != nil {
		return nil, err
	}
	return &Platform{cfg: cfg, cp: cp}, nil
}

// Start brings up the control plane, registers the local cluster and starts
// its agent.
func (p *Platform) Start(ctx context.Context) error {
	if err := p.cp.Start(ctx); err != nil {
		return err
	}
	cred, err := p.cp.EnsureCluster(ctx, model.Cluster{ID: LocalCluster, Name: LocalCluster,
		GroupName: p.cfg.ClusterGroup, Region: "local", CloudProvider: "ON-PREM"})
	if err != nil {
		p.cp.Close()
		return err
	}
	nc, err := p.cp.ConnectAgent(cred)
	if err != nil {
		p.cp.Close()
		return err
	}
	host, _ := os.Hostname()
	inv := model.Inventory{Nodes: []model.Node{agent.HostNode(host, p.cfg.GPUModel, p.cfg.GPUMemoryGB, p.cfg.GPUs)}}
	logs := agent.NewLogs(agent.LogsConfig{ClusterID: LocalCluster, Conn: nc, Logger: p.cfg.Logger})
	if err := logs.Start(ctx); err != nil {
		nc.Close()
		p.cp.Close()
		return err
	}
	a, err := agent.New(agent.Config{
		ClusterID: LocalCluster, Conn: nc, Inventory: inv, Heartbeat: p.cfg.Heartbeat, Logger: p.cfg.Logger,
		DirectCalls: !p.cfg.BusCalls, ArtifactCacheDir: filepath.Join(p.cfg.DataDir, "agent", "artifacts"),
		NewRuntime: func(notify func()) (runtime.Runtime, error) {
			pc := p.cfg.Process
			pc.Dir = filepath.Join(p.cfg.DataDir, "agent")
			pc.Notify = notify
			pc.Logger = p.cfg.Logger
			pc.Output = logs.Output
			return process.New(pc)
		},
	})
	if err != nil {
		logs.Close()
		nc.Close()
		p.cp.Close()
		return err
	}
	if err := a.Start(ctx); err != nil {
		logs.Close()
		nc.Close()
		p.cp.Close()
		return err
	}
	p.agent, p.logs, p.nc = a, logs, nc
	return nil
}

// URL is the API base URL.
func (p *Platform) URL() string { return p.cp.URL() }

// GRPCAddr is the gRPC listener's address, or "" when it serves no gRPC.
func (p *Platform) GRPCAddr() string { return p.cp.GRPCAddr() }

// AdminToken is the admin credential.
func (p *Platform) AdminToken() string { return p.cp.AdminToken() }

// TokenPath is where the admin token is written.
func (p *Platform) TokenPath() string { return filepath.Join(p.cfg.DataDir, "admin-token") }

// ControlPlane exposes the control plane to tests.
func (p *Platform) ControlPlane() *controlplane.Server { return p.cp }

// Close stops the agent (and with it every instance), then the control
// plane. It is safe to call more than once.
func (p *Platform) Close() error {
	p.closeOnce.Do(func() {
		if p.agent != nil {
			_ = p.agent.Close()
			_ = p.logs.Close() // after the agent: its instances' last lines
			p.nc.Close()
		}
		_ = p.cp.Close()
	})
	return nil
}
