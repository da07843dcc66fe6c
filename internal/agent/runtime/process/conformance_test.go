package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/agent/runtime/runtimetest"
)

// Test timings: restarts and probes fast enough for a suite that restarts
// instances on purpose.
const (
	testBackoffBase = 10 * time.Millisecond
	testBackoffMax  = 100 * time.Millisecond
	// testStopGrace: "stop kills what ignores SIGTERM" waits it out; the
	// program drains at SIGTERM in milliseconds, so a second is plenty.
	testStopGrace = time.Second
)

// TestConformance runs the process runtime through the runtime conformance
// suite. Its state is a directory; instances die with Close, so there is
// nothing to adopt or uninstall.
func TestConformance(t *testing.T) {
	t.Parallel()
	image := helperImage(t)
	runtimetest.Run(t, runtimetest.Harness{
		Name:     "process",
		NewState: func(t *testing.T) string { return t.TempDir() },
		Open: func(t *testing.T, dir string, o runtimetest.Options) runtime.Runtime {
			r, err := New(Config{Dir: dir, Notify: o.Notify, Logger: o.Logger,
				BackoffBase: testBackoffBase, BackoffMax: testBackoffMax, HealthInterval: 50 * time.Millisecond,
				StopGrace: testStopGrace})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Close() })
			return r
		},
		Prepare: func(spec *runtime.Spec, gpus int) {
			spec.Image = image
			for i := range gpus {
				spec.GPUs = append(spec.GPUs, 2*i+1) // not simply 0..n-1
			}
		},
		WantGPUEnv: func(spec runtime.Spec, env map[string]string) error {
			want := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(spec.GPUs)), ","), "[]")
			for _, k := range []string{"NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"} {
				if env[k] != want {
					return fmt.Errorf("%s = %q, want %q", k, env[k], want)
				}
			}
			return nil
		},
		Logs: func(_ *testing.T, dir, id string) (string, error) {
			b, err := os.ReadFile(filepath.Join(dir, "instances", id+".log"))
			return string(b), err
		},
		Held: func(t *testing.T, dir, id string) []string {
			work := filepath.Join(dir, "work", id)
			if _, err := os.Stat(work); errors.Is(err, fs.ErrNotExist) {
				return nil
			} else if err != nil {
				t.Fatal(err)
			}
			return []string{work}
		},
		UnsupportedImage: "nvcr.io/example/echo:1",
		Caps: runtimetest.Capabilities{
			FailureThreshold: DefaultFailureThreshold,
			Backoff: func(n int) time.Duration {
				return min(testBackoffBase<<(n-1), testBackoffMax)
			},
		},
	})
}
