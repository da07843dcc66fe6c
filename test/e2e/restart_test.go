package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestRestartKeepsEverything stops a platform with a running deployment and
// starts a new one on the same data dir: functions, versions and the
// deployment must come back unchanged, the deployment must return to ACTIVE
// with its instances RUNNING, and the restart must not leave twice as many
// instances (records or processes) as the deployment asks for.
func TestRestartKeepsEverything(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startPlatform(t, dir)
	ctx := testutil.Context(t)

	alpha, err := p.c.CreateFunction(ctx, selfFunction(t, "alpha", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	alpha2, err := p.c.CreateVersion(ctx, alpha.ID, selfFunction(t, "alpha", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	beta, err := p.c.CreateFunction(ctx, selfFunction(t, "beta", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	spec := model.GPUSpec{GPU: "H100", MinInstances: 2, MaxInstances: 2, MaxRequestConcurrency: model.Int(2)}
	before := p.deploy(t, alpha2, spec, model.StatusActive)
	running := waitRunning(t, p, alpha2, 2, time.Time{})
	invokeOK(t, p, alpha2, "before restart")
	fnsBefore := versionKeys(t, p)

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waits for every instance, so none of the instance processes may
	// be left.
	if left := versionProcesses(t, alpha2.VersionID); len(left) != 0 {
		t.Fatalf("instances still running after Close: %v", left)
	}

	restarted := time.Now()
	p = startPlatform(t, dir)
	// Until the new agent's first report the store still holds the states
	// from before the shutdown (the agent sends no final report; see the
	// e2e report), so the API may show RUNNING instances that do not run.
	// Waits below therefore only count states reported after the restart.
	if f, err := p.c.GetFunction(ctx, alpha2.ID, alpha2.VersionID); err == nil {
		for _, in := range f.ActiveInstances {
			if in.InstanceStatus == model.InstanceRunning && in.InstanceUpdatedAt.Before(restarted) {
				t.Logf("known product bug: right after restart instance %s shows RUNNING as of %s, before the restart at %s",
					in.InstanceID, in.InstanceUpdatedAt.Format(time.RFC3339Nano), restarted.Format(time.RFC3339Nano))
			}
		}
	}
	if got := versionKeys(t, p); !slices.Equal(got, fnsBefore) {
		t.Fatalf("functions after restart:\n%v\nbefore:\n%v", got, fnsBefore)
	}
	vs, err := p.c.ListVersions(ctx, alpha.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ids := versionIDs(vs); !slices.Equal(ids, sortedStrings(alpha.VersionID, alpha2.VersionID)) {
		t.Fatalf("alpha versions after restart %v, want %s and %s", ids, alpha.VersionID, alpha2.VersionID)
	}
	if vs, err := p.c.ListVersions(ctx, beta.ID); err != nil || len(vs) != 1 || vs[0].VersionID != beta.VersionID {
		t.Fatalf("beta versions after restart: %v %+v", err, vs)
	}
	after, err := p.c.GetDeployment(ctx, alpha2.ID, alpha2.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	if after.ID != before.ID || !sameSpecs(after.Specs, before.Specs) {
		t.Fatalf("deployment after restart %s %+v, before %s %+v", after.ID, after.Specs, before.ID, before.Specs)
	}
	for _, f := range []model.Function{alpha, beta} {
		if _, err := p.c.GetDeployment(ctx, f.ID, f.VersionID); client.StatusCode(err) != 404 {
			t.Fatalf("undeployed version %s has a deployment after restart: %v", f.VersionID, err)
		}
	}

	again := waitRunning(t, p, alpha2, 2, restarted)
	p.waitStatus(t, alpha2, model.StatusActive)
	invokeOK(t, p, alpha2, "after restart")
	invokeOK(t, p, alpha, "after restart, by function id") // alpha resolves to its deployed version
	// `gantry dev --help` promises the instances come back, not new ones.
	if !slices.Equal(again, running) {
		t.Fatalf("instances before restart %v, after %v: want the same instances back", running, again)
	}

	// Not doubled: the counts must hold over several reconciler passes (the
	// test platform resyncs every 300ms) and agent heartbeats, since a pass
	// that wrongly added instances would only show up after one.
	const window = 1500 * time.Millisecond
	var stableSince time.Time
	testutil.WaitFor(t, 60*time.Second, func() error {
		f, err := p.c.GetFunction(ctx, alpha2.ID, alpha2.VersionID)
		if err != nil {
			return err
		}
		if n := len(f.ActiveInstances); n != 2 {
			t.Fatalf("after restart the version has %d instances, want 2: %+v", n, f.ActiveInstances)
		}
		procs := versionProcesses(t, alpha2.VersionID)
		if len(procs) > 2 {
			t.Fatalf("after restart %d instance processes run, want 2: %v", len(procs), procs)
		}
		if len(procs) != 2 {
			stableSince = time.Time{}
			return fmt.Errorf("%d instance processes run, want 2", len(procs))
		}
		if stableSince.IsZero() {
			stableSince = time.Now()
		}
		if d := time.Since(stableSince); d < window {
			return fmt.Errorf("counts right for %v of %v", d.Round(time.Millisecond), window)
		}
		return nil
	})
}

// waitRunning waits until the version lists exactly n active instances, all
// RUNNING as reported after since, and returns their ids.
func waitRunning(t *testing.T, p *platform, f model.Function, n int, since time.Time) []string {
	t.Helper()
	ctx := testutil.Context(t)
	var ids []string
	testutil.WaitFor(t, 60*time.Second, func() error {
		got, err := p.c.GetFunction(ctx, f.ID, f.VersionID)
		if err != nil {
			return err
		}
		ids = ids[:0]
		for _, in := range got.ActiveInstances {
			if in.InstanceStatus != model.InstanceRunning {
				return fmt.Errorf("instance %s is %s", in.InstanceID, in.InstanceStatus)
			}
			if in.InstanceUpdatedAt.Before(since) {
				return fmt.Errorf("instance %s is RUNNING as of %s, before %s", in.InstanceID, in.InstanceUpdatedAt, since)
			}
			ids = append(ids, in.InstanceID)
		}
		if len(ids) != n {
			return fmt.Errorf("%d active instances, want %d", len(ids), n)
		}
		return nil
	})
	slices.Sort(ids)
	return ids
}

// invokeOK calls the function (by version when it is deployed itself, else by
// function id) and requires its echo of the body.
func invokeOK(t *testing.T, p *platform, f model.Function, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := client.InvokeRequest{FunctionID: f.ID, Body: strings.NewReader(body)}
	if _, err := p.c.GetDeployment(ctx, f.ID, f.VersionID); err == nil {
		req.VersionID = f.VersionID
	}
	resp, err := p.c.Invoke(ctx, req)
	if err != nil {
		t.Fatalf("invoke %s: %v", f.ID, err)
	}
	var e echoReply
	if resp.StatusCode != 200 || json.Unmarshal(resp.Body, &e) != nil || e.Body != body {
		t.Fatalf("invoke %s: %d %s", f.ID, resp.StatusCode, resp.Body)
	}
}

// versionKeys lists "<name> <id> <versionId>" for every function version,
// sorted.
func versionKeys(t *testing.T, p *platform) []string {
	t.Helper()
	fns, err := p.c.ListFunctions(testutil.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fns {
		out = append(out, f.Name+" "+f.ID+" "+f.VersionID)
	}
	slices.Sort(out)
	return out
}

func versionIDs(fs []model.Function) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.VersionID)
	}
	slices.Sort(out)
	return out
}

func sortedStrings(s ...string) []string {
	slices.Sort(s)
	return s
}

// sameSpecs compares what a deployment asked for, spec ids included (not
// what the autoscaler shows of it).
func sameSpecs(a, b []model.GPUSpec) bool {
	asked := func(specs []model.GPUSpec) string {
		specs = slices.Clone(specs)
		for i := range specs {
			specs[i].DesiredInstances, specs[i].RunningInstances, specs[i].ScalingDecisions = nil, nil, nil
		}
		j, _ := json.Marshal(specs)
		return string(j)
	}
	return asked(a) == asked(b)
}

// versionProcesses lists the pids of this test binary's children that run an
// instance of the function version: the process runtime gives each instance
// NVCF_FUNCTION_VERSION_ID in its environment.
func versionProcesses(t *testing.T, versionID string) []int {
	t.Helper()
	var out []int
	for _, pid := range childPIDs(t, os.Getpid()) {
		if c := cmdline(pid); processEnv(pid, "NVCF_FUNCTION_VERSION_ID="+versionID) && processAlive(pid, c) {
			out = append(out, pid)
		}
	}
	return out
}
