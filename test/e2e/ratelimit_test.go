package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/client"
	"github.com/gantry-dev/gantry/internal/controlplane"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestRateLimit: a function's rateLimit "2-S" lets two calls a second
// through per account; the third gets 429 with Retry-After. PUT and DELETE
// /v2/nvcf/ratelimit/... change and remove the limit.
//
// Not parallel: its first three calls must fall within one second.
func TestRateLimit(t *testing.T) {
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	req := selfFunction(t, "limited", "echo")
	req.RateLimit = &model.RateLimit{RateLimit: "2-S"}
	f, err := p.c.CreateFunction(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(4)}, model.StatusActive)
	invoke := func() *http.Response {
		t.Helper()
		resp, err := http.DefaultClient.Do(p.pexecRequest(t, ctx, f, nil))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// Three at once: two pass, the third is refused with when to retry.
	var statuses []int
	var refused *http.Response
	for range 3 {
		resp := invoke()
		statuses = append(statuses, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests {
			refused = resp
			continue
		}
		resp.Body.Close()
	}
	if statuses[0] != 200 || statuses[1] != 200 || refused == nil {
		t.Fatalf("statuses %v, want 200 200 429", statuses)
	}
	if ra := refused.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
	assertProblem(t, refused, http.StatusTooManyRequests, "allows 2-S calls per account")

	// A second later there is room again.
	testutil.WaitFor(t, 5*time.Second, func() error {
		resp := invoke()
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})

	path := p.URL() + "/v2/nvcf/ratelimit/functions/" + f.ID + "/versions/" + f.VersionID
	do := func(method, body string, want int) {
		t.Helper()
		r, err := http.NewRequestWithContext(ctx, method, path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+p.AdminToken())
		r.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want {
			assertProblem(t, resp, want, "")
		}
		resp.Body.Close()
	}
	do(http.MethodPut, `{"rateLimit":{"rateLimit":"5-X"}}`, http.StatusBadRequest)
	do(http.MethodPut, `{}`, http.StatusBadRequest)
	// One a minute: after the next call, the one after is refused.
	do(http.MethodPut, `{"rateLimit":{"rateLimit":"1-M"}}`, http.StatusNoContent)
	got, err := p.c.GetFunction(ctx, f.ID, f.VersionID)
	if err != nil || got.RateLimit == nil || got.RateLimit.RateLimit != "1-M" {
		t.Fatalf("after PUT the function's rateLimit is %+v (%v), want 1-M", got.RateLimit, err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		a, b := invoke(), invoke()
		a.Body.Close()
		b.Body.Close()
		if b.StatusCode != http.StatusTooManyRequests || b.Header.Get("Retry-After") == "" {
			return fmt.Errorf("two calls under 1-M: %d %d, want the second refused", a.StatusCode, b.StatusCode)
		}
		return nil
	})
	// Removed: no limit at all.
	do(http.MethodDelete, "", http.StatusNoContent)
	testutil.WaitFor(t, 10*time.Second, func() error {
		for range 5 {
			resp := invoke()
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d after the limit was removed", resp.StatusCode)
			}
		}
		return nil
	})
}

// TestRateLimitSharedAcrossReplicas: two gateway replicas. A rateLimit with
// syncCheck is one count for the whole installation; without it each
// replica counts its own calls. (Nothing is deployed that can run, so the
// calls the limiter lets through end in a 503; only 429s are counted.)
func TestRateLimitSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	etcd := testutil.StartEtcdEndpoint(t)
	natsURL := testutil.StartNATS(t)
	ctx := testutil.Context(t)
	shared := t.TempDir()
	var urls []string
	var token string
	for range 2 {
		s, err := controlplane.New(controlplane.Config{DataDir: shared, Listen: "127.0.0.1:0",
			EtcdEndpoints: []string{etcd}, NATSURL: natsURL, Resync: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		urls, token = append(urls, s.URL()), s.AdminToken()
	}
	c := client.New(urls[0], token)
	for _, sync := range []bool{true, false} {
		t.Run(fmt.Sprint("syncCheck ", sync), func(t *testing.T) {
			req := selfFunction(t, "limited", "echo")
			req.RateLimit = &model.RateLimit{RateLimit: "3-M", SyncCheck: sync}
			f, err := c.CreateFunction(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.CreateDeployment(ctx, f.ID, f.VersionID, model.DeploymentRequest{Specs: []model.GPUSpec{
				{GPU: "H100", MinInstances: 0, MaxInstances: 1}}}); err != nil {
				t.Fatal(err)
			}
			(&platform{c: c}).waitStatus(t, f, model.StatusActive)
			// Both gateways must know the function before counting.
			for _, u := range urls {
				testutil.WaitFor(t, 10*time.Second, func() error {
					r, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/v2/nvcf/queues/functions/"+f.ID, nil)
					if err != nil {
						return err
					}
					r.Header.Set("Authorization", "Bearer "+token)
					resp, err := http.DefaultClient.Do(r)
					if err != nil {
						return err
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("queue of %s on %s: %d", f.ID, u, resp.StatusCode)
					}
					return nil
				})
			}
			refused := 0
			for i := range 6 {
				st, _ := callAt(urls[i%2], token, f, fmt.Sprint("c", i), "0s")
				if st == http.StatusTooManyRequests {
					refused++
				}
			}
			want := 3 // one count of 3 a minute for both replicas
			if !sync {
				want = 0 // 3 a minute on each
			}
			if refused != want {
				t.Errorf("6 calls alternating between two replicas under 3-M: %d refused, want %d", refused, want)
			}
		})
	}
}
