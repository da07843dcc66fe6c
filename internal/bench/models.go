package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
)

// ModelsConfig configures RunModels. Zero values take the defaults named.
type ModelsConfig struct {
	// Size is the model's size in bytes (default 1 GiB; the target
	// is about 5 GiB, which needs that much free disk twice over).
	Size int64
	// Runs is how many times each start is timed (default 3).
	Runs int
	// Executable is the gantry binary the function runs as `gantry example
	// echo` (default: this process's).
	Executable string
	Logger     *slog.Logger
	Progress   io.Writer
}

// ModelsRun is one run's three starts, each from POST deployment to ACTIVE.
type ModelsRun struct {
	// Baseline is a function without a model.
	Baseline time.Duration `json:"baselineNs"`
	// Cold is the first instance of a model the cache does not hold: the
	// download is part of its start.
	Cold time.Duration `json:"coldNs"`
	// Warm is a second function's instance with the same model, which the
	// cache holds.
	Warm time.Duration `json:"warmNs"`
}

// ModelsResult is what RunModels measured.
type ModelsResult struct {
	Size int64       `json:"sizeBytes"`
	Runs []ModelsRun `json:"runs"`
	// Medians of the runs.
	Baseline time.Duration `json:"baselineNs"`
	Cold     time.Duration `json:"coldNs"`
	Warm     time.Duration `json:"warmNs"`
	// Downloads is how many times the model host served the model; one
	// per run is the cache working.
	Downloads int      `json:"downloads"`
	Targets   []Target `json:"targets"`
}

// TargetWarmOverBaseline bounds what a cached model may add to an
// instance's start: the cache lookup and a hard link per file.
const TargetWarmOverBaseline = 500 * time.Millisecond

// RunModels times instance starts on a dev platform: a function without a
// model (the baseline), the first instance of a function whose model of
// cfg.Size bytes the agent's cache does not hold yet (it downloads it from
// a local HTTP server), and an instance of a second function with the same
// model, which finds it cached. Each run uses a fresh model uri, so its
// cold start really downloads.
func RunModels(ctx context.Context, cfg ModelsConfig) (*ModelsResult, error) {
	if cfg.Size <= 0 {
		cfg.Size = 1 << 30
	}
	if cfg.Runs <= 0 {
		cfg.Runs = 3
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bench: find the gantry executable: %w", err)
		}
		cfg.Executable = exe
	}
	dir, err := os.MkdirTemp("", "gantry-bench-models-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(cfg.Progress, "Writing a %s model to %s\n", sizeText(cfg.Size), dir)
	file := filepath.Join(dir, "model.bin")
	sum, err := writeModel(file, cfg.Size)
	if err != nil {
		return nil, err
	}
	var served atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		http.ServeFile(w, r, file)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	host := "http://" + ln.Addr().String()

	fmt.Fprintf(cfg.Progress, "Starting a dev platform in %s\n", dir)
	p, err := dev.New(dev.Config{DataDir: filepath.Join(dir, "platform"), Listen: "127.0.0.1:0", Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	defer p.Close()
	api := client.New(p.URL(), p.AdminToken(), client.WithUserAgent("gantry-bench"))

	start := func(name string, models []model.Artifact) (time.Duration, func(), error) {
		fn, err := api.CreateFunction(ctx, model.CreateFunctionRequest{
			Name: name, InferenceURL: "/echo",
			Health:         &model.Health{Protocol: "HTTP", URI: "/health", ExpectedStatusCode: http.StatusOK},
			ContainerImage: model.ProcessImagePrefix + cfg.Executable, ContainerArgs: "example echo",
			Models: models,
		})
		if err != nil {
			return 0, nil, fmt.Errorf("bench: create %s: %w", name, err)
		}
		t0 := time.Now()
		if _, err := api.CreateDeployment(ctx, fn.ID, fn.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{
			{GPU: "H100", MinInstances: 1, MaxInstances: 1}}}); err != nil {
			return 0, nil, fmt.Errorf("bench: deploy %s: %w", name, err)
		}
		if err := pollActive(ctx, api, fn); err != nil {
			return 0, nil, err
		}
		took := time.Since(t0)
		return took, func() { _ = api.DeleteDeployment(ctx, fn.ID, fn.VersionID) }, nil
	}

	res := &ModelsResult{Size: cfg.Size}
	for i := range cfg.Runs {
		var run ModelsRun
		var undeploy []func()
		uri := fmt.Sprintf("%s/models/model.bin?run=%d", host, i)
		arts := []model.Artifact{{Name: "weights", Version: "1", URI: uri}}
		steps := []struct {
			name   string
			models []model.Artifact
			into   *time.Duration
		}{
			{fmt.Sprintf("bench-baseline-%d", i), nil, &run.Baseline},
			{fmt.Sprintf("bench-cold-%d", i), arts, &run.Cold},
			{fmt.Sprintf("bench-warm-%d", i), arts, &run.Warm},
		}
		for _, s := range steps {
			d, done, err := start(s.name, s.models)
			if err != nil {
				return nil, err
			}
			*s.into = d
			undeploy = append(undeploy, done)
		}
		for _, u := range undeploy {
			u()
		}
		fmt.Fprintf(cfg.Progress, "  run %d: baseline %s, cold %s, warm %s\n", i+1, seconds(run.Baseline), seconds(run.Cold), seconds(run.Warm))
		res.Runs = append(res.Runs, run)
	}
	var base, cold, warm []time.Duration
	for _, r := range res.Runs {
		base, cold, warm = append(base, r.Baseline), append(cold, r.Cold), append(warm, r.Warm)
	}
	res.Baseline, res.Cold, res.Warm = Median(base), Median(cold), Median(warm)
	res.Downloads = int(served.Load())

	blob := filepath.Join(dir, "platform", "agent", "artifacts", "blobs", "sha256", sum)
	_, blobErr := os.Stat(blob)
	res.Targets = []Target{
		{Name: "warm start - baseline", Want: "<= " + seconds(TargetWarmOverBaseline), Got: seconds(res.Warm - res.Baseline),
			Pass: res.Warm-res.Baseline <= TargetWarmOverBaseline},
		{Name: "model downloads", Want: fmt.Sprintf("%d (one per run)", cfg.Runs), Got: fmt.Sprint(res.Downloads),
			Pass: res.Downloads == cfg.Runs},
		{Name: "cached content", Want: "sha256 " + sum[:12] + "…", Got: map[bool]string{true: "present", false: "missing"}[blobErr == nil],
			Pass: blobErr == nil},
	}
	return res, nil
}

// pollActive waits for fn's deployment to be ACTIVE, looking every 10ms
// (waitActive's 100ms would be most of a cached start).
func pollActive(ctx context.Context, api *client.Client, fn model.Function) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for {
		d, err := api.GetDeployment(ctx, fn.ID, fn.VersionID)
		if err != nil {
			return fmt.Errorf("bench: waiting for %s: %w", fn.Name, err)
		}
		switch d.FunctionStatus {
		case model.StatusActive:
			return nil
		case model.StatusError:
			var why []string
			for _, h := range d.HealthInfo {
				why = append(why, h.Error)
			}
			return fmt.Errorf("bench: %s failed: %s", fn.Name, strings.Join(why, "; "))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: %s is still %s: %w", fn.Name, d.FunctionStatus, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// writeModel fills path with size pseudo-random bytes and returns their
// SHA-256.
func writeModel(path string, size int64) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	rng := rand.NewChaCha8([32]byte{'g', 'a', 'n', 't', 'r', 'y'})
	buf := make([]byte, 4<<20)
	for left := size; left > 0; {
		n := min(int64(len(buf)), left)
		_, _ = rng.Read(buf[:n])
		if _, err := io.MultiWriter(f, h).Write(buf[:n]); err != nil {
			return "", fmt.Errorf("bench: %w", err)
		}
		left -= n
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sizeText renders a byte count the way ParseSize reads it.
func sizeText(n int64) string {
	for _, u := range []struct {
		s string
		n int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return fmt.Sprintf("%d%s", n/u.n, u.s)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// ParseSize reads a byte count such as "1GiB", "512MiB", "5G" or "1048576".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		s string
		n int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(t, u.s); ok {
			t, mult = v, u.n
			break
		}
	}
	var n int64
	if _, err := fmt.Sscan(t, &n); err != nil || n <= 0 || fmt.Sprint(n) != t {
		return 0, fmt.Errorf("bench: size %q: use a positive count of bytes, optionally with KiB, MiB or GiB, e.g. 1GiB", s)
	}
	return n * mult, nil
}
