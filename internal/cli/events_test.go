package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// lockedBuffer is a bytes.Buffer a command writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestEventsCommand runs gantry events against a real dev platform (its
// embedded etcd and NATS): the listing in each format, a bad --since, and
// --follow printing what happens until interrupted.
func TestEventsCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := dev.New(dev.Config{DataDir: dir, Listen: "127.0.0.1:0", Heartbeat: 200 * time.Millisecond, Resync: 300 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	gantry := func(ctx context.Context, stdout, stderr *lockedBuffer, args ...string) int {
		args = append([]string{"--config", cfg, "--server", p.URL(), "--token-file", p.TokenPath()}, args...)
		return run(ctx, args, strings.NewReader(""), stdout, stderr)
	}
	c := client.New(p.URL(), p.AdminToken())
	fn, err := c.CreateFunction(ctx, model.CreateFunctionRequest{Name: "listed", InferenceURL: "/", ContainerImage: "process://true"})
	if err != nil {
		t.Fatal(err)
	}

	// -o json: the events, CloudEvents as the API has them.
	var list []events.Event
	testutil.WaitFor(t, 30*time.Second, func() error {
		var out, errOut lockedBuffer
		if code := gantry(ctx, &out, &errOut, "events", "--since", "1h", "-o", "json"); code != 0 {
			return testutil.Errorf("exit %d: %s", code, errOut.String())
		}
		list = nil
		if err := json.Unmarshal([]byte(out.String()), &list); err != nil {
			return err
		}
		for _, e := range list {
			if e.Kind() == events.KindFunctionCreated && e.Function == fn.ID {
				return nil
			}
		}
		return testutil.Errorf("no function.created in %s", out.String())
	})
	// table: a header and a row saying what happened.
	var out, errOut lockedBuffer
	if code := gantry(ctx, &out, &errOut, "events"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !strings.HasPrefix(lines[0], "AGE") || !strings.Contains(lines[0], "TYPE") || !strings.Contains(lines[0], "SUBJECT") ||
		!strings.Contains(out.String(), "function.created") || !strings.Contains(out.String(), "functions/"+fn.ID+"/versions/"+fn.VersionID) ||
		!strings.Contains(out.String(), "listed") {
		t.Errorf("table:\n%s", out.String())
	}
	// yaml: the same events.
	out, errOut = lockedBuffer{}, lockedBuffer{}
	if code := gantry(ctx, &out, &errOut, "events", "-o", "yaml"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var fromYAML []events.Event
	if err := yaml.Unmarshal([]byte(out.String()), &fromYAML); err != nil || len(fromYAML) < len(list) {
		t.Errorf("yaml: %v\n%s", err, out.String())
	}
	// A bad --since is the server's 400, said so.
	out, errOut = lockedBuffer{}, lockedBuffer{}
	if code := gantry(ctx, &out, &errOut, "events", "--since", "yesterday"); code == 0 ||
		!strings.Contains(errOut.String(), `since "yesterday" is invalid: use an RFC 3339 time`) {
		t.Errorf("--since yesterday: %q", errOut.String())
	}

	// --follow -o json: one event per line as it happens, until interrupted.
	fctx, stop := context.WithCancel(ctx)
	out, errOut = lockedBuffer{}, lockedBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- gantry(fctx, &out, &errOut, "events", "--follow", "--since", time.Now().UTC().Format(time.RFC3339Nano), "-o", "json")
	}()
	later, err := c.CreateFunction(ctx, model.CreateFunctionRequest{Name: "followed", InferenceURL: "/", ContainerImage: "process://true"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var e events.Event
			if json.Unmarshal([]byte(line), &e) == nil && e.Function == later.ID {
				return nil
			}
		}
		return testutil.Errorf("followed so far: %q (stderr %q)", out.String(), errOut.String())
	})
	stop()
	if code := <-done; code != 0 {
		t.Errorf("--follow exit %d after the interrupt: %s", code, errOut.String())
	}
}

// TestEventDetail checks the one-line summary each kind gets in tables.
func TestEventDetail(t *testing.T) {
	t.Parallel()
	ev := func(kind string, data any) events.Event {
		b, _ := json.Marshal(data)
		return events.Event{Type: events.Type(kind), Data: b}
	}
	cases := []struct {
		e    events.Event
		want string
	}{
		{ev(events.KindFunctionCreated, events.FunctionData{Name: "echo"}), "echo"},
		{ev(events.KindDeploymentStatus, events.DeploymentData{To: model.StatusDeploying}), "- -> DEPLOYING"},
		{ev(events.KindDeploymentStatus, events.DeploymentData{From: model.StatusActive, To: model.StatusDegraded,
			HealthInfo: []model.HealthInfo{{Error: "instance on cluster c failed: exit 3"}}}), "ACTIVE -> DEGRADED: instance on cluster c failed: exit 3"},
		{ev(events.KindDeploymentScaled, events.ScaleData{SpecIndex: 0, GPU: "H100", From: 1, To: 3, Reason: "queue depth 9"}), "spec 0 (H100): 1 -> 3: queue depth 9"},
		{ev(events.KindInstanceFailed, events.InstanceData{ClusterID: "local", Status: model.InstanceErrored, Reason: "exit status 3"}), "on local: ERRORED: exit status 3"},
		{ev(events.KindClusterNotReady, events.ClusterData{Name: "west", From: model.ClusterReady, To: model.ClusterNotReady}), "west: READY -> NOT_READY"},
		{ev(events.KindKeyRotated, events.KeyData{Key: "nek", From: 1, To: 2}), "NEK v1 -> v2"},
		{events.Event{Type: "gantry.function.created", Data: json.RawMessage(`[`)}, ""},
	}
	for _, tc := range cases {
		if got := eventDetail(tc.e); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.e.Type, got, tc.want)
		}
	}
}
