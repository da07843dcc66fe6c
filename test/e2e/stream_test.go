package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/testutil"
)

// streamFunction deploys a "stream" helper function whose log is returned.
func streamFunction(t *testing.T, p *platform, spec model.GPUSpec) (model.Function, string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "function.log")
	req := selfFunction(t, "streamer", "stream")
	req.ContainerEnvironment = append(req.ContainerEnvironment, model.EnvVar{Key: streamLogEnv, Value: log})
	f, err := p.c.CreateFunction(testutil.Context(t), req)
	if err != nil {
		t.Fatal(err)
	}
	p.deploy(t, f, spec, model.StatusActive)
	return f, log
}

// pexecRequest is a raw pexec call, for tests that read the answer as it
// streams.
func (p *platform) pexecRequest(t *testing.T, ctx context.Context, f model.Function, hdr http.Header) *http.Request {
	t.Helper()
	req := newRequest(t, http.MethodPost, p.URL()+"/v2/nvcf/pexec/functions/"+f.ID, p.AdminToken())
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	return req.WithContext(ctx)
}

// sseEvents reads data lines as they arrive, sending each with the time it
// was read.
func sseEvents(body io.Reader, out chan<- sseEvent) {
	defer close(out)
	sc := bufio.NewScanner(body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			out <- sseEvent{event: event, data: strings.TrimPrefix(line, "data: "), at: time.Now()}
			event = ""
		}
	}
}

type sseEvent struct {
	event, data string
	at          time.Time
}

// TestSSEStreamsAsWritten: each event a function writes reaches the caller
// when it is written, not when the response ends.
//
// Not parallel: it holds each event's lag to 50ms.
func TestSSEStreamsAsWritten(t *testing.T) {
	onCallPaths(t, nil, testSSEStreamsAsWritten)
}

func testSSEStreamsAsWritten(t *testing.T, p *platform) {
	f, log := streamFunction(t, p, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(2)})
	ctx := testutil.Context(t)
	const events, every = 5, 400 * time.Millisecond
	resp, err := http.DefaultClient.Do(p.pexecRequest(t, ctx, f, http.Header{"Accept": {"text/event-stream"},
		"Stream-Events": {fmt.Sprint(events)}, "Stream-Interval": {every.String()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != -1 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, length %d, type %q: want a 200 event stream of unknown length", resp.StatusCode, resp.ContentLength, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent, events)
	go sseEvents(resp.Body, ch)
	var got []sseEvent
	for e := range ch {
		got = append(got, e)
	}
	if len(got) != events {
		t.Fatalf("got %d events, want %d: %+v", len(got), events, got)
	}
	l := readStreamLog(t, log)
	for i, e := range got {
		sent, ok := l.sent[i]
		if e.data != fmt.Sprint(i) || !ok {
			t.Fatalf("event %d: %+v, function log %+v", i, e, l)
		}
		if lag := e.at.Sub(sent); lag > 50*time.Millisecond {
			t.Errorf("event %d reached the caller %v after the function wrote it, want <= 50ms", i, lag)
		} else {
			t.Logf("event %d: %v after its write", i, lag.Round(time.Microsecond))
		}
	}
}

// TestHangUpCancels: a caller that leaves cancels its call, whether it runs
// (the function sees its connection close) or still waits in the queue (it
// is dropped and never runs).
//
// Not parallel: dropping the queued call is sensitive to load.
func TestHangUpCancels(t *testing.T) {
	onCallPaths(t, nil, testHangUpCancels)
}

func testHangUpCancels(t *testing.T, p *platform) {
	f, log := streamFunction(t, p, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(1)})

	t.Run("a running call: the function sees its connection close", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testutil.Context(t))
		resp, err := http.DefaultClient.Do(p.pexecRequest(t, ctx, f, http.Header{"Accept": {"text/event-stream"},
			"Stream-Events": {"50"}, "Stream-Interval": {"200ms"}}))
		if err != nil {
			t.Fatal(err)
		}
		ch := make(chan sseEvent, 50)
		go sseEvents(resp.Body, ch)
		<-ch
		<-ch
		left := time.Now()
		cancel()
		resp.Body.Close()
		var l streamLog
		testutil.WaitFor(t, 10*time.Second, func() error {
			if l = readStreamLog(t, log); l.closed.IsZero() {
				return fmt.Errorf("the function has not seen its connection close (log %+v)", l)
			}
			return nil
		})
		if l.done {
			t.Fatal("the function streamed every event: the hang-up did not reach it")
		}
		if took := l.closed.Sub(left); took > time.Second {
			t.Errorf("the function saw the close %v after the caller left, want <= 1s", took)
		} else {
			t.Logf("the function saw the close %v after the caller left", took.Round(time.Microsecond))
		}
	})

	t.Run("a queued call is dropped and never runs", func(t *testing.T) {
		ctx := testutil.Context(t)
		// Hold the one slot.
		holdCtx, release := context.WithCancel(ctx)
		defer release()
		held := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(p.pexecRequest(t, holdCtx, f, http.Header{"Call-Id": {"holder"}, "Call-Delay": {"1m"}}))
			if err == nil {
				resp.Body.Close()
			}
			held <- err
		}()
		testutil.WaitFor(t, 10*time.Second, func() error {
			if readStreamLog(t, log).calls["holder"] == 0 {
				return fmt.Errorf("the holding call has not started")
			}
			return nil
		})
		// This one queues behind it; its caller leaves while it waits.
		leaveCtx, leave := context.WithCancel(ctx)
		left := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(p.pexecRequest(t, leaveCtx, f, http.Header{"Call-Id": {"left"}, "NVCF-POLL-SECONDS": {"300"}}))
			if err == nil {
				resp.Body.Close()
			}
			left <- err
		}()
		p.waitQueueDepth(t, f, 1)
		leave()
		<-left
		p.waitQueueDepth(t, f, 0)
		release()
		<-held
		// The slot is free again: the next call runs, the dropped one never.
		resp, err := http.DefaultClient.Do(p.pexecRequest(t, ctx, f, http.Header{"Call-Id": {"after"}}))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "after" {
			t.Fatalf("next call: %d %s", resp.StatusCode, b)
		}
		if n := readStreamLog(t, log).calls["left"]; n != 0 {
			t.Fatalf("the call whose caller left ran %d times, want 0", n)
		}
	})
}

// waitQueueDepth waits until the function's queue holds n calls (waiting or
// running from the queue).
func (p *platform) waitQueueDepth(t *testing.T, f model.Function, n int) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() error {
		resp, err := http.DefaultClient.Do(newRequest(t, http.MethodGet, p.URL()+"/v2/nvcf/queues/functions/"+f.ID, p.AdminToken()))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var q model.QueueResponse
		if err := json.NewDecoder(resp.Body).Decode(&q); err != nil {
			return err
		}
		if len(q.Queues) != 1 || q.Queues[0].QueueDepth != n {
			return fmt.Errorf("queues %+v, want depth %d", q.Queues, n)
		}
		return nil
	})
}

// TestFastPathRunsEveryCallOnce: 32 callers on 8 slots, so calls take both
// the fast path and the queue; every call runs exactly once and answers its
// own caller.
func TestFastPathRunsEveryCallOnce(t *testing.T) {
	t.Parallel()
	onCallPaths(t, nil, testFastPathRunsEveryCallOnce)
}

func testFastPathRunsEveryCallOnce(t *testing.T, p *platform) {
	f, log := streamFunction(t, p, model.GPUSpec{GPU: "H100", MinInstances: 2, MaxInstances: 2, MaxRequestConcurrency: model.Int(4)})
	ctx := testutil.Context(t)
	const callers, each = 32, 20
	var (
		mu     sync.Mutex
		failed []string
		wg     sync.WaitGroup
	)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("c%d-%d", c, i)
				resp, err := http.DefaultClient.Do(p.pexecRequest(t, ctx, f, http.Header{"Call-Id": {id}, "Call-Delay": {"2ms"}}))
				var b []byte
				if err == nil {
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 || string(b) != id {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%s: %v %s", id, err, b))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d calls failed, e.g. %s", len(failed), callers*each, failed[0])
	}
	calls := readStreamLog(t, log).calls
	runs := 0
	for c := range callers {
		for i := range each {
			id := fmt.Sprintf("c%d-%d", c, i)
			if calls[id] != 1 {
				t.Errorf("call %s ran %d times, want once", id, calls[id])
			}
			runs += calls[id]
		}
	}
	if runs != callers*each || len(calls) != callers*each {
		t.Errorf("%d runs of %d distinct calls, want %d of %d", runs, len(calls), callers*each, callers*each)
	}
}

// TestFunctionDyingMidStream: the caller's stream ends with an error event,
// and the call's status record says it failed.
func TestFunctionDyingMidStream(t *testing.T) {
	t.Parallel()
	onCallPaths(t, nil, testFunctionDyingMidStream)
}

func testFunctionDyingMidStream(t *testing.T, p *platform) {
	f, _ := streamFunction(t, p, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(1)})
	ctx := testutil.Context(t)
	resp, err := http.DefaultClient.Do(p.pexecRequest(t, ctx, f, http.Header{"Accept": {"text/event-stream"},
		"Stream-Events": {"5"}, "Stream-Interval": {"50ms"}, "Stream-Exit-After": {"2"}}))
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan sseEvent, 10)
	go sseEvents(resp.Body, ch)
	var got []sseEvent
	for e := range ch {
		got = append(got, e)
	}
	resp.Body.Close()
	if len(got) != 3 || got[0].data != "0" || got[1].data != "1" || got[2].event != "error" {
		t.Fatalf("events %+v: want 0, 1 and an error event", got)
	}
	t.Logf("error event: %s", got[2].data)
	reqID := resp.Header.Get("NVCF-REQID")
	// The status record says the call failed, and why.
	st, err := http.DefaultClient.Do(newRequest(t, http.MethodGet, p.URL()+"/v2/nvcf/pexec/status/"+reqID, p.AdminToken()))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(st.Body)
	st.Body.Close()
	if st.StatusCode != http.StatusBadGateway || st.Header.Get("NVCF-STATUS") != "errored" || !strings.Contains(string(b), "broke off") {
		t.Fatalf("status of %s: %d %q %s, want 502 errored saying why", reqID, st.StatusCode, st.Header.Get("NVCF-STATUS"), b)
	}
}

// TestGatewayShutdownEndsStreamsCleanly: a stream under way when the
// gateway shuts down ends with an error event saying why, not a hang.
//
// Not parallel: under load the stream has ended with "broke off" rather than
// the shutdown's own error event.
func TestGatewayShutdownEndsStreamsCleanly(t *testing.T) {
	onCallPaths(t, nil, testGatewayShutdownEndsStreamsCleanly)
}

func testGatewayShutdownEndsStreamsCleanly(t *testing.T, p *platform) {
	f, _ := streamFunction(t, p, model.GPUSpec{GPU: "H100", MinInstances: 1, MaxInstances: 1, MaxRequestConcurrency: model.Int(1)})
	resp, err := http.DefaultClient.Do(p.pexecRequest(t, testutil.Context(t), f, http.Header{"Accept": {"text/event-stream"},
		"Stream-Events": {"100"}, "Stream-Interval": {"100ms"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ch := make(chan sseEvent, 100)
	go sseEvents(resp.Body, ch)
	<-ch
	<-ch
	closed := make(chan time.Duration, 1)
	go func() {
		began := time.Now()
		p.ControlPlane().Close()
		closed <- time.Since(began)
	}()
	var last sseEvent
	for e := range ch {
		last = e
	}
	if last.event != "error" || !strings.Contains(last.data, "shutting down") {
		t.Fatalf("last event %+v, want an error event saying the gateway is shutting down", last)
	}
	if took := <-closed; took > 5*time.Second {
		t.Errorf("the control plane took %v to close with a stream under way", took)
	}
}
