package process

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/model"
)

// freePort returns a port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// fixedSpec is an instance of a function with inferencePort port; with
// ignorePort it listens there whatever $PORT says.
func fixedSpec(t *testing.T, id string, port int, ignorePort bool) runtime.Spec {
	var env []model.EnvVar
	if ignorePort {
		env = append(env, model.EnvVar{Key: "GANTRY_TEST_LISTEN_PORT", Value: strconv.Itoa(port)})
	}
	s := helperSpec(t, id, "serve", env...)
	s.InferencePort = port
	return s
}

// TestInferencePortIgnoringPORT checks that a function binding its
// inferencePort is reached there, that a second instance on the host is
// ERRORED naming the first, and that it takes the port once the first goes.
func TestInferencePortIgnoringPORT(t *testing.T) {
	t.Parallel()
	r := newRuntime(t, Config{})
	port := freePort(t)
	if err := r.Start(context.Background(), fixedSpec(t, "first", port, true)); err != nil {
		t.Fatal(err)
	}
	s := waitStatus(t, r, "first", isState(runtime.StateRunning))
	if want := "http://127.0.0.1:" + strconv.Itoa(port); s.Endpoint != want {
		t.Fatalf("endpoint %s, want %s", s.Endpoint, want)
	}
	var env map[string]string
	getJSON(t, s.Endpoint+"/env", &env)
	if env["PORT"] != strconv.Itoa(port) {
		t.Errorf("PORT=%s, want the inferencePort %d", env["PORT"], port)
	}

	if err := r.Start(context.Background(), fixedSpec(t, "second", port, true)); err != nil {
		t.Fatal(err)
	}
	want := []string{"port " + strconv.Itoa(port), "already used by instance first on this host", "$PORT"}
	s = waitStatus(t, r, "second", func(s runtime.Status) bool {
		if s.State != runtime.StateErrored {
			return false
		}
		for _, w := range want {
			if !strings.Contains(s.Reason, w) {
				return false
			}
		}
		return true
	})
	t.Logf("reason: %s", s.Reason)

	if err := r.Stop(context.Background(), "first"); err != nil {
		t.Fatal(err)
	}
	s = waitStatus(t, r, "second", isState(runtime.StateRunning))
	if want := "http://127.0.0.1:" + strconv.Itoa(port); s.Endpoint != want {
		t.Fatalf("second: endpoint %s, want %s", s.Endpoint, want)
	}
}

// TestInferencePortHonouringPORT checks that many instances of a function
// that has an inferencePort but honours $PORT still share a host, and that
// a port held by another program is reported as such.
func TestInferencePortHonouringPORT(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		hold       bool // another program holds the inferencePort
		ignorePort bool
		wantState  runtime.State
		wantReason string
	}{
		{name: "port free", wantState: runtime.StateRunning},
		{name: "port held elsewhere", hold: true, wantState: runtime.StateRunning},
		{name: "port held elsewhere, binds it", hold: true, ignorePort: true,
			wantState: runtime.StateErrored, wantReason: "in use by another program on this host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRuntime(t, Config{})
			port := freePort(t)
			if tc.hold {
				ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = ln.Close() })
			}
			ids := []string{"a", "b", "c"}
			if tc.ignorePort {
				ids = ids[:1]
			}
			endpoints := map[string]bool{}
			for _, id := range ids {
				if err := r.Start(context.Background(), fixedSpec(t, id, port, tc.ignorePort)); err != nil {
					t.Fatal(err)
				}
			}
			for _, id := range ids {
				s := waitStatus(t, r, id, func(s runtime.Status) bool {
					return s.State == tc.wantState && strings.Contains(s.Reason, tc.wantReason)
				})
				if s.State == runtime.StateRunning {
					endpoints[s.Endpoint] = true
				}
			}
			if tc.wantState == runtime.StateRunning && len(endpoints) != len(ids) {
				t.Fatalf("instances share endpoints: %v", endpoints)
			}
		})
	}
}
