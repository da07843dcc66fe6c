package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// Embedded is a single-member etcd running inside the Gantry process: the
// real engine, not a fake, so `gantry dev` and the tests exercise exactly the
// code that production runs against an etcd cluster.
type Embedded struct {
	etcd   *embed.Etcd
	client *clientv3.Client
}

// StartEmbedded starts etcd with its data under dir and waits until it
// serves. Its listeners bind to loopback ports chosen on first start and
// remembered in dir, so restarts find the same member. Clients inside the
// process talk to it without a network hop.
func StartEmbedded(dir string, startTimeout time.Duration) (*Embedded, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: embedded etcd: %w", err)
	}
	ports, err := loadOrPickPorts(filepath.Join(dir, "ports.json"))
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "gantry"
	cfg.Dir = filepath.Join(dir, "data")
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports.Peer)}
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports.Client)}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Keep history bounded: compact hourly and keep the database small, which
	// also keeps idle memory low.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	cfg.SnapshotCount = 5000

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: start embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("store: embedded etcd failed: %w", err)
	case <-time.After(startTimeout):
		e.Server.Stop()
		e.Close()
		return nil, errors.New("store: embedded etcd did not become ready in time; see etcd.log in the data dir")
	}
	return &Embedded{etcd: e, client: v3client.New(e.Server)}, nil
}

// Client returns an in-process client.
func (e *Embedded) Client() *clientv3.Client { return e.client }

// Endpoint returns the client URL, for processes outside this one.
func (e *Embedded) Endpoint() string { return e.etcd.Config().AdvertiseClientUrls[0].String() }

// Close stops etcd after closing the in-process client.
func (e *Embedded) Close() error {
	e.client.Close()
	e.etcd.Close()
	return nil
}

type etcdPorts struct {
	Client int `json:"client"`
	Peer   int `json:"peer"`
}

func loadOrPickPorts(path string) (etcdPorts, error) {
	var p etcdPorts
	if b, err := os.ReadFile(path); err == nil {
		if json.Unmarshal(b, &p) == nil && p.Client > 0 && p.Peer > 0 && portFree(p.Client) && portFree(p.Peer) {
			return p, nil
		}
	}
	var err error
	if p.Client, err = freePort(); err != nil {
		return p, err
	}
	if p.Peer, err = freePort(); err != nil {
		return p, err
	}
	b, _ := json.Marshal(p)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return p, fmt.Errorf("store: embedded etcd: %w", err)
	}
	return p, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("store: pick a port for embedded etcd: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
