package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/agent/runtime"
	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

type echoReply struct {
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	Query    map[string][]string `json:"query"`
	Headers  map[string][]string `json:"headers"`
	Body     string              `json:"body"`
	Inflight int                 `json:"inflight"`
}

// TestCoreFlow is the quick start as a test: create the echo function, deploy
// it on a simulated GPU, reach ACTIVE, invoke it every way NVCF clients do.
func TestCoreFlow(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	f, err := p.c.CreateFunction(ctx, selfFunction(t, "echo", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Status != model.StatusInactive {
		t.Fatalf("new function status %s, want INACTIVE", f.Status)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(4)}, model.StatusActive)

	t.Run("pexec returns the function's answer and NVCF headers", func(t *testing.T) {
		resp, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, Body: strings.NewReader(`{"hello":"gpu"}`),
			Header: http.Header{"X-Caller": {"yes"}}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Status != "fulfilled" || resp.RequestID == "" {
			t.Fatalf("status %d nvcf-status %q reqid %q body %s", resp.StatusCode, resp.Status, resp.RequestID, resp.Body)
		}
		var e echoReply
		if err := json.Unmarshal(resp.Body, &e); err != nil {
			t.Fatalf("%v: %s", err, resp.Body)
		}
		if e.Body != `{"hello":"gpu"}` || e.Path != "/echo" || e.Method != "POST" {
			t.Fatalf("function saw %+v", e)
		}
		for k, want := range map[string]string{
			"Nvcf-Function-Id": f.ID, "Nvcf-Function-Version-Id": f.VersionID, "Nvcf-Reqid": resp.RequestID,
			"Nvcf-Ncaid": "gantry-local", "Nvcf-Max-Response-Size-Bytes": strconv.Itoa(5 << 20), "X-Caller": "yes",
			"Nvcf-Function-Name": "echo", "Nvcf-Backend": dev.LocalCluster, "Nvcf-Region": "local",
			"Nvcf-Env": runtime.NVCFEnvironment,
		} {
			if got := first(e.Headers[k]); got != want {
				t.Errorf("function got %s=%q, want %q", k, got, want)
			}
		}
		for k, dir := range map[string]string{"Nvcf-Asset-Dir": "assets", "Nvcf-Large-Output-Dir": "large-output"} {
			// The instance's directory, then one per request.
			if got := first(e.Headers[k]); filepath.Base(got) != resp.RequestID || filepath.Base(filepath.Dir(got)) != dir {
				t.Errorf("function got %s=%q, want .../%s/%s", k, got, dir, resp.RequestID)
			}
		}
		if first(e.Headers["Nvcf-Sub"]) == "" || first(e.Headers["Nvcf-Instancetype"]) == "" {
			t.Errorf("function got no NVCF-SUB or NVCF-INSTANCETYPE: %v", e.Headers)
		}
		for _, h := range []string{"Authorization", "Nats-Msg-Id", "Gantry-Reply"} {
			if _, ok := e.Headers[h]; ok {
				t.Errorf("header %s reached the function", h)
			}
		}
	})

	t.Run("pexec of a named version", func(t *testing.T) {
		resp, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, VersionID: f.VersionID, Body: strings.NewReader("v")})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %+v", err, resp)
		}
	})

	t.Run("host header routes and passes the path through", func(t *testing.T) {
		for _, host := range []string{f.ID + ".invocation.gantry.local", f.VersionID + "." + f.ID + ".invocation.gantry.local"} {
			req := newRequest(t, "PUT", p.URL()+"/v1/anything/here?x=1", p.AdminToken())
			req.Host = host
			req.Body = io.NopCloser(strings.NewReader("via host"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e echoReply
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != 200 || e.Path != "/v1/anything/here" || first(e.Query["x"]) != "1" || e.Method != "PUT" || e.Body != "via host" {
				t.Fatalf("host %s: status %d, function saw %+v", host, resp.StatusCode, e)
			}
			if resp.Header.Get("NVCF-REQID") == "" || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "NVCF-REQID") {
				t.Fatalf("missing NVCF headers: %v", resp.Header)
			}
		}
	})

	t.Run("slower than the poll window yields 202 then the result", func(t *testing.T) {
		resp, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, Body: strings.NewReader("slow"), PollSeconds: 1,
			Header: http.Header{"Echo-Delay": {"2500ms"}}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusAccepted || resp.RequestID == "" || resp.Status != "pending-evaluation" {
			t.Fatalf("got %d %q %q", resp.StatusCode, resp.Status, resp.RequestID)
		}
		var final *client.InvokeResponse
		testutil.WaitFor(t, 30*time.Second, func() error {
			final, err = p.c.InvocationStatus(ctx, resp.RequestID, 5)
			if err != nil {
				return err
			}
			if final.StatusCode != 200 {
				return fmt.Errorf("status %d", final.StatusCode)
			}
			return nil
		})
		var e echoReply
		if err := json.Unmarshal(final.Body, &e); err != nil || e.Body != "slow" {
			t.Fatalf("result %s: %v", final.Body, err)
		}
	})

	t.Run("unknown request id is 404", func(t *testing.T) {
		_, err := p.c.InvocationStatus(ctx, "00000000-0000-0000-0000-000000000000", 1)
		if client.StatusCode(err) != 404 {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("function errors pass through with its status", func(t *testing.T) {
		_, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, Header: http.Header{"Echo-Status": {"418"}}})
		if client.StatusCode(err) != 418 {
			t.Fatalf("got %v, want the function's 418", err)
		}
	})

	t.Run("body over 6 MiB is 413 with a problem body", func(t *testing.T) {
		req := newRequest(t, "POST", p.URL()+"/v2/nvcf/pexec/functions/"+f.ID, p.AdminToken())
		req.Body = io.NopCloser(bytes.NewReader(make([]byte, 6<<20+1)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		assertProblem(t, resp, 413, "5 MiB")
	})

	t.Run("unknown function is 404", func(t *testing.T) {
		_, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: "11111111-2222-3333-4444-555555555555"})
		if client.StatusCode(err) != 404 {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("credentials", func(t *testing.T) {
		for _, tc := range []struct{ name, token string }{{"none", ""}, {"wrong", "gantry-admin-nope"}} {
			resp, err := http.DefaultClient.Do(newRequest(t, "GET", p.URL()+"/v2/nvcf/functions", tc.token))
			if err != nil {
				t.Fatal(err)
			}
			assertProblem(t, resp, 401, "credential")
		}
	})
}

// TestConcurrencyLimit sends 100 parallel invocations to one instance with
// maxRequestConcurrency 4: the function must never see more than 4 at once,
// and every call must get its answer.
func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	f, err := p.c.CreateFunction(ctx, selfFunction(t, "limited", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(4)}, model.StatusActive)
	const calls = 100
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak, ok := 0, 0
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, Body: strings.NewReader(strconv.Itoa(i)),
				Header: http.Header{"Echo-Delay": {"20ms"}}})
			if err != nil {
				t.Error(err)
				return
			}
			var e echoReply
			if resp.StatusCode != 200 || json.Unmarshal(resp.Body, &e) != nil || e.Body != strconv.Itoa(i) {
				t.Errorf("call %d: %d %s", i, resp.StatusCode, resp.Body)
				return
			}
			mu.Lock()
			peak = max(peak, e.Inflight)
			ok++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if ok != calls {
		t.Fatalf("%d of %d calls answered", ok, calls)
	}
	if peak > 4 {
		t.Fatalf("function saw %d concurrent requests; maxRequestConcurrency is 4", peak)
	}
	if peak < 2 {
		t.Fatalf("function never saw concurrent requests (peak %d): the limit is not being used", peak)
	}
	t.Logf("peak concurrency seen by the function: %d", peak)
}

// TestFunctionThatExitsEndsInError deploys a function that exits at once.
func TestFunctionThatExitsEndsInError(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	f, err := p.c.CreateFunction(ctx, selfFunction(t, "crasher", "exit"))
	if err != nil {
		t.Fatal(err)
	}
	d := p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1}, model.StatusError)
	if len(d.HealthInfo) == 0 || !strings.Contains(d.HealthInfo[0].Error, "boom: bad config") || !strings.Contains(d.HealthInfo[0].Error, "3") {
		t.Fatalf("healthInfo does not say why: %+v", d.HealthInfo)
	}
	_, err = p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID})
	if client.StatusCode(err) != 503 {
		t.Fatalf("invoking an ERROR function: %v", err)
	}
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// assertProblem checks an RFC 9457 body with the status and a detail hint.
func assertProblem(t *testing.T, resp *http.Response, status int, detailHas string) {
	t.Helper()
	defer resp.Body.Close()
	var pb struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if resp.StatusCode != status {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q", ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&pb); err != nil {
		t.Fatal(err)
	}
	if pb.Status != status || pb.Type == "" || pb.Title == "" || !strings.Contains(pb.Detail, detailHas) {
		t.Fatalf("problem %+v, want detail containing %q", pb, detailHas)
	}
}
