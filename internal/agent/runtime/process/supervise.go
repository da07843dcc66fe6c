package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/model"
)

// outcomeKind says how one run of an instance's process ended.
type outcomeKind int

const (
	outcomeStopped     outcomeKind = iota // Stop was called
	outcomeFailedStart                    // it never became healthy
	outcomeCrashed                        // it exited or went unhealthy after being healthy
	outcomePermanent                      // it can never start; wait for Stop
	outcomeRetake                         // its inferencePort came free; start again on it
)

// outcome is the result of one run, with the words for Status.Reason.
type outcome struct {
	kind   outcomeKind
	reason string        // e.g. "process exited with code 3 after 0.01s"
	tail   string        // last lines of the process's output, if any
	hint   string        // what to do about it, appended after the tail
	fatal  bool          // a failed start that is ERRORED at once (command not found)
	ranFor time.Duration // time spent RUNNING, for outcomeCrashed
}

// supervise runs in's process until Stop, restarting it with backoff.
func (r *Runtime) supervise(ctx context.Context, in *instance) {
	defer r.wg.Done()
	defer close(in.done)
	id := in.spec.InstanceID
	var (
		failedStarts int // starts in a row that never became healthy
		unstable     int // restarts in a row without a stable run; drives backoff
	)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if !sleepCtx(ctx, r.backoff(unstable)) {
				return
			}
			r.update(ctx, in, func(s *runtime.Status) { s.Restarts++ })
		}
		out := r.runOnce(ctx, in)
		if out.kind == outcomeStopped || ctx.Err() != nil {
			return
		}
		switch out.kind {
		case outcomeRetake:
			r.log.Info("instance restarting on its inferencePort", "instance", id, "reason", out.reason)
			r.update(ctx, in, func(s *runtime.Status) {
				s.State, s.Reason, s.Endpoint = runtime.StateStarting, out.reason, ""
			})
		case outcomePermanent:
			r.log.Warn("instance cannot start", "instance", id, "reason", out.reason)
			r.update(ctx, in, func(s *runtime.Status) {
				s.State, s.Reason, s.Endpoint = runtime.StateErrored, out.reason, ""
			})
			<-ctx.Done()
			return
		case outcomeCrashed:
			failedStarts = 0
			if out.ranFor >= r.stableAfter() {
				unstable = 0
			}
			unstable++
			reason := "restarting: " + withTail(out.reason, out.tail)
			r.log.Warn("instance failed; restarting", "instance", id, "reason", reason)
			r.update(ctx, in, func(s *runtime.Status) {
				s.State, s.Reason, s.Endpoint = runtime.StateStarting, reason, ""
			})
		case outcomeFailedStart:
			failedStarts++
			unstable++
			state := runtime.StateStarting
			var reason string
			switch {
			case out.fatal:
				state, reason = runtime.StateErrored, withTail(out.reason, out.tail)
			case failedStarts >= r.cfg.FailureThreshold:
				state = runtime.StateErrored
				reason = withTail(fmt.Sprintf("restart loop: %s (%s)", out.reason, countFailed(failedStarts)), out.tail)
			default:
				reason = withTail(fmt.Sprintf("restarting: %s (%s)", out.reason, countFailed(failedStarts)), out.tail)
			}
			if out.hint != "" {
				reason += "; " + out.hint
			}
			r.log.Warn("instance failed to start", "instance", id, "state", state, "reason", reason)
			r.update(ctx, in, func(s *runtime.Status) {
				s.State, s.Reason, s.Endpoint = state, reason, ""
			})
		}
	}
}

// runOnce starts in's process once and watches it until it exits, fails its
// health checks or ctx ends (then it terminates the process). It never
// returns while the process is still running.
func (r *Runtime) runOnce(ctx context.Context, in *instance) outcome {
	spec := in.spec
	args, err := SplitArgs(spec.Args)
	if err != nil {
		// Not worth retrying: the spec cannot change under a running instance.
		return outcome{kind: outcomePermanent, reason: "invalid containerArgs: " + strings.TrimPrefix(err.Error(), "process: ")}
	}
	path, err := resolveCommand(strings.TrimPrefix(spec.Image, model.ProcessImagePrefix))
	if err != nil {
		return outcome{kind: outcomeFailedStart, fatal: true, reason: err.Error()}
	}
	port, err := r.allocPort(in)
	if err != nil {
		return outcome{kind: outcomeFailedStart, reason: strings.TrimPrefix(err.Error(), "process: ")}
	}
	heldBy := r.inferencePortHolder(in, port)
	logFile, err := r.openLog(spec.InstanceID)
	if err != nil {
		return outcome{kind: outcomeFailedStart, reason: strings.TrimPrefix(err.Error(), "process: ")}
	}
	defer logFile.Close()
	assetDir, largeOutputDir, err := r.makeWorkDirs(spec.InstanceID)
	if err != nil {
		return outcome{kind: outcomeFailedStart, reason: strings.TrimPrefix(err.Error(), "process: ")}
	}

	// Output first: it never fails, and MultiWriter stops at an error
	// (a full disk).
	var outFile, errFile io.Writer = logFile, logFile
	if r.cfg.Output != nil {
		src := runtime.SourceOf(spec)
		outFile = io.MultiWriter(r.cfg.Output(src, runtime.StreamStdout), logFile)
		errFile = io.MultiWriter(r.cfg.Output(src, runtime.StreamStderr), logFile)
	}
	stdout, stderr := newTailWriter(outFile), newTailWriter(errFile)
	cmd := exec.Command(path, args...)
	cmd.Env = buildEnv(spec, port, assetDir, largeOutputDir)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = exitWaitDelay
	// Own process group, so Stop reaches helpers the function forks; and
	// SIGKILL if the agent dies (see Runtime.spawner for the thread caveat).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(logFile, "--- gantry %s: starting %s on port %d ---\n", time.Now().UTC().Format(time.RFC3339), path, port)
	if err := r.spawn(cmd); err != nil {
		fmt.Fprintf(logFile, "--- gantry: start failed: %v ---\n", err)
		return outcome{kind: outcomeFailedStart, reason: fmt.Sprintf("start %s: %v", path, err)}
	}
	started := time.Now()
	proc := cmd.Process
	r.mu.Lock()
	in.pid = proc.Pid
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		in.pid = 0
		r.mu.Unlock()
	}()
	r.log.Debug("instance process started", "instance", spec.InstanceID, "pid", proc.Pid, "port", port)

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tail := func() string {
		if t := stderr.lastLines(); t != "" {
			return t
		}
		return stdout.lastLines()
	}

	var (
		healthy      bool
		runningSince time.Time
		probeFails   int
	)
	exitOutcome := func(waitErr error) outcome {
		signalGroup(proc, syscall.SIGKILL) // helpers it left behind
		o := outcome{kind: outcomeFailedStart, reason: describeExit(cmd.ProcessState, waitErr, time.Since(started)), tail: tail()}
		if healthy {
			o.kind, o.ranFor = outcomeCrashed, time.Since(runningSince)
		} else if o.hint = r.portHint(in, port); o.hint != "" && addrInUse(o.tail) {
			// It almost surely binds its inferencePort: say so at once
			// rather than after FailureThreshold starts. Restarts go on, so
			// it takes the port when the holder is gone.
			o.fatal = true
		}
		fmt.Fprintf(logFile, "--- gantry: %s ---\n", o.reason)
		return o
	}
	kill := func() {
		signalGroup(proc, syscall.SIGKILL)
		<-exited
		signalGroup(proc, syscall.SIGKILL)
	}
	deadline := started.Add(r.cfg.StartupTimeout)
	timer := time.NewTimer(startingProbeInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			r.terminate(in, proc, exited)
			fmt.Fprintf(logFile, "--- gantry: stopped ---\n")
			return outcome{kind: outcomeStopped}
		case err := <-exited:
			return exitOutcome(err)
		case <-timer.C:
		}
		// An exit that raced the timer explains more than a failed probe.
		select {
		case err := <-exited:
			return exitOutcome(err)
		default:
		}

		perr := r.probeOnce(ctx, spec.Health, port)
		if ctx.Err() != nil {
			continue // the loop's select sees ctx and terminates
		}
		switch {
		case perr == nil:
			probeFails = 0
			if !healthy {
				healthy, runningSince = true, time.Now()
				endpoint := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
				r.update(ctx, in, func(s *runtime.Status) {
					s.State, s.Reason, s.Endpoint = runtime.StateRunning, "", endpoint
				})
				r.log.Info("instance running", "instance", spec.InstanceID, "endpoint", endpoint,
					"startup", time.Since(started).Round(time.Millisecond))
			}
		case !healthy && r.portReleased(in, port, heldBy):
			// A function that binds its inferencePort may now have bound
			// it, where nobody probes: start again on that port.
			kill()
			reason := fmt.Sprintf("port %d, the function's inferencePort, came free; restarting on it", spec.InferencePort)
			fmt.Fprintf(logFile, "--- gantry: %s ---\n", reason)
			return outcome{kind: outcomeRetake, reason: reason}
		case healthy:
			probeFails++
			if probeFails >= unhealthyThreshold {
				kill()
				reason := fmt.Sprintf("health check failed %d times in a row: %v", probeFails, perr)
				fmt.Fprintf(logFile, "--- gantry: %s; killed ---\n", reason)
				return outcome{kind: outcomeCrashed, reason: reason, tail: tail(), ranFor: time.Since(runningSince)}
			}
		case time.Now().After(deadline):
			kill()
			reason := fmt.Sprintf("not healthy within the startup timeout of %s (last probe: %v)", r.cfg.StartupTimeout, perr)
			fmt.Fprintf(logFile, "--- gantry: %s; killed ---\n", reason)
			return outcome{kind: outcomeFailedStart, reason: reason, tail: tail(), hint: r.portHint(in, port)}
		}
		if healthy {
			timer.Reset(r.cfg.HealthInterval)
		} else {
			timer.Reset(startingProbeInterval)
		}
	}
}

// terminate stops a running process for Stop: SIGTERM to its group, then
// SIGKILL after Config.StopGrace or as soon as in.kill is closed. The leader's exit
// ends the grace period; anything left in the group is killed then.
func (r *Runtime) terminate(in *instance, proc *os.Process, exited <-chan error) {
	signalGroup(proc, syscall.SIGTERM)
	t := time.NewTimer(r.cfg.StopGrace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		r.log.Warn("instance ignored SIGTERM; killing", "instance", in.spec.InstanceID, "grace", r.cfg.StopGrace)
		signalGroup(proc, syscall.SIGKILL)
		<-exited
	case <-in.kill:
		signalGroup(proc, syscall.SIGKILL)
		<-exited
	}
	signalGroup(proc, syscall.SIGKILL)
}

// signalGroup signals the process group led by proc, and proc itself in case
// it has left that group (setsid). Signalling proc goes through os.Process,
// which knows when the pid has been reaped and cannot hit a reused pid.
func signalGroup(proc *os.Process, sig syscall.Signal) {
	_ = syscall.Kill(-proc.Pid, sig)
	_ = proc.Signal(sig)
}

// probeOnce runs one health probe against the instance's port. HTTP probes
// GET the health path and compare the status; gRPC probes only check that a
// TCP connection is accepted, since speaking grpc.health.v1 would pull in the
// gRPC stack for little gain. A distinct health port in the spec is ignored:
// the process runtime gives each instance exactly one port ($PORT), and the
// function must serve health there too.
func (r *Runtime) probeOnce(ctx context.Context, hc runtime.HealthCheck, port int) error {
	timeout := hc.Timeout
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	if strings.EqualFold(hc.Protocol, "grpc") {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}

	path := hc.Path
	if path == "" {
		path = defaultHealthPath
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := r.probe.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	want := hc.ExpectedStatus
	if want == 0 {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s answered %d, want %d", path, resp.StatusCode, want)
	}
	return nil
}

// resolveCommand turns the command of a process:// image into a path. The
// error text is meant for Status.Reason.
func resolveCommand(name string) (string, error) {
	switch {
	case filepath.IsAbs(name):
		fi, err := os.Stat(name)
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("command %q not found", name)
		}
		if err != nil {
			return "", fmt.Errorf("command %q: %v", name, err)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("command %q is not an executable file", name)
		}
		return name, nil
	case strings.Contains(name, "/"):
		return "", fmt.Errorf("command %q must be an absolute path or a name on PATH", name)
	default:
		// LookPath also fails with exec.ErrDot for a match in a relative
		// PATH entry; running whatever sits in the agent's working
		// directory would be a surprise, so that counts as not found.
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("command %q not found on PATH", name)
		}
		return p, nil
	}
}

// buildEnv returns the process environment: the agent's own, then the
// function's containerEnvironment, then its secrets, then the variables the
// platform owns (runtime.NVCFEnv among them, with the instance's asset and
// large-output directories). exec.Cmd keeps the last value of a duplicated
// key, so later groups win.
func buildEnv(spec runtime.Spec, port int, assetDir, largeOutputDir string) []string {
	env := os.Environ()
	for _, e := range spec.Env {
		if validEnvKey(e.Key) {
			env = append(env, e.Key+"="+e.Value)
		}
	}
	keys := make([]string, 0, len(spec.Secrets))
	for k := range spec.Secrets {
		if validEnvKey(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+spec.Secrets[k])
	}
	gpus := make([]string, len(spec.GPUs))
	for i, g := range spec.GPUs {
		gpus[i] = strconv.Itoa(g)
	}
	cuda := strings.Join(gpus, ",")
	nvidia := cuda
	if nvidia == "" {
		// "void" makes the NVIDIA container toolkit expose no GPU; CUDA
		// treats an empty list as no devices.
		nvidia = "void"
	}
	env = append(env,
		"PORT="+strconv.Itoa(port),
		"NVIDIA_VISIBLE_DEVICES="+nvidia,
		"CUDA_VISIBLE_DEVICES="+cuda,
		"GANTRY_INSTANCE_ID="+spec.InstanceID,
	)
	for _, e := range runtime.NVCFEnv(spec, assetDir, largeOutputDir) {
		env = append(env, e.Key+"="+e.Value)
	}
	return env
}

// validEnvKey drops keys that would corrupt the environment block.
func validEnvKey(k string) bool {
	return k != "" && !strings.ContainsAny(k, "=\x00")
}

// describeExit words how a process ended, for Status.Reason.
func describeExit(ps *os.ProcessState, waitErr error, after time.Duration) string {
	secs := fmt.Sprintf("%.2fs", after.Seconds())
	if ps == nil {
		return fmt.Sprintf("process ended after %s: %v", secs, waitErr)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("process killed by signal %d (%v) after %s", int(ws.Signal()), ws.Signal(), secs)
	}
	return fmt.Sprintf("process exited with code %d after %s", ps.ExitCode(), secs)
}

// withTail appends the output tail to a reason.
func withTail(reason, tail string) string {
	if tail == "" {
		return reason
	}
	return reason + ": " + tail
}

// addrInUse reports whether a process's output tail says a bind failed
// because the address was taken, in the words of the common runtimes (Go,
// Python, Node, Rust).
func addrInUse(tail string) bool {
	t := strings.ToLower(tail)
	return strings.Contains(t, "address already in use") || strings.Contains(t, "eaddrinuse")
}

// countFailed words a failed start count.
func countFailed(n int) string {
	if n == 1 {
		return "1 failed start"
	}
	return fmt.Sprintf("%d failed starts", n)
}

// backoff returns the delay before a restart after n unstable runs in a row:
// BackoffBase, doubling per run, capped at BackoffMax.
func (r *Runtime) backoff(n int) time.Duration {
	d := r.cfg.BackoffBase
	for i := 1; i < n && d < r.cfg.BackoffMax; i++ {
		d *= 2
	}
	return min(d, r.cfg.BackoffMax)
}

// stableAfter is how long an instance must stay RUNNING for its restart
// backoff to reset.
func (r *Runtime) stableAfter() time.Duration { return 10 * r.cfg.BackoffBase }

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
