package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
)

// rig holds what every path calls: a dev platform with the echo function
// deployed, a plain echo process beside it, the baseline proxies in front of
// that echo, and the one HTTP client that loads them all.
type rig struct {
	cfg    InvokeConfig
	dir    string
	p      *dev.Platform
	off    *dev.Platform // metrics disabled, with CompareMetrics
	echo   *child
	proxy  *reverseProxy
	nginx  *nginxProc
	client *http.Client
	body   []byte
	// order is the paths measured, in the order each round runs them, and
	// skipped the baselines left out.
	order   []string
	skipped []SkippedPath
	// urls is where each path's call goes; only the gateway needs a token.
	urls   map[string]string
	token  string
	tokens map[string]string // per path, for paths other than PathGateway
}

// startRig brings the rig up; on error it has already cleaned up. Only the
// nginx baseline may fail without failing the rig: it is skipped, and the
// reason recorded.
func startRig(ctx context.Context, cfg InvokeConfig) (_ *rig, err error) {
	maxConc := cfg.maxConcurrency()
	r := &rig{cfg: cfg, client: loadClient(maxConc), body: jsonBody(cfg.BodySize), urls: map[string]string{}}
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
	r.p, r.token = p, p.AdminToken()
	api := client.New(p.URL(), p.AdminToken(), client.WithUserAgent("gantry-bench"))
	fnID, err := deployEcho(ctx, api, cfg.Executable, maxConc, cfg.Progress)
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
	r.add(PathDirect, "http://"+echoAddr+"/echo")

	if r.proxy, err = startProxy("http://"+echoAddr, maxConc, cfg.Logger); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "Started the httputil.ReverseProxy baseline on %s\n", r.proxy.addr)
	r.add(PathProxy, r.proxy.URL()+"/echo")

	if err := r.startNginx(ctx, echoAddr, maxConc); err != nil {
		r.skipped = append(r.skipped, SkippedPath{Path: PathNginx, Reason: err.Error()})
		fmt.Fprintf(cfg.Progress, "Skipping the nginx baseline: %v\n", err)
	}

	r.add(PathGateway, p.URL()+"/v2/nvcf/pexec/functions/"+fnID)
	if cfg.CompareMetrics {
		fmt.Fprintf(cfg.Progress, "Starting a second dev platform with metrics disabled\n")
		if r.off, err = dev.New(dev.Config{DataDir: filepath.Join(r.dir, "platform-nometrics"), Listen: "127.0.0.1:0", Logger: cfg.Logger, DisableMetrics: true}); err != nil {
			return nil, err
		}
		if err := r.off.Start(ctx); err != nil {
			return nil, err
		}
		offAPI := client.New(r.off.URL(), r.off.AdminToken(), client.WithUserAgent("gantry-bench"))
		offFn, err := deployEcho(ctx, offAPI, cfg.Executable, maxConc, cfg.Progress)
		if err != nil {
			return nil, err
		}
		r.tokens = map[string]string{PathGatewayNoMetrics: r.off.AdminToken()}
		r.add(PathGatewayNoMetrics, r.off.URL()+"/v2/nvcf/pexec/functions/"+offFn)
	}
	for _, path := range r.order {
		if err := firstOK(ctx, r.client, path, r.newRequest(path, nil)); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// startNginx starts the nginx baseline unless it is turned off.
func (r *rig) startNginx(ctx context.Context, echoAddr string, keepalive int) error {
	if r.cfg.Nginx == NginxOff {
		return errors.New("bench: turned off (--nginx " + NginxOff + ")")
	}
	exe, err := findNginx(r.cfg.Nginx)
	if err != nil {
		return err
	}
	if r.nginx, err = startNginx(ctx, exe, echoAddr, keepalive); err != nil {
		return fmt.Errorf("bench: start %s: %w", exe, err)
	}
	fmt.Fprintf(r.cfg.Progress, "Started the nginx baseline (%s) on %s, config %s\n", exe, r.nginx.addr, filepath.Join(r.nginx.dir, "nginx.conf"))
	r.add(PathNginx, r.nginx.URL()+"/echo")
	return nil
}

// add appends a path to the order, calling url.
func (r *rig) add(path, url string) {
	r.order = append(r.order, path)
	r.urls[path] = url
}

// newRequest returns a builder of path's request: a POST of the benchmark
// body, with hdr added. Every path gets the same request; only the gateway
// gets the credential.
func (r *rig) newRequest(path string, hdr map[string]string) func(context.Context) (*http.Request, error) {
	url, token := r.urls[path], ""
	if path == PathGateway {
		token = r.token
	} else if t, ok := r.tokens[path]; ok {
		token = t
	}
	return func(ctx context.Context) (*http.Request, error) {
		req, err := post(ctx, url, token, r.body)
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return req, nil
	}
}

// close stops nginx, the proxy and the direct echo, then the platform (which
// stops the deployed echo), and removes the temporary directory.
func (r *rig) close() {
	r.client.CloseIdleConnections()
	if r.nginx != nil {
		r.nginx.close()
	}
	if r.proxy != nil {
		_ = r.proxy.close()
	}
	if r.echo != nil {
		_, _ = r.echo.stop()
	}
	if r.off != nil {
		_ = r.off.Close()
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
	return Load{Client: r.client, Concurrency: level, NewRequest: r.newRequest(path, nil), Duration: r.cfg.Duration, Requests: r.cfg.Requests}
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

// measure runs the rounds of one level, every path in turn each time, so
// drift on the machine affects all paths alike.
func (r *rig) measure(ctx context.Context, level int) (LevelResult, error) {
	lr := LevelResult{Concurrency: level, Paths: make([]PathResult, len(r.order))}
	for round := 1; round <= r.cfg.Rounds; round++ {
		for i, path := range r.order {
			r.warmup(ctx, level, path)
			run := r.load(level, path).Run(ctx)
			if err := ctx.Err(); err != nil {
				return lr, err
			}
			fmt.Fprintf(r.cfg.Progress, "  concurrency %-4d round %d/%d  %-8s %7d requests  p50 %sms  p99 %sms  %8.0f req/s%s\n",
				level, round, r.cfg.Rounds, path, run.Requests, Millis(run.Latency.P50), Millis(run.Latency.P99), run.Latency.RPS, errorNote(run))
			lr.Paths[i].Path = path
			lr.Paths[i].Rounds = append(lr.Paths[i].Rounds, run)
		}
	}
	for i := range lr.Paths {
		lr.Paths[i].summarize()
	}
	direct := lr.Paths[0].Path // the order starts with the direct path
	for i := range lr.Paths {
		p := &lr.Paths[i]
		a, _ := lr.Compare(p.Path, direct)
		p.AddedP50, p.ThroughputRatio = a.AddedP50, a.ThroughputRatio
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

// firstOK calls path until one call succeeds: ACTIVE in the API can be a
// moment ahead of the gateway's catalog, which learns it from a watch.
func firstOK(ctx context.Context, hc *http.Client, path string, newReq func(context.Context) (*http.Request, error)) error {
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
			return fmt.Errorf("bench: the %s path never answered 200 (last: %s): %w", path, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// loadClient is the one HTTP client every path shares, with enough idle
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

// post builds one benchmark request. Every path sends the same body and
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
