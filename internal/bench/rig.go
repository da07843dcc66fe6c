package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
)

// rig holds what both paths call: a dev platform with the echo function
// deployed, a plain echo process beside it, and the one HTTP client that
// loads both.
type rig struct {
	cfg    InvokeConfig
	dir    string
	p      *dev.Platform
	echo   *child
	client *http.Client
	// paths build one request for each path.
	paths map[string]func(context.Context) (*http.Request, error)
}

// startRig brings the rig up; on error it has already cleaned up.
func startRig(ctx context.Context, cfg InvokeConfig) (_ *rig, err error) {
	r := &rig{cfg: cfg, client: loadClient(slices.Max(cfg.Levels))}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.dir, err = os.MkdirTemp("", "gantry-bench-invoke-"); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintf(cfg.Progress, "Starting a dev platform in %s\n", r.dir)
	p, err := dev.New(dev.Config{DataDir: filepath.Join(r.dir, "platform"), Listen: "127.0.0.1:0", Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	r.p = p
	api := client.New(p.URL(), p.AdminToken(), client.WithUserAgent("gantry-bench"))
	fnID, err := deployEcho(ctx, api, cfg.Executable, slices.Max(cfg.Levels), cfg.Progress)
	if err != nil {
		return nil, err
	}

	echoAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "Starting the direct echo on %s\n", echoAddr)
	if r.echo, err = startChild(exec.Command(cfg.Executable, "example", "echo", "--listen", echoAddr)); err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := waitOK(hctx, r.echo, "http://"+echoAddr+"/health", 10*time.Millisecond); err != nil {
		return nil, err
	}

	body := jsonBody(cfg.BodySize)
	r.paths = map[string]func(context.Context) (*http.Request, error){
		PathDirect: func(ctx context.Context) (*http.Request, error) {
			return post(ctx, "http://"+echoAddr+"/echo", "", body)
		},
		PathGateway: func(ctx context.Context) (*http.Request, error) {
			return post(ctx, p.URL()+"/v2/nvcf/pexec/functions/"+fnID, p.AdminToken(), body)
		},
	}
	return r, firstOK(ctx, r.client, r.paths[PathGateway])
}

// close stops the direct echo, then the platform (which stops the deployed
// echo), and removes the temporary directory.
func (r *rig) close() {
	r.client.CloseIdleConnections()
	if r.echo != nil {
		_, _ = r.echo.stop()
	}
	if r.p != nil {
		_ = r.p.Close()
	}
	if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
}

// load is the timed load on path at level.
func (r *rig) load(level int, path string) Load {
	return Load{Client: r.client, Concurrency: level, NewRequest: r.paths[path], Duration: r.cfg.Duration, Requests: r.cfg.Requests}
}

// warmup runs the load on path at level for the warmup time, unmeasured, so
// connections are open and caches warm when the timed run starts.
func (r *rig) warmup(ctx context.Context, level int, path string) {
	if r.cfg.Warmup > 0 {
		w := r.load(level, path)
		w.Duration, w.Requests = r.cfg.Warmup, 0
		w.Run(ctx)
	}
}

// measure runs the rounds of one level, direct then gateway each time, so
// drift on the machine affects both paths alike.
func (r *rig) measure(ctx context.Context, level int) (LevelResult, error) {
	lr := LevelResult{Concurrency: level}
	for round := 1; round <= r.cfg.Rounds; round++ {
		for _, path := range []string{PathDirect, PathGateway} {
			r.warmup(ctx, level, path)
			run := r.load(level, path).Run(ctx)
			if err := ctx.Err(); err != nil {
				return lr, err
			}
			fmt.Fprintf(r.cfg.Progress, "  concurrency %-4d round %d/%d  %-8s %7d requests  p50 %sms  p99 %sms  %8.0f req/s%s\n",
				level, round, r.cfg.Rounds, path, run.Requests, Millis(run.Latency.P50), Millis(run.Latency.P99), run.Latency.RPS, errorNote(run))
			pr := &lr.Direct
			if path == PathGateway {
				pr = &lr.Gateway
			}
			pr.Rounds = append(pr.Rounds, run)
		}
	}
	lr.Direct.summarize()
	lr.Gateway.summarize()
	lr.AddedP50 = lr.Gateway.P50 - lr.Direct.P50
	if lr.Direct.RPS > 0 {
		lr.ThroughputRatio = lr.Gateway.RPS / lr.Direct.RPS
	}
	return lr, nil
}

// profile runs one more gateway load at lr's level with the CPU profiler on
// and writes the profile to path. The run is extra to the measured rounds,
// so the profiler's own cost never shows in the reported numbers; the
// warmup before it is not profiled.
func (r *rig) profile(ctx context.Context, lr *LevelResult, path string) error {
	fmt.Fprintf(r.cfg.Progress, "  concurrency %-4d profiled gateway run -> %s\n", lr.Concurrency, path)
	r.warmup(ctx, lr.Concurrency, PathGateway)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: cpu profile: %w", err)
	}
	run := r.load(lr.Concurrency, PathGateway).Run(ctx)
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: cpu profile: %w", err)
	}
	lr.CPUProfile, lr.ProfiledRun = path, &run
	return ctx.Err()
}

// deployEcho creates the echo function, deploys it on one H100 instance
// that takes maxConcurrency requests at once, and waits for ACTIVE.
func deployEcho(ctx context.Context, api *client.Client, exe string, maxConcurrency int, progress io.Writer) (string, error) {
	fn, err := api.CreateFunction(ctx, model.CreateFunctionRequest{
		Name:           "bench-echo",
		InferenceURL:   "/echo",
		Health:         &model.Health{Protocol: "HTTP", URI: "/health", ExpectedStatusCode: http.StatusOK},
		ContainerImage: model.ProcessImagePrefix + exe,
		ContainerArgs:  "example echo",
	})
	if err != nil {
		return "", fmt.Errorf("bench: create the echo function: %w", err)
	}
	spec := model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(maxConcurrency)}
	if _, err := api.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{spec}}); err != nil {
		return "", fmt.Errorf("bench: deploy the echo function: %w", err)
	}
	fmt.Fprintf(progress, "Deployed function %s (H100, 1 instance, maxRequestConcurrency %d); waiting for ACTIVE\n", fn.ID, maxConcurrency)
	return fn.ID, waitActive(ctx, api, fn, progress)
}

// waitActive polls the deployment until it is ACTIVE, printing each status
// it passes through.
func waitActive(ctx context.Context, api *client.Client, fn model.Function, progress io.Writer) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var last model.FunctionStatus
	for {
		d, err := api.GetDeployment(ctx, fn.ID, fn.VersionID)
		if err != nil {
			return fmt.Errorf("bench: waiting for the echo deployment: %w", err)
		}
		if d.FunctionStatus != last {
			last = d.FunctionStatus
			fmt.Fprintf(progress, "  %6.1fs  %s\n", time.Since(start).Seconds(), last)
		}
		switch d.FunctionStatus {
		case model.StatusActive:
			return nil
		case model.StatusError:
			var why []string
			for _, h := range d.HealthInfo {
				why = append(why, h.Error)
			}
			return fmt.Errorf("bench: the echo deployment failed: %s", strings.Join(why, "; "))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: the echo deployment is still %s: %w", last, ctx.Err())
		case <-t.C:
		}
	}
}

// firstOK calls until one call succeeds: ACTIVE in the API can be a moment
// ahead of the gateway's catalog, which learns it from a watch.
func firstOK(ctx context.Context, hc *http.Client, newReq func(context.Context) (*http.Request, error)) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last string
	for {
		req, err := newReq(ctx)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, firstLine(b))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: the gateway never answered 200 (last: %s): %w", last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// loadClient is the one HTTP client both paths share, with enough idle
// connections per host that no request of a level waits for a dial.
func loadClient(maxConcurrency int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * maxConcurrency,
		MaxIdleConnsPerHost: 2 * maxConcurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// post builds one benchmark request. Both paths send the same body and
// Content-Type; only the gateway needs a credential.
func post(ctx context.Context, url, token string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, nil
}

// jsonBody returns a JSON object of exactly size bytes ({"pad":"aaa..."}),
// or plain letters when size is too small for one.
func jsonBody(size int) []byte {
	const head, tail = `{"pad":"`, `"}`
	if size < len(head)+len(tail) {
		return bytes.Repeat([]byte("a"), size)
	}
	return []byte(head + strings.Repeat("a", size-len(head)-len(tail)) + tail)
}
