package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// TestQueuePosition: calls answered 202 while the one slot is busy wait in
// order, and GET /v2/nvcf/queues/{requestId}/position tells each its place
// (NVCF's body: functionId, functionVersionId, positionInQueue); a call a
// worker has finished is at 0; another account's call, or an unknown id, is
// not found.
func TestQueuePosition(t *testing.T) {
	t.Parallel()
	p := startPlatform(t, t.TempDir())
	ctx := testutil.Context(t)
	f, log := streamFunction(t, p, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(1)})

	// Hold the one slot.
	holdCtx, release := context.WithCancel(ctx)
	defer release()
	held := make(chan struct{})
	go func() {
		defer close(held)
		resp, err := http.DefaultClient.Do(p.pexecRequest(t, holdCtx, f, http.Header{"Call-Id": {"holder"}, "Call-Delay": {"1m"}, "NVCF-POLL-SECONDS": {"300"}}))
		if err == nil {
			resp.Body.Close()
		}
	}()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if readStreamLog(t, log).calls["holder"] == 0 {
			return fmt.Errorf("the holding call has not started")
		}
		return nil
	})

	// Three calls queue behind it, one after the other, and are answered 202.
	var reqIDs []string
	for i := range 3 {
		resp, err := http.DefaultClient.Do(p.pexecRequest(t, ctx, f, http.Header{"Call-Id": {fmt.Sprint("queued-", i)}, "NVCF-POLL-SECONDS": {"1"}}))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("NVCF-REQID") == "" {
			t.Fatalf("queued call %d: %d (reqid %q), want 202", i, resp.StatusCode, resp.Header.Get("NVCF-REQID"))
		}
		reqIDs = append(reqIDs, resp.Header.Get("NVCF-REQID"))
	}
	for i, id := range reqIDs {
		got := p.position(t, id, p.AdminToken(), http.StatusOK)
		want := model.QueuePosition{FunctionID: f.ID, FunctionVersionID: f.VersionID, PositionInQueue: i + 1, Position: i + 1}
		if got != want {
			t.Errorf("call %d: position %+v, want %+v", i, got, want)
		}
	}

	t.Run("not found", func(t *testing.T) {
		other, err := p.c.MintAdminToken(ctx, model.AdminKeyRequest{NCAID: "other-account"})
		if err != nil {
			t.Fatal(err)
		}
		p.position(t, reqIDs[0], other.Value, http.StatusNotFound)
		p.position(t, "00000000-0000-0000-0000-000000000000", p.AdminToken(), http.StatusNotFound)
		p.position(t, "not!an!id", p.AdminToken(), http.StatusBadRequest)
	})

	// The slot frees: the queue drains, each call gets its result, and its
	// position is then 0.
	release()
	<-held
	for i, id := range reqIDs {
		testutil.WaitFor(t, 30*time.Second, func() error {
			resp, err := http.DefaultClient.Do(newRequest(t, http.MethodGet, p.URL()+"/v2/nvcf/pexec/status/"+id, p.AdminToken()))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("call %d: status %d %s", i, resp.StatusCode, b)
			}
			if want := fmt.Sprint("queued-", i); string(b) != want {
				t.Fatalf("call %d answered %q, want %q", i, b, want)
			}
			return nil
		})
	}
	// A result served is gone; the position of a finished call whose
	// result was not yet read is 0.
	resp, err := http.DefaultClient.Do(p.pexecRequest(t, ctx, f, http.Header{"Call-Id": {"unread"}, "Call-Delay": {"1500ms"}, "NVCF-POLL-SECONDS": {"1"}}))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("slow call: %d, want 202", resp.StatusCode)
	}
	unread := resp.Header.Get("NVCF-REQID")
	testutil.WaitFor(t, 10*time.Second, func() error {
		if readStreamLog(t, log).calls["unread"] == 0 {
			return fmt.Errorf("the slow call has not run")
		}
		return nil
	})
	if got := p.position(t, unread, p.AdminToken(), http.StatusOK); got.PositionInQueue != 0 || got.FunctionID != f.ID {
		t.Errorf("a running or finished call: position %+v, want 0", got)
	}
}

// position asks for a request's queue position, expecting status.
func (p *platform) position(t *testing.T, reqID, token string, status int) model.QueuePosition {
	t.Helper()
	resp, err := http.DefaultClient.Do(newRequest(t, http.MethodGet, p.URL()+"/v2/nvcf/queues/"+reqID+"/position", token))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK {
		assertProblem(t, resp, status, "")
		return model.QueuePosition{}
	}
	defer resp.Body.Close()
	var out model.QueuePosition
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("position of %s: %d %s, want %d", reqID, resp.StatusCode, b, status)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("position of %s: %v: %s", reqID, err, b)
	}
	return out
}
