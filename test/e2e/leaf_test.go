package e2e

import (
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestLeafAgentWithBinary drives the built binary: `gantry server` accepts
// leaf nodes with the sites' keys from `gantry bus gen-secrets`, and
// `gantry agent --leaf` of a site runs a leaf node and reaches the hub only
// through it. A function deployed on that cluster answers calls through the
// gateway (over the bus, so over the leaf link), and the agent process holds
// a connection to the hub's leaf port and none to its client port. With the
// server stopped, the cluster's clients still publish and subscribe on the
// leaf; once it is back the leaf reconnects and calls are answered again.
func TestLeafAgentWithBinary(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary and runs a server and a leaf agent")
	}
	bin := buildGantry(t)
	env := isolatedEnv(t.TempDir())
	dataDir, stateDir, pki := t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "bus")
	apiAddr, natsAddr, hubLeafAddr, localAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	url := "http://" + apiAddr
	startServer := func() *agentProcess {
		t.Helper()
		s := startAgentProcess(t, bin, "gantry server", "server", "--data-dir", dataDir, "--listen", apiAddr, "--grpc-listen", "127.0.0.1:0",
			"--nats-listen", natsAddr, "--nats-leaf-listen", hubLeafAddr, "--nats-leaf-keys", pki, "--admin-keys", "open", "--log-level", "warn")
		waitHealthy(t, url, s)
		return s
	}

	// The site's keys must exist before the server checks the directory.
	if err := os.MkdirAll(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	server := startServer()
	if want := "Leaf:  nats-leaf://" + hubLeafAddr; !strings.Contains(server.output(), want) {
		t.Fatalf("the server's banner lacks %q:\n%s", want, server.output())
	}
	ctx := testutil.Context(t)
	tok, err := client.New(url, "").MintAdminToken(ctx, model.AdminKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(url, tok.Value)
	reg, err := c.RegisterCluster(ctx, controlplane.DefaultAccount, model.ClusterRequest{ClusterName: "leafy", ClusterGroupName: "leafy"})
	if err != nil {
		t.Fatal(err)
	}
	// The site's NKey, named by the cluster's id; the hub re-reads the
	// directory at each leaf connect.
	runGantry(t, bin, env, "bus", "gen-secrets", "--out", pki, "--hostname", "127.0.0.1", "--cpc", reg.ClusterID)
	bootstrap := filepath.Join(t.TempDir(), "bootstrap")
	if err := os.WriteFile(bootstrap, []byte(reg.BootstrapToken), 0o600); err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(pki, "cpc", reg.ClusterID, "nkeys", "user", "seed")
	agent := startAgentProcess(t, bin, "gantry agent --leaf", "agent", "--server", url, "--bootstrap-token-file", bootstrap,
		"--state-dir", stateDir, "--gpus", "1", "--heartbeat", "1s", "--log-level", "info",
		"--leaf="+localAddr, "--leaf-url", "nats-leaf://"+hubLeafAddr, "--leaf-nkey-file", seedFile)
	waitClusterReady(t, c, reg.ClusterID)

	f, err := c.CreateFunction(ctx, model.CreateFunctionRequest{Name: "leafy", InferenceURL: "/echo",
		Health:         &model.Health{Protocol: "HTTP", URI: "/health", Timeout: "PT5S", ExpectedStatusCode: 200},
		ContainerImage: "process://" + bin, ContainerArgs: "example echo"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDeployment(ctx, f.ID, f.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{
		{GPU: "H100", MinInstances: 1, MaxInstances: 1}}}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, f)
	invokeLeafy(t, url, tok.Value, f)

	// The agent's NATS traffic crosses the leaf link: its process holds a
	// connection to the hub's leaf port and none to the hub's client port.
	peers := tcpPeers(t, agent.cmd.Process.Pid)
	if !peers[hubLeafAddr] || peers[natsAddr] {
		t.Fatalf("the agent's TCP peers are %v; want the hub's leaf port %s and not its client port %s", peers, hubLeafAddr, natsAddr)
	}
	// Nothing of the seed or the credential in the output.
	seed, err := os.ReadFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	id := mustLoadIdentity(t, stateDir)
	for _, secret := range []string{strings.TrimSpace(string(seed)), id.Credential} {
		if strings.Contains(agent.output(), secret) || strings.Contains(server.output(), secret) {
			t.Fatal("a process's output holds the site's seed or the cluster credential")
		}
	}

	// Cut the hub: the cluster's own clients keep publishing and
	// subscribing on the leaf.
	server.stop(t)
	testutil.WaitFor(t, binWaitTimeout, func() error {
		if tcpPeers(t, agent.cmd.Process.Pid)[hubLeafAddr] {
			return fmt.Errorf("the agent still holds its link to %s", hubLeafAddr)
		}
		return nil
	})
	local, err := bus.Connect("nats://"+localAddr, "leaf-local", nats.Token(id.Credential))
	if err != nil {
		t.Fatalf("connecting to the leaf while the hub is down: %v", err)
	}
	defer local.Close()
	sub, err := local.SubscribeSync(bus.SiteSubject(id.ClusterID, "local"))
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := local.Publish(bus.SiteSubject(id.ClusterID, "local"), []byte("hub down")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(binWaitTimeout); err != nil || string(m.Data) != "hub down" {
		t.Fatalf("local pub/sub on the leaf with the hub down: %v %v", m, err)
	}

	// The hub back on the same ports: the leaf reconnects, and calls over
	// the bus are answered again.
	startServer()
	testutil.WaitFor(t, binWaitTimeout, func() error {
		if !tcpPeers(t, agent.cmd.Process.Pid)[hubLeafAddr] {
			return fmt.Errorf("the leaf has not reconnected to %s", hubLeafAddr)
		}
		return nil
	})
	invokeLeafy(t, url, tok.Value, f)
	if tcpPeers(t, agent.cmd.Process.Pid)[natsAddr] {
		t.Fatal("after the reconnect the agent holds a client connection to the hub")
	}
}

// waitClusterReady waits for the cluster to turn READY.
func waitClusterReady(t *testing.T, c *client.Client, id string) {
	t.Helper()
	testutil.WaitFor(t, binWaitTimeout, func() error {
		cl, err := c.GetCluster(testutil.Context(t), controlplane.DefaultAccount, id)
		if err != nil {
			return err
		}
		if cl.Status != model.ClusterReady {
			return fmt.Errorf("cluster is %s", cl.Status)
		}
		return nil
	})
}

// invokeLeafy calls the echo function through the gateway until it answers
// 200 with the body echoed.
func invokeLeafy(t *testing.T, url, token string, f model.Function) {
	t.Helper()
	const want = `"body":"{\"hello\":\"leaf\"}"`
	testutil.WaitFor(t, binWaitTimeout, func() error {
		req, err := http.NewRequest(http.MethodPost, url+"/v2/nvcf/pexec/functions/"+f.ID, strings.NewReader(`{"hello":"leaf"}`))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			return fmt.Errorf("pexec: %d %s", resp.StatusCode, body)
		}
		return nil
	})
}

func mustLoadIdentity(t *testing.T, stateDir string) agentIdentity {
	t.Helper()
	id, ok, err := loadIdentity(stateDir)
	if err != nil || !ok {
		t.Fatalf("agent identity in %s: %v (found %v)", stateDir, err, ok)
	}
	return id
}

// tcpPeers is the set of remote host:port of pid's established IPv4 TCP
// connections: its socket inodes (/proc/<pid>/fd) looked up in
// /proc/<pid>/net/tcp.
func tcpPeers(t *testing.T, pid int) map[string]bool {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatal(err)
	}
	peers := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		fs := strings.Fields(line)
		// sl local rem st ... inode (field 9)
		if len(fs) < 10 || fs[3] != "01" || !inodes[fs[9]] {
			continue
		}
		peers[hexAddr(t, fs[2])] = true
	}
	return peers
}

// hexAddr turns /proc/net/tcp's 0100007F:1F90 into 127.0.0.1:8080.
func hexAddr(t *testing.T, s string) string {
	t.Helper()
	h, p, ok := strings.Cut(s, ":")
	ip, err := hex.DecodeString(h)
	port, perr := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || perr != nil || len(ip) != 4 {
		t.Fatalf("unreadable address %q in /proc/net/tcp", s)
	}
	return net.JoinHostPort(net.IPv4(ip[3], ip[2], ip[1], ip[0]).String(), strconv.Itoa(int(port)))
}
