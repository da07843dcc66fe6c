package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/dev"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// callPaths are the two ways a sync call reaches an instance
// (docs/architecture.md, "Direct calls"): the gateway calling it itself on
// a slot the agent lends it (gantry dev's default), and over the bus, as to
// an agent whose instances the gateway cannot reach.
var callPaths = []struct {
	name string
	edit func(*dev.Config)
}{
	{"direct", nil},
	{"bus", func(c *dev.Config) { c.BusCalls = true }},
}

// onCallPaths runs test once on each call path, as subtests named after
// the path, each on a platform of its own started with edit and then the
// path's setting.
func onCallPaths(t *testing.T, edit func(*dev.Config), test func(t *testing.T, p *platform)) {
	t.Helper()
	for _, cp := range callPaths {
		t.Run(cp.name, func(t *testing.T) {
			test(t, startPlatformWith(t, t.TempDir(), func(c *dev.Config) {
				if edit != nil {
					edit(c)
				}
				if cp.edit != nil {
					cp.edit(c)
				}
			}))
		})
	}
}

// busCounter counts the messages of a subject pattern on the platform's
// own connection.
func busCounter(t *testing.T, p *platform, subject string) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	sub, err := p.ControlPlane().JetStream().Conn().Subscribe(subject, func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return &n
}

// TestCallPaths: both paths run every call once, within
// maxRequestConcurrency, with the same NVCF headers; a direct call puts no
// message on the bus, and a call in flight when its instance is stopped
// still completes.
func TestCallPaths(t *testing.T) {
	t.Parallel()
	seen := map[string]map[string]string{} // path -> NVCF header -> value
	for _, cp := range callPaths {
		t.Run(cp.name, func(t *testing.T) {
			p := startPlatformWith(t, t.TempDir(), cp.edit)
			ctx := testutil.Context(t)
			f, err := p.c.CreateFunction(ctx, selfFunction(t, "paths", "echo"))
			if err != nil {
				t.Fatal(err)
			}
			p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(4)}, model.StatusActive)
			// As many callers as slots: each call finds a slot free.
			offers := busCounter(t, p, "gantry.fast.>")
			queued := busCounter(t, p, "gantry.invoke.>")
			var wg sync.WaitGroup
			for c := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 10 {
						body := fmt.Sprintf("s%d-%d", c, i)
						resp, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, Body: strings.NewReader(body)})
						if err != nil || resp.StatusCode != 200 || !strings.Contains(string(resp.Body), body) {
							t.Errorf("call %s: %v %+v", body, err, resp)
						}
					}
				}()
			}
			wg.Wait()
			switch cp.name {
			case "direct":
				if n, q := offers.Load(), queued.Load(); n != 0 || q != 0 {
					t.Errorf("%d offers and %d queued calls on the bus; direct calls on free slots need none", n, q)
				}
			case "bus":
				if offers.Load() < 40 {
					t.Errorf("%d offers for 40 calls: the calls did not go over the bus", offers.Load())
				}
			}

			// 32 callers, 5 calls each, on 4 slots: the calls no slot
			// takes wait in the queue.
			const callers, each = 32, 5
			var (
				mu     sync.Mutex
				peak   int
				failed []string
			)
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						body := fmt.Sprintf("c%d-%d", c, i)
						resp, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, Body: strings.NewReader(body),
							Header: http.Header{"Echo-Delay": {"2ms"}}})
						var e echoReply
						if err == nil && resp.StatusCode == 200 {
							err = json.Unmarshal(resp.Body, &e)
						}
						mu.Lock()
						switch {
						case err != nil || resp.StatusCode != 200 || e.Body != body:
							failed = append(failed, fmt.Sprintf("%s: %v %+v", body, err, resp))
						default:
							peak = max(peak, e.Inflight)
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if len(failed) > 0 {
				t.Fatalf("%d of %d calls failed, e.g. %s", len(failed), callers*each, failed[0])
			}
			if peak > 4 {
				t.Errorf("the function saw %d calls at once; maxRequestConcurrency is 4", peak)
			}

			// What the function is told of the call and where it runs.
			resp, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: f.ID, Body: strings.NewReader("h")})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%v %+v", err, resp)
			}
			var e echoReply
			if err := json.Unmarshal(resp.Body, &e); err != nil {
				t.Fatal(err)
			}
			nvcf := map[string]string{}
			for k, vs := range e.Headers {
				if !strings.HasPrefix(k, "Nvcf-") {
					continue
				}
				v := first(vs)
				switch k {
				case "Nvcf-Reqid":
					if v != resp.RequestID {
						t.Errorf("NVCF-REQID %q, want the call's %q", v, resp.RequestID)
					}
					v = "<reqid>"
				case "Nvcf-Function-Id", "Nvcf-Function-Version-Id":
					if v != f.ID && v != f.VersionID {
						t.Errorf("%s %q is not the function's", k, v)
					}
					v = "<id>"
				case "Nvcf-Asset-Dir", "Nvcf-Large-Output-Dir":
					if filepath.Base(v) != resp.RequestID {
						t.Errorf("%s %q does not end in the request id", k, v)
					}
					v = filepath.Base(filepath.Dir(v)) + "/<reqid>"
				}
				nvcf[k] = v
			}
			seen[cp.name] = nvcf

			// A call under way when its instance is stopped completes.
			sf, log := streamFunction(t, p, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(2)})
			done := make(chan error, 1)
			go func() {
				resp, err := p.c.Invoke(ctx, client.InvokeRequest{FunctionID: sf.ID,
					Header: http.Header{"Call-Id": {"last"}, "Call-Delay": {"1s"}}})
				if err == nil && (resp.StatusCode != 200 || string(resp.Body) != "last") {
					err = fmt.Errorf("status %d: %s", resp.StatusCode, resp.Body)
				}
				done <- err
			}()
			testutil.WaitFor(t, 10*time.Second, func() error {
				if readStreamLog(t, log).calls["last"] == 0 {
					return testutil.Errorf("the call has not reached the function")
				}
				return nil
			})
			if err := p.c.DeleteDeployment(ctx, sf.ID, sf.VersionID); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Errorf("the call in flight when its instance stopped: %v", err)
			}
		})
	}
	if len(seen) == 2 {
		var diff []string
		for k, v := range seen["direct"] {
			if seen["bus"][k] != v {
				diff = append(diff, fmt.Sprintf("%s: direct %q, bus %q", k, v, seen["bus"][k]))
			}
		}
		for k, v := range seen["bus"] {
			if _, ok := seen["direct"][k]; !ok {
				diff = append(diff, fmt.Sprintf("%s: direct none, bus %q", k, v))
			}
		}
		sort.Strings(diff)
		if len(diff) > 0 || len(seen["direct"]) < 10 {
			t.Errorf("the function is told different NVCF headers on the two paths (%d headers): %v", len(seen["direct"]), diff)
		}
	}
}
