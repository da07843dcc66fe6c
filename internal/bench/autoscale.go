package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/internal/autoscale"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
)

// Autoscale targets.
const (
	TargetColdStart = time.Second
	TargetBurst     = 5 * time.Second
)

// AutoscaleConfig configures RunAutoscale. Zero values take the defaults
// named.
type AutoscaleConfig struct {
	// Executable is the gantry binary whose echo example is the function
	// (default: this process's).
	Executable string
	// StartDelay is how long the function takes to start (default 100ms).
	StartDelay time.Duration
	// CallTime is how long each call takes in the function (default 200ms).
	CallTime time.Duration
	// MaxInstances bounds the function's one spec (default 4; concurrency 1).
	MaxInstances int
	// ColdRounds is how many cold starts to time (default 3).
	ColdRounds int
	// Steady is how long a constant load is watched for flapping
	// (default 2m).
	Steady time.Duration
	// ScaleDownDelay is the platform's --scale-down-delay (default 10s, to
	// keep the benchmark short).
	ScaleDownDelay time.Duration
	Logger         *slog.Logger
	Progress       io.Writer
}

func (c *AutoscaleConfig) defaults() error {
	if c.StartDelay <= 0 {
		c.StartDelay = 100 * time.Millisecond
	}
	if c.CallTime <= 0 {
		c.CallTime = 200 * time.Millisecond
	}
	if c.MaxInstances <= 0 {
		c.MaxInstances = 4
	}
	if c.ColdRounds <= 0 {
		c.ColdRounds = 3
	}
	if c.Steady <= 0 {
		c.Steady = 2 * time.Minute
	}
	if c.ScaleDownDelay <= 0 {
		c.ScaleDownDelay = 10 * time.Second
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// AutoscaleResult is what RunAutoscale measured.
type AutoscaleResult struct {
	StartDelay     time.Duration `json:"startDelay"`
	ScaleDownDelay time.Duration `json:"scaleDownDelay"`
	Period         time.Duration `json:"period"`
	// DirectStarts are the function started by hand, exec to first 200:
	// the function's own start; ColdStarts are a call at zero instances
	// through the platform, request to 200.
	DirectStarts []time.Duration `json:"directStarts"`
	ColdStarts   []time.Duration `json:"coldStarts"`
	DirectStart  time.Duration   `json:"directStartMedian"`
	ColdStart    time.Duration   `json:"coldStartMedian"`
	// PlatformPart is ColdStart - DirectStart: what the platform adds.
	PlatformPart time.Duration `json:"platformPart"`
	// Burst is from BurstCallers callers starting at zero instances to
	// MaxInstances running.
	BurstCallers int           `json:"burstCallers"`
	MaxInstances int           `json:"maxInstances"`
	Burst        time.Duration `json:"burst"`
	// SteadyCallers kept a constant load for Steady; SteadyCount is the
	// count it settled on and SteadyChanges how often it changed after.
	SteadyCallers int           `json:"steadyCallers"`
	Steady        time.Duration `json:"steady"`
	SteadyCount   int           `json:"steadyCount"`
	SteadyChanges int           `json:"steadyChanges"`
	// ToZeroDecision and ToZero are from the last call to the decision to
	// go to zero, and to no instance running.
	ToZeroDecision time.Duration `json:"toZeroDecision"`
	ToZero         time.Duration `json:"toZero"`
	Errors         int           `json:"errors"`
	Targets        []Target      `json:"targets"`
}

// RunAutoscale measures the autoscaler on a dev platform in a temporary
// directory with the echo example as a function that takes StartDelay to
// start and CallTime per call.
func RunAutoscale(ctx context.Context, cfg AutoscaleConfig) (*AutoscaleResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gantry-bench-autoscale-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	res := &AutoscaleResult{StartDelay: cfg.StartDelay, ScaleDownDelay: cfg.ScaleDownDelay, Period: autoscale.DefaultPeriod, MaxInstances: cfg.MaxInstances}

	fmt.Fprintf(cfg.Progress, "Timing the function started directly (%d starts)\n", cfg.ColdRounds)
	for range cfg.ColdRounds {
		d, err := directStart(ctx, cfg)
		if err != nil {
			return nil, err
		}
		res.DirectStarts = append(res.DirectStarts, d)
	}

	fmt.Fprintf(cfg.Progress, "Starting a dev platform in %s (scale-down delay %v)\n", dir, cfg.ScaleDownDelay)
	p, err := dev.New(dev.Config{DataDir: filepath.Join(dir, "platform"), Listen: "127.0.0.1:0", Logger: cfg.Logger,
		Autoscale: controlplane.Autoscale{ScaleDownDelay: cfg.ScaleDownDelay}})
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	defer p.Close()
	api := client.New(p.URL(), p.AdminToken(), client.WithUserAgent("gantry-bench"))
	fn, err := api.CreateFunction(ctx, model.CreateFunctionRequest{
		Name: "bench-autoscale", InferenceURL: "/echo",
		Health:         &model.Health{Protocol: "HTTP", URI: "/health", ExpectedStatusCode: http.StatusOK},
		ContainerImage: model.ProcessImagePrefix + cfg.Executable,
		ContainerArgs:  "example echo --start-delay " + cfg.StartDelay.String(),
	})
	if err != nil {
		return nil, fmt.Errorf("bench: create the function: %w", err)
	}
	if _, err := api.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{
		{GPU: "H100", MinInstances: 0, MaxInstances: cfg.MaxInstances, MaxRequestConcurrency: model.Int(1)}}}); err != nil {
		return nil, fmt.Errorf("bench: deploy the function: %w", err)
	}
	if err := waitActive(ctx, api, fn, cfg.Progress); err != nil {
		return nil, err
	}
	call := func(ctx context.Context, delay time.Duration) error {
		req, err := post(ctx, p.URL()+"/v2/nvcf/pexec/functions/"+fn.ID, p.AdminToken(), []byte(`{"bench":"autoscale"}`))
		if err != nil {
			return err
		}
		req.Header.Set("Echo-Delay", delay.String())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
	counts := func() (desired, running int, err error) {
		d, err := api.GetDeployment(ctx, fn.ID, fn.VersionID)
		if err != nil {
			return 0, 0, err
		}
		s := d.Specs[0]
		if s.DesiredInstances != nil {
			desired = *s.DesiredInstances
		}
		if s.RunningInstances != nil {
			running = *s.RunningInstances
		}
		return desired, running, nil
	}
	// waitFor polls until cond holds, returning when it first did.
	waitFor := func(limit time.Duration, cond func(desired, running int) bool) (time.Time, error) {
		deadline := time.Now().Add(limit)
		for {
			d, r, err := counts()
			if err != nil {
				return time.Time{}, err
			}
			if cond(d, r) {
				return time.Now(), nil
			}
			if time.Now().After(deadline) {
				return time.Time{}, fmt.Errorf("bench: still %d desired, %d running after %v", d, r, limit)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	toZero := func(since time.Time) error {
		decided, err := waitFor(cfg.ScaleDownDelay+time.Minute, func(d, _ int) bool { return d == 0 })
		if err != nil {
			return err
		}
		// The API shows no instance once its record is released; the
		// process goes a moment later, when its agent has stopped it.
		gone, err := waitFor(time.Minute, func(_, r int) bool { return r == 0 && functionProcesses(fn.VersionID) == 0 })
		if err != nil {
			return err
		}
		res.ToZeroDecision, res.ToZero = decided.Sub(since), gone.Sub(since)
		fmt.Fprintf(cfg.Progress, "  idle -> zero: decided after %s, no instance after %s\n", seconds(res.ToZeroDecision), seconds(res.ToZero))
		return nil
	}

	fmt.Fprintf(cfg.Progress, "Cold starts: a call at zero instances (%d rounds, each waits out the scale-down delay)\n", cfg.ColdRounds)
	for i := range cfg.ColdRounds {
		began := time.Now()
		if err := call(ctx, 0); err != nil {
			return nil, fmt.Errorf("bench: cold call: %w", err)
		}
		d := time.Since(began)
		res.ColdStarts = append(res.ColdStarts, d)
		fmt.Fprintf(cfg.Progress, "  round %d: %s\n", i+1, seconds(d))
		if err := toZero(time.Now()); err != nil {
			return nil, err
		}
	}
	res.DirectStart, res.ColdStart = Median(res.DirectStarts), Median(res.ColdStarts)
	res.PlatformPart = res.ColdStart - res.DirectStart

	// Burst, then a steady load, then idle.
	res.BurstCallers = 2 * cfg.MaxInstances
	fmt.Fprintf(cfg.Progress, "Burst: %d callers at zero instances\n", res.BurstCallers)
	var mu sync.Mutex
	load := func(n int) (stop func()) {
		lctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for lctx.Err() == nil {
					if err := call(lctx, cfg.CallTime); err != nil && lctx.Err() == nil {
						mu.Lock()
						res.Errors++
						mu.Unlock()
					}
				}
			}()
		}
		return func() { cancel(); wg.Wait() }
	}
	began := time.Now()
	stopBurst := load(res.BurstCallers)
	reached, err := waitFor(time.Minute, func(_, r int) bool { return r >= cfg.MaxInstances })
	stopBurst()
	if err != nil {
		return nil, err
	}
	res.Burst = reached.Sub(began)
	fmt.Fprintf(cfg.Progress, "  %d instances running after %s\n", cfg.MaxInstances, seconds(res.Burst))

	res.SteadyCallers, res.Steady = max(cfg.MaxInstances-1, 1), cfg.Steady
	fmt.Fprintf(cfg.Progress, "Steady: %d callers; settling for the scale-down delay, then watching for %v\n", res.SteadyCallers, cfg.Steady)
	stopSteady := load(res.SteadyCallers)
	time.Sleep(cfg.ScaleDownDelay + 2*autoscale.DefaultPeriod)
	last, _, err := counts()
	if err != nil {
		stopSteady()
		return nil, err
	}
	res.SteadyCount = last
	for end := time.Now().Add(cfg.Steady); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		d, _, err := counts()
		if err != nil {
			stopSteady()
			return nil, err
		}
		if d != last {
			res.SteadyChanges++
			fmt.Fprintf(cfg.Progress, "  changed %d -> %d\n", last, d)
			last = d
		}
	}
	stopSteady()
	fmt.Fprintf(cfg.Progress, "  held %d instances, %d changes\n", res.SteadyCount, res.SteadyChanges)
	fmt.Fprintf(cfg.Progress, "Idle\n")
	if err := toZero(time.Now()); err != nil {
		return nil, err
	}

	res.Targets = []Target{
		{Name: "cold start, zero instances to first 200", Want: "<= " + seconds(TargetColdStart), Got: seconds(res.ColdStart), Pass: res.ColdStart <= TargetColdStart},
		{Name: fmt.Sprintf("burst, zero to %d instances running", cfg.MaxInstances), Want: "<= " + seconds(TargetBurst), Got: seconds(res.Burst), Pass: res.Burst <= TargetBurst},
		{Name: "instance count changes under steady load", Want: "0", Got: fmt.Sprint(res.SteadyChanges), Pass: res.SteadyChanges == 0},
		{Name: "idle to zero decision, past the delay", Want: "<= " + seconds(autoscale.DefaultPeriod), Got: seconds(res.ToZeroDecision - cfg.ScaleDownDelay),
			Pass: res.ToZeroDecision-cfg.ScaleDownDelay <= autoscale.DefaultPeriod},
	}
	return res, nil
}

// directStart starts the function by hand, as the process runtime would,
// and times exec to its first 200.
func directStart(ctx context.Context, cfg AutoscaleConfig) (time.Duration, error) {
	addr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(cfg.Executable, "example", "echo", "--listen", addr, "--start-delay", cfg.StartDelay.String())
	cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
	began := time.Now()
	c, err := startChild(cmd)
	if err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	at, err := waitOK(wctx, c, "http://"+addr+"/health", 2*time.Millisecond)
	_, _ = c.stop()
	if err != nil {
		return 0, err
	}
	return at.Sub(began), nil
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

// functionProcesses counts this process's children that run an instance of
// the version (the process runtime gives each NVCF_FUNCTION_VERSION_ID).
func functionProcesses(versionID string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		fields := strings.Fields(string(rest))
		if len(fields) < 2 || fields[1] != self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, []byte("NVCF_FUNCTION_VERSION_ID="+versionID+"\x00")) {
			n++
		}
	}
	return n
}
