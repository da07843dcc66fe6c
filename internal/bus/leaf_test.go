package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/process"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/bussecrets"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// Cluster credentials of the sites in the hub tests (staticLeafVerifier).
const (
	tokenEast = "east-cluster-credential-for-test"
	tokenWest = "west-cluster-credential-for-test"
)

// secretsDir runs gen-secrets' planner into a temporary directory: the CA,
// the hub's certificate for 127.0.0.1 and each site's certificate and
// NKey, as `gantry bus gen-secrets --out DIR --hostname 127.0.0.1 --cpc
// ...` writes them.
func secretsDir(t testing.TB, sites ...string) string {
	t.Helper()
	dir := t.TempDir()
	outs, err := bussecrets.Plan(bussecrets.Config{Hostnames: []string{"127.0.0.1"}, CPCs: sites}, map[string][]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if err := bussecrets.WriteFiles(dir, outs); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.TrimSpace(string(b)))
}

// hub is a cluster of embedded servers with routes between them, each with
// a leaf-node listener on mTLS, admitting the sites of dir.
type hub struct {
	nodes    []*bus.Embedded
	auth     *bus.Authenticator
	internal *nats.Conn // to node 0
	js       jetstream.JetStream

	mu      sync.Mutex
	refused []string // reasons leaves were refused
}

func (h *hub) refusals() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.refused...)
}

// startHub starts n nodes (n > 1: a cluster, JetStream replicated n times)
// and sets up Gantry's streams and buckets on it.
func startHub(t testing.TB, dir string, n int) *hub {
	t.Helper()
	h := &hub{}
	verifier := &staticVerifierForTest{clusters: map[string]string{tokenEast: "east", tokenWest: "west"}}
	h.auth = bus.NewAuthenticator(internalToken, verifier)
	h.auth.AdmitLeaves(bus.LeafAuth{Keys: bus.LeafKeyDir(dir), Refused: func(remote, reason string) {
		h.mu.Lock()
		h.refused = append(h.refused, reason)
		h.mu.Unlock()
	}})
	tlsCfg, err := bus.ServerTLS(bus.TLSFiles{Cert: filepath.Join(dir, "csc/tls/tls.crt"), Key: filepath.Join(dir, "csc/tls/tls.key"), CA: filepath.Join(dir, "csc/tls/ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	// Every node routes to every other (nats-server skips itself); a
	// clustered JetStream waits for its peers, so they start together.
	var listens, routes []string
	for range n {
		l := "127.0.0.1:" + freePort(t)
		listens, routes = append(listens, l), append(routes, "nats-route://"+l)
	}
	type started struct {
		i   int
		e   *bus.Embedded
		err error
	}
	ch := make(chan started, n)
	for i := range n {
		cfg := bus.EmbeddedConfig{Dir: t.TempDir(), Auth: h.auth, TLS: tlsCfg, LeafListen: "127.0.0.1:0"}
		if n > 1 {
			cfg.Cluster = &bus.ClusterConfig{Name: "hub", ServerName: fmt.Sprintf("hub-%d", i), Listen: listens[i], Routes: routes}
		}
		go func(i int, cfg bus.EmbeddedConfig) {
			e, err := bus.StartEmbedded(cfg, 60*time.Second)
			ch <- started{i, e, err}
		}(i, cfg)
	}
	h.nodes = make([]*bus.Embedded, n)
	for range n {
		s := <-ch
		if s.err != nil {
			t.Fatalf("hub node %d: %v", s.i, s.err)
		}
		h.nodes[s.i] = s.e
		t.Cleanup(func() { s.e.Close() })
	}
	if h.internal, err = h.nodes[0].Connect("hub-internal"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.internal.Close)
	if h.js, err = jetstream.New(h.internal); err != nil {
		t.Fatal(err)
	}
	// Clustered JetStream takes a moment to elect its meta leader.
	testutil.WaitFor(t, 60*time.Second, func() error {
		ctx := leafCtx(t, 10*time.Second)
		return bus.Setup(ctx, h.js, bus.Config{Replicas: n})
	})
	return h
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

// site is one GPU cluster: its leaf, reaching every hub node through a
// proxy the test can cut.
type site struct {
	id      string
	leaf    *bus.Leaf
	proxies []*testutil.Proxy
}

// leafTo starts cluster id's leaf with the given seed and client
// certificate of site certOf, dialling every node of h through a proxy.
func leafTo(t testing.TB, h *hub, dir, id, seedOf, certOf, token string) *site {
	t.Helper()
	s := &site{id: id}
	var urls []string
	for _, n := range h.nodes {
		p := testutil.StartProxy(t, n.LeafAddr())
		s.proxies = append(s.proxies, p)
		urls = append(urls, "tls://"+strings.TrimPrefix(p.URL(), "nats://"))
	}
	tlsCfg, err := bus.ClientTLS(bus.TLSFiles{CA: filepath.Join(dir, "cpc", certOf, "tls/ca.crt"),
		Cert: filepath.Join(dir, "cpc", certOf, "tls/tls.crt"), Key: filepath.Join(dir, "cpc", certOf, "tls/tls.key")})
	if err != nil {
		t.Fatal(err)
	}
	s.leaf, err = bus.StartLeaf(bus.LeafConfig{ClusterID: id, Hub: urls, Seed: readFile(t, filepath.Join(dir, "cpc", seedOf, "nkeys/user/seed")),
		TLS: tlsCfg, Listen: "127.0.0.1:0", Credential: func() string { return token }, ReconnectWait: 50 * time.Millisecond}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.leaf.Close() })
	return s
}

func (s *site) cut() {
	for _, p := range s.proxies {
		p.Cut()
	}
}

func (s *site) heal() {
	for _, p := range s.proxies {
		p.Heal()
	}
}

// client connects to the site's leaf over TCP as a function or local
// consumer of the cluster would: its credential and its inbox prefix.
func (s *site) client(t testing.TB, token string) *nats.Conn {
	t.Helper()
	nc, err := bus.Connect(s.leaf.URL(), "local-"+s.id, bus.AgentOptions(s.id, token)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startAgent runs a real agent of the site (process runtime, no instance)
// on an in-process connection to its leaf.
func startAgent(t testing.TB, s *site, token string) *agent.Agent {
	t.Helper()
	nc, err := s.leaf.ConnectAgent(func() string { return token })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	dir := t.TempDir()
	a, err := agent.New(agent.Config{ClusterID: s.id, Conn: nc, Heartbeat: 100 * time.Millisecond,
		Inventory: model.Inventory{Nodes: []model.Node{agent.HostNode("node-"+s.id, "H100", 80, 1)}},
		NewRuntime: func(notify func()) (runtime.Runtime, error) {
			return process.New(process.Config{Dir: dir, Notify: notify})
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(leafCtx(t, time.Minute)); err != nil {
		t.Fatalf("agent of %s through its leaf: %v", s.id, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func waitConnected(t testing.TB, s *site) {
	t.Helper()
	testutil.WaitFor(t, 30*time.Second, func() error {
		if !s.leaf.Connected() {
			return fmt.Errorf("leaf of %s not connected to the hub", s.id)
		}
		return nil
	})
}

// TestHubAndLeaves is the acceptance test of the hub and leaves: a 3-node
// hub cluster and two sites, each a leaf with its own real agent, on mTLS
// with gen-secrets' certificates and NKeys.
func TestHubAndLeaves(t *testing.T) {
	dir := secretsDir(t, "east", "west")
	h := startHub(t, dir, 3)
	east := leafTo(t, h, dir, "east", "east", "east", tokenEast)
	west := leafTo(t, h, dir, "west", "west", "west", tokenWest)
	waitConnected(t, east)
	waitConnected(t, west)

	// The control plane's side: answer reports on another node than the
	// one the leaves' JetStream requests reach first, checking the sender.
	other, err := h.nodes[2].Connect("hub-reports")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var mu sync.Mutex
	reported := map[string]bool{}
	if _, err := other.Subscribe(bus.ReportSubjectAll, func(m *nats.Msg) {
		if id, ok := bus.FromAgent(m); ok {
			mu.Lock()
			reported[id] = true
			mu.Unlock()
		}
		m.Respond([]byte(`{}`))
	}); err != nil {
		t.Fatal(err)
	}
	desired, err := h.js.KeyValue(leafCtx(t, 10*time.Second), bus.DesiredBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"east", "west"} {
		b, _ := json.Marshal(model.DesiredState{ClusterID: id, Generation: 1})
		if _, err := desired.Put(leafCtx(t, 10*time.Second), id, b); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("agents work through their leaves", func(t *testing.T) {
		for _, s := range []*site{east, west} {
			a := startAgent(t, s, map[string]string{"east": tokenEast, "west": tokenWest}[s.id])
			select {
			case <-a.Ready():
			case <-time.After(30 * time.Second):
				t.Fatalf("agent of %s did not apply its desired state (watched through its leaf)", s.id)
			}
		}
		testutil.WaitFor(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if !reported["east"] || !reported["west"] {
				return fmt.Errorf("reports from %v", reported)
			}
			return nil
		})
	})

	t.Run("site events reach the hub and the other leaf", func(t *testing.T) {
		pub := east.client(t, tokenEast)
		atWest := make(chan *nats.Msg, 1024)
		if _, err := west.client(t, tokenWest).ChanSubscribe(bus.SiteSubjects, atWest); err != nil {
			t.Fatal(err)
		}
		atHub := make(chan *nats.Msg, 1024)
		if _, err := h.internal.ChanSubscribe(bus.SiteSubjects, atHub); err != nil {
			t.Fatal(err)
		}
		// Interest crosses hub and leaves asynchronously: probe until a
		// message arrives at both.
		testutil.WaitFor(t, 30*time.Second, func() error {
			if err := pub.Publish(bus.SiteSubject("east", "probe"), nil); err != nil {
				return err
			}
			if len(atWest) == 0 || len(atHub) == 0 {
				return fmt.Errorf("probe seen at west %d, at hub %d", len(atWest), len(atHub))
			}
			return nil
		})
		drain(atWest)
		drain(atHub)
		const n = 200
		for i := range n {
			if err := pub.Publish(bus.SiteSubject("east", "instance.started"), []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		for name, ch := range map[string]chan *nats.Msg{"west": atWest, "hub": atHub} {
			for i := range n {
				m := recvNotProbe(t, ch)
				if string(m.Data) != fmt.Sprint(i) {
					t.Fatalf("%s: event %d is %q: lost or reordered", name, i, m.Data)
				}
			}
		}
	})

	t.Run("a leaf is narrowed to its cluster", func(t *testing.T) {
		// A local client of east cannot speak for west...
		pub := east.client(t, tokenEast)
		errs := make(chan error, 4)
		pub.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
		if err := pub.Publish(bus.SiteSubject("west", "forged"), nil); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Fatalf("publishing for west from east: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("publishing for west from east was not refused")
		}
		// ... and neither can a leaf with east's key whose own clients may
		// do anything: the hub holds it to east's permissions.
		raw := rawLeaf(t, h, dir, "east")
		nc, err := nats.Connect(raw.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		got := make(chan *nats.Msg, 16)
		if _, err := other.ChanSubscribe("gantry.report.*", got); err != nil {
			t.Fatal(err)
		}
		// The reports of the agents running above arrive here too; only
		// the forged one matters.
		testutil.WaitFor(t, 30*time.Second, func() error {
			if err := nc.Publish(bus.ReportSubject("west"), []byte("forged")); err != nil {
				return err
			}
			if err := nc.Publish(bus.ReportSubject("east"), []byte("raw")); err != nil {
				return err
			}
			for {
				select {
				case m := <-got:
					if string(m.Data) == "forged" {
						return fmt.Errorf("a leaf of east published a report of west: %s", m.Subject)
					}
					if string(m.Data) == "raw" {
						return nil
					}
				default:
					return fmt.Errorf("nothing from the raw leaf yet")
				}
			}
		})
	})

	t.Run("a leaf with another site's key is refused", func(t *testing.T) {
		before := len(h.refusals())
		// East's certificate and name, west's key.
		wrong := leafTo(t, h, dir, "east", "west", "east", tokenEast)
		testutil.WaitFor(t, 30*time.Second, func() error {
			if r := h.refusals(); len(r) == before {
				return fmt.Errorf("no refusal yet")
			}
			return nil
		})
		r := h.refusals()[before]
		if !strings.Contains(r, "another site's key") {
			t.Fatalf("refusal %q does not say why", r)
		}
		seed := string(readFile(t, filepath.Join(dir, "cpc/west/nkeys/user/seed")))
		for _, reason := range h.refusals() {
			if strings.Contains(reason, seed) || strings.Contains(reason, string(readFile(t, filepath.Join(dir, "cpc/west/nkeys/user/pubkey")))) {
				t.Fatalf("a refusal carries the key: %q", reason)
			}
		}
		if wrong.leaf.Connected() {
			t.Fatal("a leaf with another site's key is connected")
		}
		// A key of no site, and west's key under west's name with east's
		// certificate, are refused too.
		kp, _ := nkeys.CreateUser()
		unknown, _ := kp.Seed()
		before = len(h.refusals())
		rogue := filepath.Join(t.TempDir(), "cpc", "rogue", "nkeys", "user")
		os.MkdirAll(rogue, 0o700)
		os.WriteFile(filepath.Join(rogue, "seed"), unknown, 0o600)
		_ = leafWithSeed(t, h, dir, "east", unknown, "east")
		_ = leafTo(t, h, dir, "west", "west", "east", tokenWest)
		testutil.WaitFor(t, 30*time.Second, func() error {
			var key, cert bool
			for _, r := range h.refusals()[before:] {
				key = key || strings.Contains(r, "no known site")
				cert = cert || strings.Contains(r, "client certificate of \"east\"")
			}
			if !key || !cert {
				return fmt.Errorf("refusals %q", h.refusals()[before:])
			}
			return nil
		})
	})

	t.Run("the link is cut during a JetStream publish stream", func(t *testing.T) {
		testLeafCut(t, h, east)
	})
}

// testLeafCut publishes results from the site's side, each until
// acknowledged, while the site's link is cut and healed: every
// acknowledged one is stored, local traffic goes on during the cut, and
// the duplicates the retries make are counted and bounded.
func testLeafCut(t *testing.T, h *hub, s *site) {
	nc := s.client(t, tokenEast)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	acked := make(chan int, n)
	var retries, dups int
	failing := make(chan struct{}) // closed at the first failed publish
	done := make(chan struct{})
	deadline := time.Now().Add(2 * time.Minute)
	var failed error
	go func() {
		defer close(done)
		// A publisher that retries until acknowledged, pacing its
		// retries (its own backoff, not the test waiting).
		pace := time.NewTicker(10 * time.Millisecond)
		defer pace.Stop()
		for i := range n {
			id := fmt.Sprintf("cut-%d", i)
			for attempt := 0; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				ack, err := js.Publish(ctx, bus.ResultSubject(id), []byte(id), jetstream.WithMsgID(id))
				cancel()
				if err == nil {
					if ack.Duplicate {
						dups++
					}
					acked <- i
					break
				}
				if retries++; retries == 1 {
					close(failing)
				}
				if time.Now().After(deadline) {
					failed = fmt.Errorf("%s never acknowledged: %w", id, err)
					close(acked)
					return
				}
				<-pace.C
			}
		}
	}()
	for range 50 {
		if _, ok := <-acked; !ok {
			<-done
			t.Fatal(failed)
		}
	}
	s.cut()
	cutAt := time.Now()
	testutil.WaitFor(t, 30*time.Second, func() error {
		if s.leaf.Connected() {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	// The cut is felt in the middle of the stream.
	select {
	case <-failing:
	case <-done:
		t.Fatal("the stream ended before the cut was felt: publish more")
	}
	// Local traffic goes on without the hub.
	local := s.client(t, tokenEast)
	sub, err := local.SubscribeSync(bus.SiteSubject(s.id, "local"))
	if err != nil {
		t.Fatal(err)
	}
	local.Flush()
	if err := s.client(t, tokenEast).Publish(bus.SiteSubject(s.id, "local"), []byte("during the cut")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "during the cut" {
		t.Fatalf("local traffic during the cut: %v", err)
	}
	s.heal()
	healAt := time.Now()
	waitConnected(t, s)
	t.Logf("cut for %v; the leaf was back %v after the heal", healAt.Sub(cutAt).Round(time.Millisecond), time.Since(healAt).Round(time.Millisecond))
	<-done
	if failed != nil {
		t.Fatal(failed)
	}
	close(acked)
	ctx := leafCtx(t, 30*time.Second)
	results, err := h.js.KeyValue(ctx, bus.ResultsBucket)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for i := range acked {
		count++
		if _, err := results.Get(ctx, fmt.Sprintf("cut-%d", i)); err != nil {
			t.Fatalf("acknowledged result cut-%d is lost: %v", i, err)
		}
	}
	if count != n-50 {
		t.Fatalf("%d acknowledged after the first 50, want %d", count, n-50)
	}
	st, err := h.js.Stream(ctx, "KV_"+bus.ResultsBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	lister, err := results.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range lister.Keys() {
		if strings.HasPrefix(k, "cut-") {
			stored++
		}
	}
	t.Logf("%d results: %d retries, %d duplicates caught by the message id, %d messages stored", n, retries, dups, info.State.Msgs)
	if stored != n {
		t.Fatalf("%d results stored, want %d", stored, n)
	}
	if dups > retries {
		t.Fatalf("%d duplicates from %d retries", dups, retries)
	}
}

func drain(ch chan *nats.Msg) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func recvNotProbe(t *testing.T, ch chan *nats.Msg) *nats.Msg {
	t.Helper()
	for {
		select {
		case m := <-ch:
			if strings.HasSuffix(m.Subject, ".probe") {
				continue
			}
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("an event did not arrive")
			return nil
		}
	}
}

// rawLeaf is a plain nats-server leaf with site id's key and certificate
// but no local authentication or permissions: what the hub alone allows
// it is what it gets.
func rawLeaf(t testing.TB, h *hub, dir, id string) *server.Server {
	t.Helper()
	tlsCfg, err := bus.ClientTLS(bus.TLSFiles{CA: filepath.Join(dir, "cpc", id, "tls/ca.crt"),
		Cert: filepath.Join(dir, "cpc", id, "tls/tls.crt"), Key: filepath.Join(dir, "cpc", id, "tls/tls.key")})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("tls://" + id + "@" + h.nodes[1].LeafAddr())
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		LeafNode: server.LeafNodeOpts{ReconnectInterval: 50 * time.Millisecond, Remotes: []*server.RemoteLeafOpts{{
			URLs: []*url.URL{u}, Nkey: string(readFile(t, filepath.Join(dir, "cpc", id, "nkeys/user/seed"))), TLS: true, TLSConfig: tlsCfg}}}}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("raw leaf not ready")
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		if srv.NumLeafNodes() == 0 {
			return fmt.Errorf("raw leaf not connected")
		}
		return nil
	})
	return srv
}

// leafWithSeed starts a leaf of id with an arbitrary seed and certOf's
// certificate.
func leafWithSeed(t testing.TB, h *hub, dir, id string, seed []byte, certOf string) *bus.Leaf {
	t.Helper()
	tlsCfg, err := bus.ClientTLS(bus.TLSFiles{CA: filepath.Join(dir, "cpc", certOf, "tls/ca.crt"),
		Cert: filepath.Join(dir, "cpc", certOf, "tls/tls.crt"), Key: filepath.Join(dir, "cpc", certOf, "tls/tls.key")})
	if err != nil {
		t.Fatal(err)
	}
	l, err := bus.StartLeaf(bus.LeafConfig{ClusterID: id, Hub: []string{"tls://" + h.nodes[0].LeafAddr()}, Seed: seed, TLS: tlsCfg,
		Credential: func() string { return "x" }, ReconnectWait: 50 * time.Millisecond}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func leafCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
