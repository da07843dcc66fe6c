package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestAcceptedCallsSurviveKills: 200 calls answered 202 while they are
// queued or running, then kill -9 of the agent (its instance dies with it)
// and, once it is back, kill -9 of `gantry server` — the gateway together
// with the nats-server and etcd it embeds, so NATS restarts from its store
// as after a crash. Every 202 must reach its own result; a call runs more
// than once only if it was running when something died, so duplicates are
// bounded by the slots in flight at the two kills.
func TestAcceptedCallsSurviveKills(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary and runs it through two crashes")
	}
	const (
		calls = 200
		slots = 16
	)
	bin := buildGantry(t)
	dataDir, agentDir := t.TempDir(), t.TempDir()
	apiAddr, natsAddr := freeAddr(t), freeAddr(t)
	url := "http://" + apiAddr
	startServer := func() *agentProcess {
		t.Helper()
		s := startAgentProcess(t, bin, "gantry server", "server", "--data-dir", dataDir, "--listen", apiAddr, "--grpc-listen", "127.0.0.1:0",
			"--nats-listen", natsAddr, "--admin-keys", "open", "--log-level", "warn")
		waitHealthy(t, url, s)
		return s
	}
	ctx := testutil.Context(t)
	server := startServer()

	tok, err := client.New(url, "").MintAdminToken(ctx, model.AdminKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(url, tok.Value)
	reg, err := c.RegisterCluster(ctx, controlplane.DefaultAccount, model.ClusterRequest{ClusterName: "crashy", ClusterGroupName: "crashy"})
	if err != nil {
		t.Fatal(err)
	}
	bootstrap := filepath.Join(t.TempDir(), "bootstrap")
	if err := os.WriteFile(bootstrap, []byte(reg.BootstrapToken), 0o600); err != nil {
		t.Fatal(err)
	}
	startAgent := func() *agentProcess {
		return startAgentProcess(t, bin, "gantry agent", "agent", "--server", url, "--bootstrap-token-file", bootstrap,
			"--state-dir", agentDir, "--gpus", "8", "--heartbeat", "1s", "--log-level", "warn")
	}
	agent := startAgent()

	log := filepath.Join(t.TempDir(), "function.log")
	req := selfFunction(t, "crashy", "stream")
	req.ContainerEnvironment = append(req.ContainerEnvironment, model.EnvVar{Key: streamLogEnv, Value: log})
	f, err := c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDeployment(ctx, f.ID, f.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{
		{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(slots)}}}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, f)

	// 200 calls, each running 1.5 s on 16 slots: ~19 s of work, so many are
	// still queued when the 202s are all in. A call's answer cannot start
	// within its 1 s poll window, so every call is answered 202: one that
	// runs when the window ends is asked to detach, and the half second
	// left is for that request to reach its worker on a busy machine (with
	// 1.1 s, some calls had answered first and got 200).
	reqIDs := make([]string, calls)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				reqIDs[i] = accept(t, url, tok.Value, f, fmt.Sprint("call-", i))
			}
		}()
	}
	for i := range calls {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ranBefore := readStreamLog(t, log).calls
	t.Logf("all %d calls answered 202; %d had started", calls, len(ranBefore))

	// kill -9 the agent; its instance dies with it (Pdeathsig).
	kill9(t, agent)
	startAgent()
	waitRan(t, log, len(ranBefore)+slots) // the new instance works again
	t.Logf("agent killed with %d calls started; server killed with %d started", len(ranBefore), len(readStreamLog(t, log).calls))
	// kill -9 the server: the gateway, NATS and etcd go down mid-work.
	kill9(t, server)
	startServer()

	// Every 202 reaches its result, answered by its own call.
	for i, id := range reqIDs {
		testutil.WaitFor(t, 3*time.Minute, func() error {
			st, body, err := pollStatus(url, tok.Value, id)
			if err != nil {
				return err
			}
			if st != http.StatusOK {
				return fmt.Errorf("call %d (%s): status %d %s", i, id, st, body)
			}
			if want := fmt.Sprint("call-", i); body != want {
				t.Fatalf("call %d (%s) answered %q, want %q", i, id, body, want)
			}
			return nil
		})
	}
	ran := readStreamLog(t, log).calls
	dups := 0
	for i := range calls {
		n := ran[fmt.Sprint("call-", i)]
		if n == 0 {
			t.Errorf("call-%d has a result but never ran", i)
		}
		dups += max(n-1, 0)
	}
	// At each kill at most `slots` calls were running; only those may run
	// again.
	if dups > 2*slots {
		t.Errorf("%d calls ran twice, want at most %d (the slots in flight at the two kills)", dups, 2*slots)
	}
	t.Logf("%d of %d accepted calls reached their result; %d ran twice (bound %d)", calls, calls, dups, 2*slots)
}

// waitHealthy waits until the server answers /healthz, failing at once if
// the process exits.
func waitHealthy(t *testing.T, url string, p *agentProcess) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	testutil.WaitFor(t, binWaitTimeout, func() error {
		select {
		case <-p.done:
			t.Fatalf("the server exited before it was ready:\n%s", p.output())
		default:
		}
		resp, err := hc.Get(url + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz answered %d", resp.StatusCode)
		}
		return nil
	})
}

// waitActive waits for the version's deployment to be ACTIVE.
func waitActive(t *testing.T, c *client.Client, f model.Function) {
	t.Helper()
	testutil.WaitFor(t, binWaitTimeout, func() error {
		d, err := c.GetDeployment(testutil.Context(t), f.ID, f.VersionID)
		if err != nil {
			return err
		}
		if d.FunctionStatus != model.StatusActive {
			return fmt.Errorf("deployment is %s", d.FunctionStatus)
		}
		return nil
	})
}

// accept makes one call that must be answered 202 (its poll window is
// shorter than the call) and returns its request id.
func accept(t *testing.T, url, token string, f model.Function, id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v2/nvcf/pexec/functions/"+f.ID, nil)
	if err != nil {
		t.Error(err)
		return ""
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Call-Id", id)
	req.Header.Set("Call-Delay", "1500ms")
	req.Header.Set("NVCF-POLL-SECONDS", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s: %v", id, err)
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("%s: %d %s, want 202", id, resp.StatusCode, body)
	}
	return resp.Header.Get("NVCF-REQID")
}

// pollStatus asks for a call's result once.
func pollStatus(url, token, reqID string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v2/nvcf/pexec/status/"+reqID, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("NVCF-POLL-SECONDS", "5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// waitRan waits until the function log shows n distinct calls started.
func waitRan(t *testing.T, log string, n int) {
	t.Helper()
	testutil.WaitFor(t, 2*time.Minute, func() error {
		if got := len(readStreamLog(t, log).calls); got < n {
			return fmt.Errorf("%d distinct calls started, want %d", got, n)
		}
		return nil
	})
}

// kill9 sends SIGKILL and waits for the process to be gone.
func kill9(t *testing.T, p *agentProcess) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// TestLeaderKilledDuringABurst: two `gantry server` replicas on one
// external etcd and NATS and a `gantry agent`; a burst drives the
// autoscaler and the leading replica is killed with SIGKILL in the middle
// of it (no resignation: its election lease must expire). The other
// replica takes over and carries the burst to maxInstances; no call fails
// and the version never has more instances than maxInstances.
func TestLeaderKilledDuringABurst(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary and kills a replica")
	}
	const maxInstances = 4
	bin := buildGantry(t)
	etcd := testutil.StartEtcdEndpoint(t)
	natsURL := testutil.StartNATS(t)
	shared := t.TempDir()
	type replica struct {
		url  string
		proc *agentProcess
	}
	var replicas []replica
	for i := range 2 {
		addr := freeAddr(t)
		p := startAgentProcess(t, bin, fmt.Sprint("gantry server ", i), "server", "--data-dir", shared, "--listen", addr, "--grpc-listen", "127.0.0.1:0",
			"--etcd-endpoints", etcd, "--nats-url", natsURL, "--admin-keys", "open", "--log-level", "info")
		waitHealthy(t, "http://"+addr, p)
		replicas = append(replicas, replica{"http://" + addr, p})
	}
	var leader, follower replica
	testutil.WaitFor(t, 30*time.Second, func() error {
		for i, r := range replicas {
			if strings.Contains(r.proc.output(), "leading the reconciler") {
				leader, follower = r, replicas[1-i]
				return nil
			}
		}
		return fmt.Errorf("no replica leads yet")
	})
	ctx := testutil.Context(t)
	tok, err := client.New(follower.url, "").MintAdminToken(ctx, model.AdminKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(follower.url, tok.Value)
	reg, err := c.RegisterCluster(ctx, controlplane.DefaultAccount, model.ClusterRequest{ClusterName: "gpu", ClusterGroupName: "gpu"})
	if err != nil {
		t.Fatal(err)
	}
	bootstrap := filepath.Join(t.TempDir(), "bootstrap")
	if err := os.WriteFile(bootstrap, []byte(reg.BootstrapToken), 0o600); err != nil {
		t.Fatal(err)
	}
	startAgentProcess(t, bin, "gantry agent", "agent", "--server", follower.url, "--bootstrap-token-file", bootstrap,
		"--state-dir", t.TempDir(), "--gpus", "8", "--heartbeat", "1s", "--log-level", "warn")
	req := selfFunction(t, "leaderless", "stream")
	req.ContainerEnvironment = append(req.ContainerEnvironment, model.EnvVar{Key: streamLogEnv, Value: filepath.Join(t.TempDir(), "function.log")})
	fn, err := c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{
		{GPU: "H100", MinInstances: 0, MaxInstances: maxInstances, MaxRequestConcurrency: model.Int(1)}}}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, fn)

	// The most instances the version ever lists, sampled all along.
	var most atomic.Int64
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil {
			if got, err := c.GetFunction(watchCtx, fn.ID, fn.VersionID); err == nil && int64(len(got.ActiveInstances)) > most.Load() {
				most.Store(int64(len(got.ActiveInstances)))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	defer func() { stopWatch(); <-watched }()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls, failed atomic.Int64
	for w := range 2 * maxInstances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("k%d-%d", w, i)
				calls.Add(1)
				if st, body := callAt(follower.url, tok.Value, fn, id, "300ms"); st != http.StatusOK || body != id {
					failed.Add(1)
					t.Errorf("call %s: %d %q", id, st, body)
				}
			}
		}()
		if w == 1 {
			testutil.WaitFor(t, 30*time.Second, func() error {
				if got, err := c.GetFunction(ctx, fn.ID, fn.VersionID); err != nil || len(got.ActiveInstances) == 0 {
					return fmt.Errorf("no instance yet (%v)", err)
				}
				return nil
			})
			kill9(t, leader.proc)
		}
	}
	killed := time.Now()
	testutil.WaitFor(t, time.Minute, func() error {
		d, err := c.GetDeployment(ctx, fn.ID, fn.VersionID)
		if err != nil {
			return err
		}
		if r := d.Specs[0].RunningInstances; r == nil || *r != maxInstances {
			return fmt.Errorf("%v running, want %d", r, maxInstances)
		}
		return nil
	})
	t.Logf("%d instances running %v after the leader was killed", maxInstances, time.Since(killed).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	stopWatch()
	<-watched
	if n := most.Load(); n > maxInstances {
		t.Errorf("the version listed %d instances at once, more than maxInstances %d", n, maxInstances)
	}
	t.Logf("%d calls across the kill, %d failed", calls.Load(), failed.Load())
}
