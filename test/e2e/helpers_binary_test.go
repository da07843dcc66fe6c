package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testutil"
)

// Timeouts for driving the built binary. The machine running the suite may be
// small and busy, so they are generous; every wait polls and returns as soon
// as its condition holds.
const (
	binBuildTimeout = 10 * time.Minute
	binWaitTimeout  = 60 * time.Second
	binCLITimeout   = 3 * time.Minute
	binStopTimeout  = 30 * time.Second
)

// syncBuffer is a bytes.Buffer safe for the goroutine exec uses to copy a
// child's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// moduleRoot is the directory holding go.mod, two levels above this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	return root
}

// raceEnabled reports whether this test binary was built with -race. The
// gantry binary is built the same way so that it reuses the build cache the
// test run already filled, and so the race detector also watches the product
// running as a real process.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// The gantry binary is built once per run of this package and shared by the
// tests that drive it (each only runs it): under -race the link alone takes
// 10-20 s, which every such test used to pay again.
var (
	gantryOnce sync.Once
	gantryDir  string // removed by TestMain when the tests are done
	gantryBin  string
	gantryErr  error
)

// buildGantry builds ./cmd/gantry once and returns the binary's path. A
// failed build fails every test that asks for it, with the same output.
func buildGantry(t *testing.T) string {
	t.Helper()
	root := moduleRoot(t)
	gantryOnce.Do(func() {
		gantryDir, gantryErr = os.MkdirTemp("", "gantry-e2e-bin-")
		if gantryErr != nil {
			return
		}
		gantryBin = filepath.Join(gantryDir, "gantry")
		args := []string{"build", "-o", gantryBin}
		if raceEnabled() {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/gantry")
		ctx, cancel := context.WithTimeout(context.Background(), binBuildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		began := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			gantryErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		t.Logf("built %s in %.1fs (race=%v)", gantryBin, time.Since(began).Seconds(), raceEnabled())
	})
	if gantryErr != nil {
		t.Fatal(gantryErr)
	}
	return gantryBin
}

// removeGantry deletes the binary buildGantry built, if any.
func removeGantry() {
	if gantryDir != "" {
		_ = os.RemoveAll(gantryDir)
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// isolatedEnv is the environment for gantry subprocesses: the test's own,
// minus every GANTRY_* variable and with config lookups pointed into home, so
// that nothing reaches the user's real data dir, config file or token, plus
// extra ("KEY=value").
func isolatedEnv(home string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GANTRY_") || k == "XDG_CONFIG_HOME" || k == "XDG_DATA_HOME" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "XDG_CONFIG_HOME="+filepath.Join(home, "config"), "XDG_DATA_HOME="+filepath.Join(home, "xdg-data"))
	return append(env, extra...)
}

// devProcess is a running `gantry dev` subprocess.
type devProcess struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	url    string
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, set before done closes
}

// startDev runs `gantry dev --data-dir dataDir --listen <free port>` and
// waits until it prints its banner and /healthz answers. If the test fails,
// the process's output is logged; a process still running at cleanup is
// killed.
func startDev(t *testing.T, bin, name, dataDir string, env []string) *devProcess {
	t.Helper()
	addr := freeAddr(t)
	d := &devProcess{t: t, name: name, url: "http://" + addr, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(bin, "dev", "--data-dir", dataDir, "--listen", addr, "--grpc-listen", "127.0.0.1:0")
	d.cmd.Env = env
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start gantry dev: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			d.dumpLogs()
		}
	})

	hc := &http.Client{Timeout: 5 * time.Second}
	testutil.WaitFor(t, binWaitTimeout, func() error {
		select {
		case <-d.done:
			d.dumpLogs()
			t.Fatalf("%s: gantry dev exited before it was ready: %v", name, d.err)
		default:
		}
		if !strings.Contains(d.stdout.String(), "Gantry dev is ready") {
			return errors.New("no ready banner yet")
		}
		resp, err := hc.Get(d.url + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz answered %d", resp.StatusCode)
		}
		return nil
	})
	return d
}

func (d *devProcess) dumpLogs() {
	d.t.Helper()
	d.t.Logf("%s: gantry dev stdout:\n%s", d.name, d.stdout.String())
	d.t.Logf("%s: gantry dev stderr:\n%s", d.name, d.stderr.String())
}

// interrupt sends SIGINT, as Ctrl-C does, and requires a clean exit (status
// 0) within binStopTimeout.
func (d *devProcess) interrupt() {
	d.t.Helper()
	if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
		d.t.Fatalf("%s: SIGINT: %v", d.name, err)
	}
	select {
	case <-d.done:
	case <-time.After(binStopTimeout):
		d.dumpLogs()
		d.t.Fatalf("%s: gantry dev still running %v after SIGINT", d.name, binStopTimeout)
	}
	if d.err != nil {
		d.dumpLogs()
		d.t.Fatalf("%s: gantry dev exited with %v after SIGINT, want status 0", d.name, d.err)
	}
}

// runGantry runs one client command of bin and returns its stdout. A non-zero
// exit fails the test with both outputs.
func runGantry(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), binCLITimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("gantry %s: %v after %.1fs\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, time.Since(began).Seconds(), stdout.String(), stderr.String())
	}
	return stdout.String()
}

// childPIDs lists the processes whose parent is pid, from
// /proc/<pid>/task/*/children (every thread may have forked some).
func childPIDs(t *testing.T, pid int) []int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended meanwhile
		}
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// cmdline returns a process's arguments joined by spaces ("" once it is gone).
func cmdline(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// processAlive reports whether pid runs and is the process that was seen
// with the given cmdline; a zombie or a reused pid counts as gone.
func processAlive(pid int, wantCmdline string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) || s[i+2] == 'Z' {
		return false
	}
	return cmdline(pid) == wantCmdline
}

// processEnv reports whether pid's environment holds kv ("KEY=value").
// Only processes of the same user can be read.
func processEnv(pid int, kv string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, e := range strings.Split(string(b), "\x00") {
		if e == kv {
			return true
		}
	}
	return false
}
