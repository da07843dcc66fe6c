// Package runtimetest is the conformance suite of runtime.Runtime: one set
// of cases that every runtime runs through, in the manner of nats-server's
// store tests (the same cases over the memory and the file store). A
// runtime's package has a TestConformance that fills in a Harness, the thin
// layer that knows how to build that runtime, read its logs and see what it
// leaves behind, and calls Run.
//
// Every instance runs the same program (see Program): the test binary
// itself, which TestMain turns into the program with MaybeRunProgram. It
// records what happens to it (starts, SIGTERM, exits, failed health checks)
// in a directory the suite reads, so the cases check what the instance
// really went through, not only what the runtime says.
//
// Where a runtime differs by design (Kubernetes instances outlive the agent,
// local processes die with it), the Harness says so in Capabilities and the
// case checks the behaviour the runtime promises instead; no case is
// skipped.
package runtimetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/model"
)

// waitTimeout bounds every wait: the machines are small and shared, and a
// Kubernetes case involves an API server, controllers and a kubelet.
const waitTimeout = 60 * time.Second

// concurrency is how many cases run at once. More than two, since cases
// mostly wait; not all of them, since on two cores a Kubernetes control
// plane serving a dozen runtimes at once makes every case slower.
const concurrency = 4

// waitFor polls cond every 10ms until it returns nil, and fails the test
// with cond's last error after waitTimeout. It is testutil.WaitFor with a
// fixed short period (the conditions are cheap: List, a small file). The
// package does not import testutil: this package is linked into the
// program every instance runs, and testutil's etcd and nats-server would
// add a tenth of a second of start-up to each of them.
func waitFor(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("runtimetest: condition not met after %v: %v", waitTimeout, err)
		}
		<-tick.C
	}
}

// Harness is what the suite needs from one runtime. Every field is
// required unless it says otherwise.
type Harness struct {
	// Name is the runtime's package name, which prefixes its errors
	// ("process: ...").
	Name string
	// NewState returns fresh state for one case: what the runtime keeps
	// outside its memory (process: a directory; kube: a namespace). Cases
	// run in parallel, each on its own state.
	NewState func(t *testing.T) string
	// Open returns a runtime over state, closed when t ends. Opening the
	// same state again is what an agent restarted after Close sees.
	Open func(t *testing.T, state string, o Options) runtime.Runtime
	// Prepare makes spec runnable on this runtime: its Image runs the
	// test program, with InferencePort and, for gpus > 0, the GPU fields
	// the runtime reads (GPUs for the process runtime, GPUModel and
	// GPUCount for a cluster manager). It keeps spec's Env and Args.
	Prepare func(spec *runtime.Spec, gpus int)
	// WantGPUEnv checks the GPU variables an instance of spec sees in
	// env (NVIDIA_VISIBLE_DEVICES, CUDA_VISIBLE_DEVICES ...).
	WantGPUEnv func(spec runtime.Spec, env map[string]string) error
	// Logs returns an instance's output as its operator would read it
	// (the log file; kubectl logs).
	Logs func(t *testing.T, state, instanceID string) (string, error)
	// Held lists what the runtime keeps of one instance outside its
	// memory (work directories; Kubernetes objects), for checks that
	// nothing is left behind.
	Held func(t *testing.T, state, instanceID string) []string
	// Uninstall removes everything the runtime created for state after
	// its runtime was closed (gantry agent uninstall), and returns what
	// it printed and what is left. Nil when the runtime has nothing that
	// outlives Close; the uninstall case then checks that Close leaves
	// nothing behind.
	Uninstall func(t *testing.T, state string) (output string, left []string)
	// UnsupportedImage is an image the runtime refuses with
	// runtime.ErrUnsupportedImage.
	UnsupportedImage string
	Caps             Capabilities
}

// Capabilities are where runtimes differ by design.
type Capabilities struct {
	// Adopts is set when instances outlive Close and a runtime opened
	// over the same state finds them running and leaves them be (kube).
	// Without it, Close stops every instance (process), and the adopt
	// case checks that instead.
	Adopts bool
	// FailureThreshold is how many failed starts in a row make an
	// instance ERRORED.
	FailureThreshold int
	// Backoff is the least delay before the nth restart (1-based) of a
	// run of failed starts.
	Backoff func(n int) time.Duration
}

// Options are what the suite hands to Open.
type Options struct {
	// Notify is the runtime's status notification callback.
	Notify func()
	// Logger receives the runtime's own log, which the suite searches
	// for secret values.
	Logger *slog.Logger
}

// Run runs every case against the harness, each in a subtest, all at once.
func Run(t *testing.T, h Harness) {
	t.Helper()
	switch {
	case h.Name == "" || h.NewState == nil || h.Open == nil || h.Prepare == nil || h.WantGPUEnv == nil ||
		h.Logs == nil || h.Held == nil || h.UnsupportedImage == "":
		t.Fatalf("runtimetest: harness %q is incomplete", h.Name)
	case h.Caps.FailureThreshold < 1 || h.Caps.Backoff == nil:
		t.Fatalf("runtimetest: harness %q: Capabilities need FailureThreshold and Backoff", h.Name)
	case h.Caps.Adopts && h.Uninstall == nil:
		t.Fatalf("runtimetest: harness %q: instances that outlive Close need an Uninstall", h.Name)
	}
	// Programs write here; instances that outlive their case (a failed
	// one) may still hold it when it goes, so its removal is best effort.
	base, err := os.MkdirTemp("", "runtimetest-")
	if err != nil {
		t.Fatalf("runtimetest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	s := &suite{h: h, base: base}
	cases := []struct {
		name string
		run  func(*testing.T)
	}{
		// The slowest first: a grace period; deleting a namespace.
		{"stop kills what ignores SIGTERM", s.stopIgnoresTerm},
		{"uninstall removes everything", s.uninstall},
		{"refuses images it cannot run", s.unsupportedImage},
		{"running only after health passes", s.healthGating},
		{"failing starts back off and end ERRORED", s.failingStart},
		{"crashes twice then runs", s.recovers},
		{"restarts a running instance that fails", s.restartWhileRunning},
		{"stop drains", s.stopDrains},
		{"secrets, GPU and NVCF environment", s.environment},
		{"logs are readable", s.logs},
		{"adopt after agent restart", s.adopt},
		{"notifications follow state changes", s.notifications},
	}
	// Cases run concurrently, up to concurrency at a time whatever
	// -parallel says (on CI it is the number of CPUs, two): they spend
	// most of their time waiting for probes, backoffs, grace periods and
	// controllers. t.Run may be called from several goroutines; each case
	// has its own state.
	// Slots are taken in the order of the list, so the slowest cases,
	// first in it, start at once.
	var wg sync.WaitGroup
	slots := make(chan struct{}, concurrency)
	for _, c := range cases {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			t.Run(c.name, c.run)
		})
	}
	wg.Wait()
}

type suite struct {
	h    Harness
	base string
}

// fixture is one case's runtime and what it observes.
type fixture struct {
	s     *suite
	state string
	rt    runtime.Runtime
	notes chan struct{} // one token per burst of notifications
	log   *lockedBuffer // the runtime's own log
}

// open builds a runtime over fresh state.
func (s *suite) open(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{s: s, state: s.h.NewState(t), notes: make(chan struct{}, 1), log: &lockedBuffer{}}
	f.rt = f.reopen(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runtime log:\n%s", f.log.String())
		}
	})
	return f
}

// reopen opens another runtime over the fixture's state, as an agent
// restarted after the first one's Close would.
func (f *fixture) reopen(t *testing.T) runtime.Runtime {
	return f.s.h.Open(t, f.state, Options{
		Notify: func() {
			select {
			case f.notes <- struct{}{}:
			default:
			}
		},
		Logger: slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
}

// program returns a program with its own directory.
func (s *suite) program(t *testing.T, p Program) Program {
	t.Helper()
	dir, err := os.MkdirTemp(s.base, "p-")
	if err != nil {
		t.Fatalf("runtimetest: %v", err)
	}
	p.Dir = dir
	return p
}

// spec returns a runnable spec of instance id running p.
func (s *suite) spec(id string, p Program, gpus int) runtime.Spec {
	spec := runtime.Spec{
		InstanceID:        id,
		FunctionID:        "fn-" + id,
		FunctionVersionID: "ver-" + id,
		Env:               p.Env(),
		Health:            runtime.HealthCheck{Protocol: "HTTP", Path: "/health", Timeout: 2 * time.Second},
	}
	s.h.Prepare(&spec, gpus)
	return spec
}

// start starts spec and waits until it is RUNNING.
func (f *fixture) start(t *testing.T, spec runtime.Spec) runtime.Status {
	t.Helper()
	if err := f.rt.Start(t.Context(), spec); err != nil {
		t.Fatalf("Start %s: %v", spec.InstanceID, err)
	}
	return waitStatus(t, f.rt, spec.InstanceID, running)
}

// stop stops an instance and fails the test if that fails.
func (f *fixture) stop(t *testing.T, rt runtime.Runtime, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := rt.Stop(ctx, id); err != nil {
		t.Fatalf("Stop %s: %v", id, err)
	}
}

func statusOf(rt runtime.Runtime, id string) (runtime.Status, bool) {
	for _, st := range rt.List() {
		if st.InstanceID == id {
			return st, true
		}
	}
	return runtime.Status{}, false
}

// waitStatus waits until id is listed and check accepts its status.
func waitStatus(t *testing.T, rt runtime.Runtime, id string, check func(runtime.Status) error) runtime.Status {
	t.Helper()
	var got runtime.Status
	waitFor(t, func() error {
		st, ok := statusOf(rt, id)
		if !ok {
			return fmt.Errorf("instance %s is not listed", id)
		}
		got = st
		return check(st)
	})
	return got
}

func running(st runtime.Status) error {
	if st.State != runtime.StateRunning || st.Endpoint == "" {
		return fmt.Errorf("status %+v, want RUNNING with an endpoint", st)
	}
	return nil
}

// events reads what p's processes recorded.
func events(t *testing.T, p Program) []Event {
	t.Helper()
	evs, err := Events(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// ofKind filters events.
func ofKind(evs []Event, kind string) []Event {
	var out []Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// hasEvent reports whether pid recorded an event of kind (with arg, if
// given).
func hasEvent(evs []Event, pid int, kind string, arg ...string) bool {
	return slices.ContainsFunc(evs, func(e Event) bool {
		return e.PID == pid && e.Kind == kind && (len(arg) == 0 || e.Arg == arg[0])
	})
}

// waitEvents waits until p's record satisfies check.
func waitEvents(t *testing.T, p Program, check func([]Event) error) []Event {
	t.Helper()
	var evs []Event
	waitFor(t, func() error {
		var err error
		if evs, err = Events(p.Dir); err != nil {
			return err
		}
		return check(evs)
	})
	return evs
}

// firstPID waits until p's first process has recorded its start, and
// returns its pid.
func firstPID(t *testing.T, p Program) int {
	t.Helper()
	evs := waitEvents(t, p, func(evs []Event) error {
		if len(ofKind(evs, "start")) == 0 {
			return errors.New("the program has not started")
		}
		return nil
	})
	return ofKind(evs, "start")[0].PID
}

// processGone reports whether pid has exited. A zombie counts as gone: a
// test container's init may not reap orphans.
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// checkGone fails the test for every started process of p still running.
func checkGone(t *testing.T, p Program, when string) {
	t.Helper()
	for _, e := range ofKind(events(t, p), "start") {
		if !processGone(e.PID) {
			t.Errorf("process %d of the instance still runs %s", e.PID, when)
		}
	}
}

var httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// get fetches endpoint+path and decodes a JSON answer into v (if not nil).
func get(endpoint, path string, v any) (int, error) {
	resp, err := httpClient.Get(endpoint + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return resp.StatusCode, fmt.Errorf("GET %s: %w (%q)", path, err, body)
		}
	}
	return resp.StatusCode, nil
}

// lockedBuffer is a log sink shared by the runtime's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (s *suite) unsupportedImage(t *testing.T) {
	f := s.open(t)
	spec := s.spec("unsupported", s.program(t, Program{}), 0)
	spec.Image = s.h.UnsupportedImage
	err := f.rt.Start(t.Context(), spec)
	if !errors.Is(err, runtime.ErrUnsupportedImage) || !strings.HasPrefix(err.Error(), s.h.Name+": ") {
		t.Fatalf("Start(%q) = %v, want runtime.ErrUnsupportedImage with the prefix %q", spec.Image, err, s.h.Name+": ")
	}
	if got := f.rt.List(); len(got) != 0 {
		t.Errorf("a refused Start left %+v listed", got)
	}
}

// healthGating: an instance is STARTING, without an endpoint, for as long
// as its health check fails, and RUNNING once it passes. Starting it again
// changes nothing.
func (s *suite) healthGating(t *testing.T) {
	f := s.open(t)
	p := s.program(t, Program{Gated: true})
	spec := s.spec("gated", p, 0)
	if err := f.rt.Start(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, p, func(evs []Event) error {
		if n := len(ofKind(evs, "unhealthy")); n < 2 {
			return fmt.Errorf("the instance answered %d failing health checks, want 2", n)
		}
		return nil
	})
	if st, _ := statusOf(f.rt, spec.InstanceID); st.State != runtime.StateStarting || st.Endpoint != "" {
		t.Fatalf("status %+v while its health check fails, want STARTING without an endpoint", st)
	}
	if err := os.WriteFile(filepath.Join(p.Dir, releaseFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, f.rt, spec.InstanceID, running)
	if code, err := get(st.Endpoint, "/health", nil); err != nil || code != http.StatusOK {
		t.Errorf("GET %s/health = %d, %v", st.Endpoint, code, err)
	}
	if st.Restarts != 0 || st.Reason != "" {
		t.Errorf("status %+v, want no restarts and no reason", st)
	}
	if err := f.rt.Start(t.Context(), spec); err != nil {
		t.Fatalf("second Start = %v, want nil", err)
	}
	if got := f.rt.List(); len(got) != 1 {
		t.Errorf("List after a second Start = %+v", got)
	}
	if starts := ofKind(events(t, p), "start"); len(starts) != 1 {
		t.Errorf("the program started %d times, want once", len(starts))
	}
	f.stop(t, f.rt, spec.InstanceID)
}

// failingStart: a program that always exits before serving is restarted
// with backoff; it is ERRORED, with the exit and the program's last words,
// only after FailureThreshold failed starts; restarts go on after that
// (like CrashLoopBackOff), so a fixed cause would bring it back.
func (s *suite) failingStart(t *testing.T) {
	f := s.open(t)
	p := s.program(t, Program{CrashTimes: -1})
	spec := s.spec("crashloop", p, 0)
	if err := f.rt.Start(t.Context(), spec); err != nil {
		t.Fatalf("Start = %v; a failing program must show in the status, not as an error", err)
	}
	st := waitStatus(t, f.rt, spec.InstanceID, func(st runtime.Status) error {
		if st.State != runtime.StateErrored {
			return fmt.Errorf("status %+v, want ERRORED", st)
		}
		return nil
	})
	starts := len(ofKind(events(t, p), "start"))
	if starts < s.h.Caps.FailureThreshold {
		t.Errorf("ERRORED after %d failed starts, want at least %d", starts, s.h.Caps.FailureThreshold)
	}
	t.Logf("reason: %s", st.Reason)
	for _, want := range []string{"code 3", crashLine} {
		if !strings.Contains(st.Reason, want) {
			t.Errorf("reason %q does not say %q", st.Reason, want)
		}
	}
	if st.Endpoint != "" {
		t.Errorf("an ERRORED instance has endpoint %q", st.Endpoint)
	}
	waitEvents(t, p, func(evs []Event) error {
		if n := len(ofKind(evs, "start")); n < starts+2 {
			return fmt.Errorf("%d starts, want restarts to go on past %d", n, starts)
		}
		return nil
	})
	f.stop(t, f.rt, spec.InstanceID)
	checkGone(t, p, "after Stop")
}

// recovers: a program that fails its first two starts runs on the third,
// each restart later than the runtime's backoff.
func (s *suite) recovers(t *testing.T) {
	f := s.open(t)
	p := s.program(t, Program{CrashTimes: 2})
	spec := s.spec("flaky", p, 0)
	st := f.start(t, spec)
	starts := ofKind(events(t, p), "start")
	if len(starts) != 3 || st.Restarts != 2 {
		t.Fatalf("RUNNING after %d starts with %d restarts, want 3 and 2", len(starts), st.Restarts)
	}
	for i := 1; i < len(starts); i++ {
		gap, least := starts[i].At.Sub(starts[i-1].At), s.h.Caps.Backoff(i)
		if gap < least {
			t.Errorf("restart %d came %v after the start before, want at least the backoff of %v", i, gap, least)
		}
	}
	f.stop(t, f.rt, spec.InstanceID)
}

// restartWhileRunning: an instance that exits, or stops answering its
// health check, after it was RUNNING is restarted and RUNNING again.
func (s *suite) restartWhileRunning(t *testing.T) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, tc := range []struct{ name, trigger string }{
		{"exits", "/crash"},
		{"fails its health check", "/sick"},
	} {
		wg.Go(func() {
			t.Run(tc.name, func(t *testing.T) {
				f := s.open(t)
				p := s.program(t, Program{})
				spec := s.spec("restart", p, 0)
				st := f.start(t, spec)
				first := firstPID(t, p)
				_, _ = get(st.Endpoint, tc.trigger, nil) // /crash never answers
				waitFor(t, func() error {
					st, _ := statusOf(f.rt, spec.InstanceID)
					n := len(ofKind(events(t, p), "start"))
					if running(st) != nil || st.Restarts < 1 || n < 2 {
						return fmt.Errorf("status %+v after %d starts, want RUNNING again after a restart", st, n)
					}
					return nil
				})
				waitFor(t, func() error {
					if !processGone(first) {
						return fmt.Errorf("the first process %d still runs", first)
					}
					return nil
				})
				f.stop(t, f.rt, spec.InstanceID)
			})
		})
	}
}

// stopDrains: Stop sends the instance its stop signal, gives it time to
// finish the request it holds, and returns once it has exited and
// everything of it is gone.
func (s *suite) stopDrains(t *testing.T) {
	f := s.open(t)
	p := s.program(t, Program{})
	spec := s.spec("drain", p, 0)
	spec.Secrets = map[string]string{"DRAIN_TOKEN": "drain-secret-value"}
	st := f.start(t, spec)
	pid := firstPID(t, p)
	type answer struct {
		code int
		body string
		err  error
	}
	slow := make(chan answer, 1)
	go func() {
		resp, err := httpClient.Get(st.Endpoint + "/slow")
		if err != nil {
			slow <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- answer{resp.StatusCode, string(b), err}
	}()
	waitEvents(t, p, func(evs []Event) error {
		if !hasEvent(evs, pid, "slow") {
			return errors.New("the slow request has not reached the instance")
		}
		return nil
	})
	f.stop(t, f.rt, spec.InstanceID)
	// Checked the moment Stop returns: it must have waited for all this.
	evs := events(t, p)
	if !hasEvent(evs, pid, "term") || !hasEvent(evs, pid, "exit", "0") {
		t.Errorf("when Stop returned the instance had not got SIGTERM and exited cleanly: %+v", evs)
	}
	if !processGone(pid) {
		t.Errorf("process %d still runs after Stop", pid)
	}
	if _, ok := statusOf(f.rt, spec.InstanceID); ok {
		t.Error("the instance is still listed after Stop")
	}
	if held := s.h.Held(t, f.state, spec.InstanceID); len(held) > 0 {
		t.Errorf("left after Stop: %v", held)
	}
	select {
	case a := <-slow:
		if a.err != nil || a.code != http.StatusOK || a.body != "drained" {
			t.Errorf("the request in flight at Stop got %d %q, %v; want 200 drained", a.code, a.body, a.err)
		}
	case <-time.After(waitTimeout):
		t.Error("the request in flight at Stop never got an answer")
	}
	if err := f.rt.Stop(t.Context(), spec.InstanceID); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
	if err := f.rt.Stop(t.Context(), "never-started"); err != nil {
		t.Errorf("Stop of an unknown instance = %v, want nil", err)
	}
}

// stopIgnoresTerm: an instance that ignores its stop signal is killed once
// its grace period is over, and Stop returns when it is gone.
func (s *suite) stopIgnoresTerm(t *testing.T) {
	f := s.open(t)
	p := s.program(t, Program{IgnoreTerm: true})
	spec := s.spec("stubborn", p, 0)
	f.start(t, spec)
	pid := firstPID(t, p)
	f.stop(t, f.rt, spec.InstanceID)
	evs := events(t, p)
	if !hasEvent(evs, pid, "term") {
		t.Errorf("the instance never got SIGTERM: %+v", evs)
	}
	if hasEvent(evs, pid, "exit") {
		t.Errorf("the instance exited by itself; it should have been killed: %+v", evs)
	}
	if !processGone(pid) {
		t.Errorf("process %d still runs after Stop", pid)
	}
	if _, ok := statusOf(f.rt, spec.InstanceID); ok {
		t.Error("the instance is still listed after Stop")
	}
}

// environment: the function's containerEnvironment and args, its secrets,
// its GPUs and the platform's NVCF_* variables reach the instance, the
// platform's values winning; and no secret value shows in List, in the
// runtime's log or in the instance's logs.
func (s *suite) environment(t *testing.T) {
	const secretA, secretB = "s3cr3t-api-token-7f3a", "s3cr3t-hf-token-91c2"
	f := s.open(t)
	p := s.program(t, Program{})
	spec := s.spec("env", p, 2)
	spec.Env = append(spec.Env,
		model.EnvVar{Key: "MODEL_NAME", Value: "tiny"},
		model.EnvVar{Key: "HF_TOKEN", Value: "from containerEnvironment"}, // the secret wins
		model.EnvVar{Key: "PORT", Value: "1"},                             // the platform's PORT wins
		model.EnvVar{Key: "NVCF_FUNCTION_ID", Value: "spoofed"},           // and its NVCF_* variables
		model.EnvVar{Key: "NVCF_ENV", Value: "prod"},
	)
	spec.Secrets = map[string]string{"API_TOKEN": secretA, "HF_TOKEN": secretB}
	spec.Args = `--name 'hello world' "a \"q\""`
	spec.FunctionName, spec.NCAID, spec.Backend = "echo", "nca-1", "group-a"
	spec.InstanceType, spec.Region = "ON-PREM.GPU.H100_2x", "eu-west"
	st := f.start(t, spec)

	var env map[string]string
	if _, err := get(st.Endpoint, "/env", &env); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(st.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"MODEL_NAME":         "tiny",
		"API_TOKEN":          secretA,
		"HF_TOKEN":           secretB,
		"PORT":               u.Port(),
		"GANTRY_INSTANCE_ID": spec.InstanceID,
	}
	for _, e := range runtime.NVCFEnv(spec, st.AssetDir, st.LargeOutputDir) {
		want[e.Key] = e.Value
	}
	for k, v := range want {
		if got, ok := env[k]; !ok || got != v {
			t.Errorf("env %s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	if st.AssetDir == "" || st.LargeOutputDir == "" {
		t.Errorf("status %+v names no asset or large-output directory", st)
	}
	if err := s.h.WantGPUEnv(spec, env); err != nil {
		t.Errorf("GPU environment: %v", err)
	}
	var args []string
	if _, err := get(st.Endpoint, "/args", &args); err != nil {
		t.Fatal(err)
	}
	if wantArgs := []string{"--name", "hello world", `a "q"`}; !slices.Equal(args, wantArgs) {
		t.Errorf("args = %q, want %q", args, wantArgs)
	}

	logs, err := s.h.Logs(t, f.state, spec.InstanceID)
	if err != nil {
		t.Fatal(err)
	}
	f.stop(t, f.rt, spec.InstanceID)
	for where, text := range map[string]string{
		"List":                fmt.Sprintf("%+v %#v", f.rt.List(), st),
		"the runtime's log":   f.log.String(),
		"the instance's logs": logs,
	} {
		for _, secret := range []string{secretA, secretB} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains a secret value", where)
			}
		}
	}
}

// logs: what the instance writes to stdout and stderr is readable where
// its operator looks.
func (s *suite) logs(t *testing.T) {
	f := s.open(t)
	p := s.program(t, Program{})
	spec := s.spec("logs", p, 0)
	f.start(t, spec)
	waitFor(t, func() error {
		logs, err := s.h.Logs(t, f.state, spec.InstanceID)
		if err != nil {
			return err
		}
		for _, want := range []string{stdoutLine, stderrLine} {
			if !strings.Contains(logs, want) {
				return fmt.Errorf("logs lack %q:\n%s", want, logs)
			}
		}
		return nil
	})
	f.stop(t, f.rt, spec.InstanceID)
}

// adopt: with Adopts, instances outlive Close, and a runtime opened over
// the same state lists them RUNNING at the same endpoints without
// restarting them, and can stop them. Without it, Close stops every
// instance and a new runtime finds nothing.
func (s *suite) adopt(t *testing.T) {
	f := s.open(t)
	progs := []Program{s.program(t, Program{}), s.program(t, Program{})}
	specs := []runtime.Spec{s.spec("adopt-a", progs[0], 0), s.spec("adopt-b", progs[1], 0)}
	specs[0].Secrets = map[string]string{"ADOPT_TOKEN": "adopt-secret-value"}
	endpoints := map[string]string{}
	for _, spec := range specs {
		endpoints[spec.InstanceID] = f.start(t, spec).Endpoint
	}
	if err := f.rt.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := f.rt.Start(t.Context(), s.spec("late", s.program(t, Program{}), 0)); err == nil || !strings.HasPrefix(err.Error(), s.h.Name+": ") {
		t.Errorf("Start after Close = %v, want an error with the prefix %q", err, s.h.Name+": ")
	}

	if !s.h.Caps.Adopts {
		t.Logf("%s: instances do not outlive Close (Capabilities.Adopts unset): checking that Close stopped them", s.h.Name)
		for i, spec := range specs {
			evs := events(t, progs[i])
			pid := firstPID(t, progs[i])
			if !processGone(pid) || !hasEvent(evs, pid, "term") {
				t.Errorf("%s: process %d was not stopped by Close: %+v", spec.InstanceID, pid, evs)
			}
			if held := s.h.Held(t, f.state, spec.InstanceID); len(held) > 0 {
				t.Errorf("%s: left after Close: %v", spec.InstanceID, held)
			}
		}
		if got := f.reopen(t).List(); len(got) != 0 {
			t.Errorf("a new runtime lists %+v", got)
		}
		return
	}

	for i, spec := range specs {
		pid := firstPID(t, progs[i])
		if processGone(pid) {
			t.Errorf("%s: process %d did not outlive Close", spec.InstanceID, pid)
		}
		if len(s.h.Held(t, f.state, spec.InstanceID)) == 0 {
			t.Errorf("%s: nothing of it is left after Close", spec.InstanceID)
		}
	}
	rt := f.reopen(t)
	for i, spec := range specs {
		st := waitStatus(t, rt, spec.InstanceID, running)
		if st.Endpoint != endpoints[spec.InstanceID] {
			t.Errorf("%s: adopted at %s, was at %s", spec.InstanceID, st.Endpoint, endpoints[spec.InstanceID])
		}
		if err := rt.Start(t.Context(), spec); err != nil {
			t.Errorf("%s: Start of an adopted instance = %v", spec.InstanceID, err)
		}
		if n := len(ofKind(events(t, progs[i]), "start")); n != 1 {
			t.Errorf("%s: the program started %d times, want once: adoption must not restart it", spec.InstanceID, n)
		}
	}
	if got := rt.List(); len(got) != len(specs) {
		t.Errorf("List after adoption = %+v", got)
	}
	for i, spec := range specs {
		f.stop(t, rt, spec.InstanceID)
		pid := firstPID(t, progs[i])
		if !processGone(pid) || !hasEvent(events(t, progs[i]), pid, "term") {
			t.Errorf("%s: the adopting runtime did not stop process %d", spec.InstanceID, pid)
		}
	}
}

// uninstall: after the runtime is gone, uninstalling removes every
// instance and everything the runtime made, and prints no secret. A
// runtime without Uninstall must leave nothing once closed.
func (s *suite) uninstall(t *testing.T) {
	const secret = "uninstall-secret-value"
	f := s.open(t)
	progs := []Program{s.program(t, Program{}), s.program(t, Program{})}
	specs := []runtime.Spec{s.spec("uninstall-a", progs[0], 1), s.spec("uninstall-b", progs[1], 0)}
	specs[0].Secrets = map[string]string{"TOKEN": secret}
	for _, spec := range specs {
		f.start(t, spec)
	}
	if err := f.rt.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if s.h.Uninstall == nil {
		t.Logf("%s: nothing outlives Close (Harness.Uninstall unset): checking that Close left nothing", s.h.Name)
	} else {
		out, left := s.h.Uninstall(t, f.state)
		t.Logf("uninstall:\n%s", out)
		if len(left) > 0 {
			t.Errorf("left after uninstall: %v", left)
		}
		if strings.Contains(out, secret) {
			t.Error("uninstall printed a secret value")
		}
	}
	for i, spec := range specs {
		checkGone(t, progs[i], "after uninstall")
		if held := s.h.Held(t, f.state, spec.InstanceID); len(held) > 0 {
			t.Errorf("%s: left after uninstall: %v", spec.InstanceID, held)
		}
	}
}

// notifications: every state change the agent must report is followed by
// a notification: waiting on notifications alone, and looking at List
// only after each, sees the instance start, run, restart and go.
func (s *suite) notifications(t *testing.T) {
	f := s.open(t)
	p := s.program(t, Program{})
	spec := s.spec("notify", p, 0)
	// await looks at List only after a notification, so a change the
	// runtime does not notify leaves it waiting until the timeout.
	await := func(what string, cond func(st runtime.Status, listed bool) bool) {
		t.Helper()
		timeout := time.NewTimer(waitTimeout)
		defer timeout.Stop()
		for {
			select {
			case <-f.notes:
				if st, ok := statusOf(f.rt, spec.InstanceID); cond(st, ok) {
					return
				}
			case <-timeout.C:
				st, ok := statusOf(f.rt, spec.InstanceID)
				t.Fatalf("no notification within %v after which %s (status %+v, listed %v)", waitTimeout, what, st, ok)
			}
		}
	}
	drain := func() {
		for len(f.notes) > 0 {
			<-f.notes
		}
	}
	drain()
	if err := f.rt.Start(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	await("the instance is listed", func(_ runtime.Status, listed bool) bool { return listed })
	await("the instance is RUNNING", func(st runtime.Status, _ bool) bool { return running(st) == nil })
	st, _ := statusOf(f.rt, spec.InstanceID)
	drain()
	_, _ = get(st.Endpoint, "/crash", nil)
	await("the instance is RUNNING again after a restart", func(st runtime.Status, _ bool) bool {
		return running(st) == nil && st.Restarts >= 1
	})
	drain()
	f.stop(t, f.rt, spec.InstanceID)
	await("the stopped instance is gone from List", func(_ runtime.Status, listed bool) bool { return !listed })
}
