package e2e

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/agent/runtime/process"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// platform is a dev platform started for a test.
type platform struct {
	*dev.Platform
	c *client.Client
}

// testStopGrace is the process runtime's stop grace in these tests: their
// functions exit at SIGTERM (the stream helper) or drain in milliseconds
// (echo), so a longer one only delays a test whose instance is stuck.
const testStopGrace = time.Second

// startPlatform runs the whole platform in-process in dir with short loops.
func startPlatform(t testing.TB, dir string) *platform {
	t.Helper()
	return startPlatformWith(t, dir, nil)
}

// startPlatformWith is startPlatform with the config changed by edit first.
func startPlatformWith(t testing.TB, dir string, edit func(*dev.Config)) *platform {
	t.Helper()
	cfg := dev.Config{
		DataDir: dir, Listen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Process: process.Config{BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, FailureThreshold: 3,
			StopGrace: testStopGrace},
		Heartbeat: 200 * time.Millisecond,
		Resync:    300 * time.Millisecond,
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := dev.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &platform{Platform: p, c: client.New(p.URL(), p.AdminToken())}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(b))
	return len(b), nil
}

// selfImage runs this test binary as a function in the given helper mode.
func selfFunction(t testing.TB, name, mode string) model.CreateFunctionRequest {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ = filepath.Abs(exe)
	return model.CreateFunctionRequest{
		Name:                 name,
		InferenceURL:         "/echo",
		Health:               &model.Health{Protocol: "HTTP", URI: "/health", Timeout: "PT5S", ExpectedStatusCode: 200},
		ContainerImage:       "process://" + exe,
		ContainerEnvironment: []model.EnvVar{{Key: helperEnv, Value: mode}},
	}
}

// deploy creates a deployment and waits for the wanted status.
func (p *platform) deploy(t *testing.T, f model.Function, spec model.GPUSpec, want model.FunctionStatus) model.Deployment {
	t.Helper()
	ctx := testutil.Context(t)
	if _, err := p.c.CreateDeployment(ctx, f.ID, f.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{spec}}); err != nil {
		t.Fatal(err)
	}
	return p.waitStatus(t, f, want)
}

func (p *platform) waitStatus(t testing.TB, f model.Function, want model.FunctionStatus) model.Deployment {
	t.Helper()
	ctx := testutil.Context(t)
	var d model.Deployment
	testutil.WaitFor(t, 60*time.Second, func() error {
		var err error
		d, err = p.c.GetDeployment(ctx, f.ID, f.VersionID)
		if err != nil {
			return err
		}
		if d.FunctionStatus != want {
			return errors.New("status " + string(d.FunctionStatus) + ", want " + string(want))
		}
		return nil
	})
	return d
}

func newRequest(t *testing.T, method, url, token string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}
