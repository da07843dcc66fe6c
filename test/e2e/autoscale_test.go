package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/policy"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// scaleDownDelay is the tests' --scale-down-delay.
const scaleDownDelay = 3 * time.Second

// TestScaleFromZeroToMaxAndBack: minInstances 0, maxInstances 3,
// concurrency 1, 300 ms per call, 6 callers. No call is refused (a call at
// zero instances waits while one starts), the count reaches 3, and once the
// load stops it goes back to 0 after the scale-down delay with no function
// process left; the next call is served from zero again.
func TestScaleFromZeroToMaxAndBack(t *testing.T) {
	t.Parallel()
	p := startPlatformWith(t, t.TempDir(), func(c *dev.Config) { c.Autoscale.ScaleDownDelay = scaleDownDelay })
	ctx := testutil.Context(t)
	log := filepath.Join(t.TempDir(), "function.log")
	req := selfFunction(t, "scaler", "stream")
	req.ContainerEnvironment = append(req.ContainerEnvironment, model.EnvVar{Key: streamLogEnv, Value: log})
	f, err := p.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// minInstances 0 is ACTIVE at once, with nothing running.
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 0, MaxInstances: 3, MaxRequestConcurrency: model.Int(1)}, model.StatusActive)
	if n := len(versionProcesses(t, f.VersionID)); n != 0 {
		t.Fatalf("%d instance processes before any call, want 0", n)
	}

	// Six callers, each call 300 ms, until the count has reached 3 and
	// held there for a while.
	var calls, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				st, body := callOnce(t, p, f, id, "300ms")
				calls.Add(1)
				if st != http.StatusOK || body != id {
					failed.Add(1)
					t.Errorf("call %s: %d %q", id, st, body)
				}
			}
		}()
	}
	burst := time.Now()
	testutil.WaitFor(t, 60*time.Second, func() error {
		if n := len(versionProcesses(t, f.VersionID)); n != 3 {
			return fmt.Errorf("%d instance processes, want 3", n)
		}
		return nil
	})
	t.Logf("3 instance processes %v after the burst began (%d calls so far)", time.Since(burst).Round(time.Millisecond), calls.Load())
	// Under steady load it stays at 3.
	for range 20 {
		if n := len(versionProcesses(t, f.VersionID)); n != 3 {
			t.Errorf("under steady load %d instance processes, want 3", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d, err := p.c.GetDeployment(ctx, f.ID, f.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	if s := d.Specs[0]; s.DesiredInstances == nil || *s.DesiredInstances != 3 || len(s.ScalingDecisions) == 0 {
		t.Errorf("deployment spec shows desired %v and decisions %+v, want 3 and the decisions that got there", s.DesiredInstances, s.ScalingDecisions)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		d, err := p.c.GetDeployment(ctx, f.ID, f.VersionID)
		if err != nil {
			return err
		}
		if r := d.Specs[0].RunningInstances; r == nil || *r != 3 {
			return fmt.Errorf("deployment shows %v running, want 3", r)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	t.Logf("%d calls under load, %d failed", calls.Load(), failed.Load())

	// Idle: back to zero after the delay, no process left.
	idle := time.Now()
	testutil.WaitFor(t, 30*time.Second, func() error {
		if n := len(versionProcesses(t, f.VersionID)); n != 0 {
			return fmt.Errorf("%d instance processes, want 0", n)
		}
		return nil
	})
	if took := time.Since(idle); took < scaleDownDelay {
		t.Errorf("scaled to zero %v after the load stopped, before the %v delay", took, scaleDownDelay)
	} else {
		t.Logf("scaled to zero %v after the load stopped (delay %v)", took.Round(time.Millisecond), scaleDownDelay)
	}
	d, err = p.c.GetDeployment(ctx, f.ID, f.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	if s := d.Specs[0]; s.DesiredInstances == nil || *s.DesiredInstances != 0 {
		t.Errorf("after idling the spec shows desired %v, want 0", s.DesiredInstances)
	}

	// From zero again: the call waits for an instance and is answered.
	began := time.Now()
	if st, body := callOnce(t, p, f, "cold", "0s"); st != http.StatusOK || body != "cold" {
		t.Fatalf("call at zero instances: %d %q", st, body)
	}
	t.Logf("a call at zero instances was answered in %v", time.Since(began).Round(time.Millisecond))
	d, err = p.c.GetDeployment(ctx, f.ID, f.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	decisions := d.Specs[0].ScalingDecisions
	if n := len(decisions); n < 3 || decisions[n-1].From != 0 || decisions[n-1].To != 1 || decisions[n-2].To != 0 {
		t.Errorf("decisions %+v, want the last to be 0 -> 1 after a scale to 0", decisions)
	}
	for _, dec := range decisions {
		t.Logf("decision at %s: %d -> %d (%s)", dec.At.Format("15:04:05.000"), dec.From, dec.To, dec.Reason)
	}
}

// TestCallAtZeroIsFulfilledByPolling: a call at zero instances whose poll
// window ends before an instance is up is answered 202 and its result
// arrives by polling.
func TestCallAtZeroIsFulfilledByPolling(t *testing.T) {
	t.Parallel()
	p := startPlatformWith(t, t.TempDir(), func(c *dev.Config) { c.Autoscale.ScaleDownDelay = scaleDownDelay })
	ctx := testutil.Context(t)
	req := selfFunction(t, "polled", "stream")
	req.ContainerEnvironment = append(req.ContainerEnvironment, model.EnvVar{Key: streamLogEnv, Value: filepath.Join(t.TempDir(), "function.log")})
	f, err := p.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 0, MaxInstances: 1}, model.StatusActive)
	resp, err := http.DefaultClient.Do(p.pexecRequest(t, ctx, f, http.Header{"Call-Id": {"polled"}, "Call-Delay": {"1500ms"}, "NVCF-POLL-SECONDS": {"1"}}))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, want 202", resp.StatusCode)
	}
	reqID := resp.Header.Get("NVCF-REQID")
	testutil.WaitFor(t, 60*time.Second, func() error {
		st, body, err := pollStatus(p.URL(), p.AdminToken(), reqID)
		if err != nil {
			return err
		}
		if st != http.StatusOK || body != "polled" {
			return fmt.Errorf("status %d %q", st, body)
		}
		return nil
	})
}

// callOnce makes one sync pexec call of the stream helper.
func callOnce(t *testing.T, p *platform, f model.Function, id, delay string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := http.DefaultClient.Do(p.pexecRequest(t, ctx, f, http.Header{"Call-Id": {id}, "Call-Delay": {delay}}))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestScaleSpillsAndShrinksInReverse: with a fill-and-spill policy over two
// clusters, scaling up fills the first before the second, and scaling down
// empties the second first.
func TestScaleSpillsAndShrinksInReverse(t *testing.T) {
	t.Parallel()
	f := startFleetWith(t, func(c *controlplane.Config) { c.Autoscale.ScaleDownDelay = scaleDownDelay })
	east := f.join("east", "prod", "us-east", 2, "H100")
	west := f.join("west", "prod", "us-west", 4, "H100")
	ctx := testutil.Context(t)
	if _, err := f.c.CreatePolicy(ctx, policy.Policy{Name: "east-first", FunctionSelector: policy.FunctionSelector{MatchTags: []string{"tier=web"}},
		FillAndSpill: []policy.Selector{
			{MatchLabels: map[string]string{policy.LabelRegion: "us-east"}},
			{MatchLabels: map[string]string{policy.LabelRegion: "us-west"}},
		}}); err != nil {
		t.Fatal(err)
	}
	req := selfFunction(t, "spiller", "stream")
	req.Tags = []string{"tier=web"}
	req.ContainerEnvironment = append(req.ContainerEnvironment, model.EnvVar{Key: streamLogEnv, Value: filepath.Join(t.TempDir(), "function.log")})
	fn, err := f.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{
		{GPU: "H100", MinInstances: 0, MaxInstances: 4, MaxRequestConcurrency: model.Int(1)}}}); err != nil {
		t.Fatal(err)
	}
	f.waitStatus(fn, model.StatusActive)
	url, token := f.cp.URL(), f.cp.AdminToken()

	// callers runs n closed-loop callers of 500 ms calls until stop closes.
	callers := func(n int, stop chan struct{}) *sync.WaitGroup {
		var wg sync.WaitGroup
		for w := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("c%d-%d", w, i)
					if st, body := callAt(url, token, fn, id, "500ms"); st != http.StatusOK || body != id {
						t.Errorf("call %s: %d %q", id, st, body)
					}
				}
			}()
		}
		return &wg
	}
	waitPlaced := func(want map[string]int) {
		t.Helper()
		testutil.WaitFor(t, 60*time.Second, func() error {
			got := f.placements(fn)
			delete(got, "")
			for id, n := range want {
				if got[id] != n {
					return fmt.Errorf("placed %v, want %v", got, want)
				}
			}
			for id, n := range got {
				if want[id] != n {
					return fmt.Errorf("placed %v, want %v", got, want)
				}
			}
			return nil
		})
	}
	two, four := make(chan struct{}), make(chan struct{})
	a, b := callers(2, two), callers(2, four)
	waitPlaced(map[string]int{east.clusterID: 2, west.clusterID: 2})
	close(four)
	b.Wait()
	waitPlaced(map[string]int{east.clusterID: 2}) // west empties first
	close(two)
	a.Wait()
	waitPlaced(map[string]int{})
}

// callAt makes one sync pexec call of the stream helper at url.
func callAt(url, token string, f model.Function, id, delay string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v2/nvcf/pexec/functions/"+f.ID, nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Call-Id", id)
	req.Header.Set("Call-Delay", delay)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCustomAutoscalingWithStickiness: a CUSTOM_CONFIGURATION set by PATCH
// is stored, returned, and acted on: over its threshold the count doubles,
// but only once the load has held for the stickiness threshold.
func TestCustomAutoscalingWithStickiness(t *testing.T) {
	t.Parallel()
	p := startPlatformWith(t, t.TempDir(), func(c *dev.Config) { c.Autoscale.ScaleDownDelay = time.Minute })
	ctx := testutil.Context(t)
	req := selfFunction(t, "sticky", "stream")
	req.ContainerEnvironment = append(req.ContainerEnvironment, model.EnvVar{Key: streamLogEnv, Value: filepath.Join(t.TempDir(), "function.log")})
	f, err := p.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	d := p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 4, MaxRequestConcurrency: model.Int(1)}, model.StatusActive)
	const hold = 2 * time.Second
	conf := &model.AutoscalingConfiguration{ScaleUp: &model.ScalingDetails{Factor: 2, Threshold: 50,
		Stickiness: &model.Stickiness{Size: "PT10S", Threshold: "PT2S"}}}
	d, err = p.c.PatchGPUSpec(ctx, d.ID, d.Specs[0].ID, model.GPUSpecPatch{Autoscaling: conf})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.c.GetDeployment(ctx, f.ID, f.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Specs[0]; s.AutoscalingPolicy != model.AutoscalingCustom || s.Autoscaling == nil || s.Autoscaling.ScaleUp == nil ||
		s.Autoscaling.ScaleUp.Factor != 2 || s.Autoscaling.ScaleUp.Stickiness == nil || s.Autoscaling.ScaleUp.Stickiness.Threshold != "PT2S" {
		t.Fatalf("GET after PATCH shows %s %+v, want the custom configuration", s.AutoscalingPolicy, s.Autoscaling)
	}
	// A bad one is refused and changes nothing.
	if _, err := p.c.PatchGPUSpec(ctx, d.ID, d.Specs[0].ID, model.GPUSpecPatch{Autoscaling: &model.AutoscalingConfiguration{
		ScaleDown: &model.ScalingDetails{Factor: 1.5, Threshold: 10}}}); err == nil {
		t.Fatal("a scale-down factor of 1.5 was accepted")
	}

	// Two callers on one instance: 200% utilization, over the 50% threshold.
	began := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("s%d-%d", w, i)
				if st, body := callOnce(t, p, f, id, "200ms"); st != http.StatusOK || body != id {
					t.Errorf("call %s: %d %q", id, st, body)
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	var decisions []model.ScalingDecision
	testutil.WaitFor(t, 30*time.Second, func() error {
		got, err := p.c.GetDeployment(ctx, f.ID, f.VersionID)
		if err != nil {
			return err
		}
		decisions = got.Specs[0].ScalingDecisions
		if len(decisions) == 0 {
			return fmt.Errorf("no scaling decision yet")
		}
		return nil
	})
	first := decisions[0]
	t.Logf("first decision %v after the load began: %d -> %d (%s)", first.At.Sub(began).Round(time.Millisecond), first.From, first.To, first.Reason)
	if first.From != 1 || first.To != 2 {
		t.Errorf("first decision %d -> %d, want 1 -> 2 (factor 2)", first.From, first.To)
	}
	if took := first.At.Sub(began); took < hold {
		t.Errorf("scaled up %v after the load began, before the stickiness threshold %v", took, hold)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		if n := len(versionProcesses(t, f.VersionID)); n != 2 {
			return fmt.Errorf("%d instance processes, want 2", n)
		}
		return nil
	})
}

// TestCallAtZeroThatCanNeverRunFails: a version with minInstances 0 whose
// GPU no registered cluster offers cannot ever start an instance, so its
// call fails at once with why, instead of waiting.
func TestCallAtZeroThatCanNeverRunFails(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	f, err := p.c.CreateFunction(ctx, selfFunction(t, "nowhere", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.c.CreateDeployment(ctx, f.ID, f.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{
		{GPU: "B200", MinInstances: 0, MaxInstances: 1}}}); err != nil {
		t.Fatal(err)
	}
	p.waitStatus(t, f, model.StatusActive)
	began := time.Now()
	resp, err := http.DefaultClient.Do(p.pexecRequest(t, ctx, f, nil))
	if err != nil {
		t.Fatal(err)
	}
	assertProblem(t, resp, http.StatusServiceUnavailable, "has a node offering instance type ON-PREM.GPU.B200_1x")
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("the call took %v to fail, want at once", took)
	}
}

// TestScaleDownDrainsBusyInstances: when the count drops while every
// instance is busy, the instance removed finishes its call before it stops:
// no caller sees the scale-down.
func TestScaleDownDrainsBusyInstances(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	log := filepath.Join(t.TempDir(), "function.log")
	req := selfFunction(t, "drained", "stream")
	req.ContainerEnvironment = append(req.ContainerEnvironment, model.EnvVar{Key: streamLogEnv, Value: log})
	f, err := p.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	d := p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 2, MaxInstances: 2, MaxRequestConcurrency: model.Int(1)}, model.StatusActive)
	testutil.WaitFor(t, 30*time.Second, func() error {
		if n := len(versionProcesses(t, f.VersionID)); n != 2 {
			return fmt.Errorf("%d instance processes, want 2", n)
		}
		return nil
	})
	// Both instances busy with a 2 s call each.
	type result struct {
		status int
		body   string
	}
	results := make(chan result, 2)
	for i := range 2 {
		go func() {
			st, body := callOnce(t, p, f, fmt.Sprint("long-", i), "2s")
			results <- result{st, body}
		}()
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if l := readStreamLog(t, log); l.calls["long-0"] == 0 || l.calls["long-1"] == 0 {
			return fmt.Errorf("the calls have not both reached an instance: %v", l.calls)
		}
		return nil
	})
	one := 1
	if _, err := p.c.PatchGPUSpec(ctx, d.ID, d.Specs[0].ID, model.GPUSpecPatch{MinInstances: &one, MaxInstances: &one}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := <-results
		if r.status != http.StatusOK || !strings.HasPrefix(r.body, "long-") {
			t.Errorf("a call on an instance scaled away: %d %q", r.status, r.body)
		}
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		if n := len(versionProcesses(t, f.VersionID)); n != 1 {
			return fmt.Errorf("%d instance processes, want 1", n)
		}
		return nil
	})
}
