package process

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/model"
)

// waitTimeout is generous: the test machine is small and shared.
const waitTimeout = 20 * time.Second

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newRuntime returns a Runtime with fast test timings, closed at cleanup.
func newRuntime(t *testing.T, cfg Config) *Runtime {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = 10 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 100 * time.Millisecond
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 50 * time.Millisecond
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// helperImage runs this test binary as the function.
func helperImage(t *testing.T) string {
	t.Helper()
	exe, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	return model.ProcessImagePrefix + exe
}

func helperSpec(t *testing.T, id, mode string, env ...model.EnvVar) runtime.Spec {
	t.Helper()
	return runtime.Spec{
		InstanceID:        id,
		FunctionID:        "fn-" + id,
		FunctionVersionID: "ver-" + id,
		Image:             helperImage(t),
		Env:               append([]model.EnvVar{{Key: helperEnv, Value: mode}}, env...),
		Health:            runtime.HealthCheck{Path: "/health", Timeout: 2 * time.Second},
	}
}

func statusOf(r *Runtime, id string) (runtime.Status, bool) {
	for _, s := range r.List() {
		if s.InstanceID == id {
			return s, true
		}
	}
	return runtime.Status{}, false
}

// waitStatus waits until id's status satisfies cond and returns it.
func waitStatus(t *testing.T, r *Runtime, id string, cond func(runtime.Status) bool) runtime.Status {
	t.Helper()
	var last runtime.Status
	deadline := time.Now().Add(waitTimeout)
	for {
		s, ok := statusOf(r, id)
		if ok && cond(s) {
			return s
		}
		last = s
		if time.Now().After(deadline) {
			t.Fatalf("instance %s: condition not met within %s; last status %+v", id, waitTimeout, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isState(st runtime.State) func(runtime.Status) bool {
	return func(s runtime.Status) bool { return s.State == st }
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
	}
}

func pidOf(r *Runtime, id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if in, ok := r.instances[id]; ok {
		return in.pid
	}
	return 0
}

// processGone reports whether pid no longer runs. A zombie counts as gone:
// a test container's init may not reap orphans.
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

func TestNewRequiresDir(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil || !strings.HasPrefix(err.Error(), "process: ") {
		t.Fatalf("New without Dir = %v, want process: error", err)
	}
}

func TestStartRejects(t *testing.T) {
	t.Parallel()
	r := newRuntime(t, Config{})
	tests := []struct {
		name        string
		spec        runtime.Spec
		unsupported bool
	}{
		{name: "empty image", spec: runtime.Spec{InstanceID: "a", Image: ""}, unsupported: true},
		{name: "process prefix without command", spec: runtime.Spec{InstanceID: "a", Image: "process://"}, unsupported: true},
		{name: "empty instance id", spec: runtime.Spec{InstanceID: "", Image: "process://true"}},
		{name: "instance id with slash", spec: runtime.Spec{InstanceID: "../x", Image: "process://true"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Start(context.Background(), tc.spec)
			if err == nil {
				t.Fatal("Start succeeded, want error")
			}
			if got := errors.Is(err, runtime.ErrUnsupportedImage); got != tc.unsupported {
				t.Fatalf("errors.Is(%v, ErrUnsupportedImage) = %v, want %v", err, got, tc.unsupported)
			}
			if tc.unsupported && !strings.Contains(err.Error(), "only runs process:// images") &&
				!strings.Contains(err.Error(), "names no command") {
				t.Fatalf("error %q does not explain the process:// rule", err)
			}
		})
	}
	if n := len(r.List()); n != 0 {
		t.Fatalf("List has %d instances after rejected starts", n)
	}
}

func TestRunningOnOwnPort(t *testing.T) {
	t.Parallel()
	r := newRuntime(t, Config{})
	ids := []string{"inst-a", "inst-b"}
	for _, id := range ids {
		if err := r.Start(context.Background(), helperSpec(t, id, "serve")); err != nil {
			t.Fatal(err)
		}
	}
	endpoints := map[string]bool{}
	for _, id := range ids {
		s := waitStatus(t, r, id, isState(runtime.StateRunning))
		var env map[string]string
		getJSON(t, s.Endpoint+"/env", &env)
		if want := "http://127.0.0.1:" + env["PORT"]; s.Endpoint != want {
			t.Errorf("%s: endpoint %s, but process got PORT=%s", id, s.Endpoint, env["PORT"])
		}
		if s.Reason != "" || s.Restarts != 0 {
			t.Errorf("%s: unexpected status %+v", id, s)
		}
		endpoints[s.Endpoint] = true
	}
	if len(endpoints) != len(ids) {
		t.Fatalf("instances share endpoints: %v", endpoints)
	}
	got := r.List()
	if len(got) != 2 || got[0].InstanceID != "inst-a" || got[1].InstanceID != "inst-b" {
		t.Fatalf("List = %+v, want inst-a, inst-b in order", got)
	}
}

// TestEnvironment checks what the conformance suite leaves to each
// runtime: without GPUs NVIDIA_VISIBLE_DEVICES is "void" and
// CUDA_VISIBLE_DEVICES empty, the agent's own environment (PATH) is
// inherited, and the asset and large-output directories exist while the
// instance runs and go with it (its log stays).
func TestEnvironment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := newRuntime(t, Config{Dir: dir})
	spec := helperSpec(t, "env", "serve")
	if err := r.Start(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, r, "env", isState(runtime.StateRunning))
	var env map[string]string
	getJSON(t, s.Endpoint+"/env", &env)
	want := map[string]string{
		"NVIDIA_VISIBLE_DEVICES": "void",
		"CUDA_VISIBLE_DEVICES":   "",
		"PATH":                   os.Getenv("PATH"),
		"NVCF_ASSET_DIR":         filepath.Join(dir, "work", "env", "assets"),
		"NVCF_LARGE_OUTPUT_DIR":  filepath.Join(dir, "work", "env", "large-output"),
	}
	for k, v := range want {
		if got, ok := env[k]; !ok || got != v {
			t.Errorf("env %s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	for _, k := range []string{"NVCF_ASSET_DIR", "NVCF_LARGE_OUTPUT_DIR"} {
		if fi, err := os.Stat(env[k]); err != nil || !fi.IsDir() {
			t.Errorf("%s %q is not a directory: %v", k, env[k], err)
		}
	}
	if err := r.Stop(context.Background(), "env"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "work", "env")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("work directory after Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "instances", "env.log")); err != nil {
		t.Errorf("log after Stop: %v", err)
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cfg        Config
		spec       func(t *testing.T) runtime.Spec
		wantReason []string
	}{
		{
			name: "never healthy",
			cfg:  Config{StartupTimeout: time.Second, FailureThreshold: 1},
			spec: func(t *testing.T) runtime.Spec { return helperSpec(t, "x", "unhealthy") },
			wantReason: []string{
				"restart loop: not healthy within the startup timeout of 1s", "answered 500, want 200",
			},
		},
		{
			name: "command not on path",
			spec: func(t *testing.T) runtime.Spec {
				return runtime.Spec{InstanceID: "x", Image: "process://gantry-no-such-command-xyz"}
			},
			wantReason: []string{`command "gantry-no-such-command-xyz" not found on PATH`},
		},
		{
			name: "absolute command missing",
			spec: func(t *testing.T) runtime.Spec {
				return runtime.Spec{InstanceID: "x", Image: "process:///nonexistent/gantry-cmd"}
			},
			wantReason: []string{`command "/nonexistent/gantry-cmd" not found`},
		},
		{
			name: "unterminated quote",
			spec: func(t *testing.T) runtime.Spec {
				s := helperSpec(t, "x", "serve")
				s.Args = `--name 'oops`
				return s
			},
			wantReason: []string{"invalid containerArgs: unterminated single quote"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRuntime(t, tc.cfg)
			if err := r.Start(context.Background(), tc.spec(t)); err != nil {
				t.Fatalf("Start = %v; failures must show in the status, not as an error", err)
			}
			// Wait for a matching reason, not just ERRORED: on a loaded
			// machine an early attempt may fail for a slower reason (e.g. the
			// startup timeout passing before the helper listens), and the
			// crash loop retries until the expected one shows.
			s := waitStatus(t, r, "x", func(s runtime.Status) bool {
				if s.State != runtime.StateErrored {
					return false
				}
				for _, w := range tc.wantReason {
					if !strings.Contains(s.Reason, w) {
						return false
					}
				}
				return true
			})
			t.Logf("reason: %s", s.Reason)
			if s.Endpoint != "" {
				t.Errorf("ERRORED instance has endpoint %q", s.Endpoint)
			}
		})
	}
}

// TestRestarts checks the words of a restart's reason; that a running
// instance that fails is restarted is a conformance case.
func TestRestarts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		trigger    string // helper endpoint that breaks the instance
		wantReason string
	}{
		{name: "crash", trigger: "/crash", wantReason: "restarting: process exited with code 1 after "},
		{name: "health check fails", trigger: "/sick", wantReason: "restarting: health check failed 3 times in a row: GET /health answered 500"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu      sync.Mutex
				reasons []string
				r       *Runtime
			)
			r = newRuntime(t, Config{Notify: func() {
				mu.Lock()
				defer mu.Unlock()
				if r == nil {
					return // not reachable: Notify first runs from Start, after r is set
				}
				for _, s := range r.List() {
					if s.Reason != "" {
						reasons = append(reasons, s.Reason)
					}
				}
			}})
			if err := r.Start(context.Background(), helperSpec(t, "c", "serve")); err != nil {
				t.Fatal(err)
			}
			s := waitStatus(t, r, "c", isState(runtime.StateRunning))
			resp, err := http.Get(s.Endpoint + tc.trigger)
			if err == nil {
				resp.Body.Close()
			}
			waitStatus(t, r, "c", func(s runtime.Status) bool {
				return s.State == runtime.StateRunning && s.Restarts >= 1
			})
			mu.Lock()
			defer mu.Unlock()
			found := false
			for _, got := range reasons {
				found = found || strings.Contains(got, tc.wantReason)
			}
			if !found {
				t.Fatalf("no reason containing %q among %q", tc.wantReason, reasons)
			}
		})
	}
}

// TestStopKillsProcessGroup checks what is particular to processes: Stop
// reaches the helpers a function forks (its process group), and a Stop
// context that ends cuts the grace period short. Draining and the rest of
// Stop are conformance cases.
func TestStopKillsProcessGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		ignoreTerm bool
		stopCtx    time.Duration // 0: no deadline
	}{
		{name: "graceful"},
		{name: "ignores SIGTERM, ctx deadline cuts grace", ignoreTerm: true, stopCtx: 300 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRuntime(t, Config{})
			spec := helperSpec(t, "s", "serve")
			if tc.ignoreTerm {
				spec.Env = append(spec.Env, model.EnvVar{Key: "GANTRY_TEST_IGNORE_TERM", Value: "1"})
			}
			if err := r.Start(context.Background(), spec); err != nil {
				t.Fatal(err)
			}
			s := waitStatus(t, r, "s", isState(runtime.StateRunning))
			pid := pidOf(r, "s")
			var child int
			getJSON(t, s.Endpoint+"/spawn", &child)
			if processGone(pid) || processGone(child) {
				t.Fatalf("processes not running before Stop: pid %d child %d", pid, child)
			}

			ctx := context.Background()
			if tc.stopCtx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.stopCtx)
				defer cancel()
			}
			begin := time.Now()
			if err := r.Stop(ctx, "s"); err != nil {
				t.Fatal(err)
			}
			if tc.stopCtx > 0 && time.Since(begin) > DefaultStopGrace {
				t.Errorf("Stop took %s; the ctx deadline should cut the grace period", time.Since(begin))
			}
			if !processGone(pid) {
				t.Errorf("process %d still running after Stop", pid)
			}
			waitFor(t, waitTimeout, func() bool { return processGone(child) })
		})
	}
}

// TestChildDiesWithAgent kills an agent (this binary in "agent" mode) with
// SIGKILL and checks that its instance dies too, through Pdeathsig.
func TestChildDiesWithAgent(t *testing.T) {
	t.Parallel()
	exe, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(exe)
	agent.Env = append(os.Environ(), helperEnv+"=agent", "GANTRY_TEST_AGENT_DIR="+t.TempDir())
	agent.Stderr = os.Stderr
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Kill()
		_ = agent.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading child pid from agent: %v", err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("agent printed %q, want a pid", line)
	}
	if processGone(child) {
		t.Fatalf("child %d not running while the agent is alive", child)
	}
	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	waitFor(t, waitTimeout, func() bool { return processGone(child) })
}

// supervisorGoroutines counts goroutines running this package's runtime code.
func supervisorGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:goruntime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "agent/runtime/process.(*Runtime)") {
			n++
		}
	}
	return n
}

// TestCloseStopsAll checks what Close does beyond stopping the instances
// (a conformance case): an instance in a restart loop is stopped too, no
// runtime goroutine is left, and Start fails with ErrClosed. It is not
// parallel: it counts goroutines, and parallel tests are paused while
// sequential ones run.
func TestCloseStopsAll(t *testing.T) {
	r := newRuntime(t, Config{})
	if err := r.Start(context.Background(), helperSpec(t, "ok", "serve")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, r, "ok", isState(runtime.StateRunning))
	if err := r.Start(context.Background(), helperSpec(t, "bad", "exit")); err != nil {
		t.Fatal(err)
	}
	if supervisorGoroutines() == 0 {
		t.Fatal("found no runtime goroutines; the leak check below would prove nothing")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(r.List()); n != 0 {
		t.Errorf("List has %d instances after Close", n)
	}
	if err := r.Start(context.Background(), helperSpec(t, "late", "serve")); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	waitFor(t, waitTimeout, func() bool { return supervisorGoroutines() == 0 })
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	r := &Runtime{cfg: Config{BackoffBase: time.Second, BackoffMax: 30 * time.Second}}
	tests := []struct {
		n    int
		want time.Duration
	}{
		{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{5, 16 * time.Second}, {6, 30 * time.Second}, {100, 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			if got := r.backoff(tc.n); got != tc.want {
				t.Errorf("backoff(%d) = %s, want %s", tc.n, got, tc.want)
			}
		})
	}
}

func TestTailWriter(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", tailBytes+100)
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{name: "empty", writes: nil, want: ""},
		{name: "last three non-empty lines", writes: []string{"a\nb\n\n", "c\n  \nd\n\n"}, want: "b | c | d"},
		{name: "line split across writes", writes: []string{"err", "or: x\n"}, want: "error: x"},
		{name: "cut partial first line", writes: []string{long, "\nfinal\n"}, want: "final"},
		{name: "one huge write keeps end", writes: []string{"head\n" + long + "\nend"}, want: "end"},
		{name: "long line shortened", writes: []string{strings.Repeat("y", 1000)}, want: "..." + strings.Repeat("y", tailMaxReason)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var file bytes.Buffer
			w := newTailWriter(&file)
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if got := w.lastLines(); got != tc.want {
				t.Errorf("lastLines = %q, want %q", got, tc.want)
			}
			if file.String() != strings.Join(tc.writes, "") {
				t.Errorf("file did not get every byte")
			}
		})
	}
}
