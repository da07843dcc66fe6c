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

// Invoke targets. The gateway is judged against reverse proxies measured in
// the same run in front of the same echo, not against the bare function: on
// a machine where the load generator shares the CPUs, any extra HTTP hop
// roughly halves the direct path's throughput, whatever it does (see
// docs/benchmarks.md), so "a fraction of direct" says more about the box
// than about the gateway. A proxy that does nothing but forward is the
// floor the gateway's durability, routing and auth are priced against.
const (
	// TargetProxyThroughputRatio is the share of the httputil proxy's
	// requests/s the gateway must keep at TargetThroughputLevel.
	TargetProxyThroughputRatio = 0.9
	// TargetNginxThroughputRatio is the stretch goal: nginx's requests/s.
	TargetNginxThroughputRatio = 1.0
	// TargetMetricsThroughputRatio is what the metrics may cost: the
	// gateway with them keeps >= 95% of its requests/s without them.
	TargetMetricsThroughputRatio = 0.95
	// TargetThroughputLevel is the concurrency the throughput targets are
	// judged at.
	TargetThroughputLevel = 32
	// TargetProxyAddedP50 is what the gateway's p50 may exceed the httputil
	// proxy's by on an unloaded call (concurrency 1).
	TargetProxyAddedP50 = 150 * time.Microsecond
	// TargetSSEAddedFirstEvent is what the gateway may add to the time to
	// the first event of a server-sent event stream, over direct.
	TargetSSEAddedFirstEvent = time.Millisecond
	// TargetStreamRate is the lowest rate, in bytes/s, at which a large
	// response must stream through the gateway (1 GB/s).
	TargetStreamRate = 1e9
	// TargetStreamRSSGrowth is how much this process's RSS may grow while a
	// large response streams through the gateway in it: a gateway that
	// streams holds a few buffers, one that buffers holds the response.
	TargetStreamRSSGrowth = 64 << 20
)

// Paths a load is sent along, in the order each round runs them.
const (
	// PathDirect calls the echo process itself.
	PathDirect = "direct"
	// PathProxy goes through Go's httputil.ReverseProxy, in this process.
	PathProxy = "httputil"
	// PathNginx goes through nginx, a subprocess, when it is installed.
	PathNginx = "nginx"
	// PathGateway goes through the dev platform's pexec.
	PathGateway = "gateway"
	// PathGatewayNoMetrics is PathGateway on a second dev platform with its
	// metrics disabled (InvokeConfig.CompareMetrics).
	PathGatewayNoMetrics = "gateway-nometrics"
)

// NginxOff as InvokeConfig.Nginx skips the nginx baseline.
const NginxOff = "off"

// InvokeConfig configures RunInvoke. Zero values take the defaults named.
type InvokeConfig struct {
	// Executable is the gantry binary whose `example echo` every path calls
	// (default: this process's executable).
	Executable string
	// Levels are the concurrency levels to measure (default 1 and 32). The
	// deployment's maxRequestConcurrency is the highest (or AsyncConcurrency
	// if higher), so the gateway never queues a request the direct path
	// would have served.
	Levels []int
	// Duration is each timed run's length (default 10s), unless Requests is
	// set.
	Duration time.Duration
	// Requests, when positive, makes each timed run exactly this many.
	Requests int
	// Warmup runs before each timed run and is not measured; 0 skips it.
	Warmup time.Duration
	// Rounds repeats each level's runs of every path (default 3), and the
	// large streamed response on every path; the results are the medians.
	Rounds int
	// BodySize is the request body size in bytes (default 1024).
	BodySize int
	// Nginx is the nginx executable for the nginx baseline (default
	// /usr/sbin/nginx, else nginx on $PATH); NginxOff skips it. When none
	// is found, or it does not start, the baseline is skipped with a note.
	Nginx string
	// SkipStreaming leaves out the streaming and async measurements.
	SkipStreaming bool
	// SSECalls is how many event streams each path is timed on (default 20).
	SSECalls int
	// SSEEvents and SSEInterval shape each stream (default 5 events, 50ms
	// apart).
	SSEEvents   int
	SSEInterval time.Duration
	// StreamBytes is the size of the large streamed response (default 1 GiB).
	StreamBytes int64
	// StreamTimeout bounds one large response (default 2 minutes).
	StreamTimeout time.Duration
	// AsyncConcurrency is how many polled calls are in flight at once
	// (default 32).
	AsyncConcurrency int
	// AsyncDuration is how long the async run starts calls for (default
	// 10s); the calls in flight at the end complete and count.
	AsyncDuration time.Duration
	// AsyncDelay is how long the echo waits before answering an async call
	// (default 1.2s): longer than the shortest poll window (1s), so that
	// every call is answered 202 and completes through the status route.
	AsyncDelay time.Duration
	// CPUProfile, when set, adds one profiled gateway run per level after the
	// measured rounds and writes its CPU profile there (see ProfilePath).
	CPUProfile string
	// CompareMetrics adds PathGatewayNoMetrics, so the metrics' cost on
	// the invoke path is measured in the same run.
	CompareMetrics bool
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
	if c.SSECalls <= 0 {
		c.SSECalls = 20
	}
	if c.SSEEvents <= 0 {
		c.SSEEvents = 5
	}
	if c.SSEInterval <= 0 {
		c.SSEInterval = 50 * time.Millisecond
	}
	if c.StreamBytes <= 0 {
		c.StreamBytes = 1 << 30
	}
	if c.StreamTimeout <= 0 {
		c.StreamTimeout = 2 * time.Minute
	}
	if c.AsyncConcurrency <= 0 {
		c.AsyncConcurrency = TargetThroughputLevel
	}
	if c.AsyncConcurrency > 16384 {
		return fmt.Errorf("bench: async concurrency %d is out of range 1-16384", c.AsyncConcurrency)
	}
	if c.AsyncDuration <= 0 {
		c.AsyncDuration = 10 * time.Second
	}
	if c.AsyncDelay <= 0 {
		c.AsyncDelay = 1200 * time.Millisecond
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

// maxConcurrency is the most requests the bench has in flight on one path.
func (c *InvokeConfig) maxConcurrency() int {
	n := 0
	for _, l := range c.Levels {
		n = max(n, l)
	}
	if !c.SkipStreaming {
		n = max(n, c.AsyncConcurrency)
	}
	return n
}

// InvokeResult is what RunInvoke measured.
type InvokeResult struct {
	BodySize int           `json:"bodySize"`
	Rounds   int           `json:"rounds"`
	Duration time.Duration `json:"durationNs,omitempty"`
	Requests int           `json:"requestsPerRun,omitempty"`
	// Paths are the paths measured, in the order each round ran them.
	Paths []string `json:"paths"`
	// Skipped are baselines that could not be measured, and why.
	Skipped []SkippedPath `json:"skipped,omitempty"`
	Levels  []LevelResult `json:"levels"`
	// Stream is the streaming and async measurements, unless skipped.
	Stream  *StreamResult `json:"stream,omitempty"`
	Targets []Target      `json:"targets"`
	// Errors counts failed requests across the timed runs of Levels and the
	// async run; any makes those numbers suspect. Failed streams are counted
	// in Stream instead, since one path failing a 1 GiB response is a
	// finding, not a broken run.
	Errors int `json:"errors"`
}

// SkippedPath is a path that was not measured.
type SkippedPath struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// LevelResult compares the paths at one concurrency level.
type LevelResult struct {
	Concurrency int `json:"concurrency"`
	// Paths hold one result per path measured, in InvokeResult.Paths order.
	Paths []PathResult `json:"paths"`
	// CPUProfile is the profile written for this level, if any, and
	// ProfiledRun the gateway run it covers (not part of the medians).
	CPUProfile  string     `json:"cpuProfile,omitempty"`
	ProfiledRun *RunResult `json:"profiledRun,omitempty"`
}

// Path returns the result of the named path, if it was measured.
func (l LevelResult) Path(name string) (PathResult, bool) {
	for _, p := range l.Paths {
		if p.Path == name {
			return p, true
		}
	}
	return PathResult{}, false
}

// PathResult is one path at one level: medians of the rounds' p50, p99 and
// requests/s, totals of their requests and errors, and the comparison with
// the direct path.
type PathResult struct {
	Path       string        `json:"path"`
	Requests   int           `json:"requests"`
	Errors     int           `json:"errors"`
	FirstError string        `json:"firstError,omitempty"`
	P50        time.Duration `json:"p50Ns"`
	P99        time.Duration `json:"p99Ns"`
	RPS        float64       `json:"rps"`
	// AddedP50 and ThroughputRatio compare this path with the direct path,
	// paired by round (LevelResult.Compare): what it adds to the p50, and
	// its requests/s over the direct path's.
	AddedP50        time.Duration `json:"addedP50Ns"`
	ThroughputRatio float64       `json:"throughputRatio"`
	Rounds          []RunResult   `json:"rounds"`
}

// Against compares a path with a baseline at one level: what it adds to the
// baseline's p50, and the ratio of their requests/s.
type Against struct {
	AddedP50        time.Duration
	ThroughputRatio float64
}

// Compare returns path against baseline at l, and false when either was not
// measured. Each round runs every path back to back, so when both have the
// same rounds the comparison is paired: the median of the rounds' own
// differences and ratios. A load that drifts between rounds (this machine is
// shared) then moves both sides of a pair alike instead of skewing one
// path's median against the other's. Without rounds it compares medians.
func (l LevelResult) Compare(path, baseline string) (Against, bool) {
	p, ok1 := l.Path(path)
	b, ok2 := l.Path(baseline)
	if !ok1 || !ok2 {
		return Against{}, false
	}
	if n := len(p.Rounds); n > 0 && n == len(b.Rounds) {
		added := make([]time.Duration, n)
		ratios := make([]float64, n)
		for i := range n {
			added[i] = p.Rounds[i].Latency.P50 - b.Rounds[i].Latency.P50
			if rps := b.Rounds[i].Latency.RPS; rps > 0 {
				ratios[i] = p.Rounds[i].Latency.RPS / rps
			}
		}
		return Against{AddedP50: Median(added), ThroughputRatio: Median(ratios)}, true
	}
	a := Against{AddedP50: p.P50 - b.P50}
	if b.RPS > 0 {
		a.ThroughputRatio = p.RPS / b.RPS
	}
	return a, true
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
// dev platform in this process and deploys the echo example through the API;
// it starts a second echo as a plain process, Go's httputil.ReverseProxy in
// front of it on a loopback listener in this process, and nginx in front of
// it when installed. It loads every path alike: the same binary, the same
// handler, a process boundary and loopback HTTP on each, so what differs is
// what sits in between: nothing, a bare proxy, or the gateway (HTTP in, an
// offer to a worker or the JetStream work queue, the agent's call to the
// instance, the answer streamed back over NATS, HTTP out).
//
// Unless cfg.SkipStreaming, it then times the first event of server-sent
// event streams and a large streamed response on every path, and polled
// (202) calls through the gateway (see StreamResult).
func RunInvoke(ctx context.Context, cfg InvokeConfig) (*InvokeResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r, err := startRig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()

	res := &InvokeResult{BodySize: cfg.BodySize, Rounds: cfg.Rounds, Paths: r.order, Skipped: r.skipped}
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
		for _, p := range lr.Paths {
			res.Errors += p.Errors
		}
		res.Levels = append(res.Levels, lr)
	}
	if cfg.CPUProfile != "" {
		for i := range res.Levels {
			if err := r.profile(ctx, &res.Levels[i], ProfilePath(cfg.CPUProfile, res.Levels[i].Concurrency, len(cfg.Levels))); err != nil {
				return nil, err
			}
		}
	}
	if !cfg.SkipStreaming {
		if res.Stream, err = r.streaming(ctx); err != nil {
			return nil, err
		}
		res.Errors += res.Stream.Async.Errors
	}
	res.Targets = invokeTargets(res.Levels, res.Stream)
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
// queueing for the CPU) and the throughput targets at concurrency 32, or the
// highest level measured when 32 was not. A target whose baseline was not
// measured (nginx not installed) is left out; the result's Skipped says why.
func invokeTargets(levels []LevelResult, stream *StreamResult) []Target {
	var ts []Target
	if len(levels) > 0 {
		low, high := levels[0], levels[0]
		for _, l := range levels {
			if l.Concurrency < low.Concurrency {
				low = l
			}
			if l.Concurrency == TargetThroughputLevel || (high.Concurrency != TargetThroughputLevel && l.Concurrency > high.Concurrency) {
				high = l
			}
		}
		// Throughput against each baseline the run measured, at the
		// target level.
		for _, c := range []struct {
			baseline, name string
			want           float64
		}{
			{PathProxy, "gateway/httputil throughput at concurrency %d", TargetProxyThroughputRatio},
			{PathGatewayNoMetrics, "gateway with metrics / without, throughput at concurrency %d", TargetMetricsThroughputRatio},
			{PathNginx, "gateway/nginx throughput at concurrency %d (stretch)", TargetNginxThroughputRatio},
		} {
			if a, ok := high.Compare(PathGateway, c.baseline); ok {
				ts = append(ts, Target{
					Name: fmt.Sprintf(c.name, high.Concurrency),
					Want: fmt.Sprintf(">= %.2f", c.want),
					Got:  fmt.Sprintf("%.2f", a.ThroughputRatio),
					Pass: a.ThroughputRatio >= c.want,
				})
			}
		}
		if a, ok := low.Compare(PathGateway, PathProxy); ok {
			ts = append(ts, Target{
				Name: fmt.Sprintf("gateway p50 over httputil at concurrency %d", low.Concurrency),
				Want: "<= +" + Millis(TargetProxyAddedP50) + " ms",
				Got:  SignedMillis(a.AddedP50) + " ms",
				Pass: a.AddedP50 <= TargetProxyAddedP50,
			})
		}
	}
	if stream == nil {
		return ts
	}
	if g, d := stream.sse(PathGateway), stream.sse(PathDirect); g != nil && d != nil {
		t := Target{Name: "SSE first event, gateway over direct", Want: "<= +" + Millis(TargetSSEAddedFirstEvent) + " ms"}
		if why := g.failure(); why != "" {
			t.Got = "failed: " + why
		} else if why := d.failure(); why != "" {
			t.Got = "direct failed: " + why
		} else {
			added := g.FirstEvent.P50 - d.FirstEvent.P50
			t.Got, t.Pass = SignedMillis(added)+" ms", added <= TargetSSEAddedFirstEvent
		}
		ts = append(ts, t)
	}
	if g := stream.large(PathGateway); g != nil {
		size := ByteSize(stream.LargeBytes)
		rate := Target{Name: size + " response through the gateway", Want: fmt.Sprintf(">= %.2f GB/s", TargetStreamRate/1e9)}
		rss := Target{Name: "RSS growth during the gateway's " + size + " response", Want: fmt.Sprintf("<= %.0f MiB", MiB(TargetStreamRSSGrowth))}
		if g.Failed > 0 {
			rate.Got = "failed: " + g.FirstError
			rss.Got = rate.Got
		} else {
			rate.Got, rate.Pass = fmt.Sprintf("%.2f GB/s", g.Rate/1e9), g.Rate >= TargetStreamRate
			rss.Got, rss.Pass = fmt.Sprintf("%.1f MiB", MiB(g.RSSGrowth)), g.RSSGrowth <= TargetStreamRSSGrowth
		}
		ts = append(ts, rate, rss)
	}
	return ts
}

// Millis renders d in milliseconds with three decimals, the resolution the
// gateway's latency budget is written in.
func Millis(d time.Duration) string {
	return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond))
}

// SignedMillis is Millis with a sign, for differences: "+0.120", "-0.015".
func SignedMillis(d time.Duration) string {
	if d >= 0 {
		return "+" + Millis(d)
	}
	return Millis(d)
}

// ByteSize renders n in the largest binary unit that divides it, or in
// bytes: 1073741824 -> "1 GiB".
func ByteSize(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n > 0 && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
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
