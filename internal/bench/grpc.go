package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/example/grpcecho"
	"github.com/gantry-dev/gantry/internal/model"
)

// TargetGRPCAddedP50 is what the gateway may add to an unloaded unary gRPC
// call's p50 (concurrency 1), over calling the same gRPC function directly.
const TargetGRPCAddedP50 = 200 * time.Microsecond

// GRPCConfig configures RunGRPC. Zero values take the defaults named.
type GRPCConfig struct {
	// Executable is the gantry binary whose `example grpc-echo` both paths
	// call (default: this process's executable).
	Executable string
	// Duration is each timed unary run's length (default 5s).
	Duration time.Duration
	// Warmup runs before each timed unary run, unmeasured (default 1s; 0
	// skips it).
	Warmup time.Duration
	// Rounds repeats every run on both paths (default 3); the results are
	// the medians.
	Rounds int
	// BodySize is each message's size in bytes (default 1024).
	BodySize int
	// Messages is how many messages each bidi stream carries (default
	// 10,000).
	Messages int
	// Logger receives the platform's logs (nil discards them).
	Logger *slog.Logger
	// Progress receives a line per step (nil discards them).
	Progress io.Writer
}

func (c *GRPCConfig) defaults() error {
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: find the gantry executable: %w", err)
		}
		c.Executable = exe
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
	if c.BodySize <= 0 {
		c.BodySize = 1024
	}
	if c.Messages <= 0 {
		c.Messages = 10000
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

// GRPCResult is what RunGRPC measured: unary calls and bidi streams on the
// direct path (the grpc-echo process itself) and through the gateway's gRPC
// listener, in the same run.
type GRPCResult struct {
	BodySize int           `json:"bodySize"`
	Duration time.Duration `json:"durationNs"`
	Rounds   int           `json:"rounds"`
	Messages int           `json:"messages"`
	// Unary is each path's unary calls at concurrency 1: direct, the
	// httputil.ReverseProxy baseline (h2c both ways), the gateway.
	Unary []GRPCUnary `json:"unary"`
	// AddedP50 and AddedP99 are the gateway's unary latencies minus
	// direct's; AddedOverProxyP50 its p50 minus the h2c httputil proxy's.
	AddedP50          time.Duration `json:"addedP50Ns"`
	AddedP99          time.Duration `json:"addedP99Ns"`
	AddedOverProxyP50 time.Duration `json:"addedOverProxyP50Ns"`
	// Bidi is each path's bidi streams, in the same order.
	Bidi    []GRPCBidi `json:"bidi"`
	Targets []Target   `json:"targets"`
}

// GRPCUnary is one path's unary calls: medians over the rounds.
type GRPCUnary struct {
	Path       string        `json:"path"`
	Calls      int           `json:"calls"`
	Errors     int           `json:"errors"`
	FirstError string        `json:"firstError,omitempty"`
	P50        time.Duration `json:"p50Ns"`
	P99        time.Duration `json:"p99Ns"`
	RPS        float64       `json:"rps"`
	Runs       []Summary     `json:"runs"`
}

// GRPCBidi is one path's bidi streams: medians over the rounds.
type GRPCBidi struct {
	Path string `json:"path"`
	// PingPong is round trips/s when message n+1 goes only once reply n is
	// in: the latency of one message each way.
	PingPong float64 `json:"pingPongPerSecond"`
	// Pipelined is messages/s echoed when the client sends while it
	// receives: the stream's throughput, flow control included.
	Pipelined  float64 `json:"pipelinedPerSecond"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"firstError,omitempty"`
}

// grpcRig is a dev platform with grpc-echo deployed, a plain grpc-echo
// process beside it, and a client connection to each.
type grpcRig struct {
	cfg   GRPCConfig
	dir   string
	p     *dev.Platform
	echo  *child
	proxy *reverseProxy
	conns map[string]*grpc.ClientConn
	// md is the gateway path's metadata: the function and the credential.
	md   metadata.MD
	body []byte
}

// RunGRPC measures what the gateway adds to a gRPC call: it starts a dev
// platform in this process with its gRPC listener, deploys `gantry example
// grpc-echo` as a gRPC function (inferenceUrl /grpc), starts a second
// grpc-echo as a plain process, and calls both with the same grpc-go
// client: unary calls at concurrency 1, then bidi streams ping-pong and
// pipelined, also through an httputil.ReverseProxy speaking h2c both ways
// (what one would put in front of a gRPC server instead). Each round runs
// every path in turn.
func RunGRPC(ctx context.Context, cfg GRPCConfig) (*GRPCResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r, err := startGRPCRig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()
	res := &GRPCResult{BodySize: cfg.BodySize, Duration: cfg.Duration, Rounds: cfg.Rounds, Messages: cfg.Messages}
	paths := []string{PathDirect, PathProxy, PathGateway}
	res.Unary = []GRPCUnary{{Path: PathDirect}, {Path: PathProxy}, {Path: PathGateway}}
	res.Bidi = []GRPCBidi{{Path: PathDirect}, {Path: PathProxy}, {Path: PathGateway}}
	fmt.Fprintf(cfg.Progress, "Unary calls, concurrency 1, %s per run\n", cfg.Duration)
	for round := 1; round <= cfg.Rounds; round++ {
		for i, path := range paths {
			if cfg.Warmup > 0 {
				r.unary(ctx, path, cfg.Warmup)
			}
			s, errs, first := r.unary(ctx, path, cfg.Duration)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			u := &res.Unary[i]
			u.Runs = append(u.Runs, s)
			u.Calls += s.Count
			u.Errors += errs
			if u.FirstError == "" {
				u.FirstError = first
			}
			fmt.Fprintf(cfg.Progress, "  round %d/%d  %-8s %7d calls  p50 %sms  p99 %sms  %8.0f calls/s%s\n",
				round, cfg.Rounds, path, s.Count, Millis(s.P50), Millis(s.P99), s.RPS, errNote(errs, first))
		}
	}
	fmt.Fprintf(cfg.Progress, "Bidi streams of %d messages\n", cfg.Messages)
	pingPong, pipelined := make([][]float64, len(paths)), make([][]float64, len(paths))
	for round := 1; round <= cfg.Rounds; round++ {
		for i, path := range paths {
			b := &res.Bidi[i]
			pp, err := r.bidi(ctx, path, false)
			if err == nil {
				pingPong[i] = append(pingPong[i], pp)
				var pl float64
				if pl, err = r.bidi(ctx, path, true); err == nil {
					pipelined[i] = append(pipelined[i], pl)
				}
				fmt.Fprintf(cfg.Progress, "  round %d/%d  %-8s ping-pong %8.0f round trips/s  pipelined %8.0f messages/s\n", round, cfg.Rounds, path, pp, pl)
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				b.Errors++
				if b.FirstError == "" {
					b.FirstError = err.Error()
				}
				fmt.Fprintf(cfg.Progress, "  round %d/%d  %-8s failed: %v\n", round, cfg.Rounds, path, err)
			}
		}
	}
	for i := range paths {
		u := &res.Unary[i]
		var p50s, p99s []time.Duration
		var rps []float64
		for _, s := range u.Runs {
			p50s, p99s, rps = append(p50s, s.P50), append(p99s, s.P99), append(rps, s.RPS)
		}
		u.P50, u.P99, u.RPS = Median(p50s), Median(p99s), Median(rps)
		res.Bidi[i].PingPong, res.Bidi[i].Pipelined = Median(pingPong[i]), Median(pipelined[i])
	}
	gw := res.Unary[2]
	res.AddedP50 = gw.P50 - res.Unary[0].P50
	res.AddedP99 = gw.P99 - res.Unary[0].P99
	res.AddedOverProxyP50 = gw.P50 - res.Unary[1].P50
	t := Target{Name: "gateway unary p50 over direct at concurrency 1", Want: "<= +" + Millis(TargetGRPCAddedP50) + " ms"}
	if gw.Errors > 0 {
		t.Got = "errors: " + gw.FirstError
	} else {
		t.Got, t.Pass = SignedMillis(res.AddedP50)+" ms", res.AddedP50 <= TargetGRPCAddedP50
	}
	res.Targets = []Target{t}
	return res, nil
}

func errNote(errs int, first string) string {
	if errs == 0 {
		return ""
	}
	return fmt.Sprintf("  %d errors (first: %s)", errs, first)
}

func startGRPCRig(ctx context.Context, cfg GRPCConfig) (_ *grpcRig, err error) {
	r := &grpcRig{cfg: cfg, conns: map[string]*grpc.ClientConn{}, body: make([]byte, cfg.BodySize)}
	for i := range r.body {
		r.body[i] = 'a' + byte(i%26)
	}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.dir, err = os.MkdirTemp("", "gantry-bench-grpc-"); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintf(cfg.Progress, "Starting a dev platform with a gRPC listener in %s\n", r.dir)
	r.p, err = dev.New(dev.Config{DataDir: filepath.Join(r.dir, "platform"), Listen: "127.0.0.1:0",
		GRPC: controlplane.GRPC{Listen: "127.0.0.1:0"}, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	if err := r.p.Start(ctx); err != nil {
		r.p = nil
		return nil, err
	}
	api := client.New(r.p.URL(), r.p.AdminToken(), client.WithUserAgent("gantry-bench"))
	fn, err := api.CreateFunction(ctx, model.CreateFunctionRequest{
		Name: "bench-grpc-echo", InferenceURL: model.GRPCInferenceURL,
		ContainerImage: model.ProcessImagePrefix + cfg.Executable, ContainerArgs: "example grpc-echo",
	})
	if err != nil {
		return nil, fmt.Errorf("bench: create the grpc-echo function: %w", err)
	}
	spec := model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(4)}
	if _, err := api.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{spec}}); err != nil {
		return nil, fmt.Errorf("bench: deploy the grpc-echo function: %w", err)
	}
	fmt.Fprintf(cfg.Progress, "Deployed gRPC function %s (H100, 1 instance); waiting for ACTIVE\n", fn.ID)
	if err := waitActive(ctx, api, fn, cfg.Progress); err != nil {
		return nil, err
	}
	r.md = metadata.Pairs("function-id", fn.ID, "authorization", "Bearer "+r.p.AdminToken())

	echoAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "Starting the direct grpc-echo on %s; the gateway's gRPC listener is %s\n", echoAddr, r.p.GRPCAddr())
	if r.echo, err = startChild(exec.Command(cfg.Executable, "example", "grpc-echo", "--listen", echoAddr)); err != nil {
		return nil, err
	}
	if r.proxy, err = startH2CProxy("http://"+echoAddr, cfg.Logger); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "Started the httputil.ReverseProxy baseline (h2c) on %s\n", r.proxy.addr)
	for path, addr := range map[string]string{PathDirect: echoAddr, PathProxy: r.proxy.addr, PathGateway: r.p.GRPCAddr()} {
		if r.conns[path], err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	// Both paths answer before anything is timed: the direct process may
	// still be starting, and the gateway's catalog learns ACTIVE from a
	// watch.
	for _, path := range []string{PathDirect, PathProxy, PathGateway} {
		if err := r.firstOK(ctx, path); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// ctx is what a call on path carries: the gateway's metadata.
func (r *grpcRig) ctx(ctx context.Context, path string) context.Context {
	if path == PathGateway {
		return metadata.NewOutgoingContext(ctx, r.md)
	}
	return ctx
}

func (r *grpcRig) firstOK(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h := healthpb.NewHealthClient(r.conns[path])
	for {
		_, err := h.Check(r.ctx(ctx, path), &healthpb.HealthCheckRequest{})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: the %s path never answered a health check (last: %v): %w", path, err, ctx.Err())
		case <-r.echo.exited:
			return fmt.Errorf("bench: the direct grpc-echo exited: %v", r.echo.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// unary calls /gantry.example.Echo/Unary on path, one call at a time, for d.
func (r *grpcRig) unary(ctx context.Context, path string, d time.Duration) (s Summary, errs int, first string) {
	conn, cctx := r.conns[path], r.ctx(ctx, path)
	method := "/" + grpcecho.Service + "/Unary"
	var lat []time.Duration
	var out []byte
	began := time.Now()
	for end := began.Add(d); time.Now().Before(end) && ctx.Err() == nil; {
		t := time.Now()
		err := conn.Invoke(cctx, method, &r.body, &out, grpc.CallContentSubtype("raw"))
		if err == nil && len(out) != len(r.body) {
			err = fmt.Errorf("answer of %d bytes, want %d", len(out), len(r.body))
		}
		if err != nil {
			errs++
			if first == "" {
				first = err.Error()
			}
			continue
		}
		lat = append(lat, time.Since(t))
	}
	return Summarize(lat, time.Since(began)), errs, first
}

// bidi runs one stream of cfg.Messages messages on path and returns its
// rate: ping-pong (send, wait for the reply, send the next) or pipelined
// (send all while receiving).
func (r *grpcRig) bidi(ctx context.Context, path string, pipelined bool) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	s, err := r.conns[path].NewStream(r.ctx(ctx, path), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		"/"+grpcecho.Service+"/Bidi", grpc.CallContentSubtype("raw"))
	if err != nil {
		return 0, err
	}
	n := r.cfg.Messages
	var reply []byte
	began := time.Now()
	if !pipelined {
		for i := range n {
			if err := s.SendMsg(&r.body); err != nil {
				return 0, fmt.Errorf("send %d: %w", i, err)
			}
			if err := s.RecvMsg(&reply); err != nil {
				return 0, fmt.Errorf("reply %d: %w", i, err)
			}
		}
		if err := s.CloseSend(); err != nil {
			return 0, err
		}
	} else {
		sent := make(chan error, 1)
		go func() {
			for range n {
				if err := s.SendMsg(&r.body); err != nil {
					sent <- err
					return
				}
			}
			sent <- s.CloseSend()
		}()
		for i := range n {
			if err := s.RecvMsg(&reply); err != nil {
				cancel()
				<-sent
				return 0, fmt.Errorf("reply %d: %w", i, err)
			}
		}
		if err := <-sent; err != nil {
			return 0, err
		}
	}
	elapsed := time.Since(began)
	if err := s.RecvMsg(&reply); !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("the stream did not end cleanly: %v", err)
	}
	return float64(n) / elapsed.Seconds(), nil
}

func (r *grpcRig) close() {
	for _, c := range r.conns {
		_ = c.Close()
	}
	if r.proxy != nil {
		_ = r.proxy.close()
	}
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
