package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Invoke targets: what the gateway may add to one unloaded call, and how
// much of the direct path's throughput it must keep at concurrency 32.
const (
	TargetAddedP50        = 250 * time.Microsecond
	TargetThroughputRatio = 0.5
	TargetThroughputLevel = 32
)

// Paths a load is sent along.
const (
	PathDirect  = "direct"
	PathGateway = "gateway"
)

// InvokeConfig configures RunInvoke. Zero values take the defaults named.
type InvokeConfig struct {
	// Executable is the gantry binary whose `example echo` both paths call
	// (default: this process's executable).
	Executable string
	// Levels are the concurrency levels to measure (default 1 and 32). The
	// deployment's maxRequestConcurrency is the highest, so the gateway
	// never queues a request the direct path would have served.
	Levels []int
	// Duration is each timed run's length (default 10s), unless Requests is
	// set.
	Duration time.Duration
	// Requests, when positive, makes each timed run exactly this many.
	Requests int
	// Warmup runs before each timed run and is not measured; 0 skips it.
	Warmup time.Duration
	// Rounds repeats each level's (direct, gateway) pair (default 3); the
	// result is the median of the rounds.
	Rounds int
	// BodySize is the request body size in bytes (default 1024).
	BodySize int
	// CPUProfile, when set, adds one profiled gateway run per level after the
	// measured rounds and writes its CPU profile there (see ProfilePath).
	CPUProfile string
	// Logger receives the platform's logs (nil discards them).
	Logger *slog.Logger
	// Progress receives a line per step (nil discards them).
	Progress io.Writer
}

func (c *InvokeConfig) defaults() error {
	if len(c.Levels) == 0 {
		c.Levels = []int{1, TargetThroughputLevel}
	}
	for _, l := range c.Levels {
		if l < 1 || l > 16384 {
			return fmt.Errorf("bench: concurrency %d is out of range 1-16384", l)
		}
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
	if c.BodySize <= 0 {
		c.BodySize = 1024
	}
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: find the gantry executable: %w", err)
		}
		c.Executable = exe
	}
	exe, err := filepath.Abs(c.Executable)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	c.Executable = exe
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

// InvokeResult is what RunInvoke measured.
type InvokeResult struct {
	BodySize int           `json:"bodySize"`
	Rounds   int           `json:"rounds"`
	Duration time.Duration `json:"durationNs,omitempty"`
	Requests int           `json:"requestsPerRun,omitempty"`
	Levels   []LevelResult `json:"levels"`
	Targets  []Target      `json:"targets"`
	// Errors counts failed requests across every run; any makes the
	// numbers suspect.
	Errors int `json:"errors"`
}

// LevelResult compares the two paths at one concurrency level.
type LevelResult struct {
	Concurrency int        `json:"concurrency"`
	Direct      PathResult `json:"direct"`
	Gateway     PathResult `json:"gateway"`
	// AddedP50 is the gateway's median minus the direct median.
	AddedP50 time.Duration `json:"addedP50Ns"`
	// ThroughputRatio is gateway requests/s over direct requests/s.
	ThroughputRatio float64 `json:"throughputRatio"`
	// CPUProfile is the profile written for this level, if any, and
	// ProfiledRun the gateway run it covers (not part of the medians).
	CPUProfile  string     `json:"cpuProfile,omitempty"`
	ProfiledRun *RunResult `json:"profiledRun,omitempty"`
}

// PathResult is one path at one level: medians of the rounds' p50, p99 and
// requests/s, and totals of their requests and errors.
type PathResult struct {
	Requests   int           `json:"requests"`
	Errors     int           `json:"errors"`
	FirstError string        `json:"firstError,omitempty"`
	P50        time.Duration `json:"p50Ns"`
	P99        time.Duration `json:"p99Ns"`
	RPS        float64       `json:"rps"`
	Rounds     []RunResult   `json:"rounds"`
}

// Target is one performance goal and whether a run met it.
type Target struct {
	Name string `json:"name"`
	// Want and Got are for people, e.g. "<= 0.250 ms" and "0.180 ms".
	Want string `json:"want"`
	Got  string `json:"got"`
	Pass bool   `json:"pass"`
}

// RunInvoke measures what the invocation gateway adds to a call. It starts a
// dev platform in this process, deploys the echo example through the API,
// starts a second echo as a plain process, and loads both alike: the same
// binary, the same handler, a process boundary and loopback HTTP on each
// path, so the only difference is the gateway (HTTP in, JetStream work
// queue, agent worker pull, HTTP to the instance, NATS reply, HTTP out).
func RunInvoke(ctx context.Context, cfg InvokeConfig) (*InvokeResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r, err := startRig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()

	res := &InvokeResult{BodySize: cfg.BodySize, Rounds: cfg.Rounds}
	if cfg.Requests > 0 {
		res.Requests = cfg.Requests
	} else {
		res.Duration = cfg.Duration
	}
	for _, level := range cfg.Levels {
		lr, err := r.measure(ctx, level)
		if err != nil {
			return nil, err
		}
		res.Errors += lr.Direct.Errors + lr.Gateway.Errors
		res.Levels = append(res.Levels, lr)
	}
	if cfg.CPUProfile != "" {
		for i := range res.Levels {
			if err := r.profile(ctx, &res.Levels[i], ProfilePath(cfg.CPUProfile, res.Levels[i].Concurrency, len(cfg.Levels))); err != nil {
				return nil, err
			}
		}
	}
	res.Targets = invokeTargets(res.Levels)
	return res, nil
}

// summarize fills the medians and totals from the rounds.
func (p *PathResult) summarize() {
	var p50s, p99s []time.Duration
	var rps []float64
	for _, r := range p.Rounds {
		p.Requests += r.Requests
		p.Errors += r.Errors
		if p.FirstError == "" {
			p.FirstError = r.FirstError
		}
		p50s = append(p50s, r.Latency.P50)
		p99s = append(p99s, r.Latency.P99)
		rps = append(rps, r.Latency.RPS)
	}
	p.P50, p.P99, p.RPS = Median(p50s), Median(p99s), Median(rps)
}

// invokeTargets judges the latency target at the lowest level measured
// (ideally 1: unloaded, so the difference is the gateway's own work and not
// queueing for the CPU) and the throughput target at concurrency 32, or the
// highest level measured when 32 was not.
func invokeTargets(levels []LevelResult) []Target {
	if len(levels) == 0 {
		return nil
	}
	low, high := levels[0], levels[0]
	for _, l := range levels {
		if l.Concurrency < low.Concurrency {
			low = l
		}
		if l.Concurrency == TargetThroughputLevel || (high.Concurrency != TargetThroughputLevel && l.Concurrency > high.Concurrency) {
			high = l
		}
	}
	return []Target{
		{
			Name: fmt.Sprintf("added p50 at concurrency %d", low.Concurrency),
			Want: "<= " + Millis(TargetAddedP50) + " ms",
			Got:  Millis(low.AddedP50) + " ms",
			Pass: low.AddedP50 <= TargetAddedP50,
		},
		{
			Name: fmt.Sprintf("gateway/direct throughput at concurrency %d", high.Concurrency),
			Want: fmt.Sprintf(">= %.2f", TargetThroughputRatio),
			Got:  fmt.Sprintf("%.2f", high.ThroughputRatio),
			Pass: high.ThroughputRatio >= TargetThroughputRatio,
		},
	}
}

// Millis renders d in milliseconds with three decimals, the resolution the
// gateway's latency budget is written in.
func Millis(d time.Duration) string {
	return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond))
}

func errorNote(r RunResult) string {
	if r.Errors == 0 {
		return ""
	}
	return fmt.Sprintf("  !! %d ERRORS (%s)", r.Errors, r.FirstError)
}

// ProfilePath is where the CPU profile of one level goes: path itself when
// one level is measured, else path with "-c<level>" before its extension
// (gateway.pprof -> gateway-c32.pprof).
func ProfilePath(path string, level, levels int) string {
	if levels <= 1 {
		return path
	}
	ext := filepath.Ext(path)
	return fmt.Sprintf("%s-c%d%s", strings.TrimSuffix(path, ext), level, ext)
}
