package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestQuickStartBinary runs the README's quick start against the built
// binary, command for command: `gantry dev` in one "terminal", then function
// create, deploy create --wait and invoke as separate processes in another,
// then the curl call. It stops gantry dev with Ctrl-C (SIGINT), checks that
// it exits cleanly and leaves no function process behind, starts it again on
// the same data dir and checks that the function comes back and answers.
func TestQuickStartBinary(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the gantry binary and runs it as a subprocess; skipped with -short")
	}
	tmp := t.TempDir()
	bin := buildGantry(t)
	data := filepath.Join(tmp, "data")
	// GANTRY_DATA_DIR is set for gantry dev too, so even a flag that failed to
	// apply could not reach the user's real data dir.
	devEnv := isolatedEnv(tmp, "GANTRY_DATA_DIR="+data)

	// Terminal 1.
	dev := startDev(t, bin, "first run", data, devEnv)
	cliEnv := isolatedEnv(tmp, "GANTRY_SERVER="+dev.url, "GANTRY_DATA_DIR="+data)
	gantry := func(args ...string) string {
		t.Helper()
		return runGantry(t, bin, cliEnv, args...)
	}

	// Terminal 2, as the README has it (plus -o json to read the id).
	out := gantry("function", "create", "--name", "echo", "--image", "process://gantry", "--args", "example echo",
		"--inference-url", "/echo", "--health-uri", "/health", "-o", "json")
	var fn model.Function
	if err := json.Unmarshal([]byte(out), &fn); err != nil || fn.ID == "" || fn.VersionID == "" {
		t.Fatalf("function create -o json printed %q (%v); want the function object with an id", out, err)
	}
	if list := gantry("function", "list"); !tableHasRow(list, fn.ID, "echo") {
		t.Fatalf("function list does not show %s named echo:\n%s", fn.ID, list)
	}
	gantry("deploy", "create", fn.ID, "--gpu", "H100", "--wait")
	const wantBody = `"body":"{\"hello\":\"gpu\"}"`
	if out := gantry("invoke", fn.ID, "-d", `{"hello":"gpu"}`); !strings.Contains(out, wantBody) {
		t.Fatalf("invoke printed %q, want it to contain %s", out, wantBody)
	}

	// The curl line of the banner.
	tok, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	req := newRequest(t, "POST", dev.url+"/v2/nvcf/pexec/functions/"+fn.ID, strings.TrimSpace(string(tok)))
	req.Body = io.NopCloser(strings.NewReader(`{"hello":"gpu"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), wantBody) {
		t.Fatalf("curl-equivalent pexec: %d %s", resp.StatusCode, body)
	}

	// The echo instance runs as a child of gantry dev; Ctrl-C must take it
	// down with the platform.
	instances := echoChildren(t, dev.cmd.Process.Pid)
	if len(instances) != 1 {
		t.Fatalf("want 1 echo instance process under gantry dev (pid %d), found %v", dev.cmd.Process.Pid, instances)
	}
	dev.interrupt()
	assertGone(t, instances)

	// Start again on the same data dir: the function, its deployment and an
	// instance come back without any client command.
	restarted := time.Now()
	dev = startDev(t, bin, "second run", data, devEnv)
	cliEnv = isolatedEnv(tmp, "GANTRY_SERVER="+dev.url, "GANTRY_DATA_DIR="+data)
	var fns []model.Function
	if out := gantry("function", "list", "-o", "json"); json.Unmarshal([]byte(out), &fns) != nil || !hasVersion(fns, fn) {
		t.Fatalf("after restart, function list -o json does not hold %s/%s:\n%s", fn.ID, fn.VersionID, out)
	}
	// Until the new agent reports, the API still shows the state from before
	// the shutdown, ACTIVE included (a product bug; see the e2e report), so
	// first wait for an instance reported RUNNING since the restart.
	testutil.WaitFor(t, binWaitTimeout, func() error {
		var f model.Function
		out := gantry("function", "get", fn.ID, "--version", fn.VersionID, "-o", "json")
		if err := json.Unmarshal([]byte(out), &f); err != nil {
			return fmt.Errorf("function get -o json printed %q: %v", out, err)
		}
		if len(f.ActiveInstances) != 1 {
			return fmt.Errorf("%d active instances, want 1", len(f.ActiveInstances))
		}
		in := f.ActiveInstances[0]
		if in.InstanceStatus != model.InstanceRunning || in.InstanceUpdatedAt.Before(restarted) {
			return fmt.Errorf("instance %s is %s as of %s; restarted at %s", in.InstanceID, in.InstanceStatus, in.InstanceUpdatedAt, restarted)
		}
		return nil
	})
	testutil.WaitFor(t, binWaitTimeout, func() error {
		var d model.Deployment
		out := gantry("deploy", "get", fn.ID, "-o", "json")
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			return fmt.Errorf("deploy get -o json printed %q: %v", out, err)
		}
		if d.FunctionStatus != model.StatusActive {
			return fmt.Errorf("status %s, want ACTIVE", d.FunctionStatus)
		}
		return nil
	})
	if out := gantry("invoke", fn.ID, "-d", `{"hello":"gpu"}`); !strings.Contains(out, wantBody) {
		t.Fatalf("invoke after restart printed %q, want it to contain %s", out, wantBody)
	}
	instances = echoChildren(t, dev.cmd.Process.Pid)
	if len(instances) != 1 {
		t.Fatalf("after restart want 1 echo instance process, found %v", instances)
	}
	dev.interrupt()
	assertGone(t, instances)
}

// echoChildren maps the pids of gantry dev's children that run the example
// echo function to their command lines.
func echoChildren(t *testing.T, devPID int) map[int]string {
	t.Helper()
	out := map[int]string{}
	for _, pid := range childPIDs(t, devPID) {
		if c := cmdline(pid); strings.Contains(c, "example echo") {
			out[pid] = c
		}
	}
	return out
}

// assertGone requires every listed process to have exited. gantry dev waits
// for its instances before exiting, so they should be gone already; the poll
// only absorbs /proc catching up.
func assertGone(t *testing.T, procs map[int]string) {
	t.Helper()
	testutil.WaitFor(t, binStopTimeout, func() error {
		var alive []error
		for pid, c := range procs {
			if processAlive(pid, c) {
				alive = append(alive, fmt.Errorf("pid %d (%s) still runs", pid, c))
			}
		}
		return errors.Join(alive...)
	})
}

// tableHasRow reports whether a table printed by the CLI has a row holding
// every one of cells as whole columns.
func tableHasRow(table string, cells ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		cols := strings.Fields(line)
		ok := len(cols) > 0
		for _, c := range cells {
			found := false
			for _, col := range cols {
				found = found || col == c
			}
			ok = ok && found
		}
		if ok {
			return true
		}
	}
	return false
}

// hasVersion reports whether fns lists f's version.
func hasVersion(fns []model.Function, f model.Function) bool {
	for _, g := range fns {
		if g.ID == f.ID && g.VersionID == f.VersionID {
			return true
		}
	}
	return false
}
