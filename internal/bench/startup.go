package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Startup targets for `gantry dev`.
const (
	TargetStart   = 3 * time.Second
	TargetIdleRSS = 150 << 20 // bytes
)

// readyBanner is the start of the line `gantry dev` prints on stdout once
// the control plane and the local agent are both up.
const readyBanner = "Gantry dev is ready"

// StartupConfig configures RunStartup. Zero values take the defaults named.
type StartupConfig struct {
	// Executable is the gantry binary to start (default: this process's).
	Executable string
	// Runs is how many starts on a fresh data dir to measure (default 5).
	Runs int
	// Idle is how long each started platform sits before its memory is read
	// (default 10s), so start-up garbage has had a chance to be collected.
	Idle time.Duration
	// Timeout bounds each start (default 60s).
	Timeout time.Duration
	// Progress receives a line per run (nil discards them).
	Progress io.Writer
}

func (c *StartupConfig) defaults() error {
	if c.Runs <= 0 {
		c.Runs = 5
	}
	if c.Idle <= 0 {
		c.Idle = 10 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
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
	return nil
}

// StartRun is one start of `gantry dev`.
type StartRun struct {
	// FreshDataDir is false for the restart on an existing data dir.
	FreshDataDir bool `json:"freshDataDir"`
	// Start runs from exec to the first 200 from GET /healthz.
	Start time.Duration `json:"startNs"`
	// Ready runs from exec to the ready banner on stdout, printed once the
	// local agent has started too.
	Ready time.Duration `json:"readyNs"`
	// IdleRSS is VmRSS after the idle wait, in bytes.
	IdleRSS int64 `json:"idleRssBytes"`
	// Stop runs from SIGINT to exit.
	Stop time.Duration `json:"stopNs"`
}

// StartupResult is what RunStartup measured.
type StartupResult struct {
	Idle time.Duration `json:"idleNs"`
	// Runs are the starts on fresh data dirs; Restart is one more start on
	// the data dir the last of them left behind.
	Runs        []StartRun    `json:"runs"`
	Restart     StartRun      `json:"restart"`
	StartMedian time.Duration `json:"startMedianNs"`
	StartMin    time.Duration `json:"startMinNs"`
	StartMax    time.Duration `json:"startMaxNs"`
	ReadyMedian time.Duration `json:"readyMedianNs"`
	RSSMedian   int64         `json:"idleRssMedianBytes"`
	Targets     []Target      `json:"targets"`
}

// RunStartup measures how long `gantry dev` takes to serve, and how much
// memory it holds once idle, by running the real binary as a subprocess.
func RunStartup(ctx context.Context, cfg StartupConfig) (*StartupResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gantry-bench-startup-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)

	res := &StartupResult{Idle: cfg.Idle}
	var dataDir string
	for i := 1; i <= cfg.Runs+1; i++ {
		fresh := i <= cfg.Runs
		if fresh {
			dataDir = filepath.Join(dir, fmt.Sprintf("run-%d", i))
		}
		run, err := startOnce(ctx, cfg, dataDir, filepath.Join(dir, fmt.Sprintf("run-%d.log", i)))
		if err != nil {
			return nil, err
		}
		run.FreshDataDir = fresh
		what := fmt.Sprintf("run %d/%d (fresh data dir)", i, cfg.Runs)
		if fresh {
			res.Runs = append(res.Runs, run)
		} else {
			what = "restart on existing data dir"
			res.Restart = run
		}
		fmt.Fprintf(cfg.Progress, "  %-30s  start %6.3fs  ready %6.3fs  idle RSS %6.1f MiB  stop %6.3fs\n",
			what, run.Start.Seconds(), run.Ready.Seconds(), MiB(run.IdleRSS), run.Stop.Seconds())
	}

	var starts, readies []time.Duration
	var rss []int64
	for _, r := range res.Runs {
		starts = append(starts, r.Start)
		readies = append(readies, r.Ready)
		rss = append(rss, r.IdleRSS)
	}
	s := Summarize(starts, 0)
	res.StartMedian, res.StartMin, res.StartMax = Median(starts), s.Min, s.Max
	res.ReadyMedian = Median(readies)
	res.RSSMedian = Median(rss)
	res.Targets = []Target{
		{Name: "start to /healthz, median of fresh starts", Want: fmt.Sprintf("<= %.1f s", TargetStart.Seconds()),
			Got: fmt.Sprintf("%.3f s", res.StartMedian.Seconds()), Pass: res.StartMedian <= TargetStart},
		{Name: "start to /healthz, restart on existing data", Want: fmt.Sprintf("<= %.1f s", TargetStart.Seconds()),
			Got: fmt.Sprintf("%.3f s", res.Restart.Start.Seconds()), Pass: res.Restart.Start <= TargetStart},
		{Name: "idle RSS, median of fresh starts", Want: fmt.Sprintf("<= %.0f MiB", MiB(TargetIdleRSS)),
			Got: fmt.Sprintf("%.1f MiB", MiB(res.RSSMedian)), Pass: res.RSSMedian <= TargetIdleRSS},
	}
	return res, nil
}

// startOnce starts `gantry dev` on dataDir, times it to /healthz and to its
// ready banner, idles, reads its RSS and stops it with SIGINT. The child's
// stderr goes to logPath, whose end is quoted if anything fails.
func startOnce(ctx context.Context, cfg StartupConfig, dataDir, logPath string) (run StartRun, err error) {
	addr, err := freeAddr()
	if err != nil {
		return run, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return run, fmt.Errorf("bench: %w", err)
	}
	defer logf.Close()
	// A pipe of our own rather than StdoutPipe, which Wait would close
	// under the reader.
	pr, pw, err := os.Pipe()
	if err != nil {
		return run, fmt.Errorf("bench: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command(cfg.Executable, "dev", "--data-dir", dataDir, "--listen", addr, "--grpc-listen", "127.0.0.1:0", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = pw, logf

	began := time.Now()
	c, err := startChild(cmd)
	pw.Close()
	if err != nil {
		return run, err
	}
	readyc := make(chan time.Time, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), readyBanner) {
				readyc <- time.Now()
			}
		}
	}()
	defer func() {
		if c != nil {
			_, _ = c.stop()
		}
		if err != nil {
			err = fmt.Errorf("%w\n%s:\n%s", err, logPath, tail(logPath, 2000))
		}
	}()

	sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	healthy, err := waitOK(sctx, c, "http://"+addr+"/healthz", 10*time.Millisecond)
	if err != nil {
		return run, err
	}
	run.Start = healthy.Sub(began)
	select {
	case t := <-readyc:
		run.Ready = t.Sub(began)
	case <-c.exited:
		return run, fmt.Errorf("bench: gantry dev exited before printing %q: %v", readyBanner, c.err)
	case <-sctx.Done():
		return run, fmt.Errorf("bench: gantry dev never printed %q: %w", readyBanner, sctx.Err())
	}

	select {
	case <-time.After(cfg.Idle):
	case <-c.exited:
		return run, fmt.Errorf("bench: gantry dev exited while idle: %v", c.err)
	case <-ctx.Done():
		return run, ctx.Err()
	}
	if run.IdleRSS, err = readRSS(cmd.Process.Pid); err != nil {
		return run, err
	}
	stopped := c
	c = nil
	run.Stop, err = stopped.stop()
	return run, err
}

// tail returns up to the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	if len(b) == 0 {
		return "(empty)"
	}
	return string(b)
}

// MiB converts bytes to mebibytes.
func MiB(bytes int64) float64 { return float64(bytes) / (1 << 20) }
